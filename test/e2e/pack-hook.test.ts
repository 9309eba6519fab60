// git-fcgi-pack-hook against a stand-in for the daemon's side of its socket: the frames it may
// be sent (a file to copy as it grows, inline bytes, stderr, the exit code) and every way its
// answer can go wrong before the pack begins, which must end in the hook running the command
// itself on the same stdin. The whole pack cache, with git and nginx, is pack-cache.test.ts.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { appendFileSync, chmodSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { HookMessageParser, type HookMessage } from '../../src/pack-cache/hook-message.js';
import { defer, type Cleanup } from '../helpers/cleanup.js';
import { repoRoot } from '../helpers/daemon.js';
import { withDeadline } from '../helpers/deadline.js';
import { startProcess } from '../helpers/start-process.js';
import { tmpDir } from '../helpers/tmp.js';

const HOOK = join(repoRoot, 'dist', 'git-fcgi-pack-hook');
/** What the hook runs itself when the daemon does not serve: its stdin, then a marker. */
const ITSELF = ['sh', '-c', 'cat; printf ran-itself'];
const STDIN = 'want-0123456789abcdef\n--not\n\n';

type Answer = (socket: net.Socket, message: HookMessage) => Promise<void> | void;

function frame(type: string, payload: Buffer | string): Buffer {
  const body = Buffer.from(payload);
  const head = Buffer.alloc(5);
  head[0] = type.charCodeAt(0);
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

function size(bytes: number): Buffer {
  const body = Buffer.alloc(8);
  body.writeBigUInt64BE(BigInt(bytes));
  return frame('f', body);
}

const exitFrame = (code: number): Buffer => frame('x', Buffer.from([code]));

/** Listens on an abstract socket as the daemon does and answers each complete message with `answer`. */
async function fakeDaemon(t: Cleanup, answer: Answer): Promise<{ address: string; messages: HookMessage[] }> {
  const messages: HookMessage[] = [];
  const name = `git-fcgi-hook-test-${process.pid}-${randomBytes(4).toString('hex')}`;
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    const parser = new HookMessageParser({ maxHeaderBytes: 1 << 20, maxStdinBytes: 1 << 20 });
    const onData = (chunk: Buffer): void => {
      const message = parser.push(chunk);
      if (message === null) return;
      socket.off('data', onData);
      messages.push(message);
      void answer(socket, message);
    };
    socket.on('data', onData);
  });
  server.listen(`\0${name}`);
  await once(server, 'listening');
  defer(t, () => new Promise((resolve) => server.close(resolve)));
  return { address: `@${name}`, messages };
}

async function runHook(
  t: Cleanup,
  address: string,
  args: readonly string[] = ITSELF,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const hook = await startProcess(t, HOOK, args, {
    stdin: 'pipe',
    env: { GIT_FCGI_PACK_SOCKET: address, GIT_FCGI_PACK_TOKEN: 'token-1' },
  });
  hook.stdin?.end(STDIN);
  const status = await withDeadline(hook.exited, 10_000, 'the hook to exit');
  return { code: status.code, stdout: hook.stdout(), stderr: hook.stderr() };
}

