// RedisRevocations against real redis-server processes — several replicas on one Redis, a Redis
// that is killed and restarted, a replica cut off from Redis by a real TCP proxy, and the periodic
// reload that heals what pub/sub missed.
import assert from 'node:assert/strict';
import { createServer, connect as netConnect, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { describe, type TestContext, test } from 'node:test';
import pino from 'pino';
import {
  encodeRevocationMessage,
  REVOCATION_KINDS,
  RedisRevocations,
  type RedisRevocationsOptions,
  revocationKeys,
  revokeInRedis,
} from '../../src/identity/revocation.js';
import { type RedisServer, startRedis } from '../support/redis.js';

// ---------------------------------------------------------------------------------------------
// Helpers

class ManualClock {
  ms = Date.UTC(2030, 0, 1);
  now = (): number => this.ms;
  advance(ms: number): void {
    this.ms += ms;
  }
}

type LogLine = { level: number; msg: string } & Record<string, unknown>;

function captureLogger() {
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) lines.push(JSON.parse(line));
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

const WARN = 40;
const outageWarnings = (lines: readonly LogLine[]) =>
  lines.filter((l) => l.level === WARN && l.msg.startsWith('revocations: redis unavailable'));
const recoveries = (lines: readonly LogLine[]) =>
  lines.filter((l) => l.msg === 'revocations: redis is back, sets reloaded');

/** Polls until `condition` holds or the deadline passes; returns the elapsed ms, or undefined. */
async function waitFor(condition: () => boolean, timeoutMs: number): Promise<number | undefined> {
  const start = performance.now();
  for (;;) {
    if (condition()) return Math.round(performance.now() - start);
    if (performance.now() - start > timeoutMs) return undefined;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Asserts that `condition` becomes true within `timeoutMs`, and reports how long it took. */
async function eventually(t: TestContext, what: string, condition: () => boolean, timeoutMs = 1000) {
  const elapsed = await waitFor(condition, timeoutMs);
  assert.ok(elapsed !== undefined, `${what}: not within ${timeoutMs} ms`);
  t.diagnostic(`${what}: after ${elapsed} ms`);
  return elapsed;
}

interface Replica {
  readonly revocations: RedisRevocations;
  readonly logs: LogLine[];
}

async function startReplica(
  t: TestContext,
  url: string,
  options: Partial<RedisRevocationsOptions> & { startTimeoutMs?: number } = {},
): Promise<Replica> {
  const { logger, lines } = captureLogger();
  const revocations = new RedisRevocations({
    url,
    logger,
    // Retry fast so the restart tests do not wait on the production backoff; reload rarely so
    // that only pub/sub and reconnects can explain what a replica sees (unless a test asks).
    redisOptions: { retryStrategy: () => 50 },
    resyncIntervalSeconds: 600,
    ...options,
  });
  t.after(() => revocations.close());
  await revocations.start({ timeoutMs: options.startTimeoutMs ?? 5000 });
  return { revocations, logs: lines };
}

const KEYS = revocationKeys();
const CHANNEL = 'portcullis:revocations';

/** A TCP proxy in front of Redis that can cut every connection and refuse new ones. */
async function startProxy(t: TestContext, targetPort: number, options: { holdFirstMs?: number } = {}) {
  const sockets = new Set<Socket>();
  let open = true;
  let accepted = 0;
  const server = createServer((client) => {
    if (!open) {
      client.destroy();
      return;
    }
    // holdFirstMs: the first connection reaches Redis that much later (what it sends waits).
    const hold = accepted++ === 0 ? (options.holdFirstMs ?? 0) : 0;
    if (hold > 0) {
      client.pause();
      sockets.add(client);
      setTimeout(() => bridge(client), hold);
    } else bridge(client);
  });
  const bridge = (client: Socket) => {
    if (client.destroyed) return;
    const upstream = netConnect(targetPort, '127.0.0.1');
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      sockets.add(a);
      a.on('error', () => b.destroy());
      a.on('close', () => {
        sockets.delete(a);
        b.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
    client.resume();
  };
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const close = () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    });
  t.after(close);
  return {
    /** Existing connections stop carrying data either way, but stay open (a half-open link). */
    freeze() {
      for (const socket of sockets) {
        socket.unpipe();
        socket.pause();
      }
    },
    url: `redis://127.0.0.1:${port}`,
    cut() {
      open = false;
      for (const socket of sockets) socket.destroy();
    },
    restore() {
      open = true;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Pure parts

describe('RedisRevocations', { timeout: 60_000 }, () => {
  test('each kind revoked through replica A reaches replica B within 1 s', async (t) => {
    const redis = await startRedis(t);
    const a = await startReplica(t, redis.url);
    const b = await startReplica(t, redis.url);
    for (const kind of REVOCATION_KINDS) {
      const id = `${kind}-1`;
      assert.equal(b.revocations.isRevoked(kind, id), false);
      await a.revocations.revoke(kind, id);
      assert.equal(a.revocations.isRevoked(kind, id), true, 'the writer sees its own write at once');
      await eventually(t, `${kind} revoked on B`, () => b.revocations.isRevoked(kind, id));
      assert.equal(b.revocations.isRevoked(kind, `${kind}-2`), false);
    }
    const plain = redis.client();
    assert.deepEqual(await plain.smembers(KEYS.application.permanent), ['application-1']);
    for (const replica of [a, b]) {
      assert.deepEqual(replica.revocations.sizes(), { jti: 1, application: 1, api_key: 1 });
      assert.equal(outageWarnings(replica.logs).length, 0, 'a normal start warns about nothing');
      assert.equal(replica.logs.filter((l) => l.msg === 'revocations: sets loaded from redis').length, 1);
    }
  });

  test('each replica logs and counts every revocation it applies, by message or found by a reload', async (t) => {
    const redis = await startRedis(t);
    const a = await startReplica(t, redis.url);
    const b = await startReplica(t, redis.url);
    const counted: string[] = [];
    b.revocations.onApplied((c) => counted.push(`${c.op} ${c.kind} ${c.id} ${c.source}`));
    await a.revocations.revoke('api_key', 'k-1', 60);
    await eventually(t, 'k-1 on B', () => b.revocations.isRevoked('api_key', 'k-1'));
    await a.revocations.unrevoke('api_key', 'k-1');
    await eventually(t, 'k-1 lifted on B', () => !b.revocations.isRevoked('api_key', 'k-1'));
    // Written without a PUBLISH: only B's next reload can find it, and it says so.
    await redis.client().sadd(KEYS.application.permanent, 'quiet-app');
    await b.revocations.resync();
    assert.deepEqual(counted, [
      'add api_key k-1 message',
      'remove api_key k-1 message',
      'add application quiet-app reload',
    ]);
    const applied = b.logs.filter((l) => l.msg === 'revocation applied' || l.msg === 'revocation lifted');
    assert.deepEqual(
      applied.map((l) => [l.msg, l.kind, l.id, l.source]),
      [
        ['revocation applied', 'api_key', 'k-1', 'message'],
        ['revocation lifted', 'api_key', 'k-1', 'message'],
        ['revocation applied', 'application', 'quiet-app', 'reload'],
      ],
    );
    assert.match(String(applied[0]?.expires_at), /^\d{4}-\d\d-\d\dT/, 'a TTL revocation logs its end');
  });

  test('an unrevoke propagates, and lifts a permanent and a TTL revocation together', async (t) => {
    const redis = await startRedis(t);
    const a = await startReplica(t, redis.url);
    const b = await startReplica(t, redis.url);
    await a.revocations.revoke('jti', 'j-1');
    await a.revocations.revoke('jti', 'j-1', 3600);
    await a.revocations.revoke('api_key', 'k-1');
    await eventually(t, 'revocations on B', () => b.revocations.isRevoked('api_key', 'k-1'));
    assert.equal(b.revocations.isRevoked('jti', 'j-1'), true);

    await a.revocations.unrevoke('jti', 'j-1');
    assert.equal(a.revocations.isRevoked('jti', 'j-1'), false);
    await eventually(t, 'jti lifted on B', () => !b.revocations.isRevoked('jti', 'j-1'));
    await b.revocations.unrevoke('api_key', 'k-1');
    await eventually(t, 'api key lifted on A', () => !a.revocations.isRevoked('api_key', 'k-1'));

    const plain = redis.client();
    assert.equal(await plain.sismember(KEYS.jti.permanent, 'j-1'), 0);
    assert.equal(await plain.zscore(KEYS.jti.expiring, 'j-1'), null);
  });

  test('a change written by hand (MULTI SADD + PUBLISH of the documented message) reaches every replica', async (t) => {
    const redis = await startRedis(t);
    const replicas = [await startReplica(t, redis.url), await startReplica(t, redis.url)];
    const plain = redis.client();
    await plain
      .multi()
      .sadd('{portcullis:revoked}:application', 'app-123')
      .publish(CHANNEL, '{"op":"add","kind":"application","id":"app-123"}')
      .exec();
    for (const [i, replica] of replicas.entries()) {
      await eventually(t, `replica ${i}`, () => replica.revocations.isRevoked('application', 'app-123'));
    }
    // The helper a CLI uses does the same with a plain client.
    await revokeInRedis(plain, 'jti', 'j-cli', { now: Date.now(), ttlSeconds: 600 });
    for (const [i, replica] of replicas.entries()) {
      await eventually(t, `replica ${i}, jti`, () => replica.revocations.isRevoked('jti', 'j-cli'));
    }
  });

  test('a jti revoked with a TTL stops counting at its expiry, locally and in Redis', async (t) => {
    const redis = await startRedis(t);
    const clock = new ManualClock();
    const a = await startReplica(t, redis.url, { clock });
    const b = await startReplica(t, redis.url, { clock });
    await a.revocations.revoke('jti', 'j-ttl', 60);
    await eventually(t, 'TTL revocation on B', () => b.revocations.isRevoked('jti', 'j-ttl'));
    const plain = redis.client();
    assert.equal(Number(await plain.zscore(KEYS.jti.expiring, 'j-ttl')), clock.now() + 60_000);
    assert.equal(await plain.sismember(KEYS.jti.permanent, 'j-ttl'), 0, 'not stored as permanent');

    clock.advance(59_999);
    assert.equal(a.revocations.isRevoked('jti', 'j-ttl'), true);
    assert.equal(b.revocations.isRevoked('jti', 'j-ttl'), true);
    clock.advance(1);
    assert.equal(a.revocations.isRevoked('jti', 'j-ttl'), false, 'expired at exactly its expiry');
    assert.equal(b.revocations.isRevoked('jti', 'j-ttl'), false);

    // A replica that starts now does not load it, and the next write trims it from Redis.
    const c = await startReplica(t, redis.url, { clock });
    assert.equal(c.revocations.isRevoked('jti', 'j-ttl'), false);
    assert.deepEqual(c.revocations.sizes(), { jti: 0, application: 0, api_key: 0 });
    await c.revocations.revoke('jti', 'j-other', 60);
    assert.equal(await plain.zscore(KEYS.jti.expiring, 'j-ttl'), null);
  });

  test('Redis killed and restarted: last known sets kept, unhealthy, then reloaded', async (t) => {
    // Append-only file, so what Redis held survives the kill (as it must in production).
    const redis = await startRedis(t, { args: ['--appendonly', 'yes', '--appendfsync', 'always'] });
    const clock = new ManualClock();
    const a = await startReplica(t, redis.url, { clock });
    const b = await startReplica(t, redis.url, { clock });
    await a.revocations.revoke('application', 'app-known');
    await eventually(t, 'known revocation on B', () => b.revocations.isRevoked('application', 'app-known'));
    assert.ok(a.revocations.healthy() && b.revocations.healthy());
    assert.equal(b.revocations.lastSyncAgeSeconds(), 0);

    // Written straight into Redis, never published: no replica can know it yet.
    const plain = redis.client();
    await plain.sadd(KEYS.api_key.permanent, 'key-unannounced');
    assert.equal(b.revocations.isRevoked('api_key', 'key-unannounced'), false);

    await redis.kill();
    await eventually(t, 'both unhealthy', () => !a.revocations.healthy() && !b.revocations.healthy());
    assert.equal(a.revocations.isRevoked('application', 'app-known'), true, 'A keeps its last known set');
    assert.equal(b.revocations.isRevoked('application', 'app-known'), true, 'B keeps its last known set');
    await assert.rejects(a.revocations.revoke('jti', 'while-down'), 'a write fails fast while Redis is down');
    clock.advance(12_000);
    assert.equal(b.revocations.lastSyncAgeSeconds(), 12);
    // Let ioredis retry a good number of times: still one warning each.
    await new Promise((resolve) => setTimeout(resolve, 300));

    await redis.restart();
    await eventually(
      t,
      'both healthy again',
      () => a.revocations.healthy() && b.revocations.healthy(),
      10_000,
    );
    for (const replica of [a, b]) {
      assert.equal(replica.revocations.isRevoked('application', 'app-known'), true);
      assert.equal(
        replica.revocations.isRevoked('api_key', 'key-unannounced'),
        true,
        'reloaded on reconnect',
      );
      assert.equal(replica.revocations.lastSyncAgeSeconds(), 0);
      // One warning per change of state, not one per retry (ioredis retried many times meanwhile). On
      // a loaded machine the restart itself may flap once (a reload timing out while Redis starts), so
      // at most two outages, each paired with its recovery.
      const warnings = outageWarnings(replica.logs).length;
      assert.ok(warnings >= 1 && warnings <= 2, `${warnings} outage warnings`);
      assert.equal(recoveries(replica.logs).length, warnings);
    }

    // Resubscribed: changes propagate again.
    await a.revocations.revoke('jti', 'after-restart');
    await eventually(t, 'revocation after restart on B', () =>
      b.revocations.isRevoked('jti', 'after-restart'),
    );
  });

  test('a start where the subscriber is ready before the client warns about nothing', async (t) => {
    // The client connects first, but its connection reaches Redis 300 ms late: the subscriber
    // subscribes first and asks for a reload that the client cannot send yet. That is startup, not
    // an outage (it was logged as one, "Stream isn't writeable", one start in six under two CPU hogs).
    const redis = await startRedis(t);
    const proxy = await startProxy(t, redis.port, { holdFirstMs: 300 });
    const replica = await startReplica(t, proxy.url);
    assert.ok(replica.revocations.healthy());
    assert.ok(replica.revocations.lastSyncAgeSeconds() < 1);
    assert.deepEqual(outageWarnings(replica.logs), []);
    assert.equal(replica.logs.filter((l) => l.msg === 'revocations: sets loaded from redis').length, 1);
  });

  test('a replica cut off from a running Redis catches up on everything it missed when it reconnects', async (t) => {
    const redis = await startRedis(t);
    const proxy = await startProxy(t, redis.port);
    const a = await startReplica(t, redis.url);
    const b = await startReplica(t, proxy.url);
    await a.revocations.revoke('application', 'app-old');
    await eventually(t, 'before the cut', () => b.revocations.isRevoked('application', 'app-old'));

    proxy.cut();
    await eventually(t, 'B unhealthy', () => !b.revocations.healthy());
    assert.ok(a.revocations.healthy());
    await a.revocations.revoke('application', 'app-published'); // B misses the message
    await a.revocations.unrevoke('application', 'app-old'); // and this one
    await redis.client().sadd(KEYS.jti.permanent, 'j-direct'); // and this was never published
    assert.equal(b.revocations.isRevoked('application', 'app-old'), true, 'last known set while cut off');
    assert.equal(b.revocations.isRevoked('application', 'app-published'), false);

    proxy.restore();
    await eventually(t, 'B healthy again', () => b.revocations.healthy(), 10_000);
    assert.equal(b.revocations.isRevoked('application', 'app-published'), true);
    assert.equal(b.revocations.isRevoked('jti', 'j-direct'), true);
    assert.equal(b.revocations.isRevoked('application', 'app-old'), false);
    assert.equal(outageWarnings(b.logs).length, 1, JSON.stringify(outageWarnings(b.logs)));
    // A was never cut off: not one outage warning, however late its own event loop ran.
    assert.ok(a.revocations.healthy());
    assert.equal(outageWarnings(a.logs).length, 0, JSON.stringify(a.logs));
  });

  test('a replica whose own event loop stalls does not take its lag for a Redis outage', async (t) => {
    const redis = await startRedis(t);
    const replica = await startReplica(t, redis.url, { commandTimeoutMs: 100 });
    for (let round = 0; round < 3; round++) {
      // The reload MULTI and the subscriber's PING are written now; Redis answers within a
      // millisecond, but our process cannot read the replies for 400 ms (a burst, a GC, a CPU hog).
      const reload = replica.revocations.resync();
      const until = performance.now() + 400;
      while (performance.now() < until) {
        // busy: the event loop is blocked
      }
      await reload;
      assert.ok(replica.revocations.healthy(), `round ${round}: healthy after a stall of 4 × the timeout`);
    }
    assert.deepEqual(outageWarnings(replica.logs), []);
  });

  test('a Redis that does not answer within the command timeout is still caught, with our lag given back', async (t) => {
    const redis = await startRedis(t);
    const proxy = await startProxy(t, redis.port);
    const replica = await startReplica(t, proxy.url, { commandTimeoutMs: 150 });
    proxy.freeze(); // the socket stays open, Redis never sees the reload
    const started = performance.now();
    await replica.revocations.resync();
    const tookMs = performance.now() - started;
    assert.equal(replica.revocations.healthy(), false);
    assert.equal(outageWarnings(replica.logs).length, 1);
    // Judged after its 150 ms, never sooner (ioredis' backstop, 10 × the timeout, is the latest).
    assert.ok(tookMs >= 150, `judged after ${Math.round(tookMs)} ms`);
  });

  test('connections that stay open but stop answering are detected by the reload and replaced', async (t) => {
    const redis = await startRedis(t);
    const proxy = await startProxy(t, redis.port);
    const a = await startReplica(t, redis.url);
    const b = await startReplica(t, proxy.url, { resyncIntervalSeconds: 0.3, commandTimeoutMs: 200 });

    proxy.freeze(); // B's sockets hang; new connections through the proxy still work
    await eventually(t, 'B unhealthy', () => !b.revocations.healthy(), 5000);
    await a.revocations.revoke('application', 'app-during-freeze');
    await eventually(
      t,
      'B reconnected and reloaded',
      () => b.revocations.healthy() && b.revocations.isRevoked('application', 'app-during-freeze'),
      10_000,
    );
    assert.equal(outageWarnings(b.logs).length, 1);
    await a.revocations.revoke('application', 'app-after');
    await eventually(t, 'B subscribed again', () => b.revocations.isRevoked('application', 'app-after'));
  });

  test('the periodic reload heals a missed message (an edit made without PUBLISH)', async (t) => {
    const redis = await startRedis(t);
    const replica = await startReplica(t, redis.url, { resyncIntervalSeconds: 0.2 });
    const plain = redis.client();
    await plain.sadd(KEYS.application.permanent, 'app-silent');
    await eventually(
      t,
      'silent add healed',
      () => replica.revocations.isRevoked('application', 'app-silent'),
      5000,
    );
    await plain.srem(KEYS.application.permanent, 'app-silent');
    await eventually(
      t,
      'silent removal healed',
      () => !replica.revocations.isRevoked('application', 'app-silent'),
      5000,
    );
  });

  test('a {"op":"resync"} message makes every replica reload at once', async (t) => {
    const redis = await startRedis(t);
    const replica = await startReplica(t, redis.url);
    const plain = redis.client();
    await plain.sadd(KEYS.api_key.permanent, 'key-bulk-1', 'key-bulk-2');
    assert.equal(replica.revocations.isRevoked('api_key', 'key-bulk-1'), false);
    await plain.publish(CHANNEL, '{"op":"resync"}');
    await eventually(t, 'bulk import loaded', () => replica.revocations.isRevoked('api_key', 'key-bulk-2'));
  });

  test('a malformed message is logged and ignored; later messages still apply', async (t) => {
    const redis = await startRedis(t);
    const replica = await startReplica(t, redis.url);
    const plain = redis.client();
    await plain.publish(CHANNEL, 'revoke everything');
    await plain.publish(CHANNEL, encodeRevocationMessage({ op: 'add', kind: 'jti', id: 'j-after' }));
    await eventually(t, 'valid message applied', () => replica.revocations.isRevoked('jti', 'j-after'));
    const ignored = replica.logs.filter((l) => l.msg === 'revocations: ignored a malformed message');
    assert.equal(ignored.length, 1);
    assert.equal(ignored[0]?.message, 'revoke everything');
    assert.ok(replica.revocations.healthy());
  });

  test('start() against an unreachable Redis rejects after its timeout, then recovers on its own', async (t) => {
    const redis = await startRedis(t);
    await redis.kill();
    const { logger, lines } = captureLogger();
    const revocations = new RedisRevocations({
      url: redis.url,
      logger,
      redisOptions: { retryStrategy: () => 50 },
    });
    t.after(() => revocations.close());
    await assert.rejects(
      revocations.start({ timeoutMs: 300 }),
      /no reload from Redis within 300 ms \(.*ECONNREFUSED/,
    );
    assert.equal(revocations.healthy(), false);
    assert.equal(revocations.lastSyncAgeSeconds(), Number.POSITIVE_INFINITY);
    assert.equal(outageWarnings(lines).length, 1);

    await redis.restart();
    await eventually(t, 'healthy after Redis came up', () => revocations.healthy(), 10_000);
    await revokeInRedis(redis.client(), 'api_key', 'k-late', { now: Date.now() });
    await eventually(t, 'live after a late start', () => revocations.isRevoked('api_key', 'k-late'));
    assert.ok(lines.some((l) => l.msg === 'revocations: sets loaded from redis'));
  });

  test('close() quits both connections and keeps the last known sets readable', async (t) => {
    const redis = await startRedis(t);
    const replica = await startReplica(t, redis.url);
    await replica.revocations.revoke('jti', 'j-closed');
    const plain = redis.client();
    const ours = async () =>
      String(await plain.client('LIST'))
        .split('\n')
        .filter((line) => / name=portcullis-revocations/.test(line)).length;
    assert.equal(await ours(), 2);
    await replica.revocations.close();
    let remaining = await ours();
    const deadline = Date.now() + 2000;
    while (remaining > 0 && Date.now() < deadline) remaining = await ours();
    assert.equal(remaining, 0);
    assert.equal(replica.revocations.healthy(), false);
    assert.equal(replica.revocations.isRevoked('jti', 'j-closed'), true);
    await assert.rejects(replica.revocations.revoke('jti', 'x'));
  });

  test('invalid writes are refused before reaching Redis', async (t) => {
    const redis = await startRedis(t);
    const replica = await startReplica(t, redis.url);
    await assert.rejects(replica.revocations.revoke('jti', ''), TypeError);
    await assert.rejects(replica.revocations.revoke('jti', 'j', 0), RangeError);
    await assert.rejects(replica.revocations.revoke('jti', 'j', Number.NaN), RangeError);
    await assert.rejects(replica.revocations.revoke('user' as 'jti', 'u'), TypeError);
  });
});

describe('startRedis', () => {
  test('kill and restart keep the port; clients reconnect; close leaves no process', async (t) => {
    const redis: RedisServer = await startRedis(t);
    assert.match(redis.url, /^redis:\/\/127\.0\.0\.1:\d+$/);
    const client = redis.client();
    assert.equal(await client.ping(), 'PONG');
    const port = redis.port;
    await redis.kill();
    assert.equal(redis.running, false);
    await redis.restart();
    assert.equal(redis.port, port);
    assert.ok(redis.running);
    const ok = await waitFor(() => client.status === 'ready', 5000);
    assert.ok(ok !== undefined, 'client reconnected');
    assert.equal(await client.ping(), 'PONG');
    await redis.stop();
    assert.equal(redis.running, false);
    await redis.close();
    await assert.rejects(redis.restart(), /closed/);
  });

  test('a missing binary gives a clear error', async () => {
    await assert.rejects(startRedis(undefined, { binary: '/nonexistent/redis-server' }), /not found/);
    const savedPath = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      await assert.rejects(startRedis(), /redis-server not found: run `make test`, which installs it/);
    } finally {
      process.env.PATH = savedPath;
    }
  });
});
