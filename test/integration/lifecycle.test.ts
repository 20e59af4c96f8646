// Health, readiness, metrics and graceful shutdown of the real servers.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type * as grpc from '@grpc/grpc-js';
import type { Stages } from '../../src/pipeline/types.js';
import { startTestApp } from '../support/app.js';
import { envoyRequest } from '../support/envoy-request.js';
import { healthClient, OfficialCheckClient } from '../support/official-client.js';

const ACME = 'spiffe://partners.example.com/acme';
type HealthResponse = { status: string };

function healthCheck(
  client: grpc.Client & Record<string, unknown>,
  service: string,
): Promise<HealthResponse> {
  const check = client.Check as (
    req: object,
    cb: (err: grpc.ServiceError | null, res: HealthResponse) => void,
  ) => void;
  return new Promise((resolve, reject) =>
    check.call(client, { service }, (err, res) => (err ? reject(err) : resolve(res))),
  );
}

test('health: SERVING once loaded, for the server and the Authorization service', async (t) => {
  const { address } = await startTestApp(t, {});
  const client = healthClient(address);
  t.after(() => client.close());
  assert.equal((await healthCheck(client, '')).status, 'SERVING');
  assert.equal((await healthCheck(client, 'envoy.service.auth.v3.Authorization')).status, 'SERVING');
  await assert.rejects(healthCheck(client, 'no.such.Service'), /NOT_FOUND/);
});

test('shutdown: Watch sees NOT_SERVING, in-flight Checks finish, new ones are refused', async (t) => {
  const slowStages = (stages: Stages): Stages => ({
    ...stages,
    async authorize(...args) {
      await new Promise((r) => setTimeout(r, 300));
      return stages.authorize(...args);
    },
  });
  const { app, address, adminUrl } = await startTestApp(t, { stages: slowStages, drainDelayMs: 100 });
  const health = healthClient(address);
  const checker = new OfficialCheckClient(address);
  t.after(() => {
    health.close();
    checker.close();
  });

  const watch = (health.Watch as (req: object) => grpc.ClientReadableStream<HealthResponse>).call(health, {
    service: '',
  });
  const statuses: string[] = [];
  const sawNotServing = new Promise<void>((resolve) => {
    watch.on('data', (msg: HealthResponse) => {
      statuses.push(msg.status);
      if (msg.status === 'NOT_SERVING') resolve();
    });
  });
  watch.on('error', () => {});
  assert.equal((await fetch(`${adminUrl}/readyz`)).status, 200);

  const inFlight = checker.check(envoyRequest({ principal: ACME }), 5000);
  await new Promise((r) => setTimeout(r, 50));
  const stopped = app.stop();
  await sawNotServing;
  assert.deepEqual(statuses, ['SERVING', 'NOT_SERVING']);
  const answer = await inFlight;
  assert.equal(answer.http_response, 'ok_response', 'the in-flight Check got its real answer');
  await stopped;
  watch.cancel();
  await assert.rejects(checker.check(envoyRequest({ principal: ACME }), 500), /UNAVAILABLE|DEADLINE/);
});

test('admin: /readyz reports the policy version; /metrics counts decisions; unknown paths 404', async (t) => {
  const { address, adminUrl } = await startTestApp(t, {});
  const client = new OfficialCheckClient(address);
  t.after(() => client.close());
  const ready = (await (await fetch(`${adminUrl}/readyz`)).json()) as {
    status: string;
    policy: { version: string; name: string };
  };
  assert.equal(ready.status, 'ready');
  assert.match(ready.policy.version, /^sha256:[0-9a-f]{16}$/);
  assert.equal(ready.policy.name, 'example-2026-11');
  assert.equal((await fetch(`${adminUrl}/healthz`)).status, 200);
  assert.equal((await fetch(`${adminUrl}/nope`)).status, 404);
  assert.equal((await fetch(`${adminUrl}/metrics`, { method: 'POST' })).status, 405);

  await client.check(envoyRequest({ principal: ACME }));
  await client.check(envoyRequest({ principal: ACME }));
  await client.check(envoyRequest({ principal: 'spiffe://partners.example.com/initech' }));
  const metrics = await (await fetch(`${adminUrl}/metrics`)).text();
  assert.match(
    metrics,
    /portcullis_decisions_total\{route="orders",partner="acme",decision="allow",code="allowed"\} 2/,
  );
  assert.match(
    metrics,
    /portcullis_decisions_total\{route="orders",partner="initech",decision="deny",code="partner_suspended"\} 1/,
  );
  assert.match(metrics, /portcullis_check_duration_seconds_count\{decision="allow"\} 2/);
  assert.match(metrics, /portcullis_stage_duration_seconds_count\{stage="identify"\} 3/);
  assert.match(
    metrics,
    new RegExp(`portcullis_policy_info\\{version="${ready.policy.version}",name="example-2026-11"\\} 1`),
  );
});
