// Two real `portcullis serve --redis-url` processes sharing one real redis-server (issue 13): what a
// burst on cold replicas and retries look like to partners (the outage: quota-replicas-outage.test.ts).
// Checks are encoded with Envoy's official protos and identify the partner by its mTLS principal.
//
// Deadlines: these Checks carry a generous deadline (30-60 s; Envoy sends 200 ms). What is tested is
// that the quota store is judged by Redis alone, not how fast this shared, loaded test machine runs
// 1,000 Checks on two cold processes; the deadline has its own tests.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Answer, check, startReplicas as setup, tally } from '../support/replicas.js';

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
