// Two real `portcullis serve --redis-url` processes sharing one real redis-server (issue 13): what a
// burst on cold replicas and retries look like to partners (the outage: quota-replicas-outage.test.ts).
// Checks are encoded with Envoy's official protos and identify the partner by its mTLS principal.
//
// Deadlines: these Checks carry a generous deadline (30-60 s; Envoy sends 200 ms). What is tested is
// that the quota store is judged by Redis alone, not how fast this shared, loaded test machine runs
// 1,000 Checks on two cold processes; the deadline has its own tests.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import { envoyRequest } from '../support/envoy-request.js';
import { OfficialCheckClient, type OfficialCheckResponse } from '../support/official-client.js';
import { type RedisServer, startRedis } from '../support/redis.js';

const CLI = ['--import', 'tsx', 'src/cli/main.ts'];
const principalOf = (id: string) => `spiffe://partners.example.com/${id}`;

const CATALOG = JSON.stringify({
  version_name: 'replica-tests',
  settings: { quotas: { replicas: 2, idempotency_seconds: 600 } },
  partners: [
    {
      id: 'burst',
      name: 'burst',
      identities: { principals: [principalOf('burst')] },
      // 100 at once, then one more every 864 s: no refill during the burst, however long it takes.
      limits: [{ name: 'per-day', algorithm: 'gcra', limit: 100, period: '1d', burst: 100 }],
    },
    {
      id: 'steady',
      name: 'steady',
      identities: { principals: [principalOf('steady')] },
      limits: [{ name: 'daily', algorithm: 'fixed_window', limit: 10_000_000, window: 'day' }],
    },
  ],
  routes: [{ name: 'orders', match: { path: { prefix: '/v1/orders' } } }],
});

interface Replica {
  readonly client: OfficialCheckClient;
  readonly process: ChildProcess;
}

/** A fresh `portcullis serve` process (cold: no warm-up by the test), once it logs "serving". */
async function startServe(t: TestContext, catalogFile: string, redis: RedisServer): Promise<Replica> {
  const child = spawn(
    process.execPath,
    [
      ...CLI,
      'serve',
      '--config',
      catalogFile,
      '--grpc-address',
      '127.0.0.1:0',
      '--admin-address',
      '127.0.0.1:0',
      '--redis-url',
      redis.url,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  // Read its log until "serving", and keep draining it (a full pipe would block the process).
  const port = await new Promise<number>((resolve, reject) => {
    let head = '';
    const onData = (chunk: Buffer) => {
      if (head.length > 1 << 20) return;
      head += chunk.toString('utf8');
      const line = head.split('\n').find((l) => l.includes('"msg":"serving"'));
      if (line) resolve(Number((JSON.parse(line) as { grpc_port: number }).grpc_port));
    };
    child.stdout?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`serve exited (${code}): ${stderr}`)));
  });
  assert.ok(port > 0, `serve did not start: ${stderr}`);
  const client = new OfficialCheckClient(`127.0.0.1:${port}`);
  t.after(() => client.close());
  return { client, process: child };
}

interface Answer {
  readonly code: string;
  readonly error?: string;
}

const codeOf = (res: OfficialCheckResponse) => res.dynamic_metadata?.fields.code?.stringValue ?? '?';

async function check(
  replica: Replica,
  partner: string,
  requestId: string,
  timeoutMs = 60_000,
): Promise<Answer> {
  try {
    const res = await replica.client.check(
      envoyRequest({ path: '/v1/orders/1', principal: principalOf(partner), requestId }),
      timeoutMs,
    );
    return { code: codeOf(res) };
  } catch (error: unknown) {
    return { code: 'grpc_error', error: String(error) };
  }
}

function tally(answers: readonly Answer[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const a of answers) counts[a.code] = (counts[a.code] ?? 0) + 1;
  return counts;
}

async function setup(t: TestContext) {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-replicas-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const catalogFile = join(dir, 'catalog.yaml');
  writeFileSync(catalogFile, CATALOG);
  const redis = await startRedis(t);
  const [a, b] = await Promise.all([startServe(t, catalogFile, redis), startServe(t, catalogFile, redis)]);
  return { redis, a, b };
}

describe('two serve replicas, one redis-server', { timeout: 600_000 }, () => {
  test('cold replicas: 1,000 concurrent Checks against a limit of 100 → 100 allowed, 900 × 429, 0 × 503; then 200 retries of an allowed id → 200 allowed', {
    timeout: 300_000,
  }, async (t) => {
    const { redis, a, b } = await setup(t);
    const pending: Promise<Answer>[] = [];
    for (let i = 0; i < 1000; i++) pending.push(check(i % 2 === 0 ? a : b, 'burst', `burst-${i}`));
    const answers = await Promise.all(pending);
    const counts = tally(answers);
    t.diagnostic(`burst: ${JSON.stringify(counts)}`);
    assert.deepEqual(counts, { allowed: 100, quota_exceeded: 900 });
    // Redis charged exactly what was allowed: TAT ≈ now + 100 · 864 s (the bucket holds 100 charges).
    const tat = Number(((await redis.client().get('{q:burst}:per-day')) ?? '0').split(':')[0]);
    const units = Math.round((tat - Date.now()) / 864_000);
    assert.equal(units, 100, 'units charged in Redis = requests allowed');

    // Retries of one allowed id, right after the burst, on the replica that allowed it.
    const index = answers.findIndex((x) => x.code === 'allowed');
    const replica = index % 2 === 0 ? a : b;
    const retries = await Promise.all(
      Array.from({ length: 200 }, () => check(replica, 'burst', `burst-${index}`)),
    );
    const retryCounts = tally(retries);
    t.diagnostic(`retries: ${JSON.stringify(retryCounts)}`);
    assert.deepEqual(retryCounts, { allowed: 200 });
  });
});