describe('git-fcgi-pack-hook', () => {
  test('copies the file as it is announced, then inline bytes; relays stderr and the exit code', async (t) => {
    const dir = await tmpDir(t, 'hook-');
    const pack = join(dir, 'pack');
    const content = randomBytes(150_000).toString('hex'); // text: the harness keeps output as strings
    writeFileSync(pack, content);
    const { address, messages } = await fakeDaemon(t, (socket) => {
      socket.write('Y');
      socket.write(frame('p', pack));
      socket.write(frame('e', 'Counting objects\n'));
      socket.write(size(70_000));
      socket.write(size(300_000));
      socket.write(frame('o', 'inline-tail'));
      socket.end(exitFrame(0));
    });
    const result = await runHook(t, address);
    assert.equal(result.code, 0, result.stderr);
    assert.ok(result.stdout === `${content}inline-tail`, 'stdout is the file, then the inline bytes');
    assert.equal(result.stderr, 'Counting objects\n');
    assert.equal(messages.length, 1);
    assert.equal(messages[0]?.token, 'token-1');
    assert.deepEqual(messages[0]?.argv, ITSELF);
    assert.equal(messages[0]?.stdin?.toString(), STDIN);
  });

  test('follows a file that grows between announcements, byte for byte', async (t) => {
    const dir = await tmpDir(t, 'hook-');
    const pack = join(dir, 'pack');
    const parts = [1, 65_536, 200_000, 3].map((n) => randomBytes(n).toString('hex').slice(0, n));
    writeFileSync(pack, '');
    const { address } = await fakeDaemon(t, async (socket) => {
      socket.write('Y');
      socket.write(frame('p', pack));
      let total = 0;
      for (const part of parts) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        appendFileSync(pack, part);
        total += part.length;
        socket.write(size(total));
      }
      socket.end(exitFrame(0));
    });
    const hook = await startProcess(t, HOOK, ITSELF, {
      stdin: 'pipe',
      maxOutputBytes: 1 << 20,
      env: { GIT_FCGI_PACK_SOCKET: address, GIT_FCGI_PACK_TOKEN: 't' },
    });
    hook.stdin?.end(STDIN);
    assert.equal((await withDeadline(hook.exited, 10_000, 'the hook to exit')).code, 0, hook.stderr());
    assert.ok(hook.stdout() === parts.join(''), 'stdout is the file');
  });

  test("an exit code other than 0 is the hook's", async (t) => {
    const { address } = await fakeDaemon(t, (socket) => {
      socket.write('Y');
      socket.write(frame('p', ''));
      socket.write(frame('o', 'part'));
      socket.end(exitFrame(3));
    });
    const result = await runHook(t, address);
    assert.equal(result.code, 3);
    assert.equal(result.stdout, 'part');
  });

  describe('runs the command itself on the same stdin when the daemon does not serve before the pack begins', () => {
    const cases: Record<string, Answer> = {
      'a refusal (N)': (socket) => void socket.end('N'),
      'the connection closed before an answer': (socket) => void socket.destroy(),
      'a file that is not there': (socket) => {
        socket.write('Y');
        socket.end(frame('p', '/nonexistent/git-fcgi-pack'));
      },
      'a file shorter than announced, before any byte': (socket) => {
        socket.write('Y');
        socket.write(frame('p', '/dev/null'));
        socket.end(size(10));
      },
      'the connection lost after the path': (socket) => {
        socket.write('Y');
        socket.write(frame('p', '/etc/hostname'));
        socket.destroy();
      },
      'a size before any path': (socket) => {
        socket.write('Y');
        socket.end(size(10));
      },
      'an unknown frame': (socket) => {
        socket.write('Y');
        socket.end(frame('?', 'x'));
      },
      'a frame over 64 KiB': (socket) => {
        socket.write('Y');
        socket.end(frame('o', Buffer.alloc(65_537)));
      },
    };
    for (const [name, answer] of Object.entries(cases)) {
      test(name, async (t) => {
        const { address } = await fakeDaemon(t, answer);
        const result = await runHook(t, address);
        assert.equal(result.code, 0, result.stderr);
        assert.equal(result.stdout, `${STDIN}ran-itself`);
      });
    }

    test('no daemon on the socket', async (t) => {
      const result = await runHook(t, `@git-fcgi-hook-test-nobody-${randomBytes(4).toString('hex')}`);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, `${STDIN}ran-itself`);
    });
  });

  test('fails, without running the command, when the file ends short after the pack began', async (t) => {
    const dir = await tmpDir(t, 'hook-');
    const pack = join(dir, 'pack');
    writeFileSync(pack, 'abcd');
    const { address } = await fakeDaemon(t, (socket) => {
      socket.write('Y');
      socket.write(frame('p', pack));
      socket.write(size(4));
      socket.end(size(8));
    });
    const result = await runHook(t, address);
    assert.equal(result.code, 128);
    assert.equal(result.stdout, 'abcd');
    assert.match(result.stderr, /shorter than announced/);
  });

  test(
    'does not listen to a daemon running as another user',
    { skip: process.getuid?.() !== 0 ? 'needs root to run the stand-in as nobody' : false },
    async (t) => {
      const dir = await tmpDir(t, 'hook-');
      chmodSync(dir, 0o755);
      const name = `git-fcgi-hook-test-${process.pid}-${randomBytes(4).toString('hex')}`;
      // The stand-in, as user nobody, offers a file only this user may read.
      const secret = join(dir, 'secret');
      writeFileSync(secret, 'secret-bytes', { mode: 0o600 });
      const script = `
        const net = require('node:net');
        net.createServer((s) => { s.on('error', () => {}); s.once('data', () => {
          const p = Buffer.from(${JSON.stringify(secret)});
          const h = Buffer.alloc(5); h[0] = 0x70; h.writeUInt32BE(p.length, 1);
          const f = Buffer.alloc(13); f[0] = 0x66; f.writeUInt32BE(8, 1); f.writeBigUInt64BE(12n, 5);
          s.write(Buffer.concat([Buffer.from('Y'), h, p, f, Buffer.from([0x78, 0, 0, 0, 1, 0])]));
        }); }).listen('\\0${name}', () => process.stdout.write('ready\\n'));`;
      // startProcess has no uid option: setpriv runs the stand-in as nobody.
      const nobody = await startProcess(
        t,
        'setpriv',
        ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e', script],
        {},
      );
      await withDeadline(
        (async () => {
          while (!nobody.stdout().includes('ready')) await new Promise((resolve) => setTimeout(resolve, 20));
        })(),
        10_000,
        'the stand-in to listen',
      );
      const result = await runHook(t, `@${name}`);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, `${STDIN}ran-itself`);
    },
  );
});
