// JwksCache against a real JWKS endpoint on 127.0.0.1 (and a real file): rotation, unknown-kid
// floods, an endpoint that is down, answers garbage or hangs, keys that go stale, a rotated file.
// Time is a fake clock moved by the tests; the network is real.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it, type TestContext } from 'node:test';
import type { JWTPayload } from 'jose';
import { pino } from 'pino';
import { JwksCache, type JwksSource } from '../../src/identity/jwks.js';
import { JwtVerifier, type TokenFailure, type VerifyResult } from '../../src/identity/jwt.js';
import {
  type FakeClock,
  fakeClock,
  generateTestKey,
  type JwksServer,
  jwksOf,
  mintToken,
  startJwksServer,
  type TestKey,
} from '../support/jwks-server.js';

const ISS = 'https://idp.example.test/';
const AUD = 'https://api.example.test';
const TTL = 300_000;
const COOLDOWN = 30_000;
const MAX_STALE = 3_600_000;

let keyA: TestKey;
let keyB: TestKey;
let rogue: TestKey;

before(async () => {
  [keyA, keyB, rogue] = await Promise.all([
    generateTestKey('RS256', 'key-a'),
    generateTestKey('ES256', 'key-b'),
    generateTestKey('RS256', 'rogue'),
  ]);
});

interface Harness {
  readonly cache: JwksCache;
  readonly verifier: JwtVerifier;
  readonly clock: FakeClock;
  readonly logs: LogCapture;
  /** A fresh token (new jti, so never a cache hit) signed by `key` at the clock's time. */
  token(key: TestKey, header?: Record<string, unknown>): Promise<string>;
  warnings(): Record<string, unknown>[];
}

let serial = 0;

/** pino's JSON lines, parsed. */
class LogCapture extends Writable {
  readonly lines: Record<string, unknown>[] = [];
  override _write(chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    for (const line of chunk.toString('utf8').split('\n')) if (line) this.lines.push(JSON.parse(line));
    done();
  }
}

function harness(t: TestContext, source: JwksSource, timeoutOverride?: number): Harness {
  const clock = fakeClock();
  const logs = new LogCapture();
  const logger = pino({ level: 'info', formatters: { level: (label) => ({ level: label }) } }, logs);
  const cache = new JwksCache(
    source.kind === 'url' && timeoutOverride ? { ...source, timeoutMs: timeoutOverride } : source,
    { clock, logger, name: 'example-idp' },
  );
  t.after(() => cache.close());
  const verifier = new JwtVerifier(
    [
      {
        name: 'example-idp',
        issuer: ISS,
        audiences: [AUD],
        algorithms: ['RS256', 'ES256'],
        clockSkewSeconds: 30,
        requiredClaims: [],
        keys: cache,
      },
    ],
    { clock },
  );
  return {
    cache,
    verifier,
    clock,
    logs,
    token(key, header) {
      const now = Math.floor(clock.now() / 1000);
      const claims: JWTPayload = {
        iss: ISS,
        aud: AUD,
        client_id: 'acme-app',
        jti: `j${++serial}`,
        iat: now,
        exp: now + 3600,
      };
      return mintToken(key, claims, header);
    },
    warnings: () => logs.lines.filter((l) => l.level === 'warn'),
  };
}

const urlSource = (server: JwksServer): JwksSource => ({
  kind: 'url',
  url: server.url,
  timeoutMs: 2000,
  ttlMs: TTL,
  cooldownMs: COOLDOWN,
  maxStaleMs: MAX_STALE,
});

async function startServer(t: TestContext, keys: readonly TestKey[]): Promise<JwksServer> {
  const server = await startJwksServer(keys);
  t.after(() => server.close());
  return server;
}

function assertOk(result: VerifyResult): void {
  assert.ok(result.ok, result.ok ? '' : `expected ok, got ${result.failure}: ${result.reason}`);
}

function assertFailure(result: VerifyResult, failure: TokenFailure, reason?: RegExp): void {
  assert.equal(result.ok, false, `expected ${failure}, got ok`);
  if (result.ok) return;
  assert.equal(result.failure, failure, result.reason);
  if (reason) assert.match(result.reason, reason);
}

