import assert from 'node:assert/strict';
import { shippedConfig, withoutFrontEndAuth } from './shipped-config.js';

export interface ShippedApacheOptions {
  /** The project root (replaces /srv/git). */
  readonly root: string;
  /** The htpasswd file (replaces /etc/apache2/git.htpasswd); must be readable by Apache's children. */
  readonly htpasswd: string;
  /** git-fcgi's socket (replaces /run/git-fcgi/git-fcgi.sock). */
  readonly socket: string;
  /**
   * `htpasswd`: the variant the config describes for git-fcgi's `[auth] mode = htpasswd`, without the
   * block between its two `# ---- 8< ----` lines.
   */
  readonly variant?: 'apache-auth' | 'htpasswd';
}

/**
 * The inside of etc/apache/git-fcgi.conf's `<VirtualHost>` as an admin pastes it, for startApache's
 * `vhosts[].body`: only what its comments mark CHANGE is replaced (the harness supplies Listen, the
 * VirtualHost address and the LoadModule lines); everything else runs as shipped.
 */
export async function shippedApache(opts: ShippedApacheOptions): Promise<string> {
  const pasted = await shippedConfig('apache/git-fcgi.conf', [
    ['SetEnv GIT_PROJECT_ROOT /srv/git\n', `SetEnv GIT_PROJECT_ROOT ${opts.root}\n`],
    ['AuthUserFile /etc/apache2/git.htpasswd\n', `AuthUserFile ${opts.htpasswd}\n`],
    ['"unix:/run/git-fcgi/git-fcgi.sock|', `"unix:${opts.socket}|`],
  ]);
  const example = opts.variant === 'htpasswd' ? withoutFrontEndAuth(pasted) : pasted;
  const body = /^<VirtualHost \*:80>\n([\s\S]*)\n<\/VirtualHost>\s*$/m.exec(example)?.[1];
  assert.ok(body, 'the example ends with one <VirtualHost *:80>');
  return body;
}
