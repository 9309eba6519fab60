import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';

const README = `# demo

This repository is served by git-fcgi's quick start (\`npm start\`).
Clone it with: git clone http://127.0.0.1:8080/demo.git
`;

/** The account that may push to the demo; its password is new at every start. */
export const DEMO_USER = 'demo';

function git(args: string[], cwd: string): void {
  execFileSync('git', args, {
    cwd,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_TERMINAL_PROMPT: '0' },
  });
}

/**
 * Makes `<root>/demo.git` (a bare repository with one commit on main) unless it exists.
 * Returns the project root. The repository is made beside and renamed into place, so a demo
 * stopped while making it leaves no empty demo.git for the next start to serve.
 */
export function ensureDemoRepository(root: string = join(tmpdir(), 'git-fcgi-demo')): string {
  const repo = join(root, 'demo.git');
  if (existsSync(join(repo, 'HEAD'))) return root;
  mkdirSync(root, { recursive: true });
  const work = mkdtempSync(join(tmpdir(), 'git-fcgi-demo-work-'));
  const staging = mkdtempSync(join(root, '.demo.git-'));
  try {
    git(['init', '-q', '--bare', '--initial-branch=main', staging], root);
    git(['init', '-q', '--initial-branch=main', work], work);
    writeFileSync(join(work, 'README.md'), README);
    git(['add', 'README.md'], work);
    git(
      ['-c', 'user.name=git-fcgi', '-c', 'user.email=git-fcgi@localhost', 'commit', '-q', '-m', 'demo'],
      work,
    );
    git(['push', '-q', staging, 'main'], work);
    renameSync(staging, repo);
  } finally {
    rmSync(work, { recursive: true, force: true });
    rmSync(staging, { recursive: true, force: true });
  }
  return root;
}

export interface Demo {
  /** The project root: demo.git is in it. */
  readonly root: string;
  /** The demo's config file: anonymous reads, pushes by DEMO_USER only, checked by git-fcgi itself. */
  readonly configFile: string;
  readonly password: string;
}

/**
 * The demo repository, and git-fcgi's own access control in front of it: `<root>/demo.ini` ([auth]
 * mode = htpasswd, [repo:demo.git]) and `<root>/demo.htpasswd` with DEMO_USER and a random password,
 * new at every start. Random rather than fixed: whoever reaches the port (other users of the machine,
 * or everyone with --http 0.0.0.0:8080) could push with a password printed in the README. bcrypt
 * at htpasswd -B's cost (5): 96 random bits need no more, and the start stays quick.
 */
export function prepareDemo(root?: string): Demo {
  const projectRoot = ensureDemoRepository(root);
  const password = randomBytes(12).toString('base64url');
  const htpasswd = join(projectRoot, 'demo.htpasswd');
  const configFile = join(projectRoot, 'demo.ini');
  writeFileSync(htpasswd, `${DEMO_USER}:${bcrypt.hashSync(password, 5)}\n`, { mode: 0o600 });
  writeFileSync(
    configFile,
    [
      '; Written by git-fcgi --demo at every start: the access control of the README, in small.',
      '[auth]',
      'mode = htpasswd',
      `htpasswd = ${htpasswd}`,
      'realm = git-fcgi demo',
      '',
      '[repo:demo.git]',
      'read = anonymous',
      `write = ${DEMO_USER}`,
      '',
    ].join('\n'),
  );
  return { root: projectRoot, configFile, password };
}