/** Lets pino's writes reach the capture stream. */
const flush = () => new Promise((resolve) => setImmediate(resolve));

describe('JwksCache over HTTP', () => {
  it('loads the key set once, then serves from memory for the ttl', async (t) => {
    const server = await startServer(t, [keyA, keyB]);
    const h = harness(t, urlSource(server));
    assertOk(await h.verifier.verify(await h.token(keyA)));
    assertOk(await h.verifier.verify(await h.token(keyB)));
    h.clock.advance(TTL - 1);
    assertOk(await h.verifier.verify(await h.token(keyA)));
    assert.equal(server.requests, 1);
    assert.deepEqual(h.cache.stats(), {
      fetchesOk: 1,
      fetchesFailed: 0,
      keys: 2,
      lastOkAt: h.clock.now() - (TTL - 1),
      lastError: null,
    });
    assert.equal(h.cache.ageSeconds(), (TTL - 1) / 1000);
  });

  it('rotation: a new kid is refused at once and starts one refetch behind; once it lands the kid verifies, no restart', async (t) => {
    const server = await startServer(t, [keyA]);
    const h = harness(t, urlSource(server));
    assertOk(await h.verifier.verify(await h.token(keyA)));
    assert.equal(server.requests, 1);

    server.setKeys([keyA, keyB]);
    // Right after a fetch the cooldown holds: the new kid is not known yet, and nothing is fetched.
    assertFailure(await h.verifier.verify(await h.token(keyB)), 'token_key_unknown', /kid "key-b"/);
    assert.equal(server.requests, 1);

    h.clock.advance(COOLDOWN);
    // Past the cooldown: still answered at once (never after a round trip), the refetch runs behind.
    assertFailure(await h.verifier.verify(await h.token(keyB)), 'token_key_unknown', /kid "key-b"/);
    await h.cache.idle();
    assert.equal(server.requests, 2);
    assertOk(await h.verifier.verify(await h.token(keyB)));
    assertOk(await h.verifier.verify(await h.token(keyB)));
    assertOk(await h.verifier.verify(await h.token(keyA)));
    assert.equal(server.requests, 2);

    // The old key is retired: after the next refetch it no longer verifies.
    server.setKeys([keyB]);
    h.clock.advance(COOLDOWN);
    const retired = await h.token(keyA);
    h.clock.advance(TTL);
    assertOk(await h.verifier.verify(await h.token(keyB))); // due: served, refreshed behind
    await h.cache.idle();
    assertFailure(await h.verifier.verify(retired), 'token_key_unknown');
    assert.equal(server.requests, 3);
  });

  it('a flood of 200 concurrent unknown kids makes at most one fetch per cooldown', async (t) => {
    const server = await startServer(t, [keyA]);
    const h = harness(t, urlSource(server));
    assertOk(await h.verifier.verify(await h.token(keyA)));
    assert.equal(server.requests, 1);
    const flood = async () => {
      const tokens = await Promise.all(
        Array.from({ length: 200 }, (_, i) => h.token(rogue, { kid: `bogus-${++serial}-${i}` })),
      );
      const results = await Promise.all(tokens.map((token) => h.verifier.verify(token)));
      for (const result of results) assertFailure(result, 'token_key_unknown');
    };

    h.clock.advance(COOLDOWN);
    await flood();
    await h.cache.idle();
    assert.equal(server.requests, 2, 'one shared refetch for the whole flood');
    await flood();
    h.clock.advance(COOLDOWN - 1);
    await flood();
    await h.cache.idle();
    assert.equal(server.requests, 2, 'no refetch inside the cooldown');
    h.clock.advance(1);
    await flood();
    await h.cache.idle();
    assert.equal(server.requests, 3);
    // Genuine tokens kept passing throughout.
    assertOk(await h.verifier.verify(await h.token(keyA)));
    assert.equal(h.cache.stats().fetchesOk, 3);
  });

  it('concurrent first requests share the first fetch', async (t) => {
    const server = await startServer(t, [keyA]);
    const h = harness(t, urlSource(server));
    const tokens = await Promise.all(Array.from({ length: 50 }, () => h.token(keyA)));
    const results = await Promise.all(tokens.map((token) => h.verifier.verify(token)));
    for (const result of results) assertOk(result);
    assert.equal(server.requests, 1);
  });

  it('endpoint down: the cached keys still verify, one warning per failed fetch', async (t) => {
    const server = await startServer(t, [keyA]);
    const h = harness(t, urlSource(server));
    assertOk(await h.verifier.verify(await h.token(keyA)));
    await server.close();

    h.clock.advance(TTL);
    assertOk(await h.verifier.verify(await h.token(keyA)));
    await h.cache.idle();
    assertOk(await h.verifier.verify(await h.token(keyA)));
    // An unknown kid is still an unknown kid, not an outage (and makes no fetch inside the cooldown).
    assertFailure(await h.verifier.verify(await h.token(rogue)), 'token_key_unknown');
    await flush();

    const stats = h.cache.stats();
    assert.equal(stats.fetchesOk, 1);
    assert.equal(stats.fetchesFailed, 1);
    // ECONNREFUSED, or UND_ERR_SOCKET when the pooled keep-alive connection was the one cut.
    assert.match(stats.lastError ?? '', /^fetch failed: .*(ECONNREFUSED|UND_ERR_SOCKET)/);
    const warnings = h.warnings();
    assert.equal(warnings.length, 1);
    assert.equal(warnings[0]?.msg, 'JWKS fetch failed; still serving the previous keys');
    assert.equal(warnings[0]?.jwks, 'example-idp');
    assert.equal(warnings[0]?.keptKeys, 1);
  });

  it('garbage from the endpoint: one warning line per fetch, the old keys kept', async (t) => {
    const server = await startServer(t, [keyA]);
    const h = harness(t, urlSource(server));
    assertOk(await h.verifier.verify(await h.token(keyA)));
    const GARBAGE: ReadonlyArray<[body: string, error: string]> = [
      ['<html>maintenance</html>', 'response is not JSON'],
      ['[]', 'response is not a JSON object'],
      ['{"keys":"none"}', 'response has no "keys" array'],
      ['{"keys":[]}', 'no usable signature key among 0'],
      [
        JSON.stringify({ keys: [{ kty: 'oct', k: 'c2VjcmV0', kid: 'key-a' }] }),
        'no usable signature key among 1',
      ],
      [JSON.stringify({ keys: [keyA.privateJwk] }), 'no usable signature key among 1'],
    ];
    server.mode = 'garbage';
    for (const [index, [body, error]] of GARBAGE.entries()) {
      server.garbage = body;
      h.clock.advance(TTL);
      assertOk(await h.verifier.verify(await h.token(keyA)));
      await h.cache.idle();
      await flush();
      const warnings = h.warnings();
      assert.equal(warnings.length, index + 1, `one warning for ${body}`);
      assert.equal(warnings[index]?.error, error);
    }
    assert.equal(server.requests, 1 + GARBAGE.length);
    assert.equal(h.cache.stats().fetchesFailed, GARBAGE.length);
    assert.equal(h.cache.stats().keys, 1);
    // Only warnings, and no line for the requests that merely used the keys.
    assert.deepEqual(
      h.logs.lines.map((l) => l.level),
      ['info', ...GARBAGE.map(() => 'warn')],
    );
  });

  it('an endpoint that hangs times out, and is a failed fetch like any other', async (t) => {
    const server = await startServer(t, [keyA]);
    server.mode = 'hang';
    const h = harness(t, urlSource(server), 200);
    assertFailure(
      await h.verifier.verify(await h.token(keyA)),
      'token_keys_unavailable',
      /timed out after 200 ms/,
    );
    await flush();
    assert.equal(h.warnings()[0]?.msg, 'JWKS fetch failed; no keys to serve yet');
    // Inside the cooldown nothing is retried; after it, a healthy endpoint is picked up.
    assertFailure(await h.verifier.verify(await h.token(keyA)), 'token_keys_unavailable');
    assert.equal(server.requests, 1);
    server.mode = 'ok';
    h.clock.advance(COOLDOWN);
    assertOk(await h.verifier.verify(await h.token(keyA)));
    assert.equal(server.requests, 2);
  });

  it('no keys ever: token_keys_unavailable, with the reason', async (t) => {
    const server = await startServer(t, [keyA]);
    server.mode = 'error';
    const h = harness(t, urlSource(server));
    assertFailure(
      await h.verifier.verify(await h.token(keyA)),
      'token_keys_unavailable',
      /has no keys: HTTP 500/,
    );
  });

  it('stale beyond maxStaleMs: token_keys_unavailable, until the endpoint is back', async (t) => {
    const server = await startServer(t, [keyA]);
    const h = harness(t, urlSource(server));
    const early = await h.token(keyA);
    assertOk(await h.verifier.verify(early));
    server.mode = 'error';

    h.clock.advance(MAX_STALE - COOLDOWN);
    assertOk(await h.verifier.verify(await h.token(keyA))); // due: served, refresh fails behind
    await h.cache.idle();
    h.clock.advance(COOLDOWN);
    assertFailure(
      await h.verifier.verify(await h.token(keyA)),
      'token_keys_unavailable',
      /keys are 3600 s old, over the 3600 s limit: HTTP 500/,
    );
    assert.equal(server.requests, 3, 'the stale check tried one refetch before refusing');
    // Inside the cooldown, refused at once without a fetch.
    assertFailure(await h.verifier.verify(await h.token(keyA)), 'token_keys_unavailable');
    assert.equal(server.requests, 3);

    server.mode = 'ok';
    h.clock.advance(COOLDOWN);
    assertOk(await h.verifier.verify(await h.token(keyA)));
    assert.equal(server.requests, 4);
    assert.equal(h.cache.ageSeconds(), 0);
  });

  it('refresh() fetches now, whatever the ttl and cooldown', async (t) => {
    const server = await startServer(t, [keyA]);
    const h = harness(t, urlSource(server));
    await h.cache.refresh();
    server.setKeys([keyA, keyB]);
    await h.cache.refresh();
    assert.equal(server.requests, 2);
    assertOk(await h.verifier.verify(await h.token(keyB)));
    assert.equal(server.requests, 2);
  });
});

