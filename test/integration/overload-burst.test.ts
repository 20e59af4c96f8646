// Issue 13, must-show 4, against a real `portcullis serve` and a real redis-server: a burst beyond
// the concurrency limit (forced by a fixed low ceiling, never by the machine's speed). The excess is
// answered `overloaded` (or let through on an `on_overload: allow` route), the admitted Checks are
// answered normally, and the units charged in Redis equal the allows. Durations are reported, not
// asserted.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { envoyRequest } from '../support/envoy-request.js';
import { OfficialCheckClient, type OfficialCheckResponse } from '../support/official-client.js';
import { startRedis } from '../support/redis.js';
import {
  adminJson,
  codeOf,
  counter,
  headers,
  median,
  metricsText,
  principal,
  startServe,
  tally,
} from '../support/serve.js';

// -------------------------------------------------------------------------------------------
// 4. A burst beyond the limit

const BURST_CATALOG = `
settings:
  admission: { min_limit: 4, max_limit: 4, initial_limit: 4, max_queue: 0 }
partners:
  - id: acme
    name: Acme
    identities: { principals: ["${principal('acme')}"] }
    limits:
      - { name: per-hour, algorithm: sliding_window, limit: 1000000, period: 1h, routes: [orders] }
routes:
  - name: orders
    match: { path: { prefix: /v1/orders } }
    identity: { any_of: [mtls] }
  - name: status
    match: { path: { prefix: /v1/status } }
    identity: { any_of: [mtls] }
    on_overload: allow
`;

test('4. a burst beyond the concurrency limit: the excess is shed at once, the admitted are charged and allowed', async (t) => {
  const redis = await startRedis(t);
  const serve = await startServe(t, BURST_CATALOG, redis.url);
  const clients = Array.from({ length: 4 }, () => new OfficialCheckClient(serve.address));
  t.after(() => {
    for (const c of clients) c.close();
  });
  // Connected first, as Envoy's long-lived connections are.
  await Promise.all(
    clients.map((c) => c.check(envoyRequest({ principal: principal('acme'), path: '/v1/status' }), 10_000)),
  );

  const BURST = 200;
  const results = await Promise.all(
    Array.from({ length: BURST }, async (_, i) => {
      const path = i % 4 === 3 ? '/v1/status' : '/v1/orders';
      const started = performance.now();
      const res = await (clients[i % clients.length] as OfficialCheckClient).check(
        envoyRequest({ principal: principal('acme'), path }),
        20_000,
      );
      return { route: path.slice(4), res, ms: performance.now() - started };
    }),
  );
  const orders = results.filter((r) => r.route === 'orders');
  const status = results.filter((r) => r.route === 'status');
  const orderCodes = tally(orders.map((r) => codeOf(r.res)));
  const statusCodes = tally(status.map((r) => codeOf(r.res)));
  t.diagnostic(`orders: ${JSON.stringify(orderCodes)}; status: ${JSON.stringify(statusCodes)}`);

  // Every Check answered, with one of the declared answers only.
  assert.deepEqual(
    Object.keys(orderCodes).filter((c) => c !== 'allowed' && c !== 'overloaded'),
    [],
  );
  assert.deepEqual(
    Object.keys(statusCodes).filter((c) => c !== 'allowed' && c !== 'allowed_on_error'),
    [],
  );
  const allowed = orderCodes.allowed ?? 0;
  const shed = orderCodes.overloaded ?? 0;
  assert.equal(allowed + shed, orders.length);
  assert.ok(shed > 0, 'a burst 100× the limit sheds');
  assert.ok(allowed >= 1, 'the admitted Checks are answered normally');
  assert.ok((statusCodes.allowed_on_error ?? 0) > 0, 'on_overload: allow lets shed Checks through');

  // The shed answer: 503 overloaded with Retry-After; the on_overload: allow answer is marked.
  const shedOne = orders.find((r) => codeOf(r.res) === 'overloaded')?.res as OfficialCheckResponse;
  assert.equal(shedOne.denied_response?.status.code, 'ServiceUnavailable');
  assert.equal(shedOne.status.code, 14);
  assert.equal(headers(shedOne)['retry-after'], '1');
  const letThrough = status.find((r) => codeOf(r.res) === 'allowed_on_error')?.res as OfficialCheckResponse;
  assert.equal(headers(letThrough)['x-portcullis-on-error'], 'overloaded');
  assert.equal(headers(letThrough)['x-portcullis-partner'], undefined, 'unchecked: no identity upstream');

  // Nothing shed was charged: the units in Redis are the allows of the charged route.
  const quota = (await adminJson(serve.adminPort, '/v1/partners/acme/quota')) as {
    limits: { name: string; used: number }[];
  };
  const used = quota.limits.find((l) => l.name === 'per-hour')?.used;
  t.diagnostic(`charged in Redis: ${used}; allowed: ${allowed}`);
  assert.equal(used, allowed);

  // Backpressure is visible.
  const metrics = await metricsText(serve.adminPort);
  assert.equal(
    counter(metrics, 'portcullis_admission_shed_total', { route: 'orders', answer: 'deny' }),
    shed,
  );
  assert.equal(
    counter(metrics, 'portcullis_admission_shed_total', { route: 'orders', partner: 'acme' }),
    shed,
    'shed Checks are counted by the partner of their mTLS principal',
  );
  assert.match(metrics, /^portcullis_admission_limit 4$/m);
  assert.match(metrics, /^portcullis_admission_in_flight 0$/m);
  assert.match(metrics, /^portcullis_event_loop_delay_seconds\{quantile="0.99"\} /m);

  t.diagnostic(
    `median latency: overloaded ${median(orders.filter((r) => codeOf(r.res) === 'overloaded').map((r) => r.ms)).toFixed(1)} ms, ` +
      `allowed ${median(orders.filter((r) => codeOf(r.res) === 'allowed').map((r) => r.ms)).toFixed(1)} ms`,
  );
});
