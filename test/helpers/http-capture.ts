import http from 'node:http';
import { withDeadline } from './deadline.js';

/** A response as it came: status, raw headers in order (Date aside), body bytes. */
export interface Captured {
  readonly status: number;
  readonly headers: readonly string[];
  readonly body: Buffer;
}

/** GETs `url` on a fresh connection; Date is left out of the headers, it differs from one response to the next. */
export function capture(url: string, headers: Readonly<Record<string, string>> = {}): Promise<Captured> {
  return withDeadline(
    new Promise<Captured>((resolve, reject) => {
      http
        .get(url, { headers, agent: false }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => {
            const raw = res.rawHeaders;
            const kept: string[] = [];
            for (let i = 0; i + 1 < raw.length; i += 2) {
              const name = raw[i] ?? '';
              if (name.toLowerCase() !== 'date') kept.push(`${name}: ${raw[i + 1] ?? ''}`);
            }
            resolve({ status: res.statusCode ?? 0, headers: kept, body: Buffer.concat(chunks) });
          });
          res.on('error', reject);
        })
        .on('error', reject);
    }),
    10_000,
    `GET ${url}`,
  );
}

/** Where two byte strings part, with some context from each, or null when they are equal. */
export function firstDifference(actual: Buffer, expected: Buffer): string | null {
  if (actual.equals(expected)) return null;
  let at = 0;
  while (at < actual.length && at < expected.length && actual[at] === expected[at]) at++;
  const around = (bytes: Buffer): string =>
    JSON.stringify(bytes.subarray(Math.max(0, at - 24), at + 40).toString('latin1'));
  return (
    `first difference at byte ${at} (${actual.length} bytes against ${expected.length}): ` +
    `${around(actual)} where git http-backend has ${around(expected)}`
  );
}
