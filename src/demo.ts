import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const README = `# demo

This repository is served by git-fcgi's quick start (\`npm start\`).
Clone it with: git clone http://127.0.0.1:8080/demo.git
`;

function git(args: string[], cwd: string): void {
  execFileSync('git', args, {
    cwd,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_TERMINAL_PROMPT: '0' },
  });
}

/**
 * Makes `<root>/demo.git` (a bare repository with one commit on main) unless it exists.
 * Returns the project root.
 */
export function ensureDemoRepository(root: string = join(tmpdir(), 'git-fcgi-demo')): string {
  const repo = join(root, 'demo.git');
  if (existsSync(join(repo, 'HEAD'))) return root;
  mkdirSync(root, { recursive: true });
  const work = mkdtempSync(join(tmpdir(), 'git-fcgi-demo-work-'));
  try {
    git(['init', '-q', '--bare', '--initial-branch=main', repo], root);
    git(['init', '-q', '--initial-branch=main', work], work);
    writeFileSync(join(work, 'README.md'), README);
    git(['add', 'README.md'], work);
    git(
      ['-c', 'user.name=git-fcgi', '-c', 'user.email=git-fcgi@localhost', 'commit', '-q', '-m', 'demo'],
      work,
    );
    git(['push', '-q', repo, 'main'], work);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return root;
}
