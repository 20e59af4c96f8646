// Issue 13, must-show 6, against a real `portcullis serve` and a real redis-server started later:
// serve started while Redis is unreachable keeps running (it used to exit 10 s later), answers as
// the routes declare, and serves normally once Redis starts. Durations are reported, not asserted.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { generateApiKey, hashApiKey } from '../../src/identity/apikeys.js';
import { envoyRequest } from '../support/envoy-request.js';
import { OfficialCheckClient } from '../support/official-client.js';
import { startRedis } from '../support/redis.js';
import { codeOf, PEPPER, principal, startServe } from '../support/serve.js';

// -------------------------------------------------------------------------------------------
// 6. Started while Redis is unreachable

const KEY = generateApiKey();
const OUTAGE_CATALOG = `
partners:
  - id: acme
    name: Acme
    identities:
      principals: ["${principal('acme')}"]
      api_keys:
        - { id: acme-key, hash: "hmac-sha256:${hashApiKey(KEY, Buffer.from(PEPPER))}" }
    limits:
      - { name: per-hour, algorithm: sliding_window, limit: 1000000, period: 1h }
routes:
  - name: strict
    match: { path: { prefix: /v1/strict } }
    identity: { any_of: [mtls] }
  - name: lenient
    match: { path: { prefix: /v1/lenient } }
    identity: { any_of: [mtls] }
    quota: { on_store_error: fail_open }
  - name: keyed
    match: { path: { prefix: /v1/keyed } }
    identity: { any_of: [api_key] }
    quota: { on_store_error: fail_open }
`;

test('6. serve started while Redis is unreachable keeps running, answers as declared, serves once Redis starts', async (t) => {
  const redis = await startRedis(t);
  await redis.kill(); // its port is now unreachable; restart() brings it back on the same port
  const serve = await startServe(t, OUTAGE_CATALOG, redis.url);
  const client = new OfficialCheckClient(serve.address);
  t.after(() => client.close());
  const ask = async () => {
    const [strict, lenient, keyed] = await Promise.all([
      client.check(envoyRequest({ principal: principal('acme'), path: '/v1/strict' }), 10_000),
      client.check(envoyRequest({ principal: principal('acme'), path: '/v1/lenient' }), 10_000),
      client.check(envoyRequest({ path: '/v1/keyed', headers: { 'x-api-key': KEY } }), 10_000),
    ]);
    return { strict: codeOf(strict), lenient: codeOf(lenient), keyed: codeOf(keyed) };
  };

  // While Redis is down (the old serve never got this far: it exited 10 s after waiting 5 s).
  const during: string[] = [];
  const until = Date.now() + 3_000;
  let rounds = 0;
  while (Date.now() < until && rounds < 200) {
    rounds++;
    const answers = await ask();
    assert.deepEqual(
      answers,
      { strict: 'quota_unavailable', lenient: 'allowed', keyed: 'identity_unavailable' },
      'fail_closed quota: 503; fail_open quota: the local limiter; a revocable key with revocations never loaded: denied (identity never fails open)',
    );
    during.push(JSON.stringify(answers));
    await sleep(250);
  }
  assert.equal(serve.exited(), false, `serve keeps running:\n${serve.tail()}`);
  t.diagnostic(`during the outage: ${rounds} rounds of 3 Checks, all as declared`);

  // Redis starts: normal service again, on every route, on its own.
  await redis.restart();
  const restarted = performance.now();
  // Recovery ramps (a growing share of charges first, quota/breaker.ts): normal service is the first
  // round of a run of 5 in a row where every route answers normally, not one lucky round.
  let recovered: number | undefined;
  let streakStart = 0;
  let streak = 0;
  let last: Record<string, string> = {};
  for (let i = 0; i < 400 && streak < 5; i++) {
    last = await ask();
    if (last.strict === 'allowed' && last.lenient === 'allowed' && last.keyed === 'allowed') {
      if (streak === 0) streakStart = performance.now() - restarted;
      streak++;
    } else {
      streak = 0;
      await sleep(25);
    }
  }
  if (streak >= 5) recovered = streakStart;
  assert.ok(
    recovered !== undefined,
    `normal service (5 rounds in a row) after Redis started; last answers ${JSON.stringify(last)}`,
  );
  t.diagnostic(`normal service ${recovered.toFixed(0)} ms after Redis answered PING`);
  assert.equal(serve.exited(), false);
});
