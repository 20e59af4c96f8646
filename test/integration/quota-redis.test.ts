// RedisQuotaStore against real redis-server processes (standalone and a 3-node cluster): it answers
// exactly like MemoryQuotaStore, it is exact under concurrency, all-or-nothing, idempotent, and costs
// one EVALSHA per charge.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Command, type Redis } from 'ioredis';
import { StoreTimeout } from '../../src/net/reply-timer.js';
import { StoreBreaker } from '../../src/quota/breaker.js';
import { windowAt } from '../../src/quota/calendar.js';
import { MemoryQuotaStore } from '../../src/quota/memory-store.js';
import {
  CHARGE_SHA,
  ChargeCommand,
  createRedisClient,
  limitKey,
  type RedisClient,
  RedisQuotaStore,
  requestIdKey,
  waitForReady,
} from '../../src/quota/redis-store.js';
import type { ChargeRequest, ChargeResult, ChargeSink, LimitSpec } from '../../src/quota/types.js';
import { type RedisServer, startRedis } from '../support/redis.js';
import { startRedisCluster } from '../support/redis-cluster.js';

// The exactness tests judge atomicity, not speed: on a loaded machine (CPU hogs starve redis-server
// too) 1,000 charges queued on one node may take longer than the store's 100 ms default, which is
// then a real Redis timeout and rightly a failure. The timeout has its own tests below.
const EXACTNESS = { timeoutMs: 10_000 } as const;

const T0 = Date.UTC(2026, 10, 28, 13, 58, 30, 123); // crosses an hour and several minutes

/** mulberry32: a small seeded PRNG, so a failing sequence can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A quota client that generous timeouts keep exact on a slow machine (the default is 100 ms). */
function quotaClient(t: { after(fn: () => unknown): void }, url: string): RedisClient {
  const client = createRedisClient(url, { commandTimeoutMs: 10_000, connectTimeoutMs: 10_000 });
  client.on('error', () => {});
  t.after(() => client.disconnect());
  return client;
}

/**
 * A redis-server that DEBUG SLEEP can stall, and a quota store on it with the default 100 ms timeout.
 * `stall()` puts the server to sleep for 1 s and resolves once it sleeps; `asleep` settles when it wakes.
 */
async function stallableStore(t: Parameters<typeof startRedis>[0]) {
  const server = await startRedis(t, { args: ['--enable-debug-command', 'yes'] });
  const client = createRedisClient(server.url);
  client.on('error', () => {});
  t?.after(() => client.disconnect());
  await waitForReady(client);
  const store = new RedisQuotaStore(client, { timeoutMs: 100 });
  const stall = async (): Promise<{ asleep: Promise<unknown> }> => {
    const sleeper = server.client();
    await sleeper.ping();
    const asleep = sleeper.call('DEBUG', 'SLEEP', '1');
    await new Promise((resolve) => setTimeout(resolve, 50));
    return { asleep };
  };
  return { server, store, stall };
}

/** `key`'s value once it equals `expected`, or its last value after 3 s. */
async function untilValue(server: RedisServer, key: string, expected: string): Promise<string> {
  let value = '';
  for (const deadline = Date.now() + 3000; Date.now() < deadline; ) {
    value = (await server.client().get(key)) ?? '';
    if (value === expected) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return value;
}

/** A one-request gcra limit, far from full. */
function gcraSpec(id: string): LimitSpec {
  return { id, algorithm: 'gcra', limit: 100, periodMs: 60_000, burst: 100, cost: 1, shadow: false };
}

function commandStats(info: string): Map<string, number> {
  const stats = new Map<string, number>();
  for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    stats.set(match[1] as string, Number(match[2]));
  }
  return stats;
}

interface LimitPlan {
  readonly id: string;
  readonly algorithm: LimitSpec['algorithm'];
  readonly limit: number;
  readonly periodMs: number;
  readonly burst: number;
  readonly unit?: 'minute' | 'hour';
  readonly shadow: boolean;
}

