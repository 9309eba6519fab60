/** Real UNIX-socket FastCGI server and client for the connection tests (no mocks). */
import { createHash } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import type { Exchange, ExchangeHandler } from '../../../src/exchange.js';
import {
  serveFastCgiConnection,
  type FastCgiConnectionHandle,
  type FastCgiConnectionOptions,
} from '../../../src/fastcgi/connection.js';
import { FCGI_KEEP_CONN, RecordType, Role } from '../../../src/fastcgi/constants.js';
import { encodeParams } from '../../../src/fastcgi/name-value.js';
import { RecordParser } from '../../../src/fastcgi/record-parser.js';
import { encodeRecord } from '../../../src/fastcgi/record-writer.js';

export const DEADLINE_MS = 10_000;

/** Rejects when `promise` has not settled within `ms`. */
export async function deadline<T>(promise: Promise<T>, what: string, ms = DEADLINE_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export interface LogLine {
  level: string;
  message: string;
  meta: Record<string, unknown> | undefined;
}

export interface TestServer {
  readonly path: string;
  readonly server: Server;
  readonly logs: LogLine[];
  /** Server-side sockets, in accept order. */
  readonly sockets: Socket[];
  /** What serveFastCgiConnection returned for each, in the same order. */
  readonly connections: FastCgiConnectionHandle[];
}

export async function startServer(
  t: TestContext,
  handler: ExchangeHandler,
  options: Partial<Omit<FastCgiConnectionOptions, 'log'>> = {},
): Promise<TestServer> {
  const dir = await mkdtemp(join(tmpdir(), 'git-fcgi-test-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const logs: LogLine[] = [];
  const sockets: Socket[] = [];
  const connections: FastCgiConnectionHandle[] = [];
  const server = createServer((socket) => {
    sockets.push(socket);
    const connection = serveFastCgiConnection(socket, handler, {
      maxParamsBytes: 256 * 1024,
      ...options,
      log: (level, message, meta) => logs.push({ level, message, meta }),
    });
    connections.push(connection);
  });
  t.after(() => {
    for (const socket of sockets) socket.destroy();
    server.close();
  });
  const path = join(dir, 'fcgi.sock');
  server.listen(path);
  await deadline(once(server, 'listening'), 'listen');
  return { path, server, logs, sockets, connections };
}

export interface FcgiRecord {
  type: number;
  requestId: number;
  content: Buffer;
}

/** A FastCGI "web server" end: sends raw bytes, collects and parses what comes back. */
export class FcgiClient {
  readonly records: FcgiRecord[] = [];
  /** Set when the server sent something that is not FastCGI (as when it cuts a response off). */
  protocolError: Error | null = null;
  readonly socket: Socket;
  readonly closed: Promise<void>;
  private readonly events = new EventEmitter();
  private readonly parser = new RecordParser((type, requestId, content) => {
    this.records.push({ type, requestId, content: Buffer.from(content) });
    this.events.emit('record');
  });

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      if (this.protocolError !== null) return;
      try {
        this.parser.push(chunk);
      } catch (err) {
        this.protocolError = err instanceof Error ? err : new Error(String(err));
      }
    });
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  static async connect(t: TestContext, path: string): Promise<FcgiClient> {
    const socket = createConnection(path);
    t.after(() => socket.destroy());
    await deadline(once(socket, 'connect'), 'connect');
    return new FcgiClient(socket);
  }

  send(...buffers: Buffer[]): void {
    for (const buffer of buffers) this.socket.write(buffer);
  }

  /** Waits until a record matches (or the deadline passes). */
  async waitFor(what: string, match: (r: FcgiRecord) => boolean): Promise<FcgiRecord> {
    const find = (): FcgiRecord | undefined => this.records.find(match);
    return deadline(
      new Promise<FcgiRecord>((resolve, reject) => {
        const check = (): void => {
          const found = find();
          if (found) {
            this.events.off('record', check);
            this.socket.off('close', onClose);
            resolve(found);
          }
        };
        const onClose = (): void => {
          check();
          reject(new Error(`connection closed before ${what}`));
        };
        this.events.on('record', check);
        this.socket.on('close', onClose);
        check();
      }),
      what,
    );
  }

  waitForEnd(requestId: number): Promise<FcgiRecord> {
    return this.waitFor(
      `END_REQUEST ${requestId}`,
      (r) => r.type === RecordType.END_REQUEST && r.requestId === requestId,
    );
  }

  waitClosed(): Promise<void> {
    return deadline(this.closed, 'connection close');
  }

  /** STDOUT bytes of one request, concatenated. */
  stdout(requestId: number): Buffer {
    return Buffer.concat(
      this.records
        .filter((r) => r.type === RecordType.STDOUT && r.requestId === requestId)
        .map((r) => r.content),
    );
  }
}

export function beginRequest(requestId: number, options: { role?: number; keepConn?: boolean } = {}): Buffer {
  const body = Buffer.alloc(8);
  body.writeUInt16BE(options.role ?? Role.RESPONDER, 0);
  body.writeUInt8(options.keepConn === true ? FCGI_KEEP_CONN : 0, 2);
  return encodeRecord(RecordType.BEGIN_REQUEST, requestId, body);
}

/** PARAMS records for `pairs` (split into records of `recordSize` bytes), then the empty one. */
export function paramsRecords(
  requestId: number,
  pairs: Iterable<[string, string]>,
  recordSize = 65535,
): Buffer {
  const stream = encodeParams(pairs);
  const records: Buffer[] = [];
  for (let at = 0; at < stream.length; at += recordSize) {
    records.push(encodeRecord(RecordType.PARAMS, requestId, stream.subarray(at, at + recordSize)));
  }
  records.push(encodeRecord(RecordType.PARAMS, requestId, Buffer.alloc(0)));
  return Buffer.concat(records);
}

/** STDIN records for `data` (chunks of up to 65535 bytes), then the empty one. */
export function stdinRecords(requestId: number, data: Buffer, end = true): Buffer {
  const records: Buffer[] = [];
  for (let at = 0; at < data.length; at += 65535) {
    records.push(encodeRecord(RecordType.STDIN, requestId, data.subarray(at, at + 65535)));
  }
  if (end) records.push(encodeRecord(RecordType.STDIN, requestId, Buffer.alloc(0)));
  return Buffer.concat(records);
}

export function endRequestFields(record: FcgiRecord): { appStatus: number; protocolStatus: number } {
  return { appStatus: record.content.readUInt32BE(0), protocolStatus: record.content.readUInt8(4) };
}

export interface EchoReply {
  params: Record<string, string>;
  bodyLength: number;
  bodySha256: string;
}

/** Reads the whole body, then answers 200 with the params and a digest of the body as JSON. */
export function echoHandler(exchange: Exchange): void {
  const hash = createHash('sha256');
  let bodyLength = 0;
  exchange.body.on('data', (chunk: Buffer) => {
    hash.update(chunk);
    bodyLength += chunk.length;
  });
  exchange.body.on('end', () => {
    const reply: EchoReply = {
      params: Object.fromEntries(exchange.params),
      bodyLength,
      bodySha256: hash.digest('hex'),
    };
    exchange.response.writeHead(200, [['Content-Type', 'application/json']]);
    exchange.response.write(Buffer.from(JSON.stringify(reply)));
    exchange.response.end();
  });
}

/** Splits a CGI response (as sent in STDOUT) into its header block and body. */
export function splitCgiResponse(stdout: Buffer): { head: string; body: Buffer } {
  const at = stdout.indexOf('\r\n\r\n');
  if (at === -1)
    throw new Error(`no header block in ${JSON.stringify(stdout.toString('latin1').slice(0, 200))}`);
  return { head: stdout.toString('latin1', 0, at), body: stdout.subarray(at + 4) };
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A promise with its resolve function, for handing values out of handlers. */
export function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve: (value: T) => void = () => undefined;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Types of the records received, in order, for `requestId` (and management records, id 0). */
export function recordTypes(client: FcgiClient, requestId: number): number[] {
  return client.records.filter((r) => r.requestId === requestId).map((r) => r.type);
}

export function echoReply(client: FcgiClient, requestId: number): { head: string; reply: EchoReply } {
  const { head, body } = splitCgiResponse(client.stdout(requestId));
  return { head, reply: JSON.parse(body.toString('utf8')) as EchoReply };
}
