import { GitFcgiError } from '../errors.js';
import type { GitTarget } from './repo-path.js';

/**
 * git http-backend answers 415 to a smart RPC whose CONTENT_TYPE is not exactly
 * `application/x-<service>-request` (no parameters, no other case). Checking the same here
 * gives the same answer without starting a process for it.
 */
export function checkRpcContentType(target: GitTarget, contentType: string | undefined): void {
  if (target.kind !== 'smart-rpc' || target.service === null) return;
  const expected = `application/x-${target.service}-request`;
  if (contentType === expected) return;
  throw new GitFcgiError(
    'ERR_CONTENT_TYPE',
    `${target.service} needs Content-Type ${expected}, got ${JSON.stringify(contentType ?? '')}`,
    { status: 415 },
  );
}
