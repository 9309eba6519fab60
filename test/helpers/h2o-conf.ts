import { join } from 'node:path';

/**
 * How h2o 2.2.5 (Debian 12) talks to a FastCGI server, measured with a FastCGI echo server and read in its
 * lib/handler/fastcgi.c; etc/h2o/git-fcgi.conf is shaped by it:
 *
 * - SCRIPT_NAME empty, PATH_INFO the whole normalised path (percent-decoded, dot segments removed) whatever the
 *   mount point, REQUEST_URI the raw one; no DOCUMENT_URI.
 * - Every request header arrives as HTTP_*, Authorization included, and Git-Protocol as HTTP_GIT_PROTOCOL.
 *   REMOTE_USER comes only from h2o's environment: `setenv`, or a mruby handler answering 399 with
 *   `x-fallthru-set-remote-user` (what the bundled htpasswd.rb does once a password matched).
 * - Request bodies are received whole first (in memory, then in temp-buffer-path files beyond 32 MB) and sent
 *   with CONTENT_LENGTH, chunked ones too; `limit-request-body` (global, default 1 GB) answers 413 beyond it.
 * - Responses are passed on as they arrive.
 * - `fastcgi.timeout.io` (default 30 s) is the longest silence from the FastCGI server, before the headers
 *   (then 503) and after them (then the response is cut off).
 * - The bundled htpasswd.rb rejects correct apr1 passwords (its mruby Digest::MD5 computes wrong digests:
 *   MD5("a") comes out 3a389d88..., not 0cc175b9...), answers 500 to bcrypt ("crypt-style password hash is
 *   not supported"), and accepts {SHA}.
 * - BEGIN_REQUEST comes without FCGI_KEEP_CONN unless `fastcgi.timeout.keepalive` is set.
 * - Started as root it serves as `user` (default nobody), and writes its pid file after switching.
 */

export const H2O = '/usr/bin/h2o';

export const confPath = (prefix: string): string => join(prefix, 'h2o.conf');
export const pidPath = (prefix: string): string => join(prefix, 'h2o.pid');
export const errorLogPath = (prefix: string): string => join(prefix, 'error.log');
export const accessLogPath = (prefix: string): string => join(prefix, 'access.log');

/** What a test's config must point inside its temp prefix. */
export interface H2oPlaces {
  readonly port: number;
  readonly pidFile: string;
  readonly errorLog: string;
  readonly accessLog: string;
}

export const placesIn = (prefix: string, port: number): H2oPlaces => ({
  port,
  pidFile: pidPath(prefix),
  errorLog: errorLogPath(prefix),
  accessLog: accessLogPath(prefix),
});
