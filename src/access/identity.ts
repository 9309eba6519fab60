import type { Logger } from '../log.js';
import type { AuthSettings } from './access-config.js';
import { AccessDenied, unauthenticated } from './access-error.js';
import { CredentialCache } from './credential-cache.js';
import { FailureLimiter } from './failure-limiter.js';
import { HtpasswdFile } from './htpasswd.js';
import { verifyNothing, verifyPassword } from './password-hashes.js';

export interface Credentials {
  readonly user: string;
  readonly password: string;
}

/** `Basic base64(user:password)` -> the pair; null when absent, 'malformed' when unusable. */
export function parseBasicAuth(header: string | undefined): Credentials | null | 'malformed' {
  if (header === undefined || header.trim() === '') return null;
  const m = /^\s*basic\s+([A-Za-z0-9+/]+=*)\s*$/i.exec(header);
  if (m?.[1] === undefined) return 'malformed';
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) return 'malformed';
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/**
 * Who is asking. In nginx mode, REMOTE_USER as nginx set it. In htpasswd mode, the
 * Authorization header checked against the htpasswd file (REMOTE_USER from nginx is ignored),
 * with failed logins logged and limited per address. null: anonymous.
 */
export class IdentityChecker {
  private file: HtpasswdFile | null = null;
  private limiter: FailureLimiter | null = null;
  private readonly cache = new CredentialCache();

  constructor(private readonly log: Logger) {}

  private htpasswd(path: string): HtpasswdFile {
    if (this.file?.path !== path) {
      this.file = new HtpasswdFile(path, (parsed, generation) => {
        for (const warning of parsed.warnings) this.log.warn(warning);
        this.log.info('htpasswd loaded', { file: path, users: parsed.entries.size, generation });
      });
    }
    return this.file;
  }

  private limiterFor(auth: AuthSettings): FailureLimiter {
    if (this.limiter?.max !== auth.maxFailures || this.limiter.windowMs !== auth.failureWindowMs) {
      this.limiter = new FailureLimiter(auth.maxFailures, auth.failureWindowMs);
    }
    return this.limiter;
  }

  async identify(
    auth: AuthSettings,
    params: ReadonlyMap<string, string>,
    log: Logger,
  ): Promise<string | null> {
    if (auth.mode === 'nginx' || auth.htpasswdFile === null) return params.get('REMOTE_USER') || null;
    const credentials = parseBasicAuth(params.get('HTTP_AUTHORIZATION'));
    if (credentials === null) return null;
    const address = params.get('REMOTE_ADDR') ?? '';
    const limiter = this.limiterFor(auth);
    const waitMs = limiter.retryAfterMs(address);
    if (waitMs > 0) {
      throw new AccessDenied('ERR_RATE_LIMITED', 429, `too many failed logins from ${address}`, [
        ['Retry-After', String(Math.ceil(waitMs / 1000))],
      ]);
    }
    const user = credentials === 'malformed' ? '' : credentials.user;
    if (credentials !== 'malformed' && (await this.verify(auth.htpasswdFile, credentials, auth))) return user;
    limiter.recordFailure(address);
    log.warn('login failed', { user: user || '-', addr: address });
    throw unauthenticated(auth.realm, `login failed for ${JSON.stringify(user)} from ${address}`);
  }

  private async verify(path: string, { user, password }: Credentials, auth: AuthSettings): Promise<boolean> {
    const file = this.htpasswd(path);
    const entries = await file.entries().catch((err: unknown) => {
      throw new AccessDenied('ERR_CONFIG', 500, `cannot read htpasswd ${path}: ${(err as Error).message}`);
    });
    if (this.cache.has(user, password, file.generation)) return true;
    const entry = entries.get(user);
    if (entry === undefined) return verifyNothing(password);
    const ok = await verifyPassword(password, entry.hash, entry.scheme);
    if (ok) this.cache.add(user, password, file.generation, auth.credentialCacheMs);
    return ok;
  }
}
