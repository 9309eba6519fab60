/**
 * What an admin can do about the refusals git http-backend explains on stderr. git's lines say
 * what was refused, not how to fix it behind git-fcgi: the push refused for want of REMOTE_USER
 * reads as if the service were switched off, and git's advice for a repository owned by
 * another user (`git config --global ...`) fixes nothing when run as root, because git runs as
 * the serving user with that user's HOME.
 */

export interface HintContext {
  /** The user git runs as. */
  readonly servingUser: string;
  /** HOME git got (whose .gitconfig is git's "global" one); null: none. */
  readonly home: string | null;
  /** Whether git got a REMOTE_USER (git http-backend takes pushes only with one). */
  readonly remoteUser: boolean;
}

const NOT_EXPORTED = /^Repository not exported: '(.+)'$/;
const NOT_ENABLED = /^Service not enabled: '(upload-pack|receive-pack)'$/;
const DUBIOUS = /^fatal: detected dubious ownership in repository at '(.+)'$/;

/** A `hint: ...` line for one line of git's stderr, or null when there is nothing to add. */
export function backendHint(line: string, ctx: HintContext): string | null {
  const notExported = NOT_EXPORTED.exec(line);
  if (notExported?.[1] !== undefined) {
    const dir = notExported[1];
    return (
      `hint: git serves only repositories holding a git-daemon-export-ok file: ` +
      `touch '${dir}/git-daemon-export-ok', or set export_all = true in [git]`
    );
  }
  const service = NOT_ENABLED.exec(line)?.[1];
  if (service === 'receive-pack' && !ctx.remoteUser) {
    return (
      'hint: git http-backend takes a push only with REMOTE_USER, and this request had none: ' +
      'make the front end ask for a login on git-receive-pack and pass REMOTE_USER ' +
      '(etc/nginx/git-fcgi.conf does), or check logins in git-fcgi ([auth] mode = htpasswd); ' +
      'anonymous pushes need `git config http.receivepack true` in the repository'
    );
  }
  if (service !== undefined) {
    return `hint: the repository's config has http.${service.replace('-', '')} = false`;
  }
  const dubious = DUBIOUS.exec(line);
  if (dubious?.[1] !== undefined) {
    const dir = dubious[1];
    const user = ctx.servingUser;
    const home = ctx.home === null ? 'no HOME' : `HOME=${ctx.home}`;
    return (
      `hint: git runs as ${user} and ${user} does not own the repository: chown -R ${user}: '${dir}', ` +
      `or keep the owner and git config --system --add safe.directory '${dir}' ` +
      `(git's --global advice changes the .gitconfig of whoever runs it; git here has ${home})`
    );
  }
  return null;
}
