// Refunds in the memory store (the Redis store runs the same rules in Lua: the differential test in
// test/integration/quota-redis.test.ts) and the idempotency scope.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MemoryQuotaStore } from '../../src/quota/memory-store.js';
import { idempotencyScope } from '../../src/quota/refund.js';
import type { ChargeRequest, LimitSpec } from '../../src/quota/types.js';

const T0 = Date.UTC(2026, 10, 28, 14, 5);
const LIMITS: Record<string, LimitSpec> = {
  gcra: { id: 'g', algorithm: 'gcra', limit: 7, periodMs: 60_000, burst: 3, cost: 1, shadow: false },
  sliding_window: {
    id: 's',
    algorithm: 'sliding_window',
    limit: 3,
    periodMs: 60_000,
    burst: 3,
    cost: 1,
    shadow: false,
  },
  fixed_window: {
    id: 'f',
    algorithm: 'fixed_window',
    limit: 3,
    periodMs: 3_600_000,
    burst: 3,
    window: { id: '2026-11-28T14', startMs: Date.UTC(2026, 10, 28, 14), endMs: Date.UTC(2026, 10, 28, 15) },
    cost: 1,
    shadow: false,
  },
};

const req = (spec: LimitSpec, over: Partial<ChargeRequest> = {}): ChargeRequest => ({
  partner: 'acme',
  requestId: '',
  limits: [spec],
  nowMs: T0,
  ...over,
});

describe('refund gives back exactly one charge', () => {
  for (const [name, spec] of Object.entries(LIMITS)) {
    test(`${name}: fill the limit, refund one, exactly one more fits`, async () => {
      const store = new MemoryQuotaStore();
      const charges = [];
      for (let i = 0; i < 3; i++) {
        const r = req(spec, { requestId: `r-${i}`, nowMs: T0 + i });
        charges.push({ r, result: await store.charge(r) });
      }
      assert.ok(charges.every((c) => c.result.allowed));
      assert.equal((await store.charge(req(spec, { nowMs: T0 + 3 }))).allowed, false, 'full');
      const second = charges[1] as (typeof charges)[number];
      await store.refund(second.r, second.result);
      const before = store.peekNow('acme', [spec], T0 + 4)[0];
      assert.equal(before?.remaining, 1, 'one unit back');
      assert.equal((await store.charge(req(spec, { nowMs: T0 + 4 }))).allowed, true, 'one fits');
      assert.equal((await store.charge(req(spec, { nowMs: T0 + 5 }))).allowed, false, 'and only one');
    });
  }

  test('a refund is applied once, keyed by the request id; the id is forgotten', async () => {
    const store = new MemoryQuotaStore();
    const spec = LIMITS.fixed_window as LimitSpec;
    const r = req(spec, { requestId: 'once' });
    const result = await store.charge(r);
    await store.charge(req(spec, { requestId: 'other' }));
    await store.refund(r, result);
    await store.refund(r, result);
    assert.equal(store.peekNow('acme', [spec], T0)[0]?.remaining, 2, 'one refund, not two');
    const retry = await store.charge(r);
    assert.deepEqual([retry.allowed, retry.duplicate], [true, false], 'the retry is charged anew');
  });

  test('a duplicate (a retry of an earlier charge) is never refunded', async () => {
    const store = new MemoryQuotaStore();
    const spec = LIMITS.fixed_window as LimitSpec;
    const r = req(spec, { requestId: 'dup' });
    await store.charge(r);
    const again = await store.charge(r);
    assert.equal(again.duplicate, true);
    await store.refund(r, again);
    assert.equal(store.peekNow('acme', [spec], T0)[0]?.remaining, 2);
  });

  test('a shadow limit whose cost did not fit was not charged: the refund leaves it alone', async () => {
    const store = new MemoryQuotaStore();
    const shadow: LimitSpec = { ...(LIMITS.fixed_window as LimitSpec), id: 'sh', limit: 1, shadow: true };
    const enforced = LIMITS.gcra as LimitSpec;
    await store.charge({ ...req(shadow), limits: [shadow] });
    const r: ChargeRequest = { ...req(enforced), limits: [enforced, shadow], requestId: 'x' };
    const result = await store.charge(r);
    assert.deepEqual([result.allowed, result.limits[1]?.exceeded], [true, true]);
    await store.refund(r, result);
    const [g, sh] = store.peekNow('acme', [enforced, shadow], T0);
    assert.equal(g?.remaining, 3, 'the enforced limit got its unit back');
    assert.equal(sh?.remaining, 0, 'the shadow one keeps the earlier charge');
  });

  test('sliding_window: a charge refunded after its sub-window ended is taken from `prev`', async () => {
    const store = new MemoryQuotaStore();
    const spec = LIMITS.sliding_window as LimitSpec;
    const start = Math.floor(T0 / 60_000) * 60_000;
    const r = req(spec, { requestId: 'a', nowMs: start + 59_000 });
    const result = await store.charge(r);
    await store.charge(req(spec, { nowMs: start + 60_000 })); // the next sub-window starts
    await store.refund(r, result);
    // Without the refund, prev = 1 weighs 59/60 at +61 s: 1 + 0.98 used; with it, only the new one.
    assert.equal(store.peekNow('acme', [spec], start + 61_000)[0]?.remaining, 2);
  });
});

describe('idempotency scope: route and the set of limits', () => {
  test('the same id on another route (another scope) is charged again; on the same scope it is a duplicate', async () => {
    const store = new MemoryQuotaStore();
    const spec = LIMITS.fixed_window as LimitSpec;
    const orders = idempotencyScope('orders', ['f']);
    const uploads = idempotencyScope('uploads', ['f']);
    const first = await store.charge(req(spec, { requestId: 'same', scope: orders }));
    const other = await store.charge(req(spec, { requestId: 'same', scope: uploads }));
    const again = await store.charge(req(spec, { requestId: 'same', scope: orders }));
    assert.deepEqual([first.duplicate, other.duplicate, again.duplicate], [false, false, true]);
    assert.equal(store.peekNow('acme', [spec], T0)[0]?.remaining, 1, 'charged twice, once per route');
  });

  test('the scope names the route and the limits, in any order', () => {
    assert.equal(idempotencyScope('orders', ['daily', 'per-minute']), 'orders|daily,per-minute');
    assert.equal(idempotencyScope('orders', ['per-minute', 'daily']), 'orders|daily,per-minute');
    assert.notEqual(idempotencyScope('orders', ['daily']), idempotencyScope('orders', ['daily', 'x']));
  });
});
