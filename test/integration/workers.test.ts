// Issue 12, finding 7: `serve --workers N` shares its quotas or refuses. Without a shared store every
// worker counted each limit alone (12 of 12 allowed on a 3/min limit with 4 workers): now a real
// `serve --workers 4` without --redis-url refuses to start, with one line saying why and what to do.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCli } from '../support/cli.js';
import { freePort } from '../support/processes.js';

test('finding 7: serve --workers 4 without Redis refuses to start, with one clear line', async () => {
  const [grpcPort, adminPort] = [await freePort(), await freePort()];
  const { code, stderr } = await runCli(
    [
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
    { ...process.env, PORTCULLIS_REDIS_URL: '' },
    30_000,
  );
  assert.equal(code, 1, `it must refuse, not serve: ${stderr}`);
  const lines = stderr.trim().split('\n');
  assert.equal(lines.length, 1, stderr);
  assert.match(
    lines[0] ?? '',
    /^portcullis: --workers 4 needs a shared quota store \(--redis-url\): .*each worker would count every limit alone/,
  );
});
