// The Check handler end to end: real grpc-js server on port 0, real client built from Envoy's
// OFFICIAL protos, the real pipeline. Only the failure cases inject a stage that throws or stalls.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Stages } from '../../src/pipeline/types.js';
import { startTestApp } from '../support/app.js';
import { envoyRequest, type RequestSpec } from '../support/envoy-request.js';
import {
  checkWithEnvoyTimeout,
  OfficialCheckClient,
  type OfficialCheckResponse,
} from '../support/official-client.js';

const CATALOG = 'test/fixtures/catalogs/handler.yaml';
const ACME = 'spiffe://partners.example.com/acme';

/** authorize throws on fragile-* routes and stalls on slow-* routes. */
const faultyStages = (stages: Stages): Stages => ({
  ...stages,
  async authorize(request, catalog, route, identity) {
    if (route.name.startsWith('fragile')) throw new Error('quota store exploded');
    if (route.name.startsWith('slow')) await sleep(1500);
    return stages.authorize(request, catalog, route, identity);
  },
});

async function setup(t: import('node:test').TestContext) {
  const server = await startTestApp(t, { catalogFile: CATALOG, stages: faultyStages });
  const client = new OfficialCheckClient(server.address);
  t.after(() => client.close());
  const check = (spec: RequestSpec, timeoutMs?: number) => client.check(envoyRequest(spec), timeoutMs);
  return { ...server, client, check };
}

const headerMap = (options: { header: { key: string; value: string } }[] | undefined) =>
  Object.fromEntries((options ?? []).map((o) => [o.header.key, o.header.value]));
const meta = (res: OfficialCheckResponse) =>
  Object.fromEntries(Object.entries(res.dynamic_metadata?.fields ?? {}).map(([k, v]) => [k, v.stringValue]));

function assertDenied(res: OfficialCheckResponse, http: string, grpcCode: number, code: string) {
  assert.equal(res.http_response, 'denied_response', JSON.stringify(res));
  assert.equal(res.status.code, grpcCode);
  assert.equal(res.denied_response?.status.code, http);
  assert.equal(headerMap(res.denied_response?.headers)['content-type'], 'application/problem+json');
  const problem = JSON.parse(res.denied_response?.body ?? '{}');
  assert.equal(problem.code, code);
  assert.equal(problem.type, `https://portcullis.dev/docs/partner-errors#${code}`);
  assert.equal(meta(res).code, code);
  assert.equal(meta(res).decision, 'deny');
  return problem as {
    type: string;
    title: string;
    status: number;
    code: string;
    detail: string;
    request_id: string;
  };
}

test('allow: upstream headers, removals, response headers, dynamic metadata', async (t) => {
  const { check, logs } = await setup(t);
  const res = await check({
    principal: ACME,
    requestId: 'req-allow-1',
    headers: { 'x-portcullis-partner': 'evil', 'x-portcullis-forged': 'x', 'x-debug': '1' },
  });
  assert.equal(res.status.code ?? 0, 0);
  assert.equal(res.http_response, 'ok_response');
  const ok = res.ok_response ?? {};
  const upstream = headerMap(ok.headers);
  assert.equal(upstream['x-portcullis-partner'], 'acme');
  assert.equal(upstream['x-api-version'], '2026-11');
  assert.match(upstream['x-portcullis-decision-id'] ?? '', /^[0-9a-f-]{36}$/);
  for (const h of ok.headers ?? [])
    assert.deepEqual(h.append, { value: false }, `${h.header.key} must overwrite`);
  // Our own prefix is never trusted from the partner: the forged header is stripped, ours overwritten.
  assert.deepEqual(ok.headers_to_remove?.sort(), ['x-debug', 'x-portcullis-forged']);
  assert.deepEqual(headerMap(ok.response_headers_to_add), { 'x-gateway': 'portcullis' });
  const m = meta(res);
  assert.equal(m.partner, 'acme');
  assert.equal(m.route, 'orders');
  assert.equal(m.code, 'allowed');
  assert.equal(m.decision_id, upstream['x-portcullis-decision-id']);
  assert.match(m.policy_version ?? '', /^sha256:[0-9a-f]{16}$/);
  const line = logs.decisions().at(-1);
  assert.equal(line?.request_id, 'req-allow-1');
  assert.equal(line?.decision_id, m.decision_id);
});

test('deny: partner on the global deny list', async (t) => {
  const { check } = await setup(t);
  const res = await check({ principal: 'spiffe://partners.example.com/mallory', requestId: 'req-deny-1' });
  const problem = assertDenied(res, 'Forbidden', 7, 'partner_denied');
  assert.deepEqual(Object.keys(problem).sort(), [
    'code',
    'decision_id',
    'detail',
    'next_step',
    'request_id',
    'status',
    'title',
    'type',
  ]);
  assert.equal(problem.status, 403);
  assert.equal(problem.request_id, 'req-deny-1');
  assert.equal((problem as unknown as { decision_id: string }).decision_id, meta(res).decision_id);
  assert.equal(meta(res).partner, 'mallory');
});

