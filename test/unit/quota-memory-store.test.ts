// MemoryQuotaStore: idempotency, divisor, bounds and expiry on request time. (Its answers equal the
// Redis store's: test/integration/quota-redis.test.ts.)
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MemoryQuotaStore } from '../../src/quota/memory-store.js';
import type { ChargeRequest, LimitSpec } from '../../src/quota/types.js';

const T0 = Date.UTC(2026, 10, 28, 14, 5);
const perMinute: LimitSpec = {
  id: 'per-minute',
  algorithm: 'gcra',
  limit: 10,
  periodMs: 60_000,
  burst: 10,
  cost: 1,
  shadow: false,
};
const perHour: LimitSpec = {
  id: 'per-hour',
  algorithm: 'fixed_window',
  limit: 3,
  periodMs: 3_600_000,
  burst: 3,
  window: { id: '2026-11-28T14', startMs: Date.UTC(2026, 10, 28, 14), endMs: Date.UTC(2026, 10, 28, 15) },
  cost: 1,
  shadow: false,
};

function req(over: Partial<ChargeRequest> = {}): ChargeRequest {
  return { partner: 'acme', requestId: '', limits: [perMinute, perHour], nowMs: T0, ...over };
}

describe('idempotency', () => {
  test('the same request id twice is charged once', async () => {
    const store = new MemoryQuotaStore();
    const first = await store.charge(req({ requestId: 'r-1' }));
    const again = await store.charge(req({ requestId: 'r-1', nowMs: T0 + 5 }));
    assert.deepEqual([first.allowed, first.duplicate], [true, false]);
    assert.deepEqual([again.allowed, again.duplicate], [true, true]);
    assert.deepEqual(
      again.limits.map((l) => [l.id, l.remaining, l.exceeded]),
      [
        ['per-minute', 9, false],
        ['per-hour', 2, false],
      ],
    );
  });

  const cases: { name: string; second: Partial<ChargeRequest>; duplicate: boolean }[] = [
    { name: 'within the ttl', second: { requestId: 'r', nowMs: T0 + 599_999 }, duplicate: true },
    { name: 'once the ttl is over', second: { requestId: 'r', nowMs: T0 + 600_000 }, duplicate: false },
    { name: 'another partner, same id', second: { requestId: 'r', partner: 'globex' }, duplicate: false },
    { name: 'another id', second: { requestId: 's' }, duplicate: false },
  ];
  for (const c of cases) {
    test(`a repeated id: ${c.name}`, async () => {
      const store = new MemoryQuotaStore({ idempotencyMs: 600_000 });
      await store.charge(req({ requestId: 'r', limits: [perMinute] }));
      const second = await store.charge(req({ limits: [perMinute], ...c.second }));
      assert.equal(second.duplicate, c.duplicate);
    });
  }

  test('no request id: every charge counts', async () => {
    const store = new MemoryQuotaStore();
    for (let i = 0; i < 3; i++) assert.equal((await store.charge(req())).allowed, true);
    assert.equal((await store.charge(req())).allowed, false);
  });

  test('a refused request is not remembered: its retry is evaluated again', async () => {
    const store = new MemoryQuotaStore();
    for (let i = 0; i < 3; i++) await store.charge(req());
    const refused = await store.charge(req({ requestId: 'late' }));
    assert.deepEqual([refused.allowed, refused.duplicate], [false, false]);
    const nextHour = Date.UTC(2026, 10, 28, 15);
    const retry = await store.charge(
      req({
        requestId: 'late',
        nowMs: nextHour,
        limits: [
          perMinute,
          { ...perHour, window: { id: '2026-11-28T15', startMs: nextHour, endMs: nextHour + 3_600_000 } },
        ],
      }),
    );
    assert.deepEqual([retry.allowed, retry.duplicate], [true, false]);
  });
});

