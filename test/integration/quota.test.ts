// Quotas end to end: the real server (startTestApp) with a RedisQuotaStore on a real redis-server
// started by the test, Checks sent by a client built from Envoy's OFFICIAL protos, partners identified
// by their mTLS principal. Every case asserts what the partner sees (status, problem body, RateLimit
// and Retry-After headers), what Envoy sees (gRPC status), and what Redis holds or was asked
// (keys read with a plain client, INFO commandstats).
//
// Time is an injected clock, fixed unless a test moves it, so every header value is exact: T0 is
// 3 h 25 min 17.123 s before a local midnight of the partners' zone, so a day window always says 12318 s.
// That midnight is at least an hour in the past: the pipeline compares Envoy's (wall-clock) deadline
// with the same injected clock, so a clock behind real time keeps every Check's full deadline, even
// after a test moves it to midnight.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { Clock } from '../../src/clock.js';
import { systemClock } from '../../src/clock.js';
import { DENY_CODES, type DenyCode } from '../../src/errors.js';
import type { BreakerOptions } from '../../src/quota/breaker.js';
import {
  createRedisClient,
  type RedisClientOptions,
  RedisQuotaStore,
  waitForReady,
} from '../../src/quota/redis-store.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { envoyRequest } from '../support/envoy-request.js';
import { OfficialCheckClient, type OfficialCheckResponse } from '../support/official-client.js';
import { freePort } from '../support/processes.js';
import { type RedisServer, startRedis } from '../support/redis.js';

const run = promisify(execFile);

// ---------------------------------------------------------------------------------------------
// Time: a fixed instant, and the calendar of the partners' zone computed by hand (not with luxon)

/** Nepal: UTC+05:45 all year (no DST since 1986), so local boundaries are plain arithmetic. */
const ZONE = 'Asia/Kathmandu';
const ZONE_OFFSET_MS = (5 * 60 + 45) * 60_000;
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

/** A local Kathmandu midnight at least an hour before now (a midnight falls at 18:15 UTC). */
const PAST_MIDNIGHT = Math.floor((Date.now() - HOUR_MS + ZONE_OFFSET_MS) / DAY_MS) * DAY_MS - ZONE_OFFSET_MS;
/** How long before that midnight T0 is: 3 h 25 min 17.123 s, an odd millisecond so rounding shows. */
const BEFORE_MIDNIGHT_MS = ((3 * 60 + 25) * 60 + 17) * 1000 + 123;
/**
 * The tests' "now": 20:34:42.877 local time, at least an hour behind the wall clock (see the header),
 * so every Check keeps its deadline even after a test moves the clock to midnight.
 */
const T0 = PAST_MIDNIGHT - BEFORE_MIDNIGHT_MS;
/** ceil(3 h 25 min 17.123 s): what a day window's reset and Retry-After say at T0. */
const MIDNIGHT_S = 12_318;
/** ceil(25 min 17.123 s): to the end of the local hour (Kathmandu's hours start at :15 UTC). */
const HOUR_END_S = 1518;

/** ms from `at` to the first instant of the next local calendar month. */
function untilLocalMonthEnd(at: number): number {
  const local = new Date(at + ZONE_OFFSET_MS);
  return Date.UTC(local.getUTCFullYear(), local.getUTCMonth() + 1, 1) - ZONE_OFFSET_MS - at;
}

/** The local calendar day of `at`, as the day window's key names it. */
const localDay = (at: number) => new Date(at + ZONE_OFFSET_MS).toISOString().slice(0, 10);
const ceilSeconds = (ms: number) => Math.ceil(ms / 1000);

interface FakeClock extends Clock {
  advance(ms: number): void;
}

