/**
 * Parsers for the value types settings use. Each returns the parsed value or throws an Error
 * whose message says what was expected; the loader adds file, section, key and line.
 */

import { isIP } from 'node:net';

const SIZE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };
const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, '': 1000 };

/** `512`, `64K`, `10M`, `1G` (binary units, optional trailing `B`) -> bytes. */
export function parseSize(raw: string): number {
  const m = /^(\d+)\s*([kmg]?)b?$/i.exec(raw.trim());
  const unit = m?.[2]?.toLowerCase();
  if (!m?.[1] || unit === undefined)
    throw new Error(`expected a size like 512, 64K, 10M or 1G, got "${raw}"`);
  const value = Number(m[1]) * (SIZE_UNITS[unit] ?? 1);
  if (!Number.isSafeInteger(value)) throw new Error(`size "${raw}" is too large`);
  return value;
}

/** `30` (seconds), `500ms`, `30s`, `5m`, `1h` -> milliseconds. */
export function parseDuration(raw: string): number {
  const m = /^(\d+)\s*(ms|s|m|h)?$/i.exec(raw.trim());
  if (!m?.[1]) throw new Error(`expected a duration like 30s, 5m or 1h, got "${raw}"`);
  return Number(m[1]) * (DURATION_UNITS[(m[2] ?? '').toLowerCase()] ?? 1000);
}

/** Milliseconds as the config file would write them, in the largest unit that is exact: 600000 -> `10m`. */
export function formatDuration(ms: number): string {
  for (const unit of ['h', 'm', 's'] as const) {
    const size = DURATION_UNITS[unit] ?? 1;
    if (ms > 0 && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

export function parseBool(raw: string): boolean {
  const v = raw.trim().toLowerCase();
  if (['true', 'yes', 'on', '1'].includes(v)) return true;
  if (['false', 'no', 'off', '0'].includes(v)) return false;
  throw new Error(`expected true or false, got "${raw}"`);
}

export function parseInteger(raw: string, min: number, max: number): number {
  const v = raw.trim();
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
    throw new Error(`expected a whole number from ${min} to ${max}, got "${raw}"`);
  }
  return Number(v);
}

/** Octal file mode: `0660`, `660`. */
export function parseMode(raw: string): number {
  const v = raw.trim();
  if (!/^0?[0-7]{3}$/.test(v)) throw new Error(`expected an octal mode like 0660, got "${raw}"`);
  return parseInt(v, 8);
}

export function parseEnum<T extends string>(raw: string, allowed: readonly T[]): T {
  const v = raw.trim().toLowerCase();
  const found = allowed.find((a) => a === v);
  if (found === undefined) throw new Error(`expected one of ${allowed.join(', ')}, got "${raw}"`);
  return found;
}

export function parseAbsolutePath(raw: string): string {
  const v = raw.trim();
  if (!v.startsWith('/')) throw new Error(`expected an absolute path, got "${raw}"`);
  return v;
}

export type ListenAddress =
  | { readonly kind: 'unix'; readonly path: string }
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number };

/** `unix:/run/x.sock`, `/run/x.sock`, `tcp:127.0.0.1:9000`, `127.0.0.1:9000`, `[::1]:9000`, `9000`. */
export function parseListen(raw: string): ListenAddress {
  const v = raw.trim();
  if (v.startsWith('unix:')) return { kind: 'unix', path: parseAbsolutePath(v.slice(5)) };
  if (v.startsWith('/')) return { kind: 'unix', path: v };
  return { kind: 'tcp', ...parseHostPort(v.startsWith('tcp:') ? v.slice(4) : v) };
}

export function parseHostPort(raw: string): { host: string; port: number } {
  const v = raw.trim();
  const m = /^(?:\[([0-9a-f:.]+)\]|([\w.-]+)):(\d{1,5})$/i.exec(v) ?? /^()()(\d{1,5})$/.exec(v);
  const port = Number(m?.[3]);
  if (!m || port > 65535) throw new Error(`expected HOST:PORT (or unix:/path), got "${raw}"`);
  return { host: m[1] || m[2] || '127.0.0.1', port };
}

export function formatListen(a: ListenAddress): string {
  if (a.kind === 'unix') return `unix:${a.path}`;
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/** `git`, `git:nginx`, `:nginx` (chown's syntax): names or numeric ids, resolved at startup. */
export interface Owner {
  readonly user: string | null;
  readonly group: string | null;
}

const ACCOUNT = /^[a-z_][\w.-]*\$?$|^\d+$/i;

export function parseAccount(raw: string): string {
  const v = raw.trim();
  if (!ACCOUNT.test(v)) throw new Error(`expected a user or group name (or a numeric id), got "${raw}"`);
  return v;
}

export function parseOwner(raw: string): Owner {
  const [user = '', group = '', ...rest] = raw.trim().split(':');
  if (rest.length > 0 || (user === '' && group === '')) {
    throw new Error(`expected user, user:group or :group, got "${raw}"`);
  }
  return { user: user === '' ? null : parseAccount(user), group: group === '' ? null : parseAccount(group) };
}

export function formatOwner(owner: Owner): string {
  return `${owner.user ?? ''}${owner.group === null ? '' : `:${owner.group}`}`;
}

/** php-fpm's listen.allowed_clients: comma-separated IPv4/IPv6 addresses, or `any`. */
export function parseClients(raw: string): readonly string[] | 'any' {
  const v = raw.trim();
  if (v.toLowerCase() === 'any') return 'any';
  const list = v
    .split(',')
    .map((a) => a.trim())
    .filter((a) => a !== '');
  const bad = list.find((a) => isIP(a) === 0);
  if (list.length === 0 || bad !== undefined) {
    throw new Error(`expected "any" or a comma-separated list of IP addresses, got "${bad ?? raw}"`);
  }
  return list.map((a) => a.toLowerCase());
}

/** A request path such as `/git-fcgi-status` (matched exactly, no query). */
export function parseUrlPath(raw: string): string {
  const v = raw.trim();
  if (!/^\/[\w./~-]*$/.test(v) || v.includes('..')) {
    throw new Error(`expected a URL path like /git-fcgi-status, got "${raw}"`);
  }
  return v;
}