describe('divisor (fail-open share of N replicas)', () => {
  const cases: { name: string; limit: number; divisor: number; admitted: number }[] = [
    { name: '10 over 3 replicas: 3 each', limit: 10, divisor: 3, admitted: 3 },
    { name: '2 over 3 replicas: at least 1', limit: 2, divisor: 3, admitted: 1 },
    { name: 'divisor 1: unchanged', limit: 4, divisor: 1, admitted: 4 },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const store = new MemoryQuotaStore({ divisor: c.divisor });
      const limits = [{ ...perHour, limit: c.limit, burst: c.limit }];
      let admitted = 0;
      let reported = 0;
      for (let i = 0; i < c.limit + 2; i++) {
        const r = await store.charge(req({ limits }));
        if (r.allowed) admitted++;
        reported = r.limits[0]?.limit ?? 0;
      }
      assert.equal(admitted, c.admitted);
      assert.equal(reported, c.admitted, 'the LimitState reports the divided limit');
    });
  }

  test('gcra: the burst is divided too', async () => {
    const store = new MemoryQuotaStore({ divisor: 2 });
    const limits = [{ ...perMinute, limit: 10, burst: 6 }];
    let admitted = 0;
    for (let i = 0; i < 10; i++) if ((await store.charge(req({ limits }))).allowed) admitted++;
    assert.equal(admitted, 3);
  });

  test('a bad divisor throws', () => {
    assert.throws(() => new MemoryQuotaStore({ divisor: 0 }), /divisor/);
    assert.throws(() => new MemoryQuotaStore({ divisor: 1.5 }), /divisor/);
  });
});

describe('bounds and expiry (on request time, no timers)', () => {
  test('at most maxEntries states and maxRequestIds ids', async () => {
    const store = new MemoryQuotaStore({ maxEntries: 10, maxRequestIds: 5 });
    for (let i = 0; i < 50; i++) await store.charge(req({ partner: `p${i}`, requestId: `r${i}` }));
    assert.deepEqual(store.size, { states: 10, requestIds: 5 });
  });

  test('states expire once they no longer matter; prune() drops them', async () => {
    const store = new MemoryQuotaStore();
    await store.charge(req({ requestId: 'x' }));
    assert.deepEqual(store.size, { states: 2, requestIds: 1 });
    // gcra: 1 unit of a 10/min bucket matters 6 s; the hour window ends at 15:00 (lru-cache drops an
    // entry once its age exceeds the ttl: 1 ms later)
    await store.peek('acme', [], T0 + 6_001);
    store.prune();
    assert.deepEqual(store.size, { states: 1, requestIds: 1 });
    await store.peek('acme', [], T0 + 600_001); // the request id's 10 minutes
    store.prune();
    assert.deepEqual(store.size, { states: 1, requestIds: 0 });
    await store.peek('acme', [], Date.UTC(2026, 10, 28, 15) + 1);
    store.prune();
    assert.deepEqual(store.size, { states: 0, requestIds: 0 });
  });

  test('expiry never changes an answer: an expired gcra state equals none', async () => {
    const store = new MemoryQuotaStore();
    const fresh = new MemoryQuotaStore();
    await store.charge(req({ limits: [perMinute] }));
    const later = T0 + 6_000;
    assert.deepEqual(
      await store.charge(req({ limits: [perMinute], nowMs: later })),
      await fresh.charge(req({ limits: [perMinute], nowMs: later })),
    );
  });
});

describe('peek', () => {
  test('does not charge', async () => {
    const store = new MemoryQuotaStore();
    await store.charge(req());
    const a = await store.peek('acme', [perMinute, perHour], T0);
    const b = await store.peek('acme', [perMinute, perHour], T0);
    assert.deepEqual(a, b);
    assert.deepEqual(
      a.map((l) => [l.remaining, l.exceeded]),
      [
        [9, false],
        [2, false],
      ],
    );
  });
});

describe('validation', () => {
  const bad: [string, Partial<ChargeRequest>, RegExp][] = [
    ['a partner with a brace', { partner: 'a{b' }, /partner/],
    ['duplicate limit ids', { limits: [perMinute, perMinute] }, /appears twice/],
    ['a fractional now', { nowMs: 1.5 }, /nowMs/],
  ];
  for (const [name, over, message] of bad) {
    test(`refuses ${name}`, async () => {
      await assert.rejects(new MemoryQuotaStore().charge(req(over)), message);
    });
  }
});
