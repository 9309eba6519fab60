import assert from 'node:assert/strict';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { SETTINGS } from '../../src/config/settings.js';
import { cliPath, repoRoot } from '../helpers/daemon.js';
import { run, type RunResult } from '../helpers/proc.js';
import { tmpDir } from '../helpers/tmp.js';

const checkConfig = (...args: string[]): Promise<RunResult> =>
  run(process.execPath, [cliPath, '--check-config', ...args], { timeoutMs: 10_000 });

describe('git-fcgi --check-config (-t)', () => {
  test('a good file: exit 0, the effective settings printed, flags over the file', async (t) => {
    const dir = await tmpDir(t, 'check-');
    const file = join(dir, 'good.ini');
    await writeFile(
      file,
      [
        '; comment',
        '[server]',
        'listen = unix:/run/git-fcgi/git-fcgi.sock',
        'socket_owner = root:daemon',
        'max_children = 3',
        'queue_timeout = 120',
        'allowed_clients = 127.0.0.1, ::1',
        '[git]',
        `project_root = ${dir}`,
        'receive_max_input_size = 1024M',
        '[log]',
        'format = json',
        '',
      ].join('\n'),
    );
    const result = await checkConfig('-c', file, '--max-children', '7', '--allow-root');
    assert.equal(result.code, 0, result.stderr.toString());
    const out = result.stdout.toString();
    for (const line of [
      'listen = unix:/run/git-fcgi/git-fcgi.sock',
      'socket_owner = root:daemon',
      'max_children = 7',
      'queue_timeout = 2m',
      'allowed_clients = 127.0.0.1, ::1',
      'receive_max_input_size = 1G',
      'format = json',
      'socket_mode = 0660',
    ]) {
      assert.match(out, new RegExp(`^${line.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
    }
    assert.match(result.stderr.toString(), /configuration .*good\.ini is ok/);
  });

  test('bad files: exit 1 and a message naming file, line, section and key', async (t) => {
    const dir = await tmpDir(t, 'bad-');
    const cases: Array<[name: string, text: string, expected: RegExp]> = [
      [
        'key',
        '[server]\nlisten = /run/x.sock\nmax_childs = 4\n',
        /key\.ini:3: unknown key "max_childs" in \[server\]/,
      ],
      ['section', '[server]\n\n[pool]\nx = 1\n', /section\.ini:3: unknown section \[pool\]/],
      [
        'value',
        '[log]\nlevel = info\n[server]\nqueue = lots\n',
        /value\.ini:4: \[server\] queue: expected a whole number/,
      ],
      [
        'size',
        '[git]\nreceive_max_input_size = 1T\n',
        /size\.ini:2: \[git\] receive_max_input_size: expected a size/,
      ],
      [
        'duration',
        '[server]\nshutdown_timeout = soon\n',
        /duration\.ini:2: \[server\] shutdown_timeout: expected a duration/,
      ],
      [
        'clients',
        '[server]\nallowed_clients = nginx.local\n',
        /clients\.ini:2: \[server\] allowed_clients: expected "any"/,
      ],
      ['outside', 'listen = /run/x.sock\n', /outside\.ini:1: "listen" must be inside a section/],
    ];
    for (const [name, text, expected] of cases) {
      const file = join(dir, `${name}.ini`);
      await writeFile(file, text);
      const result = await checkConfig('-c', file, '--allow-root');
      assert.equal(result.code, 1, name);
      assert.match(result.stderr.toString(), expected, name);
      assert.equal(result.stdout.length, 0, `${name}: nothing printed for a file that does not parse`);
    }
    const unreadable = join(dir, 'missing.ini');
    const missing = await checkConfig('-c', unreadable);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr.toString(), /missing\.ini: cannot read: ENOENT/);
  });

  test('checks what would fail at the first request or at startup', async (t) => {
    const dir = await tmpDir(t, 'env-');
    const notExecutable = join(dir, 'backend');
    await writeFile(notExecutable, '#!/bin/sh\n');
    await chmod(notExecutable, 0o644);
    const result = await checkConfig(
      '--backend',
      notExecutable,
      '--project-root',
      join(dir, 'nope'),
      '--user',
      'no-such-user-x',
    );
    assert.equal(result.code, 1);
    const err = result.stderr.toString();
    assert.match(err, /\[git\] backend: .* is not an executable file/);
    assert.match(err, /\[git\] project_root: .* is not a directory/);
    assert.match(err, /\[server\] user: no such user: no-such-user-x/);
    const rootIni = join(dir, 'root.ini');
    await writeFile(rootIni, '[git]\nexport_all = true\n');
    // `sudo git-fcgi -c FILE -t` as `nginx -t`: a file without `user` is meant for the units
    // (User=git). The check passes and says what serving as root would do; serving refuses.
    const asRoot = await checkConfig('-c', rootIni);
    assert.equal(asRoot.code, 0, asRoot.stderr.toString());
    assert.match(
      asRoot.stderr.toString(),
      /note: no \[server\] user: started as root, git-fcgi would refuse/,
    );
    assert.match(asRoot.stderr.toString(), /configuration .*root\.ini is ok/);
  });
});

test('spawn_helper = on is checked against the helper the build made (dist/git-fcgi-spawnd)', async (t) => {
  const dir = await tmpDir(t, 'spawnd-check-');
  const ok = await checkConfig('--spawn-helper', 'on', '--allow-root', '--project-root', dir);
  assert.equal(ok.code, 0, ok.stderr.toString());
  assert.match(ok.stdout.toString(), /spawn_helper = on/);
  assert.doesNotMatch(ok.stderr.toString(), /spawn_helper/);
  const bad = await checkConfig('--spawn-helper', 'sometimes', '--allow-root');
  assert.equal(bad.code, 1);
  assert.match(bad.stderr.toString(), /spawn_helper|spawn-helper/);
});

describe('shipped files', () => {
  test('etc/git-fcgi.ini documents every setting, in its section, and loads as it is', async () => {
    const text = await readFile(join(repoRoot, 'etc', 'git-fcgi.ini'), 'utf8');
    const sectionOf = new Map<string, string>();
    let section = '';
    for (const line of text.split('\n')) {
      const s = /^\[(\w+)\]$/.exec(line);
      if (s?.[1] !== undefined) section = s[1];
      const k = /^;(\w+) =/.exec(line);
      if (k?.[1] !== undefined) sectionOf.set(k[1], section);
    }
    for (const setting of Object.values(SETTINGS)) {
      assert.equal(sectionOf.get(setting.key), setting.section, `${setting.key} in [${setting.section}]`);
    }
    const result = await checkConfig('-c', join(repoRoot, 'etc', 'git-fcgi.ini'), '--allow-root');
    assert.equal(result.code, 0, result.stderr.toString());
  });

  test('systemd-analyze verify: the units are clean apart from the binary not being installed here', async (t) => {
    const units = ['git-fcgi.socket', 'git-fcgi.service'].map((u) => join(repoRoot, 'etc', 'systemd', u));
    let result: RunResult;
    try {
      result = await run('systemd-analyze', ['verify', ...units], { timeoutMs: 30_000 });
    } catch (err) {
      return t.skip(`systemd-analyze cannot run here: ${err instanceof Error ? err.message : String(err)}`);
    }
    const complaints = `${result.stdout.toString()}${result.stderr.toString()}`
      .split('\n')
      .filter((line) => line.trim() !== '')
      .filter((line) => !/Command \/usr\/local\/bin\/git-fcgi is not executable/.test(line));
    assert.deepEqual(complaints, []);
  });
});