describe('JwksCache over a file', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-jwks-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('is re-read after ttl, so a rotated file needs no restart', async (t) => {
    const path = join(dir, 'rotated.json');
    writeFileSync(path, JSON.stringify(jwksOf(keyA)));
    const h = harness(t, { kind: 'file', path, ttlMs: 60_000 });
    assertOk(await h.verifier.verify(await h.token(keyA)));

    writeFileSync(path, JSON.stringify(jwksOf(keyB)));
    const retired = await h.token(keyA);
    // Before the ttl the file is not read again, even for an unknown kid.
    assertFailure(await h.verifier.verify(await h.token(keyB)), 'token_key_unknown');
    assertOk(await h.verifier.verify(await h.token(keyA)));

    h.clock.advance(60_000);
    // Due: keyA's lookup serves the old set and re-reads the file behind.
    assertOk(await h.verifier.verify(await h.token(keyA)));
    await h.cache.idle();
    assertOk(await h.verifier.verify(await h.token(keyB)));
    assertFailure(await h.verifier.verify(retired), 'token_key_unknown');
    assert.equal(h.cache.stats().fetchesOk, 2);
  });

  it('a broken file keeps the last good keys, with a warning, and never goes stale', async (t) => {
    const path = join(dir, 'broken.json');
    writeFileSync(path, JSON.stringify(jwksOf(keyA)));
    const h = harness(t, { kind: 'file', path, ttlMs: 60_000 });
    assertOk(await h.verifier.verify(await h.token(keyA)));
    writeFileSync(path, '{"keys": [');
    h.clock.advance(60_000);
    assertOk(await h.verifier.verify(await h.token(keyA)));
    await h.cache.idle();
    h.clock.advance(365 * 86_400_000);
    assertOk(await h.verifier.verify(await h.token(keyA)));
    await h.cache.idle();
    await flush();
    assert.equal(h.cache.stats().fetchesFailed, 2);
    assert.deepEqual(
      h.warnings().map((w) => w.error),
      ['response is not JSON', 'response is not JSON'],
    );
  });

  it('a missing file: token_keys_unavailable naming the error', async (t) => {
    const h = harness(t, { kind: 'file', path: join(dir, 'absent.json'), ttlMs: 60_000 });
    assertFailure(await h.verifier.verify(await h.token(keyA)), 'token_keys_unavailable', /ENOENT/);
  });
});
