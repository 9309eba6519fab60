import type { Logger } from '../log.js';

interface FrontEndSeen {
  anonymous: boolean;
  /** The first REMOTE_USER that came on a read without AUTH_TYPE; null: none yet. */
  uncheckedUser: string | null;
  warned: boolean;
}

/** Front ends remembered at most: past that, new ones are not watched (memory stays bounded). */
export const MAX_FRONT_ENDS = 256;

/**
 * Watches for the forged-user trap where git-fcgi trusts the front end's REMOTE_USER (`[auth] mode =
 * nginx`, or no rules). nginx fills `$remote_user` from any client's Authorization header, checked or
 * not, and Debian's fastcgi_params passes it as REMOTE_USER: on a location no auth directive guards,
 * anyone can be anyone. git-fcgi cannot see whether nginx checked the user, but the CGI standard says
 * how a front end tells (RFC 3875 4.1.1): AUTH_TYPE comes with a REMOTE_USER it authenticated. Apache
 * and lighttpd send it; the shipped nginx and h2o configs send it where they checked the login.
 *
 * So a REMOTE_USER without AUTH_TYPE is one nobody vouched for. On a push that is common and harmless
 * (h2o sends no AUTH_TYPE of its own, so a config that checks only pushes sends none); on a read it
 * means the front end passes a user on requests it does not ask a login for, unless it asks one for
 * every request. So the trap shows when one front end (address and port) sends both a read with an
 * unvouched REMOTE_USER and an anonymous request: then some location serves without authentication and
 * still passes a user.
 * Warned about once per front end, naming the fix.
 */
export class UncheckedUserWatch {
  private readonly seen = new Map<string, FrontEndSeen>();

  constructor(private readonly maxFrontEnds = MAX_FRONT_ENDS) {}

  /**
   * Notes one request (a read or a push) whose REMOTE_USER git-fcgi trusts; warns (through `log`) the
   * first time the trap shows.
   */
  observe(params: ReadonlyMap<string, string>, access: 'read' | 'write', log: Logger): void {
    const user = params.get('REMOTE_USER') || null;
    if (user !== null && (access === 'write' || params.get('AUTH_TYPE'))) return;
    const key = frontEnd(params);
    let seen = this.seen.get(key);
    if (seen === undefined) {
      if (this.seen.size >= this.maxFrontEnds) return;
      seen = { anonymous: false, uncheckedUser: null, warned: false };
      this.seen.set(key, seen);
    }
    if (seen.warned) return;
    if (user === null) seen.anonymous = true;
    else seen.uncheckedUser ??= user;
    if (!seen.anonymous || seen.uncheckedUser === null) return;
    seen.warned = true;
    log.warn(
      'REMOTE_USER came on a read without AUTH_TYPE from a front end that also serves anonymous requests: ' +
        'if a location passes REMOTE_USER without checking it (nginx fills $remote_user from any ' +
        "client's Authorization header, and fastcgi_params passes it on), anyone can pose as any user. " +
        'Fix: authenticate every request that brings an Authorization header and pass AUTH_TYPE where ' +
        'the front end checked the user, as etc/nginx/git-fcgi.conf does; or use [auth] mode = htpasswd',
      { front_end: key, user: seen.uncheckedUser },
    );
  }

  /** How many front ends are remembered (for tests). */
  get size(): number {
    return this.seen.size;
  }
}

/** The front end's listening address and port (what the client connected to), else its name. */
function frontEnd(params: ReadonlyMap<string, string>): string {
  const host = params.get('SERVER_ADDR') || params.get('SERVER_NAME') || '-';
  const port = params.get('SERVER_PORT') || '-';
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