test('deny: partner not on the route allow list', async (t) => {
  const { check } = await setup(t);
  const res = await check({ principal: 'spiffe://partners.example.com/globex', path: '/v1/restricted/x' });
  assertDenied(res, 'Forbidden', 7, 'partner_not_allowed');
  const ok = await check({ principal: ACME, path: '/v1/restricted/x' });
  assert.equal(ok.http_response, 'ok_response');
});

for (const [name, address] of [
  ['IPv4', '198.51.100.7'],
  ['IPv6', '2001:db8:bad::1'],
  ['IPv4-mapped IPv6', '::ffff:198.51.100.7'],
] as const) {
  test(`deny: source address on the deny list (${name})`, async (t) => {
    const { check } = await setup(t);
    const res = await check({ principal: ACME, sourceAddress: address });
    assertDenied(res, 'Forbidden', 7, 'source_ip_denied');
  });
}

test('deny: source address outside a route allow list', async (t) => {
  const { check } = await setup(t);
  assertDenied(
    await check({ principal: ACME, path: '/v1/office', sourceAddress: '203.0.113.9' }),
    'Forbidden',
    7,
    'source_ip_denied',
  );
  const ok = await check({ principal: ACME, path: '/v1/office', sourceAddress: '192.0.2.77' });
  assert.equal(ok.http_response, 'ok_response');
});

test('deny: unknown route (by path, and by a context extension the catalog lacks)', async (t) => {
  const { check, logs } = await setup(t);
  assertDenied(await check({ principal: ACME, path: '/nowhere' }), 'NotFound', 5, 'route_not_found');
  assertDenied(await check({ principal: ACME, route: 'ghost' }), 'NotFound', 5, 'route_not_found');
  assert.match(String(logs.decisions().at(-1)?.reason), /route="ghost" is not in the catalog/);
});

test('deny: method not allowed on a matched path, with Allow', async (t) => {
  const { check } = await setup(t);
  const res = await check({ principal: ACME, method: 'DELETE' });
  assertDenied(res, 'MethodNotAllowed', 7, 'method_not_allowed');
  assert.equal(headerMap(res.denied_response?.headers).allow, 'GET, POST');
});

test('deny: suspended partner, unknown principal, missing credentials', async (t) => {
  const { check } = await setup(t);
  assertDenied(
    await check({ principal: 'spiffe://partners.example.com/initech' }),
    'Forbidden',
    7,
    'partner_suspended',
  );
  assertDenied(await check({ principal: 'spiffe://elsewhere/x' }), 'Forbidden', 7, 'partner_unknown');
  assertDenied(await check({}), 'Unauthorized', 16, 'credentials_missing');
  // An anonymous caller passes where the route allows it, without a partner header.
  const anonymous = await check({ path: '/v1/status', headers: { 'x-portcullis-partner': 'acme' } });
  assert.equal(anonymous.http_response, 'ok_response');
  assert.equal(headerMap(anonymous.ok_response?.headers)['x-portcullis-partner'], undefined);
  assert.ok(anonymous.ok_response?.headers_to_remove?.includes('x-portcullis-partner'));
});

test('malformed: no HTTP attributes, undecodable bytes, bad headers; the server keeps serving', async (t) => {
  const { client, check, logs } = await setup(t);
  assertDenied(await client.check({ attributes: { source: {} } }), 'BadRequest', 3, 'request_malformed');
  assertDenied(await client.check({}), 'BadRequest', 3, 'request_malformed');

  // Bytes that are not a CheckRequest still get an explicit, decodable deny.
  const { checkCodec } = await import('../../src/envoy/codec.js');
  const raw = await client.checkRaw(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]));
  const decoded = checkCodec().decodeResponse(raw);
  assert.equal(decoded.status.code, 3);
  assert.equal(decoded.denied_response?.status.code, 400);
  assert.match(String(logs.decisions().at(-1)?.reason), /undecodable CheckRequest/);

  const crlf = await check({ principal: ACME, headers: { 'x-note': 'a\r\nx-injected: 1' } });
  assertDenied(crlf, 'BadRequest', 3, 'request_header_invalid');
  const huge = await check({ principal: ACME, headers: { 'x-big': 'a'.repeat(16385) } });
  const problem = assertDenied(huge, 'BadRequest', 3, 'request_header_invalid');
  assert.equal(problem.detail, 'Header x-big is larger than 16384 bytes.');
  assertDenied(await check({ principal: ACME, path: 'no-slash' }), 'BadRequest', 3, 'request_malformed');

  const after = await check({ principal: ACME });
  assert.equal(after.http_response, 'ok_response');
});