function fakeClock(start = T0): FakeClock {
  let now = start;
  return {
    now: () => now,
    advance: (ms) => {
      now += ms;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The catalog: routes shared by every test, partners (and their limits) per test

type Limit = Record<string, unknown>;

const principalOf = (partner: string) => `spiffe://partners.example.com/${partner}`;

function partner(id: string, limits: readonly Limit[], extra: Record<string, unknown> = {}) {
  return { id, name: id, time_zone: ZONE, identities: { principals: [principalOf(id)] }, limits, ...extra };
}

const REPLICAS = 4;

const STANDARD_PLAN = {
  name: 'standard',
  limits: [
    { name: 'per-minute', algorithm: 'gcra', limit: 10, period: '1m' },
    { name: 'daily', algorithm: 'fixed_window', limit: 1000, window: 'day' },
    { name: 'monthly', algorithm: 'fixed_window', limit: 100_000, window: 'month', shadow: true },
  ],
};

/** A catalog as JSON (which is YAML): the routes below, the standard plan and these partners. */
function catalogText(partners: readonly object[]): string {
  return JSON.stringify({
    version_name: 'quota-tests',
    settings: { quotas: { replicas: REPLICAS, idempotency_seconds: 600 } },
    plans: [STANDARD_PLAN],
    partners,
    routes: [
      { name: 'orders', match: { path: { prefix: '/v1/orders' } } },
      { name: 'legacy', match: { path: { prefix: '/v1/legacy' } }, quota: { headers: 'legacy' } },
      { name: 'open', match: { path: { prefix: '/v1/open' } }, quota: { on_store_error: 'fail_open' } },
      { name: 'uploads', match: { path: { prefix: '/v1/uploads' } } },
      { name: 'public', match: { path: { prefix: '/v1/public' } }, identity: { required: false } },
      {
        name: 'shared',
        match: { path: { prefix: '/v1/shared' } },
        identity: { required: false },
        quota: {
          limits: [{ name: 'upstream', algorithm: 'fixed_window', limit: 100, window: 'day', per: 'route' }],
        },
      },
      {
        name: 'anon',
        match: { path: { prefix: '/v1/anon' } },
        identity: { required: false },
        quota: {
          limits: [
            { name: 'per-address', algorithm: 'sliding_window', limit: 10, period: '1m', per: 'source' },
            { name: 'each-partner', algorithm: 'gcra', limit: 3, period: '1m', per: 'partner' },
          ],
        },
      },
      { name: 'scanned', match: { path: { prefix: '/v1/scanned' } }, content: { scan: {} } },
    ],
  });
}

// ---------------------------------------------------------------------------------------------
// Harness

interface CheckSpec {
  /** Identified by mTLS principal; none = anonymous. */
  readonly partner?: string;
  readonly path?: string;
  readonly method?: string;
  readonly requestId?: string;
  readonly body?: Buffer;
  readonly headers?: Record<string, string>;
  /** The client address Envoy reports (default 192.0.2.10). */
  readonly source?: string;
}

interface Problem {
  readonly type: string;
  readonly title: string;
  readonly status: number;
  readonly code: string;
  readonly detail: string;
  readonly request_id: string;
  readonly next_step?: string;
  readonly retry_after?: number;
}

/** One answer, as Envoy and the partner see it. */
interface Answer {
  readonly allowed: boolean;
  /** The decision code (dynamic metadata). */
  readonly code: string;
  readonly grpc: number;
  /** Envoy's HTTP status enum name on a denial. */
  readonly http: string | undefined;
  /** Headers for the partner: response_headers_to_add on allow, the denied response's headers. */
  readonly headers: Readonly<Record<string, string>>;
  readonly problem: Problem | undefined;
}

const headerMap = (options: { header: { key: string; value: string } }[] | undefined) =>
  Object.fromEntries((options ?? []).map((o) => [o.header.key, o.header.value]));

function read(res: OfficialCheckResponse): Answer {
  const allowed = res.http_response === 'ok_response';
  const body = res.denied_response?.body;
  return {
    allowed,
    code: res.dynamic_metadata?.fields.code?.stringValue ?? '',
    grpc: res.status?.code ?? 0,
    http: res.denied_response?.status.code,
    headers: headerMap(allowed ? res.ok_response?.response_headers_to_add : res.denied_response?.headers),
    problem: body ? (JSON.parse(body) as Problem) : undefined,
  };
}

const HTTP_NAMES: Readonly<Record<number, string>> = { 429: 'TooManyRequests', 503: 'ServiceUnavailable' };

function assertAllowed(a: Answer, what = ''): void {
  assert.equal(a.allowed, true, `${what} expected allowed, got ${a.code}: ${a.problem?.detail ?? ''}`);
  assert.equal(a.code, 'allowed', what);
  assert.equal(a.grpc, 0, what);
}

function assertDenied(a: Answer, code: DenyCode, what = ''): Problem {
  const spec = DENY_CODES[code];
  assert.equal(a.allowed, false, `${what} expected ${code}, got allowed`);
  assert.equal(a.code, code, what);
  assert.equal(a.grpc, spec.grpc, `${what} gRPC status`);
  assert.equal(a.http, HTTP_NAMES[spec.http], `${what} HTTP status`);
  const problem = a.problem;
  assert.ok(problem, `${what} a problem body`);
  assert.equal(problem.code, code);
  assert.equal(problem.status, spec.http);
  assert.equal(problem.title, spec.title);
  return problem;
}

interface Harness extends TestApp {
  readonly client: OfficialCheckClient;
  check(spec: CheckSpec, timeoutMs?: number): Promise<Answer>;
  metrics(): Promise<string>;
}

interface StartOptions {
  readonly partners: readonly object[];
  readonly clock: Clock;
  /** The shared store: a RedisQuotaStore on its own ioredis client (createRedisClient). */
  readonly redis?: RedisServer;
  readonly redisOptions?: RedisClientOptions;
  readonly breaker?: BreakerOptions;
  /** RedisQuotaStoreOptions.timeoutMs. */
  readonly storeTimeoutMs?: number;
  /** clamd's address (here: a closed port, so that every scan fails). */
  readonly clamd?: string;
}

async function startPortcullis(t: TestContext, o: StartOptions): Promise<Harness> {
  let quotaStore: RedisQuotaStore | undefined;
  if (o.redis) {
    const redis = createRedisClient(o.redis.url, o.redisOptions);
    redis.on('error', () => {}); // as `serve` does: it reconnects by itself, failures surface per call
    t.after(() => redis.disconnect());
    await waitForReady(redis);
    quotaStore = new RedisQuotaStore(redis, {
      idempotencyMs: 600_000,
      ...(o.storeTimeoutMs ? { timeoutMs: o.storeTimeoutMs } : {}),
    });
  }
  const server = await startTestApp(t, {
    catalogText: catalogText(o.partners),
    clock: o.clock,
    ...(quotaStore ? { quotaStore } : {}),
    ...(o.breaker ? { breaker: o.breaker } : {}),
    ...(o.clamd ? { clamd: { address: o.clamd, maxBytes: 1 << 20 } } : {}),
  });
  const client = new OfficialCheckClient(server.address);
  t.after(() => client.close());
  return {
    ...server,
    client,
    check: async (spec, timeoutMs = 5000) => {
      const request = envoyRequest({
        method: spec.method ?? (spec.body ? 'POST' : 'GET'),
        path: spec.path ?? '/v1/orders/1',
        principal: spec.partner ? principalOf(spec.partner) : '',
        ...(spec.requestId ? { requestId: spec.requestId } : {}),
        ...(spec.body ? { body: spec.body } : {}),
        ...(spec.headers ? { headers: spec.headers } : {}),
        ...(spec.source ? { sourceAddress: spec.source } : {}),
      });
      return read(await client.check(request, timeoutMs));
    },
    metrics: async () => (await fetch(`${server.adminUrl}/metrics`)).text(),
  };
}

/** A sample of a Prometheus text exposition with exactly these labels (any order); undefined if none. */
function sample(text: string, name: string, labels: Readonly<Record<string, string>>): number | undefined {
  const wanted = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort();
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const got = (match[2] ?? '')
      .split(/,(?=[a-zA-Z_]+=")/)
      .filter(Boolean)
      .sort();
    if (JSON.stringify(got) === JSON.stringify(wanted)) return Number(match[3]);
  }
  return undefined;
}

function commandStats(info: string): Record<string, number> {
  const stats: Record<string, number> = {};
  for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    stats[match[1] as string] = Number(match[2]);
  }
  delete stats['config|resetstat'];
  return stats;
}

/** The key of a partner's day window (fixed_window `window: day`), as the Redis store names it. */
const dayKey = (partnerId: string, limit: string, at = T0) => `{q:${partnerId}}:${limit}:${localDay(at)}`;

const count = <T>(items: readonly T[], predicate: (item: T) => boolean) => items.filter(predicate).length;

// ---------------------------------------------------------------------------------------------

describe('exactness', () => {
  test('two instances, one redis-server: 1000 concurrent Checks against a limit of 100 → exactly 100 allowed, 5 times', async (t) => {
    const redis = await startRedis(t);
    const clock = fakeClock();
    // Round r uses partner ex-r; even rounds a calendar-day limit, odd rounds a gcra bucket of 100
    // refilling over a day (one unit per 864 s).
    const rounds = [0, 1, 2, 3, 4];
    const partners = rounds.map((r) =>
      partner(`ex-${r}`, [
        r % 2 === 0
          ? { name: 'cap', algorithm: 'fixed_window', limit: 100, window: 'day' }
          : { name: 'cap', algorithm: 'gcra', limit: 100, period: '1d', burst: 100 },
      ]),
    );
    // Exactness is the script's, not the timeouts': give 1000 Checks in one process room to finish.
    const generous = {
      redisOptions: { commandTimeoutMs: 10_000, connectTimeoutMs: 10_000 },
      storeTimeoutMs: 10_000,
    };
    const a = await startPortcullis(t, { partners, clock, redis, ...generous });
    const b = await startPortcullis(t, { partners, clock, redis, ...generous });
    assert.notEqual(a.address, b.address);
    const plain = redis.client();

    for (const r of rounds) {
      const id = `ex-${r}`;
      // All 1000 in flight at once, alternating instances; yielding to the event loop every 20 lets
      // both channels flush as they fill, so the two instances' charges interleave in Redis.
      const pending: Promise<Answer>[] = [];
      for (let i = 0; i < 1000; i++) {
        pending.push((i % 2 === 0 ? a : b).check({ partner: id, requestId: `${id}-req-${i}` }, 20_000));
        if (i % 20 === 19) await new Promise((resolve) => setImmediate(resolve));
      }
      const answers = await Promise.all(pending);
      const allowed = answers.filter((x) => x.allowed);
      const refused = answers.filter((x) => !x.allowed);
      assert.equal(allowed.length, 100, `round ${r}: allowed`);
      assert.equal(refused.length, 900, `round ${r}: refused`);
      for (const x of allowed) assertAllowed(x, `round ${r}`);
      for (const x of refused) assertDenied(x, 'quota_exceeded', `round ${r}`);
      const allowedBy = (from: number) => count(answers, (x) => x.allowed && answers.indexOf(x) % 2 === from);
      t.diagnostic(`round ${r}: allowed by instance a ${allowedBy(0)}, by b ${allowedBy(1)}`);
      // and Redis holds exactly 100 charges
      if (r % 2 === 0) {
        assert.equal(await plain.get(dayKey(id, 'cap')), '100', `round ${r}: the day counter`);
      } else {
        // gcra: TAT = now + 100 · T, T = 864 000 ms
        assert.equal(await plain.get(`{q:${id}}:cap`), `${T0 + 100 * 864_000}:0`, `round ${r}: the TAT`);
      }
    }
  });
});

describe('stacked limits', () => {
  test('when the daily limit refuses, the per-minute gcra state in Redis is unchanged', async (t) => {
    const redis = await startRedis(t);
    const clock = fakeClock();
    const h = await startPortcullis(t, {
      partners: [
        partner('stacked', [
          { name: 'per-minute', algorithm: 'gcra', limit: 60, period: '1m' },
          { name: 'daily', algorithm: 'fixed_window', limit: 3, window: 'day' },
        ]),
      ],
      clock,
      redis,
    });
    const plain = redis.client();
    const gcraKey = '{q:stacked}:per-minute';
    for (let i = 0; i < 3; i++) assertAllowed(await h.check({ partner: 'stacked' }), `request ${i}`);
    const before = await plain.get(gcraKey);
    assert.equal(before, `${T0 + 3 * 1000}:0`, 'three charges at T0: TAT = T0 + 3 · 1 s');
    assert.equal(await plain.get(dayKey('stacked', 'daily')), '3');

    const refused = await h.check({ partner: 'stacked' });
    const problem = assertDenied(refused, 'quota_exceeded');
    assert.match(problem.detail, /^The limit "daily" \(3 per day\) is exhausted/);
    assert.equal(await plain.get(gcraKey), before, 'the per-minute state did not move');
    assert.equal(await plain.get(dayKey('stacked', 'daily')), '3');
    // the partner sees the per-minute limit untouched too
    assert.match(
      refused.headers.ratelimit ?? '',
      new RegExp(`^"per-minute";r=57;t=3, "daily";r=0;t=${MIDNIGHT_S}$`),
    );
    const line = h.logs.decisions().at(-1);
    assert.equal(line?.code, 'quota_exceeded');
    assert.match(String(line?.reason), /^refused by daily\b/);
  });
});

describe('idempotency', () => {
  test('the same x-request-id twice is charged once; the retry is still allowed', async (t) => {
    const redis = await startRedis(t);
    const clock = fakeClock();
    const h = await startPortcullis(t, {
      partners: [partner('retry', [{ name: 'daily', algorithm: 'fixed_window', limit: 10, window: 'day' }])],
      clock,
      redis,
    });
    const plain = redis.client();
    const first = await h.check({ partner: 'retry', requestId: 'envoy-retry-1' });
    const again = await h.check({ partner: 'retry', requestId: 'envoy-retry-1' });
    assertAllowed(first);
    assertAllowed(again, 'the retried Check');
    const left = (a: Answer) => /"daily";r=(\d+);/.exec(a.headers.ratelimit ?? '')?.[1];
    assert.equal(left(first), '9');
    assert.equal(left(again), '9', 'the retry sees the same remaining');
    assert.equal(await plain.get(dayKey('retry', 'daily')), '1', 'charged once');
    // Scoped by route and the set of limits charged.
    assert.equal(await plain.get('{q:retry}:rid:orders|daily:envoy-retry-1'), String(T0));
    const next = await h.check({ partner: 'retry', requestId: 'envoy-retry-2' });
    assert.equal(left(next), '8', 'another request id is charged');
    assert.equal(await plain.get(dayKey('retry', 'daily')), '2');
  });
});

describe('headers', () => {
  // burst: gcra 6 per minute with a bucket of 2 → one unit every 10 s after the first two.
  const BURST = { name: 'burst', algorithm: 'gcra', limit: 6, period: '1m', burst: 2 };
  const DAILY = { name: 'daily', algorithm: 'fixed_window', limit: 1000, window: 'day' };

  test('allow carries RateLimit-Policy and RateLimit with exact values; 429 carries Retry-After and names the limit', async (t) => {
    const redis = await startRedis(t);
    const clock = fakeClock();
    const h = await startPortcullis(t, { partners: [partner('hdr', [BURST, DAILY])], clock, redis });
    const toMidnight = MIDNIGHT_S;
    // gcra's policy item is its bucket: q = burst, w = burst · period / limit = 20 s.
    const policy = '"burst";q=2;w=20, "daily";q=1000;w=86400';

    const first = await h.check({ partner: 'hdr' });
    assertAllowed(first);
    assert.deepEqual(first.headers, {
      'ratelimit-policy': policy,
      ratelimit: `"burst";r=1;t=10, "daily";r=999;t=${toMidnight}`,
    });
    const second = await h.check({ partner: 'hdr' });
    assertAllowed(second);
    assert.equal(second.headers.ratelimit, `"burst";r=0;t=20, "daily";r=998;t=${toMidnight}`);

    const third = await h.check({ partner: 'hdr', requestId: 'hdr-refused' });
    const problem = assertDenied(third, 'quota_exceeded');
    // One truth: the refusing limit's `t` is its Retry-After (when the cost fits), not its full reset.
    assert.deepEqual(third.headers, {
      'content-type': 'application/problem+json',
      'ratelimit-policy': policy,
      ratelimit: `"burst";r=0;t=10, "daily";r=998;t=${toMidnight}`,
      'retry-after': '10',
    });
    assert.equal(problem.retry_after, 10);
    assert.equal(problem.detail, 'The limit "burst" (6 per minute) is exhausted; retry in 10 s.');
    assert.equal(problem.request_id, 'hdr-refused');

    // Retry-After is right to the second: 1 ms early is still refused, on time is allowed.
    clock.advance(9_999);
    const early = await h.check({ partner: 'hdr' });
    assertDenied(early, 'quota_exceeded');
    assert.equal(early.headers['retry-after'], '1');
    clock.advance(1);
    assertAllowed(await h.check({ partner: 'hdr' }), 'at T0 + 10 s');
  });

  test('a calendar-day limit: Retry-After is the seconds until midnight in the partner time zone', async (t) => {
    const redis = await startRedis(t);
    const clock = fakeClock();
    const h = await startPortcullis(t, {
      partners: [partner('daily1', [{ name: 'daily', algorithm: 'fixed_window', limit: 1, window: 'day' }])],
      clock,
      redis,
    });
    assertAllowed(await h.check({ partner: 'daily1' }));
    const refused = await h.check({ partner: 'daily1' });
    const problem = assertDenied(refused, 'quota_exceeded');
    assert.equal(refused.headers['retry-after'], String(MIDNIGHT_S));
    assert.equal(refused.headers.ratelimit, `"daily";r=0;t=${MIDNIGHT_S}`);
    assert.equal(problem.detail, `The limit "daily" (1 per day) is exhausted; retry in ${MIDNIGHT_S} s.`);
    // at local midnight a new window (a new key) starts
    clock.advance(BEFORE_MIDNIGHT_MS);
    const next = await h.check({ partner: 'daily1' });
    assertAllowed(next, 'after local midnight');
    assert.equal(next.headers.ratelimit, '"daily";r=0;t=86400');
    assert.equal(await redis.client().get(dayKey('daily1', 'daily', PAST_MIDNIGHT)), '1');
  });

  test('a route with quota.headers: legacy gets X-RateLimit-Limit/Remaining/Reset of the tightest limit', async (t) => {
    const redis = await startRedis(t);
    const clock = fakeClock();
    const h = await startPortcullis(t, {
      partners: [
        partner('old', [
          { name: 'per-minute', algorithm: 'gcra', limit: 100, period: '1m' },
          { name: 'hourly', algorithm: 'fixed_window', limit: 2, window: 'hour' },
        ]),
      ],
      clock,
      redis,
    });
    // Kathmandu's hours start at :15 UTC: the offset is part of the answer (HOUR_END_S).
    const toHourEnd = HOUR_END_S;
    const first = await h.check({ partner: 'old', path: '/v1/legacy/x' });
    assertAllowed(first);
    assert.deepEqual(first.headers, {
      'x-ratelimit-limit': '2',
      'x-ratelimit-remaining': '1',
      'x-ratelimit-reset': String(toHourEnd),
    });
    assertAllowed(await h.check({ partner: 'old', path: '/v1/legacy/x' }));
    const refused = await h.check({ partner: 'old', path: '/v1/legacy/x' });
    assertDenied(refused, 'quota_exceeded');
    assert.deepEqual(refused.headers, {
      'content-type': 'application/problem+json',
      'x-ratelimit-limit': '2',
      'x-ratelimit-remaining': '0',
      'x-ratelimit-reset': String(toHourEnd),
      'retry-after': String(toHourEnd),
    });
  });

  test('legacy headers of a gcra limit whose burst is below its limit: Limit is the bucket, like RateLimit-Policy q', {}, async (t) => {
    const redis = await startRedis(t);
    const clock = fakeClock();
    const h = await startPortcullis(t, { partners: [partner('bursty', [BURST])], clock, redis });
    const first = await h.check({ partner: 'bursty', path: '/v1/legacy/x' });
    assertAllowed(first);
    // One request made: Limit − Remaining must be 1, as RateLimit-Policy's q=2 and r=1 say.
    assert.deepEqual(first.headers, {
      'x-ratelimit-limit': '2',
      'x-ratelimit-remaining': '1',
      'x-ratelimit-reset': '10',
    });
  });
});

describe('cost from body size', () => {
  test('cost: {per_body_bytes: 1024} charges one unit per started KiB (3000 bytes → 3 units)', async (t) => {
    const redis = await startRedis(t);
    const clock = fakeClock();
    const h = await startPortcullis(t, {
      partners: [
        partner('uploader', [
          {
            name: 'upload-kib',
            algorithm: 'fixed_window',
            limit: 100,
            window: 'day',
            cost: { per_body_bytes: 1024 },
            routes: ['uploads'],
          },
        ]),
      ],
      clock,
      redis,
    });
    const plain = redis.client();
    const cases: ReadonlyArray<{ name: string; bytes: number; units: number }> = [
      { name: '3000 bytes', bytes: 3000, units: 3 },
      { name: 'exactly 1024 bytes', bytes: 1024, units: 1 },
      { name: '1025 bytes', bytes: 1025, units: 2 },
      { name: 'an empty body still costs one unit', bytes: 0, units: 1 },
    ];
    let used = 0;
    for (const c of cases) {
      const answer = await h.check({
        partner: 'uploader',
        path: '/v1/uploads/doc',
        method: 'PUT',
        body: Buffer.alloc(c.bytes, 0x61),
      });
      assertAllowed(answer, c.name);
      used += c.units;
      assert.equal(await plain.get(dayKey('uploader', 'upload-kib')), String(used), c.name);
      assert.match(answer.headers.ratelimit ?? '', new RegExp(`^"upload-kib";r=${100 - used};`), c.name);
    }
    // the limit only applies to its route
    const elsewhere = await h.check({ partner: 'uploader', body: Buffer.alloc(5000) });
    assertAllowed(elsewhere);
    assert.equal(elsewhere.headers.ratelimit, undefined);
    assert.equal(await plain.get(dayKey('uploader', 'upload-kib')), String(used));
  });

  test('a body Envoy truncated is charged for its declared content-length, not the bytes forwarded', {}, async (t) => {
    const redis = await startRedis(t);
    const clock = fakeClock();
    const h = await startPortcullis(t, {
      partners: [
        partner('trunc', [
          {
            name: 'upload-kib',
            algorithm: 'fixed_window',
            limit: 100,
            window: 'day',
            cost: { per_body_bytes: 1024 },
          },
        ]),
      ],
      clock,
      redis,
    });
    const answer = await h.check({
      partner: 'trunc',
      body: Buffer.alloc(3000, 0x61),
      headers: { 'content-length': '30000', 'x-envoy-auth-partial-body': 'true' },
    });
    assertAllowed(answer);
    assert.equal(await redis.client().get(dayKey('trunc', 'upload-kib')), '30', 'ceil(30000 / 1024)');
  });

  test('a body cost too large for exact arithmetic is a quota refusal of that partner, not a store failure for everyone', {}, async (t) => {
    const redis = await startRedis(t);
    const clock = fakeClock();
    // loads: burst 10 · 9999 d fits 2^51 at cost 1; a 3000-byte body (cost 3000 · 9999 d) does not.
    const h = await startPortcullis(t, {
      partners: [
        partner('huge', [
          {
            name: 'eternal',
            algorithm: 'gcra',
            limit: 10,
            period: '9999d',
            cost: { per_body_bytes: 1 },
          },
        ]),
        partner('bystander', [{ name: 'daily', algorithm: 'fixed_window', limit: 1000, window: 'day' }]),
      ],
      clock,
      redis,
    });
    const huge: Answer[] = [];
    for (let i = 0; i < 10; i++) huge.push(await h.check({ partner: 'huge', body: Buffer.alloc(3000) }));
    const metrics = await h.metrics();
    const bystander = await h.check({ partner: 'bystander' });
    // everything at once, so that the failure shows the whole picture
    assert.deepEqual(
      {
        huge: [...new Set(huge.map((a) => `${a.code} retry-after=${a.headers['retry-after'] ?? 'none'}`))],
        circuit:
          sample(metrics, 'portcullis_quota_store_state', { state: 'closed' }) === 1
            ? 'closed'
            : 'not closed',
        failures: sample(metrics, 'portcullis_quota_store_failures_total', { behaviour: 'fail_closed' }) ?? 0,
        bystander: bystander.code,
      },
      { huge: ['quota_exceeded retry-after=none'], circuit: 'closed', failures: 0, bystander: 'allowed' },
    );
    assert.match(huge[0]?.problem?.detail ?? '', /costs more than the limit "eternal"/);
  });
});

describe('shadow limits', () => {
  test('a shadow limit exceeded: allowed, counted with shadow="true", in the audit reason, never in headers', async (t) => {
    const redis = await startRedis(t);
    const clock = fakeClock();
    const h = await startPortcullis(t, {
      partners: [
        partner('trial', [
          { name: 'daily', algorithm: 'fixed_window', limit: 1000, window: 'day' },
          { name: 'experiment', algorithm: 'fixed_window', limit: 2, window: 'day', shadow: true },
        ]),
      ],
      clock,
      redis,
    });
    const answers: Answer[] = [];
    for (let i = 0; i < 4; i++) answers.push(await h.check({ partner: 'trial', requestId: `trial-${i}` }));
    for (const [i, a] of answers.entries()) {
      assertAllowed(a, `request ${i}`);
      assert.equal(a.headers['ratelimit-policy'], '"daily";q=1000;w=86400', `request ${i}`);
      assert.match(a.headers.ratelimit ?? '', new RegExp(`^"daily";r=${999 - i};t=\\d+$`), `request ${i}`);
      assert.ok(!JSON.stringify(a.headers).includes('experiment'), `request ${i}: the shadow limit shows`);
    }
    const metrics = await h.metrics();
    const refusals = (shadow: string) =>
      sample(metrics, 'portcullis_quota_refusals_total', { partner: 'trial', limit: 'experiment', shadow });
    assert.equal(refusals('true'), 2, 'requests 3 and 4 would have been refused');
    assert.equal(refusals('false'), undefined);
    const reasons = new Map(h.logs.decisions().map((l) => [l.request_id, String(l.reason)]));
    assert.doesNotMatch(reasons.get('trial-1') ?? '', /shadow/);
    assert.match(reasons.get('trial-2') ?? '', /shadow limits would refuse: experiment/);
    assert.match(reasons.get('trial-3') ?? '', /shadow limits would refuse: experiment/);
    // the shadow counter behaves as an enforced one would: charged only while it fits
    assert.equal(await redis.client().get(dayKey('trial', 'experiment')), '2');
  });
});

describe('over-limit local cache', () => {
  test('after a refusal by a unit-cost limit, the partner is refused without a Redis call until the retry time', async (t) => {
    const redis = await startRedis(t);
    const clock = fakeClock();
    const h = await startPortcullis(t, {
      // one unit every 10 s, a bucket of one
      partners: [partner('hammer', [{ name: 'slow', algorithm: 'gcra', limit: 6, period: '1m', burst: 1 }])],
      clock,
      redis,
    });
    const plain = redis.client();
    assertAllowed(await h.check({ partner: 'hammer' }));
    assertDenied(await h.check({ partner: 'hammer' }), 'quota_exceeded', 'the refusal from Redis');
    await plain.config('RESETSTAT');

    const cached = await Promise.all(Array.from({ length: 20 }, () => h.check({ partner: 'hammer' })));
    for (const a of cached) {
      const problem = assertDenied(a, 'quota_exceeded', 'cached');
      assert.equal(a.headers['retry-after'], '10');
      assert.match(problem.detail, /"slow"/);
    }
    clock.advance(9_999);
    const last = await h.check({ partner: 'hammer' });
    assertDenied(last, 'quota_exceeded', '1 ms before the retry time');
    assert.equal(last.headers['retry-after'], '1');
    assert.equal(commandStats(await plain.info('commandstats')).evalsha, undefined, 'no EVALSHA');
    const reasons = h.logs.decisions().slice(-21);
    assert.ok(reasons.every((l) => /known over the limit \(local cache\)/.test(String(l.reason))));

    clock.advance(1);
    assertAllowed(await h.check({ partner: 'hammer' }), 'at the retry time');
    assert.equal(commandStats(await plain.info('commandstats')).evalsha, 1, 'charged in Redis again');
  });
});

describe('Redis failures', () => {
  test('Redis killed under load: declared behaviour per route, no gRPC error, no unhandled rejection; back within 1 s of its return', async (t) => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    process.on('uncaughtException', onUnhandled);
    t.after(() => {
      process.off('unhandledRejection', onUnhandled);
      process.off('uncaughtException', onUnhandled);
    });

    const redis = await startRedis(t);
    const clock = fakeClock();
    // closedp on the fail_closed route (the default), openp on the fail_open route: 400 a day, so
    // 400 / replicas (4) = 100 per replica while Redis is away.
    const h = await startPortcullis(t, {
      partners: [
        partner('closedp', [{ name: 'daily', algorithm: 'fixed_window', limit: 1_000_000, window: 'day' }]),
        partner('openp', [{ name: 'daily', algorithm: 'fixed_window', limit: 400, window: 'day' }]),
      ],
      clock,
      redis,
    });
    const plain = redis.client();
    const failures = async () => {
      const text = await h.metrics();
      const of = (behaviour: string) =>
        sample(text, 'portcullis_quota_store_failures_total', { behaviour }) ?? 0;
      return { closed: of('fail_closed'), open: of('fail_open') };
    };
    assert.deepEqual(await failures(), { closed: 0, open: 0 });

    type Phase = 'before' | 'killing' | 'down';
    interface Sent {
      readonly phase: Phase;
      readonly partner: 'closedp' | 'openp';
      readonly answer?: Answer;
      readonly error?: unknown;
    }
    const sent: Promise<Sent>[] = [];
    let phase: Phase = 'before';
    let killed: Promise<void> | undefined;
    let n = 0;
    for (let wave = 0; wave < 40; wave++) {
      if (wave === 10) {
        phase = 'killing';
        killed = redis.kill().then(() => {
          phase = 'down';
        });
      }
      for (let i = 0; i < 50; i++) {
        const p = i % 2 === 0 ? 'closedp' : 'openp';
        const at: Phase = phase;
        sent.push(
          h
            .check({
              partner: p,
              path: p === 'closedp' ? '/v1/orders/1' : '/v1/open/1',
              requestId: `load-${n++}`,
            })
            .then(
              (answer): Sent => ({ phase: at, partner: p, answer }),
              (error: unknown): Sent => ({ phase: at, partner: p, error }),
            ),
        );
      }
      await sleep(50);
    }
    await killed;
    const results = await Promise.all(sent);
    assert.equal(results.length, 2000);
    assert.deepEqual(
      results
        .filter((r) => r.error !== undefined)
        .map((r) => `${r.phase} ${r.partner} ${String(r.error).slice(0, 40)}`),
      [],
      'no gRPC errors',
    );
    const answers = (p: Sent['partner'], ph: Phase) =>
      results.filter((r) => r.partner === p && r.phase === ph).map((r) => r.answer as Answer);

    // Before the kill: charged in Redis (a Check still in flight at the kill may meet the failure).
    for (const a of answers('closedp', 'before')) {
      if (!a.allowed) assertDenied(a, 'quota_unavailable', 'closedp, in flight at the kill');
    }
    for (const a of [...answers('openp', 'before'), ...answers('openp', 'killing')]) {
      if (!a.allowed) assertDenied(a, 'quota_exceeded', 'openp, in flight at the kill');
    }
    assert.ok(count(answers('closedp', 'before'), (a) => a.allowed) > 0, 'some were allowed before');
    // Redis gone: fail_closed → 503 quota_unavailable, every time.
    const closedDown = answers('closedp', 'down');
    assert.ok(closedDown.length >= 400, `${closedDown.length} Checks after the kill`);
    for (const a of closedDown) {
      const problem = assertDenied(a, 'quota_unavailable', 'closedp, Redis down');
      assert.equal(problem.detail, DENY_CODES.quota_unavailable.detail);
    }
    // fail_open → charged to this replica's share: exactly 400 / 4 allowed, then 429 from the local limiter.
    const openDown = answers('openp', 'down');
    for (const a of openDown) if (!a.allowed) assertDenied(a, 'quota_exceeded', 'openp, Redis down');
    for (const a of answers('closedp', 'killing')) {
      if (!a.allowed) assertDenied(a, 'quota_unavailable', 'closedp, sent during the kill');
    }
    const local = h.logs
      .decisions()
      .filter(
        (l) => l.partner === 'openp' && l.decision === 'allow' && /replica's share/.test(String(l.reason)),
      );
    assert.equal(local.length, 400 / REPLICAS, 'the local limiter admits the limit divided by the replicas');
    assert.ok(count(openDown, (a) => !a.allowed) > 0, 'and refuses beyond it');

    // Metrics while Redis is down: the circuit is open, failures counted per behaviour.
    const first = await failures();
    assert.ok(first.closed > 0 && first.open > 0, JSON.stringify(first));
    let open: number | undefined;
    for (const deadline = Date.now() + 3000; Date.now() < deadline; ) {
      assertDenied(await h.check({ partner: 'closedp' }), 'quota_unavailable', 'still down');
      open = sample(await h.metrics(), 'portcullis_quota_store_state', { state: 'open' });
      if (open === 1) break;
      await sleep(10);
    }
    assert.equal(open, 1, 'portcullis_quota_store_state{state="open"} 1');
    const second = await failures();
    assert.ok(second.closed > first.closed, `failures grow: ${first.closed} → ${second.closed}`);
    t.diagnostic(`quota store failures while down: ${JSON.stringify(second)}`);

    // Redis back on the same port: Checks are charged in Redis again within a second.
    await redis.restart();
    const back = performance.now();
    let delayMs = Number.POSITIVE_INFINITY;
    let polls = 0;
    for (const deadline = back + 5000; performance.now() < deadline; ) {
      polls++;
      const a = await h.check({ partner: 'closedp', requestId: `poll-${polls}` });
      if (a.allowed) {
        delayMs = performance.now() - back;
        break;
      }
      assertDenied(a, 'quota_unavailable', 'before recovery');
      await sleep(10);
    }
    t.diagnostic(`recovery after redis-server answered PING: ${delayMs.toFixed(0)} ms (${polls} polls)`);
    assert.ok(Number.isFinite(delayMs), 'Checks are charged in Redis again (within the 5 s poll)');
    assert.equal(await plain.get(dayKey('closedp', 'daily')), '1', 'the allowed Check was charged in Redis');
    // The circuit recovers by a ramp (10 %, 50 %, all): wait until it is closed again.
    for (const deadline = Date.now() + 3000; Date.now() < deadline; await sleep(20)) {
      if (sample(await h.metrics(), 'portcullis_quota_store_state', { state: 'closed' }) === 1) break;
    }
    assertAllowed(await h.check({ partner: 'closedp' }));
    assert.equal(await plain.get(dayKey('closedp', 'daily')), '2');
    assert.equal(sample(await h.metrics(), 'portcullis_quota_store_state', { state: 'closed' }), 1);
    assert.deepEqual(unhandled, [], 'no unhandled rejection or uncaught exception');
    await t.test('normal service within 1 s of Redis answering PING', {}, () => {
      assert.ok(delayMs <= 1000, `normal service ${delayMs.toFixed(0)} ms after Redis returned`);
    });
  });

  test('after Redis returns, a partner refused by the fail-open local limiter is charged in Redis again', {}, async (t) => {
    const redis = await startRedis(t);
    const clock = fakeClock();
    const h = await startPortcullis(t, {
      partners: [partner('openp', [{ name: 'daily', algorithm: 'fixed_window', limit: 8, window: 'day' }])],
      clock,
      redis,
    });
    await redis.kill();
    const down: Answer[] = [];
    for (let i = 0; i < 3; i++) down.push(await h.check({ partner: 'openp', path: '/v1/open/1' }));
    // 8 / 4 replicas = 2 locally, then refused
    assert.deepEqual(
      down.map((a) => a.code),
      ['allowed', 'allowed', 'quota_exceeded'],
    );
    await redis.restart();
    let answer: Answer | undefined;
    for (const deadline = performance.now() + 3000; performance.now() < deadline; ) {
      answer = await h.check({ partner: 'openp', path: '/v1/open/1' });
      if (answer.allowed) break;
      await sleep(20);
    }
    assert.ok(answer);
    assertAllowed(answer, 'Redis has 0 of 8 used');
    assert.equal(await redis.client().get(dayKey('openp', 'daily')), '1');
  });
});

describe('one round trip', () => {
  test('N allowed Checks with three stacked limits cost exactly N EVALSHA', async (t) => {
    const redis = await startRedis(t);
    const clock = fakeClock();
    const trio = [
      { name: 'per-second', algorithm: 'gcra', limit: 1000, period: '1s' },
      { name: 'hourly', algorithm: 'sliding_window', limit: 10_000, period: '1h' },
      { name: 'daily', algorithm: 'fixed_window', limit: 100_000, window: 'day' },
    ];
    const h = await startPortcullis(t, {
      partners: [partner('trio', trio), partner('warm', trio)],
      clock,
      redis,
    });
    const plain = redis.client();
    assertAllowed(await h.check({ partner: 'warm' }), 'warm-up (loads the script)');
    await plain.config('RESETSTAT');
    const N = 50;
    for (let i = 0; i < N; i++) {
      clock.advance(1);
      const a = await h.check({ partner: 'trio', requestId: `trio-${i}` });
      assertAllowed(a, `Check ${i}`);
      assert.match(
        a.headers.ratelimit ?? '',
        /^"per-second";r=\d+;t=\d+, "hourly";r=\d+;t=\d+, "daily";r=\d+/,
      );
    }
    const stats = commandStats(await plain.info('commandstats'));
    t.diagnostic(`commandstats after ${N} Checks: ${JSON.stringify(stats)}`);
    t.diagnostic(
      `per Check: ${Object.entries(stats)
        .map(([cmd, calls]) => `${cmd} ${calls / N}`)
        .join(', ')}`,
    );
    // From the client: one EVALSHA per Check and nothing else. Inside the script (Redis counts those
    // too): a GET and a SET … PX per limit, and for the request id.
    assert.deepEqual(stats, { evalsha: N, get: 4 * N, set: 4 * N });
  });
});

describe('usage', () => {
  test('GET /v1/partners/{id}/quota on the admin port lists each limit with used, remaining and reset; the CLI prints it', async (t) => {
    const redis = await startRedis(t);
    const clock = fakeClock();
    const h = await startPortcullis(t, {
      partners: [
        partner(
          'acme',
          [
            {
              name: 'uploads',
              algorithm: 'sliding_window',
              limit: 500,
              period: '1h',
              routes: ['uploads'],
              methods: ['PUT'],
            },
          ],
          { plan: 'standard' },
        ),
      ],
      clock,
      redis,
    });
    for (let i = 0; i < 3; i++) assertAllowed(await h.check({ partner: 'acme' }));

    const res = await fetch(`${h.adminUrl}/v1/partners/acme/quota`);
    assert.equal(res.status, 200);
    const status = (await res.json()) as {
      partner: string;
      time_zone: string;
      limits: { name: string; used: number; remaining: number; reset_seconds: number; shadow: boolean }[];
    };
    assert.equal(status.partner, 'acme');
    assert.equal(status.time_zone, ZONE);
    assert.deepEqual(
      status.limits.map((l) => ({
        name: l.name,
        used: l.used,
        remaining: l.remaining,
        reset: l.reset_seconds,
        shadow: l.shadow,
      })),
      [
        // gcra 10 per minute: 3 used, full again 3 · 6 s later
        { name: 'per-minute', used: 3, remaining: 7, reset: 18, shadow: false },
        {
          name: 'daily',
          used: 3,
          remaining: 997,
          reset: MIDNIGHT_S,
          shadow: false,
        },
        {
          name: 'monthly',
          used: 3,
          remaining: 99_997,
          reset: ceilSeconds(untilLocalMonthEnd(T0)),
          shadow: true,
        },
        // only PUT on uploads: not charged by GET /v1/orders
        { name: 'uploads', used: 0, remaining: 500, reset: 0, shadow: false },
        // the per-partner limit of the route `anon`, inherited by every partner
        { name: 'each-partner', used: 0, remaining: 3, reset: 0, shadow: false },
      ],
    );
    // peeking charged nothing
    assert.equal(await redis.client().get(dayKey('acme', 'daily')), '3');

    const unknown = await fetch(`${h.adminUrl}/v1/partners/nobody/quota`);
    assert.equal(unknown.status, 404);
    assert.deepEqual(await unknown.json(), { status: 'not found', detail: 'no partner "nobody"' });

    const cli = (id: string) =>
      run(
        process.execPath,
        ['--import', 'tsx', 'src/cli/main.ts', 'quota', 'status', '--partner', id, '--admin', h.adminUrl],
        { timeout: 30_000 },
      );
    const [shown, missing] = await Promise.allSettled([cli('acme'), cli('nobody')]);
    if (shown.status !== 'fulfilled') assert.fail(`acme: expected exit 0, got ${String(shown.reason)}`);
    const lines = shown.value.stdout.trimEnd().split('\n');
    assert.equal(lines[0], `partner acme (time zone ${ZONE})`);
    assert.match(lines[1] ?? '', /^LIMIT\s+ALGORITHM\s+QUOTA\s+USED\s+LEFT\s+RESET\s+ROUTES$/);
    assert.match(lines[2] ?? '', /^per-minute\s+gcra\s+10\/minute burst 10\s+3\s+7\s+18s\s+\*$/);
    // Human durations: 12318 s is "3h 25m", not "12318s".
    assert.match(lines[3] ?? '', /^daily\s+fixed_window\s+1000\/day\s+3\s+997\s+3h 25m\s+\*$/);
    assert.match(
      lines[4] ?? '',
      /^monthly \(shadow\)\s+fixed_window\s+100000\/month\s+3\s+99997\s+\d+d( \d+h)?\s+\*$/,
    );
    assert.match(lines[5] ?? '', /^uploads\s+sliding_window\s+500\/hour\s+0\s+500\s+0s\s+uploads$/);
    assert.match(lines[6] ?? '', /^each-partner\s+gcra\s+3\/minute burst 3\s+0\s+3\s+0s\s+anon$/);
    assert.equal(lines.length, 7);
    if (missing.status !== 'rejected') assert.fail('nobody: expected exit 1, got 0');
    const failure = missing.reason as { code: number; stderr: string };
    assert.equal(failure.code, 1);
    assert.equal(failure.stderr, 'portcullis: no partner "nobody"\n');
  });

  test('a gcra limit whose burst is below its limit: a fresh partner has used 0', {}, async (t) => {
    const redis = await startRedis(t);
    const h = await startPortcullis(t, {
      partners: [
        partner('fresh', [{ name: 'rate', algorithm: 'gcra', limit: 600, period: '1m', burst: 10 }]),
      ],
      clock: fakeClock(),
      redis,
    });
    const status = (await (await fetch(`${h.adminUrl}/v1/partners/fresh/quota`)).json()) as {
      limits: { name: string; used: number; remaining: number }[];
    };
    assert.deepEqual(
      status.limits.map((l) => [l.name, l.used, l.remaining]),
      [
        ['rate', 0, 10],
        ['each-partner', 0, 3],
      ],
    );
  });
});

describe('one truth about resets', () => {
  test("a 429's Retry-After equals its RateLimit t and the body's figure, and quota status says the same", async (t) => {
    const redis = await startRedis(t);
    const clock = fakeClock();
    // A sliding window: its full reset (end of the next sub-window) is much later than the moment
    // the next request fits, so a `t` computed from the full reset disagrees with Retry-After.
    const h = await startPortcullis(t, {
      partners: [partner('slide', [{ name: 'slide', algorithm: 'sliding_window', limit: 2, period: '1m' }])],
      clock,
      redis,
    });
    assertAllowed(await h.check({ partner: 'slide' }));
    assertAllowed(await h.check({ partner: 'slide' }));
    const refused = await h.check({ partner: 'slide' });
    const problem = assertDenied(refused, 'quota_exceeded');
    const retry = Number(refused.headers['retry-after']);
    assert.ok(retry > 0, `Retry-After ${refused.headers['retry-after']}`);
    assert.equal(refused.headers.ratelimit, `"slide";r=0;t=${retry}`);
    assert.equal(problem.retry_after, retry);
    assert.equal(problem.detail, `The limit "slide" (2 per minute) is exhausted; retry in ${retry} s.`);
    assert.ok(problem.next_step && problem.next_step.length > 0, 'a next step');
    const status = (await (await fetch(`${h.adminUrl}/v1/partners/slide/quota`)).json()) as {
      limits: { name: string; reset_seconds: number; reset: string }[];
    };
    assert.equal(status.limits[0]?.reset_seconds, retry, 'quota status at the same instant');
    // and it is right: one second early is refused, on time is allowed
    clock.advance(retry * 1000 - 1000);
    assertDenied(await h.check({ partner: 'slide' }), 'quota_exceeded');
    clock.advance(1000);
    assertAllowed(await h.check({ partner: 'slide' }), 'after Retry-After');
  });

  test('the usage ratio of a gcra limit whose burst is above its limit stays in 0..1', async (t) => {
    const redis = await startRedis(t);
    const h = await startPortcullis(t, {
      partners: [
        partner('bursty', [{ name: 'rate', algorithm: 'gcra', limit: 10, period: '1m', burst: 200 }]),
      ],
      clock: fakeClock(),
      redis,
    });
    assertAllowed(await h.check({ partner: 'bursty' }));
    const ratio = sample(await h.metrics(), 'portcullis_quota_usage_ratio', {
      partner: 'bursty',
      limit: 'rate',
    });
    // one unit of a bucket of 200 (the old formula, 1 − remaining / limit, gave 1 − 199 / 10 = −18.9)
    assert.ok(ratio !== undefined && Math.abs(ratio - 1 / 200) < 1e-12, `ratio ${ratio}`);
  });
});

describe('every 503 has Retry-After', () => {
  test('quota_unavailable (Redis down, fail_closed) carries Retry-After and the body repeats it', async (t) => {
    const redis = await startRedis(t);
    const h = await startPortcullis(t, {
      partners: [partner('down', [{ name: 'daily', algorithm: 'fixed_window', limit: 5, window: 'day' }])],
      clock: fakeClock(),
      redis,
    });
    assertAllowed(await h.check({ partner: 'down' }));
    await redis.kill();
    const a = await h.check({ partner: 'down' });
    const problem = assertDenied(a, 'quota_unavailable');
    assert.match(a.headers['retry-after'] ?? '', /^[1-9]\d*$/);
    assert.equal(problem.retry_after, Number(a.headers['retry-after']));
  });
});

describe('route limits', () => {
  test('a route-level shared limit of 100 holds exactly across two replicas', async (t) => {
    const redis = await startRedis(t);
    const clock = fakeClock();
    const generous = {
      redisOptions: { commandTimeoutMs: 10_000, connectTimeoutMs: 10_000 },
      breaker: { timeoutMs: 10_000, resetMs: 500, volumeThreshold: 5 },
    };
    // Partners with plans of their own, and anonymous callers: one counter for all of them.
    const partners = ['s1', 's2', 's3'].map((id) =>
      partner(id, [{ name: 'daily', algorithm: 'fixed_window', limit: 1000, window: 'day' }]),
    );
    const a = await startPortcullis(t, { partners, clock, redis, ...generous });
    const b = await startPortcullis(t, { partners, clock, redis, ...generous });
    const callers = ['s1', 's2', 's3', undefined];
    const pending: Promise<Answer>[] = [];
    for (let i = 0; i < 400; i++) {
      const who = callers[i % callers.length];
      pending.push(
        (i % 2 === 0 ? a : b).check(
          { ...(who ? { partner: who } : {}), path: '/v1/shared/x', requestId: `sh-${i}` },
          20_000,
        ),
      );
      if (i % 20 === 19) await new Promise((resolve) => setImmediate(resolve));
    }
    const answers = await Promise.all(pending);
    assert.equal(
      count(answers, (x) => x.allowed),
      100,
    );
    for (const x of answers.filter((y) => !y.allowed)) {
      const problem = assertDenied(x, 'quota_exceeded');
      assert.match(problem.detail, /"upstream" \(100 per day\)/);
    }
    const plain = redis.client();
    const day = new Date(T0).toISOString().slice(0, 10);
    assert.equal(await plain.get(`{q:r:shared}:all:upstream:${day}`), '100');
    // The partners' own daily limits were charged only for their allowed Checks (all or nothing).
    let partnerCharges = 0;
    for (const id of ['s1', 's2', 's3'])
      partnerCharges += Number((await plain.get(dayKey(id, 'daily'))) ?? 0);
    assert.equal(
      partnerCharges,
      count(answers, (x) => x.allowed && answers.indexOf(x) % 4 !== 3),
    );
  });

  test('a per-source-address limit refuses the 11th request from one address while another address passes', async (t) => {
    const redis = await startRedis(t);
    const h = await startPortcullis(t, { partners: [partner('idp', [])], clock: fakeClock(), redis });
    // The same x-request-id every time: an anonymous caller cannot replay an id to pass uncharged.
    const same = { path: '/v1/anon/a', source: '198.51.100.7', requestId: 'replayed-id' };
    for (let i = 0; i < 10; i++) assertAllowed(await h.check(same), `request ${i + 1}`);
    const eleventh = await h.check(same);
    const problem = assertDenied(eleventh, 'quota_exceeded');
    assert.match(problem.detail, /"per-address" \(10 per minute\)/);
    assert.equal(eleventh.headers['retry-after'], String(problem.retry_after));
    assertAllowed(await h.check({ path: '/v1/anon/a', source: '198.51.100.8' }), 'another address');
    // IPv6: one /64 is one client
    for (let i = 0; i < 10; i++) {
      assertAllowed(await h.check({ path: '/v1/anon/a', source: `2001:db8:1:2::${i + 1}` }), `v6 ${i + 1}`);
    }
    assertDenied(await h.check({ path: '/v1/anon/a', source: '2001:db8:1:2:ffff::9' }), 'quota_exceeded');
    assertAllowed(await h.check({ path: '/v1/anon/a', source: '2001:db8:1:3::1' }), 'another /64');
    const plain = redis.client();
    assert.equal((await plain.get('{q:r:anon}:src:198.51.100.7/32:per-address'))?.split(':')[2], '10');
    assert.equal((await plain.get('{q:r:anon}:src:2001:db8:1:2::/64:per-address'))?.split(':')[2], '10');
    // An identified partner is counted per partner (3 per minute on this route), not per address.
    for (let i = 0; i < 3; i++) {
      assertAllowed(await h.check({ partner: 'idp', path: '/v1/anon/a', source: '198.51.100.7' }));
    }
    const fourth = await h.check({ partner: 'idp', path: '/v1/anon/a', source: '198.51.100.7' });
    assert.match(assertDenied(fourth, 'quota_exceeded').detail, /"each-partner"/);
    assert.ok(await plain.get('{q:idp}:r:anon:each-partner'));
    // quota status lists the route's per-partner limit with the partner's own, at the same figure
    const status = (await (await fetch(`${h.adminUrl}/v1/partners/idp/quota`)).json()) as {
      limits: { name: string; remaining: number; reset_seconds: number; routes: string[] }[];
    };
    const each = status.limits.find((l) => l.name === 'each-partner');
    assert.deepEqual(each?.routes, ['anon']);
    assert.equal(each?.remaining, 0);
    assert.equal(each?.reset_seconds, Number(fourth.headers['retry-after']));
  });
});

describe('anonymous callers', () => {
  test('a route with identity.required: false: anonymous Checks are not charged (no Redis call, no headers)', async (t) => {
    const redis = await startRedis(t);
    const clock = fakeClock();
    const h = await startPortcullis(t, {
      partners: [partner('known', [{ name: 'daily', algorithm: 'fixed_window', limit: 5, window: 'day' }])],
      clock,
      redis,
    });
    const plain = redis.client();
    await plain.config('RESETSTAT');
    for (let i = 0; i < 10; i++) {
      const a = await h.check({ path: '/v1/public/docs' });
      assertAllowed(a, `anonymous ${i}`);
      assert.deepEqual(a.headers, {}, 'no RateLimit headers for nobody');
    }
    assert.equal(await plain.dbsize(), 0);
    assert.equal(commandStats(await plain.info('commandstats')).evalsha, undefined);
    // the same route, identified: charged
    const known = await h.check({ partner: 'known', path: '/v1/public/docs' });
    assertAllowed(known);
    assert.match(known.headers.ratelimit ?? '', /^"daily";r=4;/);
    assert.equal(await plain.get(dayKey('known', 'daily')), '1');
  });
});

// ---------------------------------------------------------------------------------------------
// A partner never pays for our refusal (issue 13 item 4, issue 15 item 5), retries of an allowed
// request are free (13.5), and idempotency is scoped by route and limits (issue 12 finding 10).

/** A redis-server that accepts DEBUG SLEEP: a real Redis that is really slow for a while. */
const slowableRedis = (t: TestContext) => startRedis(t, { args: ['--enable-debug-command', 'yes'] });

/** Blocks Redis itself for `seconds`, from now on; `done` settles when it answers again. */
async function redisSleep(redis: RedisServer, seconds: number): Promise<{ done: Promise<unknown> }> {
  const client = redis.client();
  await client.ping();
  const done = client.call('DEBUG', 'SLEEP', String(seconds));
  await sleep(50); // the command is in Redis, which is asleep
  return { done };
}

/** portcullis_quota_refunds_total{labels} once it reaches `expected` (a refund lands after its answer), or within 3 s. */
async function refunds(h: Harness, labels: Record<string, string>, expected: number): Promise<number> {
  let seen = 0;
  for (const deadline = Date.now() + 3000; Date.now() < deadline; await sleep(20)) {
    seen = sample(await h.metrics(), 'portcullis_quota_refunds_total', labels) ?? 0;
    if (seen >= expected) break;
  }
  return seen;
}

const dayCount = async (redis: RedisServer, id: string, limit = 'daily', at = T0) =>
  Number((await redis.client().get(dayKey(id, limit, at))) ?? 0);

describe('never charged and refused', () => {
  test('a refused scan (scan_unavailable) leaves the quota unchanged in Redis', async (t) => {
    const redis = await startRedis(t);
    const closed = await freePort(); // clamd "at" a closed port: every scan fails (connection refused)
    const h = await startPortcullis(t, {
      partners: [partner('scanp', [{ name: 'daily', algorithm: 'fixed_window', limit: 10, window: 'day' }])],
      clock: fakeClock(),
      redis,
      clamd: `127.0.0.1:${closed}`,
    });
    const body = Buffer.from('{"hello":"world"}');
    for (let i = 0; i < 3; i++) {
      const a = await h.check({
        partner: 'scanp',
        path: '/v1/scanned/1',
        requestId: `scan-${i}`,
        body,
        headers: { 'content-type': 'application/json' },
      });
      assertDenied(a, 'scan_unavailable', `scan ${i}`);
    }
    // The refund is sent as the answer goes out: give it a moment to land.
    let used = -1;
    for (const deadline = Date.now() + 3000; Date.now() < deadline; await sleep(20)) {
      used = await dayCount(redis, 'scanp');
      if (used === 0) break;
    }
    assert.equal(used, 0, 'no unit of the daily limit is used by three refused scans');
    assert.equal(
      await refunds(h, { reason: 'refused', result: 'ok' }, 3),
      3,
      'portcullis_quota_refunds_total counts the three',
    );
    assert.equal(
      await redis.client().exists('{q:scanp}:rid:scanned|daily:scan-0'),
      0,
      'the request id is forgotten',
    );
    // An allowed Check on another route is charged as usual.
    assertAllowed(await h.check({ partner: 'scanp', requestId: 'ok-1' }));
    assert.equal(await dayCount(redis, 'scanp'), 1);
  });

  test('a charge that lands after the Check timed out (deadline_exceeded) is refunded', async (t) => {
    const redis = await slowableRedis(t);
    const h = await startPortcullis(t, {
      partners: [partner('latep', [{ name: 'daily', algorithm: 'fixed_window', limit: 10, window: 'day' }])],
      clock: systemClock, // the deadline is Envoy's, on the wall clock
      redis,
      storeTimeoutMs: 10_000, // the Check's own deadline answers first
    });
    assertAllowed(await h.check({ partner: 'latep', requestId: 'warm' }), 'warm-up');
    const slow = await redisSleep(redis, 2.5);
    // Our answer comes just inside the deadline; on a loaded machine it may reach the client just
    // after it (a gRPC DEADLINE_EXCEEDED): either way the server decided deadline_exceeded.
    const a = await h.check({ partner: 'latep', requestId: 'late-1' }, 1000).catch(() => undefined);
    if (a) assertDenied(a, 'deadline_exceeded', 'Redis asleep past the deadline');
    const decision = h.logs.decisions().find((l) => l.request_id === 'late-1');
    assert.equal(decision?.code, 'deadline_exceeded');
    await slow.done;
    let used = -1;
    for (const deadline = Date.now() + 3000; Date.now() < deadline; await sleep(20)) {
      used = await dayCount(redis, 'latep', 'daily', Date.now());
      if (used === 1) break;
    }
    assert.equal(used, 1, 'only the warm-up stays charged');
  });

  test('a charge whose reply comes after the store timeout (quota_unavailable) is refunded', async (t) => {
    const redis = await slowableRedis(t);
    const h = await startPortcullis(t, {
      partners: [partner('slowp', [{ name: 'daily', algorithm: 'fixed_window', limit: 10, window: 'day' }])],
      clock: fakeClock(),
      redis,
      storeTimeoutMs: 100,
    });
    assertAllowed(await h.check({ partner: 'slowp', requestId: 'warm' }), 'warm-up');
    const slow = redisSleep(redis, 0.6);
    await sleep(50); // DEBUG SLEEP is running
    assertDenied(
      await h.check({ partner: 'slowp', requestId: 'slow-1' }),
      'quota_unavailable',
      'Redis asleep',
    );
    await slow;
    let used = -1;
    for (const deadline = Date.now() + 3000; Date.now() < deadline; await sleep(20)) {
      used = await dayCount(redis, 'slowp');
      if (used === 1) break;
    }
    assert.equal(used, 1, 'the late charge was given back');
    assert.equal(await refunds(h, { reason: 'late_reply', result: 'ok' }, 1), 1, 'and counted');
  });

  test('retries of an allowed request id are allowed while the circuit is open and the partner is over its limit', async (t) => {
    const redis = await startRedis(t);
    const h = await startPortcullis(t, {
      partners: [
        partner('onep', [{ name: 'tight', algorithm: 'gcra', limit: 1, period: '1h', burst: 1 }]),
        partner('busy', [{ name: 'daily', algorithm: 'fixed_window', limit: 1_000_000, window: 'day' }]),
      ],
      clock: fakeClock(),
      redis,
    });
    assertAllowed(await h.check({ partner: 'onep', requestId: 'paid' }), 'the first request');
    assertDenied(await h.check({ partner: 'onep', requestId: 'new-1' }), 'quota_exceeded', 'over the limit');
    assertDenied(await h.check({ partner: 'onep', requestId: 'new-2' }), 'quota_exceeded', 'cached as over');
    for (let i = 0; i < 20; i++)
      assertAllowed(await h.check({ partner: 'onep', requestId: 'paid' }), `retry ${i}`);
    await redis.kill();
    let open: number | undefined;
    for (let i = 0; i < 200 && open !== 1; i++) {
      await h.check({ partner: 'busy', requestId: `down-${i}` }); // another partner's charges fail
      open = sample(await h.metrics(), 'portcullis_quota_store_state', { state: 'open' });
    }
    assert.equal(open, 1, 'the circuit is open');
    for (let i = 0; i < 20; i++) {
      assertAllowed(await h.check({ partner: 'onep', requestId: 'paid' }), `retry ${i} while open`);
    }
    assertDenied(
      await h.check({ partner: 'onep', requestId: 'unknown' }),
      'quota_exceeded',
      'new ids are not',
    );
  });
});

describe('idempotency scope', () => {
  test('one x-request-id reused on two routes charges both routes; a retry on the same route does not', async (t) => {
    const redis = await startRedis(t);
    const h = await startPortcullis(t, {
      partners: [partner('reuse', [{ name: 'daily', algorithm: 'fixed_window', limit: 10, window: 'day' }])],
      clock: fakeClock(),
      redis,
    });
    assertAllowed(await h.check({ partner: 'reuse', requestId: 'same-id', path: '/v1/orders/1' }));
    assertAllowed(await h.check({ partner: 'reuse', requestId: 'same-id', path: '/v1/uploads/1' }));
    assert.equal(await dayCount(redis, 'reuse'), 2, 'charged once per route');
    for (let i = 0; i < 9; i++) {
      assertAllowed(await h.check({ partner: 'reuse', requestId: 'same-id', path: '/v1/orders/1' }));
      assertAllowed(await h.check({ partner: 'reuse', requestId: 'same-id', path: '/v1/uploads/1' }));
    }
    assert.equal(await dayCount(redis, 'reuse'), 2, 'retries within each route are free');
  });
});
