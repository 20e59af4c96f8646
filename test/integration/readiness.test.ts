// Readiness tells the truth: /readyz and portcullis_dependency_state name the state of the quota
// store, clamd and each JWKS in plain words, and library error texts never reach people (the log,
// `quota status`, the audit reason). Real redis-server (killed by the test), a clamd address where
// nothing listens, the example catalog's file JWKS.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createRedisClient, RedisQuotaStore, waitForReady } from '../../src/quota/redis-store.js';
import { startTestApp } from '../support/app.js';
import { envoyRequest } from '../support/envoy-request.js';
import { OfficialCheckClient } from '../support/official-client.js';
import { freePort } from '../support/processes.js';
import { startRedis } from '../support/redis.js';

interface Readyz {
  status: string;
  dependencies: {
    quota_store: { state: string; detail: string };
    clamd: { state: string; detail: string };
    jwks: Record<string, { state: string; detail: string }>;
  };
}

const LIBRARY_TEXT = /Stream isn't writeable|enableOfflineQueue|Breaker is open|Resolution note/;

test('/readyz and metrics say in plain words that Redis is down, clamd does not answer and the JWKS is fine', async (t) => {
  const redis = await startRedis(t);
  const client = createRedisClient(redis.url, { commandTimeoutMs: 2000 });
  client.on('error', () => {});
  t.after(() => client.disconnect());
  await waitForReady(client);
  const deadClamd = `127.0.0.1:${await freePort()}`;
  const h = await startTestApp(t, {
    quotaStore: new RedisQuotaStore(client),
    clamd: { address: deadClamd, maxBytes: 1024 * 1024 },
  });
  const readyz = async () => (await (await fetch(`${h.adminUrl}/readyz`)).json()) as Readyz;

  const before = await readyz();
  assert.equal(before.status, 'ready');
  assert.equal(before.dependencies.quota_store.state, 'ok');
  assert.equal(before.dependencies.clamd.state, 'unavailable');
  assert.match(before.dependencies.clamd.detail, new RegExp(`clamd at ${deadClamd} does not answer PING`));
  assert.equal(before.dependencies.jwks['example-idp']?.state, 'ok');

  await redis.kill();
  const check = new OfficialCheckClient(h.address);
  t.after(() => check.close());
  // Until the breaker opens, each Check meets the failure; a few are enough.
  for (let i = 0; i < 10; i++) {
    await check.check(
      envoyRequest({ path: '/v1/orders/1', principal: 'spiffe://partners.example.com/acme' }),
    );
  }
  const after = await readyz();
  assert.equal(after.status, 'ready', 'a dependency down is answered per route, not by readiness');
  assert.notEqual(after.dependencies.quota_store.state, 'ok');
  assert.match(after.dependencies.quota_store.detail, /Redis/);
  assert.doesNotMatch(JSON.stringify(after), LIBRARY_TEXT);

  const failures = h.logs.lines.filter(
    (l) => typeof l.msg === 'string' && l.msg.startsWith('quota store failed'),
  );
  assert.ok(failures.length > 0, 'the failure is logged');
  for (const line of failures) {
    assert.match(String(line.msg), /^quota store failed: (Redis|the connection to Redis)/);
    assert.doesNotMatch(String(line.msg), LIBRARY_TEXT);
  }
  const decisions = h.logs.lines.filter((l) => l.code === 'quota_unavailable');
  assert.ok(decisions.length > 0, 'refused as quota_unavailable');
  for (const line of decisions) assert.doesNotMatch(String(line.reason), LIBRARY_TEXT);

  const status = await fetch(`${h.adminUrl}/v1/partners/acme/quota`);
  assert.equal(status.status, 503);
  const body = (await status.json()) as { detail: string };
  assert.match(body.detail, /Redis/);
  assert.doesNotMatch(body.detail, LIBRARY_TEXT);

  const metrics = await (await fetch(`${h.adminUrl}/metrics`)).text();
  assert.match(metrics, /portcullis_dependency_state\{dependency="clamd",name="",state="unavailable"\} 1/);
  assert.match(metrics, /portcullis_dependency_state\{dependency="jwks",name="example-idp",state="ok"\} 1/);
  assert.match(
    metrics,
    /portcullis_dependency_state\{dependency="quota_store",name="",state="(unavailable|degraded|ok)"\} 1/,
  );
});