test('internal failure: on_error deny answers 503, on_error allow lets it through marked', async (t) => {
  const { check, logs, adminUrl } = await setup(t);
  const denied = await check({ principal: ACME, path: '/v1/fragile-deny' });
  const problem = assertDenied(denied, 'ServiceUnavailable', 14, 'internal_error');
  assert.doesNotMatch(JSON.stringify(problem), /exploded/, 'internals never reach the partner');
  const line = logs.decisions().at(-1);
  assert.equal(line?.code, 'internal_error');
  assert.match(String(line?.reason), /quota store exploded/);

  const allowed = await check({ principal: ACME, path: '/v1/fragile-allow' });
  assert.equal(allowed.http_response, 'ok_response');
  assert.equal(meta(allowed).code, 'allowed_on_error');
  assert.equal(headerMap(allowed.ok_response?.headers)['x-portcullis-on-error'], 'internal_error');

  const metrics = await (await fetch(`${adminUrl}/metrics`)).text();
  assert.match(metrics, /portcullis_failures_total\{route="fragile-deny",cause="internal_error"\} 1/);
  assert.match(metrics, /portcullis_failures_total\{route="fragile-allow",cause="internal_error"\} 1/);
});

test('deadline: a stalled stage is answered before Envoy gives up, per on_error', async (t) => {
  const { check, address } = await setup(t);
  // Connected and warm first, as Envoy's connection to its sidecar is: the first call of a fresh
  // client also pays the connection and the JIT, which a loaded CI host can stretch past the margin.
  await check({ principal: ACME, path: '/v1/orders/1', host: 'api.example.com' });
  // 300 ms like an Envoy ext_authz timeout, sent as grpc-timeout: the server must answer with a
  // CheckResponse. The test waits longer than Envoy would, so that a test process starved by other
  // load on the machine still reads the server's answer rather than its own client timeout.
  const envoy = (spec: RequestSpec) => checkWithEnvoyTimeout(address, envoyRequest(spec), 300);
  const denied = await envoy({ principal: ACME, path: '/v1/slow-deny' });
  assertDenied(denied, 'ServiceUnavailable', 4, 'deadline_exceeded');
  const allowed = await envoy({ principal: ACME, path: '/v1/slow-allow' });
  assert.equal(meta(allowed).code, 'allowed_on_error');
  assert.equal(headerMap(allowed.ok_response?.headers)['x-portcullis-on-error'], 'deadline_exceeded');
});

test('a stage that returns an unsendable header becomes internal_error, not a crash', async (t) => {
  const server = await startTestApp(t, {
    catalogFile: CATALOG,
    stages: (stages) => ({
      ...stages,
      route: () => ({
        ok: false,
        denial: { code: 'route_not_found', headers: [{ name: 'x-bad', value: 'a\r\nb' }] },
      }),
    }),
  });
  const client = new OfficialCheckClient(server.address);
  t.after(() => client.close());
  const res = await client.check(envoyRequest({ principal: ACME }));
  assertDenied(res, 'ServiceUnavailable', 14, 'internal_error');
  assert.match(String(server.logs.decisions().at(-1)?.reason), /refusing to send header "x-bad"/);
});

test('audit line: one per decision, with every field, secrets redacted', async (t) => {
  const { check, logs } = await setup(t);
  const secrets = {
    authorization: 'Bearer eyJhbGciOiJSUzI1NiJ9.secret-token',
    cookie: 'session=s3cr3t-cookie',
    'x-api-key': 'pk_live_s3cr3t',
    'x-auth-token': 'tok-s3cr3t',
  };
  await check({
    principal: ACME,
    requestId: 'req-audit',
    headers: secrets,
    path: '/v1/orders?api_key=s3cr3t-query',
  });
  const lines = logs.decisions();
  assert.equal(lines.length, 1);
  const line = lines[0] ?? {};
  for (const field of [
    'decision_id',
    'request_id',
    'partner',
    'route',
    'decision',
    'code',
    'latency_ms',
    'policy_version',
  ]) {
    assert.ok(field in line, `audit line has ${field}`);
  }
  assert.equal(line.request_id, 'req-audit');
  assert.equal(line.policy_name, 'handler-tests');
  assert.equal(typeof line.latency_ms, 'number');
  assert.equal(line.path, '/v1/orders');
  const text = JSON.stringify(line);
  for (const secret of ['secret-token', 's3cr3t'])
    assert.ok(!text.includes(secret), `audit line leaks ${secret}`);
  const headers = line.headers as Record<string, string>;
  assert.equal(headers.authorization, '[redacted]');
  assert.equal(headers['user-agent'], 'partner-sdk/2.3.1');
});
