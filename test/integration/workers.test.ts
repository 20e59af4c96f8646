// Issue 12, finding 7: `serve --workers N` shares its quotas or refuses. Without a shared store every
// worker counted each limit alone (12 of 12 allowed on a 3/min limit with 4 workers): now a real
// `serve --workers 4` without --redis-url refuses to start, with one line saying why and what to do.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import { freePort } from '../support/processes.js';

test('finding 7: serve --workers 4 without Redis refuses to start, with one clear line', async (t) => {
  const [grpcPort, adminPort] = [await freePort(), await freePort()];
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      'src/cli/main.ts',
      'serve',
      '--config',
      'examples/catalog.yaml',
      '--grpc-address',
      `127.0.0.1:${grpcPort}`,
      '--admin-address',
      `127.0.0.1:${adminPort}`,
      '--workers',
      '4',
    ],
    { env: { ...process.env, PORTCULLIS_REDIS_URL: '' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  child.stdout.resume();
  const timer = setTimeout(() => child.kill('SIGTERM'), 30_000);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  assert.equal(code, 1, `it must refuse, not serve: ${stderr}`);
  const lines = stderr.trim().split('\n');
  assert.equal(lines.length, 1, stderr);
  assert.match(
    lines[0] ?? '',
    /^portcullis: --workers 4 needs a shared quota store \(--redis-url\): .*each worker would count every limit alone/,
  );
});
