/** Longest Git-Protocol value passed on; git itself only ever sends a few short keys. */
export const MAX_GIT_PROTOCOL_LENGTH = 256;

const KEY = '[A-Za-z0-9][A-Za-z0-9._-]*';
const VALUE = '[A-Za-z0-9._,-]*';
const ENTRY = `${KEY}(?:=${VALUE})?`;
const GIT_PROTOCOL = new RegExp(`^${ENTRY}(?::${ENTRY})*$`);

/**
 * The Git-Protocol request header becomes GIT_PROTOCOL in git's environment, so only the
 * documented `key[=value](:key[=value])*` shape is let through (as Gitea does); anything else
 * is dropped, which makes git fall back to protocol v0.
 */
export function sanitizeGitProtocol(value: string | undefined): string | undefined {
  if (value === undefined || value.length > MAX_GIT_PROTOCOL_LENGTH) return undefined;
  return GIT_PROTOCOL.test(value) ? value : undefined;
}
