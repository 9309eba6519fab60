import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { installHook } from './access/install-hooks.js';
import { checkRefUpdates, parseRefUpdates } from './access/pre-receive.js';
import { loadConfig } from './config/load.js';
import { describeError } from './errors.js';

export interface HookActions {
  readonly hook: (name: string, chain: string | undefined) => Promise<number>;
  readonly installHooks: (repos: readonly string[]) => Promise<number>;
}

/**
 * `git-fcgi hook pre-receive` and `git-fcgi install-hooks`, defined once: runHookCommand runs
 * them, the man page is generated from them.
 */
export function buildHookProgram(actions: HookActions, setCode: (code: number) => void = () => {}): Command {
  const program = new Command().name('git-fcgi').exitOverride();
  program
    .command('install-hooks')
    .description(
      "install git-fcgi's pre-receive hook into bare repositories (an existing hook keeps running)",
    )
    .argument('<repo...>', 'bare repository directories')
    .action(async (repos: string[]) => setCode(await actions.installHooks(repos)));
  program
    .command('hook')
    .description("run one of git-fcgi's git hooks (called by the installed hook scripts)")
    .argument('<name>', 'pre-receive')
    .option('--chain <file>', 'a hook to run after the checks, with the same input')
    .action(async (name: string, opts: { chain?: string }) => setCode(await actions.hook(name, opts.chain)));
  return program;
}

/**
 * The command-line edge of the branch rules. The hook runs inside git receive-pack, started by
 * git http-backend, with the environment git-fcgi gave the backend.
 */
export async function runHookCommand(argv: readonly string[]): Promise<number> {
  let code = 0;
  const program = buildHookProgram(
    {
      hook: (name, chain) => {
        if (name !== 'pre-receive') throw new Error(`unknown hook ${name}`);
        return preReceive(chain);
      },
      installHooks: async (repos) => {
        const cli = fileURLToPath(new URL('./cli.js', import.meta.url));
        let failed = 0;
        for (const repo of repos) {
          try {
            process.stdout.write(`${await installHook(repo, process.execPath, cli)}\n`);
          } catch (err) {
            process.stderr.write(`git-fcgi: ${describeError(err)}\n`);
            failed = 1;
          }
        }
        return failed;
      },
    },
    (c) => (code = c),
  );
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof Error && 'exitCode' in err && typeof err.exitCode === 'number') return err.exitCode;
    process.stderr.write(`git-fcgi: ${describeError(err)}\n`);
    return 1;
  }
  return code;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** `git merge-base --is-ancestor` in the repository the hook runs in (its cwd). */
function isAncestor(oldId: string, newId: string): Promise<boolean> {
  const result = spawnSync('git', ['merge-base', '--is-ancestor', oldId, newId], { stdio: 'ignore' });
  // 0: ancestor; 1: not; anything else (not commits, e.g. a tag of a blob): treated as not.
  return Promise.resolve(result.status === 0);
}

/** Messages on stderr reach the pusher as `remote: …` lines. */
function say(message: string): void {
  process.stderr.write(`git-fcgi: ${message}\n`);
}

async function preReceive(chain: string | undefined): Promise<number> {
  const input = await readStdin();
  const configFile = process.env.GIT_FCGI_CONFIG;
  // No GIT_FCGI_CONFIG: a push that did not come through git-fcgi (local, ssh): not ours to judge.
  if (configFile !== undefined && configFile !== '') {
    try {
      const { access } = loadConfig(configFile, {});
      const repo = process.env.GIT_FCGI_REPO;
      if (access.enabled) {
        if (repo === undefined || repo === '') throw new Error('GIT_FCGI_REPO is not set');
        const refused = await checkRefUpdates(
          { access, repo, user: process.env.GIT_FCGI_USER || null, isAncestor },
          parseRefUpdates(input),
        );
        for (const reason of refused) say(reason);
        if (refused.length > 0) return 1;
      }
    } catch (err) {
      say(`push refused: cannot check the branch rules: ${describeError(err)}`);
      return 1;
    }
  }
  return chain === undefined ? 0 : runChained(chain, input);
}

function runChained(file: string, input: string): Promise<number> {
  try {
    accessSync(file, constants.X_OK);
  } catch {
    return Promise.resolve(0);
  }
  return new Promise((resolve) => {
    const child = spawn(file, [], { stdio: ['pipe', 'inherit', 'inherit'] });
    child.on('error', (err) => {
      say(`cannot run ${file}: ${err.message}`);
      resolve(1);
    });
    child.on('close', (code, signal) => resolve(signal !== null ? 1 : (code ?? 1)));
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}