describe('differential: MemoryQuotaStore and RedisQuotaStore give identical results', () => {
  const zones = ['UTC', 'Europe/Berlin', 'Asia/Kathmandu'];
  for (const seed of [1, 2, 3]) {
    test(`seed ${seed}: 1500 random charges, peeks and refunds`, async (t) => {
      const server = await startRedis(t);
      const idempotencyMs = 20_000; // short, so that repeated ids also outlive it
      // Equivalence, not speed (see EXACTNESS): under two CPU hogs a starved redis-server once
      // took more than the 100 ms default to answer one of the 1,500 charges.
      const redis = new RedisQuotaStore(server.client(), { idempotencyMs, ...EXACTNESS });
      const memory = new MemoryQuotaStore({ idempotencyMs });
      const random = prng(seed);
      const int = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
      const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;

      const partners = ['acme', 'globex', 'initech', 'umbrella'].map((id) => {
        const plans: LimitPlan[] = [];
        const g = int(2, 20);
        plans.push({
          id: 'g',
          algorithm: 'gcra',
          limit: g,
          periodMs: pick([1000, 2500, 7000, 60_000]),
          burst: int(1, g + 3),
          shadow: false,
        });
        const s = int(3, 30);
        plans.push({
          id: 's',
          algorithm: 'sliding_window',
          limit: s,
          periodMs: pick([1000, 3001, 10_000, 60_000]),
          burst: s,
          shadow: false,
        });
        const f = int(5, 60);
        plans.push({
          id: 'f',
          algorithm: 'fixed_window',
          limit: f,
          periodMs: 0,
          burst: f,
          unit: pick(['minute', 'hour'] as const),
          shadow: false,
        });
        plans.push({ ...pick(plans), id: 'shadow', limit: int(2, 8), burst: int(1, 8), shadow: true });
        return { id, zone: pick(zones), plans };
      });

      let now = T0;
      const ids: string[] = [];
      const chargedAt = new Map<string, number>(); // request id → when it was charged (oldest first)
      let compared = 0;
      let allowed = 0;
      let duplicates = 0;
      let refused = 0;
      let refunds = 0;
      for (let step = 0; step < 1500; step++) {
        const r = random();
        now += r < 0.5 ? int(0, 5) : r < 0.8 ? int(5, 400) : r < 0.95 ? int(400, 5000) : int(5000, 90_000);
        const partner = pick(partners);
        const chosen = partner.plans.filter(() => random() < 0.7);
        if (chosen.length === 0) chosen.push(partner.plans[0] as LimitPlan);
        const limits: LimitSpec[] = chosen.map((p) => {
          const cost = random() < 0.05 ? p.limit + 1 : int(1, 3);
          if (p.algorithm === 'fixed_window' || p.unit !== undefined) {
            const window = windowAt(p.unit ?? 'minute', partner.zone, now);
            return {
              id: p.id,
              algorithm: 'fixed_window',
              limit: p.limit,
              periodMs: window.endMs - window.startMs,
              burst: p.burst,
              window,
              cost,
              shadow: p.shadow,
            };
          }
          return {
            id: p.id,
            algorithm: p.algorithm,
            limit: p.limit,
            periodMs: p.periodMs,
            burst: p.burst,
            cost,
            shadow: p.shadow,
          };
        });

        const what = `seed ${seed}, step ${step}, now ${now}, ${partner.id}`;
        if (random() < 0.08) {
          const [a, b] = await Promise.all([
            memory.peek(partner.id, limits, now),
            redis.peek(partner.id, limits, now),
          ]);
          assert.deepEqual(b, a, `peek: ${what}`);
          compared++;
          continue;
        }
        const x = random();
        let requestId = '';
        const boundary = [...chargedAt].find(([, at]) => at + idempotencyMs >= now);
        if (x < 0.04 && boundary) {
          // replay an id exactly at the end of its idempotency window, or 1 ms before
          requestId = boundary[0];
          now = boundary[1] + idempotencyMs - int(0, 1);
        } else if (x < 0.25 && ids.length > 0) requestId = pick(ids.slice(-40));
        else if (x < 0.3) requestId = `long-${step}-${'x'.repeat(200)}`;
        else if (x < 0.75) requestId = `req-${seed}-${step}`;
        if (requestId !== '') ids.push(requestId);

        if (limits.some((l) => l.window !== undefined)) {
          // the replayed instant may be in a later calendar window
          limits.forEach((l, i) => {
            const p = chosen[i] as LimitPlan;
            if (l.window === undefined) return;
            const window = windowAt(p.unit ?? 'minute', partner.zone, now);
            limits[i] = { ...l, window, periodMs: window.endMs - window.startMs };
          });
        }
        // Idempotency scopes (route + limits): mostly one, sometimes another route.
        const scope = random() < 0.2 ? 'uploads|x' : 'orders|x';
        const request: ChargeRequest = { partner: partner.id, requestId, scope, limits, nowMs: now };
        const expected: ChargeResult = memory.chargeNow(request);
        if (requestId !== '' && scope === 'orders|x' && expected.allowed && !expected.duplicate) {
          chargedAt.delete(requestId);
          chargedAt.set(requestId, now);
        }
        const got = await redis.charge(request);
        assert.deepEqual(got, expected, `charge: ${what}`);
        compared++;
        if (got.allowed && random() < 0.15) {
          // The Check was refused after the charge (scan unavailable…): both give it back.
          memory.refundNow(request, expected);
          await redis.refund(request, got);
          if (got.allowed && !got.duplicate) {
            refunds++;
            if (scope === 'orders|x') chargedAt.delete(requestId);
          }
          const [a, b] = await Promise.all([
            memory.peek(partner.id, limits, now),
            redis.peek(partner.id, limits, now),
          ]);
          assert.deepEqual(b, a, `peek after a refund: ${what}`);
        }
        if (got.duplicate) duplicates++;
        else if (got.allowed) allowed++;
        else refused++;
      }
      // the sequence exercised every path
      assert.ok(
        allowed > 100 && refused > 100 && duplicates >= 10 && refunds >= 20,
        `${allowed}/${refused}/${duplicates}/${refunds}`,
      );
      t.diagnostic(
        `${compared} compared: ${allowed} allowed, ${refused} refused, ${duplicates} duplicates, ${refunds} refunds`,
      );
    });
  }
});

