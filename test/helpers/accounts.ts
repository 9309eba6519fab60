import { run } from './run.js';

/** A system account tests can drop privileges to. Created once if missing and left in place (harmless). */
export const TEST_USER = 'gitfcgitest';

export interface Account {
  readonly uid: number;
  readonly gid: number;
}

async function idOf(flag: '-u' | '-g', user: string): Promise<number | undefined> {
  const result = await run('id', [flag, user], { timeoutMs: 5000 });
  return result.code === 0 ? Number(result.stdout.toString().trim()) : undefined;
}

export async function ensureTestUser(): Promise<Account> {
  if ((await idOf('-u', TEST_USER)) === undefined) {
    const added = await run(
      'useradd',
      ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', TEST_USER],
      {
        timeoutMs: 10_000,
      },
    );
    // Two test files may race to create it; the loser finds it there.
    if (added.code !== 0 && (await idOf('-u', TEST_USER)) === undefined) {
      throw new Error(`useradd ${TEST_USER} failed: ${added.stderr.toString()}`);
    }
  }
  const uid = await idOf('-u', TEST_USER);
  const gid = await idOf('-g', TEST_USER);
  if (uid === undefined || gid === undefined) throw new Error(`no ids for ${TEST_USER}`);
  return { uid, gid };
}
