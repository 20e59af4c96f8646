// No decision line is lost on the way out: `serve` writes its audit lines (an event-loop turn's
// lines in one write) before "stopped" when it drains, and a process that exits in the same turn
// as its last decisions still writes them.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { CLI } from '../support/cli.js';
import { envoyRequest } from '../support/envoy-request.js';
import { OfficialCheckClient } from '../support/official-client.js';

test('serve: every decision is logged before "stopped", after SIGTERM', async () => {
  const child = spawn(
    process.execPath,
    [
      ...CLI,
      'serve',
      '--grpc-address',
      '127.0.0.1:0',
      '--admin-address',
      '127.0.0.1:0',
      '--drain-delay-ms',
      '0',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const lines: Record<string, unknown>[] = [];
  const serving = new Promise<number>((resolve) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      const entry = JSON.parse(line) as Record<string, unknown>;
      lines.push(entry);
      if (entry.msg === 'serving') resolve(entry.grpc_port as number);
    });
  });
  const client = new OfficialCheckClient(`127.0.0.1:${await serving}`);
  const ids = Array.from({ length: 20 }, (_, i) => `audit-delivery-${i}`);
  // Concurrent, so that several decisions share a turn (and one write).
  await Promise.all(
    ids.map((requestId) =>
      client.check(envoyRequest({ principal: 'spiffe://partners.example.com/acme', requestId })),
    ),
  );
  client.close();
  child.kill('SIGTERM');
  const [code] = await once(child, 'exit');
  assert.equal(code, 0);
  const stopped = lines.findIndex((l) => l.msg === 'stopped');
  assert.ok(stopped > 0, 'logged "stopped"');
  const logged = lines.slice(0, stopped).filter((l) => l.msg === 'decision');
  assert.deepEqual(logged.map((l) => l.request_id).sort(), [...ids].sort());
  for (const line of logged) assert.equal(line.code, 'allowed');
});

test('a process that exits in the turn of its last decisions still writes their lines', async () => {
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'test/fixtures/audit/exit-same-turn.ts', '5'],
      (err, out) => (err ? reject(err) : resolve(out)),
    );
  });
  const ids = stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l).decision_id);
  assert.deepEqual(ids, ['d-0', 'd-1', 'd-2', 'd-3', 'd-4']);
});
