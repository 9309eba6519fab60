#!/usr/bin/env node
// Long run of test/e2e/disconnects.test.ts: clients hanging up at random points of clones and
// pushes, on the raw socket and through nginx, then checks for leftover git processes, zombies,
// fd and RSS growth. The suite runs 300 + 60 trials; this runs as many as asked.
//
//   npm run build && npm run build:test && node scripts/disconnects.mjs [TRIALS] [NGINX_TRIALS] [SEED]
import { spawnSync } from 'node:child_process';

const [trials = '3000', nginxTrials = '600', seed = String(Date.now() % 1e6)] = process.argv.slice(2);
const test = new URL('../dist-test/test/e2e/disconnects.test.js', import.meta.url).pathname;
const result = spawnSync(process.execPath, ['--test', '--test-reporter=spec', test], {
  stdio: 'inherit',
  env: { ...process.env, DISCONNECT_TRIALS: trials, DISCONNECT_NGINX_TRIALS: nginxTrials, FUZZ_SEED: seed },
});
process.exit(result.status ?? 1);