/** 1000 concurrent unit charges against stacked limits of 100, through two stores on two clients. */
async function exactness(
  stores: readonly RedisQuotaStore[],
  partner: string,
  nowMs: number,
): Promise<number> {
  const day = windowAt('day', 'UTC', nowMs);
  const limits: LimitSpec[] = [
    { id: 'burst', algorithm: 'gcra', limit: 100, periodMs: 3_600_000, burst: 100, cost: 1, shadow: false },
    {
      id: 'window',
      algorithm: 'sliding_window',
      limit: 100,
      periodMs: 3_600_000,
      burst: 100,
      cost: 1,
      shadow: false,
    },
    {
      id: 'daily',
      algorithm: 'fixed_window',
      limit: 100,
      periodMs: day.endMs - day.startMs,
      burst: 100,
      window: day,
      cost: 1,
      shadow: false,
    },
  ];
  const results = await Promise.all(
    Array.from({ length: 1000 }, (_, i) =>
      (stores[i % stores.length] as RedisQuotaStore).charge({
        partner,
        requestId: `${partner}-${i}`,
        limits,
        nowMs,
      }),
    ),
  );
  return results.filter((r) => r.allowed).length;
}

describe('standalone redis-server', () => {
  test('exactness: 1000 concurrent charges, limit 100, two stores on two clients → exactly 100, 5 times', async (t) => {
    const server = await startRedis(t);
    const a = quotaClient(t, server.url);
    const b = quotaClient(t, server.url);
    await Promise.all([waitForReady(a), waitForReady(b)]);
    const stores = [new RedisQuotaStore(a, EXACTNESS), new RedisQuotaStore(b, EXACTNESS)];
    const check = server.client();
    for (let round = 0; round < 5; round++) {
      const partner = `partner-${round}`;
      assert.equal(await exactness(stores, partner, T0 + round), 100, `round ${round}`);
      assert.equal(await check.get(`{q:${partner}}:daily:2026-11-28`), '100');
    }
  });

  test('stacked: when the daily fixed limit refuses, the per-minute gcra state is unchanged', async (t) => {
    const server = await startRedis(t);
    const store = new RedisQuotaStore(server.client());
    const check = server.client();
    const day = windowAt('day', 'Europe/Berlin', T0);
    const perMinute: LimitSpec = {
      id: 'per-minute',
      algorithm: 'gcra',
      limit: 60,
      periodMs: 60_000,
      burst: 60,
      cost: 1,
      shadow: false,
    };
    const daily: LimitSpec = {
      id: 'daily',
      algorithm: 'fixed_window',
      limit: 3,
      periodMs: day.endMs - day.startMs,
      burst: 3,
      window: day,
      cost: 1,
      shadow: false,
    };
    const charge = (nowMs: number) =>
      store.charge({ partner: 'acme', requestId: '', limits: [perMinute, daily], nowMs });
    for (let i = 0; i < 3; i++) assert.equal((await charge(T0 + i * 10)).allowed, true);
    const gcraKey = limitKey('acme', perMinute);
    assert.equal(gcraKey, '{q:acme}:per-minute');
    const before = await check.get(gcraKey);
    assert.equal(before, `${T0 + 3 * 1000}:0`, 'three charges within 20 ms: TAT = T0 + 3·T (T = 1000 ms)');

    const refused = await charge(T0 + 30);
    assert.equal(refused.allowed, false);
    assert.deepEqual(
      refused.limits.map((l) => [l.id, l.exceeded, l.remaining]),
      [
        ['per-minute', false, 57],
        ['daily', true, 0],
      ],
    );
    assert.equal(await check.get(gcraKey), before, 'the gcra key did not change');
    assert.equal(await check.get(limitKey('acme', daily)), '3');
    assert.equal(limitKey('acme', daily), `{q:acme}:daily:${day.id}`);
    // every key has an expiry
    for (const key of await check.keys('{q:acme}:*')) assert.ok((await check.pttl(key)) > 0, key);
  });

  test('idempotency: the same request id twice is charged once; keys and TTLs', async (t) => {
    const server = await startRedis(t);
    // a wide slack, so that the PTTL bounds below hold however slow the machine (no timing assumption)
    const store = new RedisQuotaStore(server.client(), { idempotencyMs: 600_000, keySlackMs: 60_000 });
    const check = server.client();
    const hour = windowAt('hour', 'UTC', T0);
    const limits: LimitSpec[] = [
      {
        id: 'hourly',
        algorithm: 'fixed_window',
        limit: 10,
        periodMs: 3_600_000,
        burst: 10,
        window: hour,
        cost: 2,
        shadow: false,
      },
    ];
    const first = await store.charge({ partner: 'acme', requestId: 'req-1', limits, nowMs: T0 });
    const second = await store.charge({ partner: 'acme', requestId: 'req-1', limits, nowMs: T0 + 50 });
    assert.deepEqual(
      [first.allowed, first.duplicate, second.allowed, second.duplicate],
      [true, false, true, true],
    );
    assert.equal(second.limits[0]?.remaining, 8);
    assert.equal(await check.get(limitKey('acme', limits[0] as LimitSpec)), '2', 'charged once');
    const ridKey = requestIdKey('acme', 'req-1');
    assert.equal(ridKey, '{q:acme}:rid:req-1');
    assert.equal(await check.get(ridKey), String(T0));
    const ttl = await check.pttl(ridKey);
    assert.ok(ttl > 600_000 && ttl <= 660_000, `rid PTTL ${ttl}: 10 min + slack`);
    const windowTtl = await check.pttl(limitKey('acme', limits[0] as LimitSpec));
    const untilEnd = hour.endMs - T0;
    assert.ok(
      windowTtl > untilEnd && windowTtl <= untilEnd + 60_000,
      `window PTTL ${windowTtl}: to its end + slack`,
    );
    const third = await store.charge({ partner: 'acme', requestId: 'req-2', limits, nowMs: T0 + 60 });
    assert.deepEqual([third.duplicate, third.limits[0]?.remaining], [false, 6]);
  });

  test('one round trip: N charges with three stacked limits cost exactly N EVALSHA', async (t) => {
    const server = await startRedis(t);
    const client = server.client();
    const store = new RedisQuotaStore(client);
    const admin = server.client();
    const day = windowAt('day', 'UTC', T0);
    const limits: LimitSpec[] = [
      { id: 'g', algorithm: 'gcra', limit: 1000, periodMs: 1000, burst: 1000, cost: 1, shadow: false },
      {
        id: 's',
        algorithm: 'sliding_window',
        limit: 1000,
        periodMs: 60_000,
        burst: 1000,
        cost: 1,
        shadow: false,
      },
      {
        id: 'f',
        algorithm: 'fixed_window',
        limit: 1000,
        periodMs: day.endMs - day.startMs,
        burst: 1000,
        window: day,
        cost: 1,
        shadow: false,
      },
    ];
    await store.charge({ partner: 'warm', requestId: '', limits, nowMs: T0 }); // loads the script
    await client.ping();
    await admin.ping();
    await admin.config('RESETSTAT');
    const N = 50;
    for (let i = 0; i < N; i++) {
      const r = await store.charge({ partner: 'acme', requestId: `r${i}`, limits, nowMs: T0 + i });
      assert.equal(r.allowed, true);
    }
    const stats = commandStats(await admin.info('commandstats'));
    stats.delete('config|resetstat');
    t.diagnostic(`commandstats after ${N} charges: ${JSON.stringify(Object.fromEntries(stats))}`);
    // From clients: N EVALSHA and nothing else. Inside the script (counted by Redis too): per charge,
    // one GET per limit + one for the request id, one SET … PX per limit + one for the request id.
    assert.deepEqual(Object.fromEntries(stats), { evalsha: N, get: 4 * N, set: 4 * N });
  });

  test("two writes per turn: a turn's first charge goes out at once, the others in one writev", async (t) => {
    // Our own batching (TurnCork) instead of ioredis' auto-pipelining, whose per-turn Pipeline
    // outlived the replies: see src/net/turn-cork.ts. A lone charge is written at once, unbuffered.
    const server = await startRedis(t);
    const client = quotaClient(t, server.url) as Redis;
    await waitForReady(client);
    const store = new RedisQuotaStore(client, EXACTNESS);
    const limits: LimitSpec[] = [
      { id: 'g', algorithm: 'gcra', limit: 1000, periodMs: 1000, burst: 1000, cost: 1, shadow: false },
    ];
    await store.charge({ partner: 'warm', requestId: '', limits, nowMs: T0 }); // loads the script
    const socket = client.stream as unknown as {
      _write: (...args: unknown[]) => unknown;
      _writev: (chunks: unknown[], ...rest: unknown[]) => unknown;
    };
    const counts = { write: 0, writev: 0, chunks: 0 };
    const write = socket._write;
    const writev = socket._writev;
    socket._write = function (this: unknown, ...args: unknown[]) {
      counts.write++;
      return write.apply(this, args);
    };
    socket._writev = function (this: unknown, chunks: unknown[], ...rest: unknown[]) {
      counts.writev++;
      counts.chunks += chunks.length;
      return writev.call(this, chunks, ...rest);
    };
    const N = 20;
    const results = await Promise.all(
      Array.from({ length: N }, (_, i) =>
        store.charge({ partner: 'acme', requestId: `w${i}`, limits, nowMs: T0 + i }),
      ),
    );
    assert.ok(results.every((r) => r.allowed));
    assert.deepEqual(counts, { write: 1, writev: 1, chunks: N - 1 });
    // The next turn's lone charge: one plain write.
    await store.charge({ partner: 'acme', requestId: 'after', limits, nowMs: T0 + N });
    assert.deepEqual(counts, { write: 2, writev: 1, chunks: N - 1 });
  });

  test('a charge is sent as exactly the bytes ioredis would send for the same EVALSHA, and arms no ioredis timer', async (t) => {
    // ChargeCommand writes its RESP text from cached pieces instead of ioredis' toWritable, and
    // leaves the timeout to the store's ReplyTimer (src/quota/redis-store.ts).
    const server = await startRedis(t);
    const client = quotaClient(t, server.url) as Redis;
    await waitForReady(client);
    const store = new RedisQuotaStore(client, EXACTNESS);
    const limits: LimitSpec[] = [
      { id: 'g', algorithm: 'gcra', limit: 5, periodMs: 1000, burst: 5, cost: 1, shadow: false },
      { id: 'sw', algorithm: 'sliding_window', limit: 9, periodMs: 60_000, burst: 9, cost: 2, shadow: true },
      {
        id: 'day',
        algorithm: 'fixed_window',
        limit: 1000,
        periodMs: 86_400_000,
        burst: 1000,
        cost: 1,
        shadow: false,
        window: { id: '2026-12-06', startMs: T0, endMs: T0 + 86_400_000 },
      },
    ];
    const sent: Command[] = [];
    // A call's arguments are read as it is sent: once answered, it keeps none of its request.
    const argsAtSend = new Map<Command, readonly string[]>();
    const send = client.sendCommand.bind(client);
    client.sendCommand = (command: Command, stream?: never) => {
      sent.push(command);
      if (command instanceof ChargeCommand) argsAtSend.set(command, command.call.args);
      return send(command, stream);
    };
    const requests: ChargeRequest[] = [
      { partner: 'acme', requestId: 'r-1', limits, nowMs: T0 },
      { partner: 'ünïcödé-партнёр', requestId: 'идентификатор-✓', scope: 'orders|g', limits, nowMs: T0 + 1 },
      { partner: 'acme', requestId: '', limits: limits.slice(0, 1), nowMs: T0 + 2 },
    ];
    for (const request of requests) assert.equal((await store.charge(request)).allowed, true);
    const charges = sent.filter((c) => c.name === 'evalsha');
    assert.equal(charges.length, requests.length);
    for (const command of charges) {
      assert.ok(command instanceof ChargeCommand);
      const args = argsAtSend.get(command) ?? [];
      const n = (args.length - 2) / 2;
      const reference = new Command('evalsha', [CHARGE_SHA, String(n + 1), ...args]);
      assert.equal(command.toWritable({}), reference.toWritable({}));
    }
    // No promise per charge: every ChargeCommand returns the same settled constant to ioredis.
    assert.equal(charges[0]?.promise, charges[2]?.promise);
    // ioredis' commandTimeout (1 s on this client) would reject a plain command 1 ms after this;
    // a charge's stays pending: its timeout is the store's.
    const probe = charges[0] as Command;
    let settled = false;
    const pending = new ChargeCommand(
      {
        args: ['{q:x}:rid:', '{q:x}:g', 'c:0:0:0:1', 'g:1:1:1:1:0:0'],
        replied: () => (settled = true),
        failed: () => (settled = true),
      },
      '',
    );
    pending.setTimeout(1);
    const plain = new Command('get', ['k']);
    let plainError = '';
    plain.promise.catch((error: Error) => (plainError = error.message));
    plain.setTimeout(1);
    await new Promise((resolve) => setTimeout(resolve, 30));
    assert.equal(plainError, 'Command timed out');
    assert.equal(settled, false);
    assert.ok(probe.isResolved);
  });

  test('NOSCRIPT fallback: after SCRIPT FLUSH the charge still works (EVAL once, then EVALSHA)', async (t) => {
    const server = await startRedis(t);
    const store = new RedisQuotaStore(server.client());
    const admin = server.client();
    const limits: LimitSpec[] = [
      { id: 'g', algorithm: 'gcra', limit: 2, periodMs: 60_000, burst: 2, cost: 1, shadow: false },
    ];
    assert.equal((await store.charge({ partner: 'acme', requestId: '', limits, nowMs: T0 })).allowed, true);
    assert.deepEqual(await admin.script('EXISTS', CHARGE_SHA), [1]);
    await admin.script('FLUSH');
    assert.deepEqual(await admin.script('EXISTS', CHARGE_SHA), [0]);
    await admin.config('RESETSTAT');
    const second = await store.charge({ partner: 'acme', requestId: '', limits, nowMs: T0 });
    assert.deepEqual([second.allowed, second.limits[0]?.remaining], [true, 0], 'state survived the flush');
    const third = await store.charge({ partner: 'acme', requestId: '', limits, nowMs: T0 });
    assert.equal(third.allowed, false);
    const stats = commandStats(await admin.info('commandstats'));
    assert.equal(stats.get('evalsha'), 2, 'the refused EVALSHA, then the cached one');
    assert.equal(stats.get('eval'), 1);
    assert.deepEqual(await admin.script('EXISTS', CHARGE_SHA), [1]);
  });

  test('a charge answered in time keeps neither its sink nor its request alive while the reply timer holds its batch', async (t) => {
    // The reply timer holds a turn's calls for the whole store timeout (here a minute). Through the
    // sink, a call would keep the Check's request, result and promise alive that long: every
    // scavenge meanwhile copies them (at 1,000 Check/s, the last 100 ms of Checks).
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const server = await startRedis(t);
    const store = new RedisQuotaStore(server.client(), { timeoutMs: 60_000 });
    await store.charge({ partner: 'warm', requestId: '', limits: [gcraSpec('w')], nowMs: T0 });
    const refs = await (async () => {
      const request: ChargeRequest = {
        partner: 'acme',
        requestId: 'r-1',
        limits: [gcraSpec('g')],
        nowMs: T0,
      };
      let sink: ChargeSink | undefined;
      const answered = await new Promise<ChargeResult>((resolve, reject) => {
        sink = { charged: resolve, failed: reject };
        store.chargeTo(request, sink);
      });
      assert.equal(answered.allowed, true, 'answered');
      return { sink: new WeakRef(sink as ChargeSink), request: new WeakRef(request) };
    })();
    assert.ok(
      (store as unknown as { timer: { watching: number } }).timer.watching > 0,
      'the batch is still watched',
    );
    await new Promise((resolve) => setImmediate(resolve));
    gc();
    assert.equal(refs.sink.deref(), undefined, 'the sink was collected');
    assert.equal(refs.request.deref(), undefined, 'the request was collected');
  });

  test('peek reads without writing', async (t) => {
    const server = await startRedis(t);
    const store = new RedisQuotaStore(server.client());
    const admin: Redis = server.client();
    const limits: LimitSpec[] = [
      { id: 'g', algorithm: 'gcra', limit: 2, periodMs: 60_000, burst: 2, cost: 1, shadow: false },
    ];
    const states = await store.peek('acme', limits, T0);
    assert.deepEqual(states, [
      { id: 'g', limit: 2, remaining: 2, resetMs: 0, exceeded: false, retryAfterMs: 0, shadow: false },
    ]);
    assert.equal(await admin.dbsize(), 0);
  });
});

