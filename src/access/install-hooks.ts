import { access, chmod, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** In every hook git-fcgi writes, so that installing again replaces it instead of chaining it. */
export const HOOK_MARKER = '# git-fcgi pre-receive hook';
/** Where an existing pre-receive hook goes; git-fcgi's hook runs it after its own checks. */
export const CHAINED_SUFFIX = '.before-git-fcgi';

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * The hook script. git http-backend's PATH is fixed, so node and the CLI are called by the
 * absolute paths they had when the hook was installed.
 */
export function hookScript(nodePath: string, cliPath: string): string {
  return [
    '#!/bin/sh',
    HOOK_MARKER,
    '# Enforces the branch rules (protect, protect_push, deny_force, deny_delete) of the',
    "# [repo:…] section git-fcgi's config gives this repository, for pushes git-fcgi let through.",
    '# Installed by `git-fcgi install-hooks`; run that again after moving node or git-fcgi.',
    `# A pre-receive hook that was here before is kept as pre-receive${CHAINED_SUFFIX} and still runs.`,
    `exec ${shellQuote(nodePath)} ${shellQuote(cliPath)} hook pre-receive --chain "$0${CHAINED_SUFFIX}"`,
    '',
  ].join('\n');
}

async function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}

/** Installs the hook into one bare repository; returns what it did, for the CLI to print. */
export async function installHook(repo: string, nodePath: string, cliPath: string): Promise<string> {
  const isGitDir = await Promise.all([stat(join(repo, 'HEAD')), stat(join(repo, 'objects'))]).then(
    ([head, objects]) => head.isFile() && objects.isDirectory(),
    () => false,
  );
  if (!isGitDir) throw new Error(`${repo}: not a bare git repository (no HEAD and objects/)`);
  const hooks = join(repo, 'hooks');
  await mkdir(hooks, { recursive: true });
  const hook = join(hooks, 'pre-receive');
  const chained = `${hook}${CHAINED_SUFFIX}`;
  let note = '';
  if (await exists(hook)) {
    const current = await readFile(hook, 'utf8');
    if (current.includes(HOOK_MARKER)) note = ' (updated)';
    else if (await exists(chained)) {
      throw new Error(`${hook} is not git-fcgi's and ${chained} exists too: move one of them away first`);
    } else {
      await rename(hook, chained);
      note = ` (the existing hook now runs from ${chained})`;
    }
  }
  await writeFile(`${hook}.tmp`, hookScript(nodePath, cliPath), { mode: 0o755 });
  await chmod(`${hook}.tmp`, 0o755);
  await rename(`${hook}.tmp`, hook);
  return `${hook}: installed${note}`;
}
