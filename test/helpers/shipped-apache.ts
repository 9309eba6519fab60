import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { q } from './apache-conf.js';
import { repoRoot } from './daemon.js';

export interface ShippedApacheOptions {
  /** The project root (replaces /srv/git). */
  readonly root: string;
  /** The htpasswd file (replaces /etc/apache2/git.htpasswd); must be readable by Apache's children. */
  readonly htpasswd: string;
  /** git-fcgi's socket (replaces /run/git-fcgi/git-fcgi.sock). */
  readonly socket: string;
  /**
   * `htpasswd`: the variant the config describes for git-fcgi's `[auth] mode = htpasswd`: the FRONT-END
   * AUTH block deleted and the HTPASSWD MODE block uncommented.
   */
  readonly variant?: 'apache-auth' | 'htpasswd';
}

const block = (name: string): RegExp =>
  new RegExp(`^[ \\t]*# ${name}:[^\\n]*\\n[\\s\\S]*?^[ \\t]*# END ${name}[^\\n]*\\n`, 'gm');

/**
 * The inside of etc/apache/git-fcgi.conf's `<VirtualHost>` as an admin pastes it, for startApache's
 * `vhosts[].body`: only what its comments mark CHANGE is replaced (the harness supplies Listen, the
 * VirtualHost address and the LoadModule lines); everything else runs as shipped.
 */
export async function shippedApache(opts: ShippedApacheOptions): Promise<string> {
  const example = await readFile(join(repoRoot, 'etc', 'apache', 'git-fcgi.conf'), 'utf8');
  let body = /^<VirtualHost \*:80>\n([\s\S]*)\n<\/VirtualHost>\s*$/m.exec(example)?.[1];
  assert.ok(body, 'the example ends with one <VirtualHost *:80>');
  if (opts.variant === 'htpasswd') {
    assert.equal(body.match(block('FRONT-END AUTH'))?.length, 1, 'one FRONT-END AUTH block');
    body = body.replace(block('FRONT-END AUTH'), '');
    const htpasswdMode = body.match(block('HTPASSWD MODE'));
    assert.equal(htpasswdMode?.length, 1, 'one HTPASSWD MODE block');
    const [first = '', ...rest] = (htpasswdMode?.[0] ?? '').trimEnd().split('\n');
    const last = rest.pop() ?? '';
    const uncommented = rest.map((line) => line.replace(/^([ \t]*)#/, '$1'));
    body = body.replace(block('HTPASSWD MODE'), `${[first, ...uncommented, last].join('\n')}\n`);
  }
  const replaced = body
    .replace(/^(\s*SetEnv GIT_PROJECT_ROOT) \/srv\/git$/m, `$1 ${q(opts.root)}`)
    .replace(/^(\s*AuthUserFile) \/etc\/apache2\/git\.htpasswd$/m, `$1 ${q(opts.htpasswd)}`)
    .replaceAll('"unix:/run/git-fcgi/git-fcgi.sock|', `"unix:${opts.socket}|`);
  for (const original of ['/srv/git', '/run/git-fcgi/git-fcgi.sock']) {
    assert.ok(!replaced.includes(original), `${original} was substituted`);
  }
  if (opts.variant !== 'htpasswd') {
    assert.ok(!replaced.includes('/etc/apache2/git.htpasswd'), 'the htpasswd path was substituted');
  }
  return replaced;
}