describe('Redis Cluster (3 masters)', () => {
  test('exactness through createRedisClient("redis+cluster://…"), partners spread over the nodes', async (t) => {
    const cluster = await startRedisCluster(t);
    const a = quotaClient(t, cluster.url);
    const b = quotaClient(t, cluster.url);
    await Promise.all([waitForReady(a), waitForReady(b)]);
    const stores = [new RedisQuotaStore(a, EXACTNESS), new RedisQuotaStore(b, EXACTNESS)];
    const partners = ['acme', 'globex', 'initech', 'umbrella', 'hooli'];
    for (const [round, partner] of partners.entries()) {
      assert.equal(await exactness(stores, partner, T0 + round), 100, `round ${round} (${partner})`);
    }
    // every partner's keys on one node (one slot), the partners on more than one node
    const perNode = await Promise.all(
      cluster.nodes.map(async (node) => {
        const keys = await node.client().keys('*');
        return new Set(keys.filter((k) => !k.includes(':rid:')).map((k) => /^\{q:([^}]+)\}/.exec(k)?.[1]));
      }),
    );
    const nodesUsed = perNode.filter((set) => set.size > 0).length;
    assert.ok(nodesUsed >= 2, `partners on ${nodesUsed} node(s)`);
    for (const partner of partners) {
      assert.equal(perNode.filter((set) => set.has(partner)).length, 1, `${partner}: one node`);
    }
  });

  test("route limits: a shared limit of 100 holds exactly across two stores; keys in the route's slot; a cross-slot mix is refused, not half-charged", async (t) => {
    const cluster = await startRedisCluster(t);
    const a = quotaClient(t, cluster.url);
    const b = quotaClient(t, cluster.url);
    await Promise.all([waitForReady(a), waitForReady(b)]);
    const stores = [new RedisQuotaStore(a, EXACTNESS), new RedisQuotaStore(b, EXACTNESS)];
    // As the quota stage builds them: an anonymous caller's charge is owned by the route.
    const shared: LimitSpec = {
      id: 'upstream',
      algorithm: 'gcra',
      limit: 100,
      periodMs: 86_400_000,
      burst: 100,
      cost: 1,
      shadow: false,
      scope: { owner: 'r:shared', key: 'all:upstream' },
    };
    const perSource: LimitSpec = {
      ...shared,
      id: 'per-address',
      limit: 1000,
      burst: 1000,
      scope: { owner: 'r:shared', key: 'src:198.51.100.7/32:per-address' },
    };
    const results = await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        (stores[i % 2] as RedisQuotaStore).charge({
          partner: 'r:shared',
          requestId: `shared-${i}`,
          limits: [shared, perSource],
          nowMs: T0,
        }),
      ),
    );
    assert.equal(results.filter((r) => r.allowed).length, 100);
    const holders = await Promise.all(cluster.nodes.map((node) => node.client().keys('{q:r:shared}:*')));
    assert.equal(holders.filter((keys) => keys.length > 0).length, 1, "one node holds the route's keys");
    assert.ok(holders.flat().includes('{q:r:shared}:all:upstream'), holders.flat().join());

    // A partner with its own limits and a per: route limit: two slots, one script call impossible.
    const own: LimitSpec = { ...shared, id: 'own', scope: undefined };
    await assert.rejects(
      (stores[0] as RedisQuotaStore).charge({
        partner: 'acme',
        requestId: 'mix',
        limits: [own, shared],
        nowMs: T0,
      }),
      (err: unknown) => err instanceof RangeError && /Redis Cluster/.test(err.message),
    );
    const acmeKeys = await Promise.all(cluster.nodes.map((node) => node.client().keys('{q:acme}*')));
    assert.deepEqual(acmeKeys.flat(), [], 'nothing charged');
  });
});

