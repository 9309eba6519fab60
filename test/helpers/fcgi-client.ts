import net from 'node:net';
import { FCGI_KEEP_CONN, RecordType, Role } from '../../src/fastcgi/constants.js';
import { encodeParams } from '../../src/fastcgi/name-value.js';
import { encodeRecord } from '../../src/fastcgi/record-writer.js';
import { RecordParser } from '../../src/fastcgi/record-parser.js';
import { withDeadline } from './deadline.js';

/**
 * A raw FastCGI client for tests that need to do what nginx never does on purpose: send a
 * body shorter than CONTENT_LENGTH, garbage, or stop half-way.
 */
export function beginRequest(requestId = 1, keepConn = false): Buffer {
  const body = Buffer.alloc(8);
  body.writeUInt16BE(Role.RESPONDER, 0);
  body[2] = keepConn ? FCGI_KEEP_CONN : 0;
  return encodeRecord(RecordType.BEGIN_REQUEST, requestId, body);
}

/** The params in as many records as they take (a record holds at most 65535 bytes). */
export function paramsRecords(params: Record<string, string>, requestId = 1): Buffer {
  const encoded = encodeParams(Object.entries(params));
  const parts: Buffer[] = [];
  for (let i = 0; i < encoded.length; i += 65535) {
    parts.push(encodeRecord(RecordType.PARAMS, requestId, encoded.subarray(i, i + 65535)));
  }
  parts.push(encodeRecord(RecordType.PARAMS, requestId, Buffer.alloc(0)));
  return Buffer.concat(parts);
}

export function stdinRecords(body: Buffer, requestId = 1, end = true): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < body.length; i += 65535) {
    parts.push(encodeRecord(RecordType.STDIN, requestId, body.subarray(i, i + 65535)));
  }
  if (end) parts.push(encodeRecord(RecordType.STDIN, requestId, Buffer.alloc(0)));
  return Buffer.concat(parts);
}

export interface FcgiReply {
  readonly stdout: Buffer;
  readonly stderr: Buffer;
  /** appStatus and protocolStatus of END_REQUEST; null when the connection closed without one. */
  readonly end: { appStatus: number; protocolStatus: number } | null;
  /** Status from the CGI header block ("Status: NNN"). */
  readonly status: number | null;
  readonly body: Buffer;
}

/**
 * Sends `bytes` to a UNIX socket path (or TCP connect options), collects records until
 * END_REQUEST or close.
 */
export function fcgiExchange(
  socketPath: string | net.TcpNetConnectOpts,
  bytes: Buffer,
  timeoutMs = 10_000,
): Promise<FcgiReply> {
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  let end: FcgiReply['end'] = null;
  const done = new Promise<void>((resolve, reject) => {
    const socket = typeof socketPath === 'string' ? net.connect(socketPath) : net.connect(socketPath);
    const parser = new RecordParser((type, _id, content) => {
      if (type === RecordType.STDOUT) stdout.push(Buffer.from(content));
      else if (type === RecordType.STDERR) stderr.push(Buffer.from(content));
      else if (type === RecordType.END_REQUEST) {
        end = { appStatus: content.readUInt32BE(0), protocolStatus: content[4] ?? -1 };
        socket.end();
      }
    });
    socket.on('data', (chunk) => {
      try {
        parser.push(chunk);
      } catch (err) {
        socket.destroy();
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
    socket.once('close', () => resolve());
    socket.once('error', () => {}); // ECONNRESET after the server closes is an answer too
    socket.write(bytes);
  });
  return withDeadline(done, timeoutMs, 'FastCGI exchange').then(() => {
    const out = Buffer.concat(stdout);
    const sep = out.indexOf('\r\n\r\n');
    const head = sep === -1 ? '' : out.subarray(0, sep).toString('latin1');
    const m = /^Status: (\d{3})/m.exec(head);
    return {
      stdout: out,
      stderr: Buffer.concat(stderr),
      end,
      status: m?.[1] === undefined ? null : Number(m[1]),
      body: sep === -1 ? Buffer.alloc(0) : out.subarray(sep + 4),
    };
  });
}

/** The params nginx sends for `include fastcgi_params` + our documented location block. */
export function gitParams(uri: string, extra: Record<string, string> = {}): Record<string, string> {
  const q = uri.indexOf('?');
  return {
    REQUEST_METHOD: 'GET',
    QUERY_STRING: q === -1 ? '' : uri.slice(q + 1),
    REQUEST_URI: uri,
    DOCUMENT_URI: q === -1 ? uri : uri.slice(0, q),
    PATH_INFO: q === -1 ? uri : uri.slice(0, q),
    SERVER_PROTOCOL: 'HTTP/1.1',
    REMOTE_ADDR: '127.0.0.1',
    CONTENT_TYPE: '',
    CONTENT_LENGTH: '',
    ...extra,
  };
}
