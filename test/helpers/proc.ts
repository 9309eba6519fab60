import { createServer } from 'node:net';

export { run, type RunOptions, type RunResult } from './run.js';
export { startProcess, type ExitStatus, type StartOptions, type StartedProcess } from './start-process.js';
export {
  assertNoGitProcesses,
  gitProcessesUnder,
  listGitProcessesUnder,
  type GitProcess,
} from './git-processes.js';

/**
 * A port that was free a moment ago on 127.0.0.1. Another process can take it before the caller binds, so
 * callers that can retry on EADDRINUSE should.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : undefined;
      server.close(() => (port === undefined ? reject(new Error('no port assigned')) : resolve(port)));
    });
  });
}