describe('timeouts judge Redis, not our event loop', () => {
  const unit: LimitSpec = {
    id: 'daily',
    algorithm: 'fixed_window',
    limit: 1000,
    periodMs: 86_400_000,
    burst: 1000,
    window: windowAt('day', 'UTC', T0),
    cost: 1,
    shadow: false,
  };
  /** Spins the CPU for `ms`: our process is late, Redis is not. */
  const busy = (ms: number) => {
    const until = performance.now() + ms;
    while (performance.now() < until) {
      // nothing: a blocked event loop
    }
  };

  test('charges whose replies arrive while our event loop is blocked for 400 ms are not timeouts (100 ms timeout, default client)', async (t) => {
    const server = await startRedis(t);
    const client = createRedisClient(server.url);
    client.on('error', () => {});
    t.after(() => client.disconnect());
    await waitForReady(client);
    const store = new RedisQuotaStore(client, { timeoutMs: 100 });
    const breaker = new StoreBreaker(store);
    await breaker.charge({ partner: 'lag', requestId: '', limits: [unit], nowMs: T0 }); // script loaded
    for (let round = 0; round < 3; round++) {
      const pending = Array.from({ length: 50 }, (_, i) =>
        breaker.charge({ partner: 'lag', requestId: `r${round}-${i}`, limits: [unit], nowMs: T0 }),
      );
      // The charges are written from a setImmediate; block right after, as a burst of Checks would.
      await new Promise<void>((resolve) =>
        setImmediate(() => {
          busy(400);
          resolve();
        }),
      );
      const results = await Promise.allSettled(pending);
      const failed = results.filter((r) => r.status === 'rejected').map((r) => String(r.reason));
      assert.deepEqual(failed, [], `round ${round}: no charge failed`);
      assert.equal(breaker.state(), 'closed');
    }
    assert.equal(await server.client().get(`{q:lag}:daily:${unit.window?.id}`), String(1 + 150));
  });

  test('a Redis that really is slow (DEBUG SLEEP) times out after the store timeout and opens the circuit', async (t) => {
    const { server, store, stall } = await stallableStore(t);
    const breaker = new StoreBreaker(store);
    await breaker.charge({ partner: 'slow', requestId: '', limits: [unit], nowMs: T0 });
    const { asleep } = await stall();
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) =>
        breaker.charge({ partner: 'slow', requestId: `s-${i}`, limits: [unit], nowMs: T0 }),
      ),
    );
    assert.ok(
      results.every((r) => r.status === 'rejected' && r.reason instanceof StoreTimeout),
      results.map((r) => (r.status === 'rejected' ? String(r.reason) : 'allowed')).join(', '),
    );
    assert.equal(breaker.state(), 'open');
    await asleep;
    // Each timed-out charge was applied once Redis woke up, then refunded (guarded by its request id).
    const used = await untilValue(server, `{q:slow}:daily:${unit.window?.id}`, '1');
    assert.equal(used, '1', 'only the first charge stays');
  });

  test('charges without a request id that Redis applies after their timeout are refunded when their late replies come', async (t) => {
    // No request id: a blind refund could undo someone else's charge, so the store waits for the
    // late reply, which says whether the charge applied. The call keeps its request for that.
    const { server, store, stall } = await stallableStore(t);
    await store.charge({ partner: 'anon', requestId: '', limits: [unit], nowMs: T0 });
    const { asleep } = await stall();
    const results = await Promise.allSettled(
      Array.from({ length: 5 }, () =>
        store.charge({ partner: 'anon', requestId: '', limits: [unit], nowMs: T0 }),
      ),
    );
    assert.ok(results.every((r) => r.status === 'rejected' && r.reason instanceof StoreTimeout));
    await asleep;
    const used = await untilValue(server, `{q:anon}:daily:${unit.window?.id}`, '1');
    assert.equal(used, '1', 'the five late charges were taken back');
  });
});
