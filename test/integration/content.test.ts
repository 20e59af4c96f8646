// Content inspection through the real server, with a real clamd (EICAR-only test database) and a
// client built from Envoy's official protos: what the partner sees for each refusal, what the audit
// line records, and the declared behaviour when clamd dies or stalls.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { startTestApp } from '../support/app.js';
import { EICAR, startClamd } from '../support/clamd.js';
import { envoyRequest, type RequestSpec } from '../support/envoy-request.js';
import { OfficialCheckClient, type OfficialCheckResponse } from '../support/official-client.js';

const ORDER_SCHEMA = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  type: 'object',
  required: ['sku', 'quantity'],
  properties: { sku: { type: 'string' }, quantity: { type: 'integer', minimum: 1 } },
  additionalProperties: false,
};

const catalog = (schemaFile: string) => `
partners:
  - id: acme
    name: Acme
    identities: { principals: ["spiffe://p/acme"] }
  - id: globex
    name: Globex
    identities: { principals: ["spiffe://p/globex"] }
routes:
  - name: orders
    match: { path: { prefix: /v1/orders } }
    content:
      types: [application/json]
      body: { required_for: [POST] }
      json: { schema: ${schemaFile}, max_depth: 8 }
      scan: {}
  - name: documents
    match: { path: { prefix: /v1/documents } }
    content:
      max_body_bytes: 4096
      types: [application/pdf, multipart/form-data]
      scan: { timeout_ms: 500 }
      partners:
        acme: { max_body_bytes: 65536 }
  - name: lenient
    match: { path: { prefix: /v1/lenient } }
    content:
      scan: { on_error: allow, timeout_ms: 300 }
`;

const PDF = Buffer.concat([Buffer.from('%PDF-1.7\n'), Buffer.alloc(1200, 0x41), Buffer.from('\n%%EOF\n')]);
const code = (res: OfficialCheckResponse) => res.dynamic_metadata?.fields.code?.stringValue;
const problem = (res: OfficialCheckResponse) => JSON.parse(res.denied_response?.body ?? '{}');

async function setup(t: TestContext) {
  const clamd = await startClamd(t);
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-content-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'order.schema.json'), JSON.stringify(ORDER_SCHEMA));
  writeFileSync(join(dir, 'catalog.yaml'), catalog('order.schema.json'));
  const server = await startTestApp(t, {
    catalogFile: join(dir, 'catalog.yaml'),
    clamd: { address: `${clamd.host}:${clamd.port}`, maxBytes: clamd.streamMaxBytes },
  });
  const client = new OfficialCheckClient(server.address);
  t.after(() => client.close());
  const check = (spec: RequestSpec, timeoutMs?: number) =>
    client.check(envoyRequest({ principal: 'spiffe://p/acme', method: 'POST', ...spec }), timeoutMs);
  return { ...server, clamd, check };
}

const json = (value: unknown) => ({
  body: Buffer.from(JSON.stringify(value)),
  headers: { 'content-type': 'application/json' },
});

test('EICAR is refused as a raw body, inside a JSON field and in a multipart file; clean content passes', async (t) => {
  const { check, logs } = await setup(t);
  const raw = await check({
    path: '/v1/documents/1',
    method: 'PUT',
    body: EICAR,
    headers: { 'content-type': 'application/pdf' },
  });
  // A declared PDF that is not one is refused before any scan: the magic bytes say so.
  assert.equal(code(raw), 'media_type_mismatch');
  const rawAnyType = await check({
    path: '/v1/lenient',
    body: EICAR,
    headers: { 'content-type': 'application/octet-stream' },
  });
  assert.equal(code(rawAnyType), 'malware_detected');
  assert.equal(rawAnyType.denied_response?.status.code, 'UnprocessableEntity');
  assert.doesNotMatch(
    JSON.stringify(problem(rawAnyType)),
    /EICAR/i,
    'the signature name never reaches the partner',
  );
  assert.match(String(logs.decisions().at(-1)?.reason), /Portcullis\.Test\.EICAR/);

  const inJson = await check({ path: '/v1/orders', ...json({ sku: EICAR.toString('latin1'), quantity: 1 }) });
  assert.equal(code(inJson), 'malware_detected');

  const boundary = 'x-boundary-7';
  const multipart = Buffer.concat([
    Buffer.from(
      `--${boundary}\r\ncontent-disposition: form-data; name="file"; filename="eicar.com"\r\ncontent-type: application/octet-stream\r\n\r\n`,
    ),
    EICAR,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  const inPart = await check({
    path: '/v1/documents/2',
    method: 'PUT',
    body: multipart,
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
  });
  assert.equal(code(inPart), 'malware_detected');

  const clean = await check({
    path: '/v1/documents/3',
    method: 'PUT',
    body: PDF,
    headers: { 'content-type': 'application/pdf' },
  });
  assert.equal(code(clean), 'allowed');
  const line = logs.decisions().at(-1);
  assert.equal(line?.body_sha256, createHash('sha256').update(PDF).digest('hex'));
  assert.match(String(line?.scan), /^scan clean/);
});

test('schema violations list their JSON pointers; bounded JSON; body rules by method', async (t) => {
  const { check } = await setup(t);
  const bad = await check({ path: '/v1/orders', ...json({ sku: 7, quantity: 0, extra: true }) });
  assert.equal(code(bad), 'schema_violation');
  assert.equal(bad.denied_response?.status.code, 'UnprocessableEntity');
  const body = problem(bad);
  const pointers = (body.errors as { pointer: string }[]).map((e) => e.pointer).sort();
  assert.deepEqual(pointers, ['/extra', '/quantity', '/sku']);
  assert.equal(body.total_errors, 3);

  const deep = await check({
    path: '/v1/orders',
    body: Buffer.from(`${'['.repeat(100_000)}${']'.repeat(100_000)}`),
    headers: { 'content-type': 'application/json' },
  });
  assert.equal(code(deep), 'json_limits_exceeded');
  assert.equal(
    code(
      await check({
        path: '/v1/orders',
        body: Buffer.from('{"sku":'),
        headers: { 'content-type': 'application/json' },
      }),
    ),
    'json_malformed',
  );
  assert.equal(
    code(await check({ path: '/v1/orders', headers: { 'content-type': 'application/json' } })),
    'body_required',
  );
  assert.equal(
    code(
      await check({
        path: '/v1/orders',
        ...json({ sku: 'a', quantity: 1 }),
        headers: { 'content-type': 'text/plain' },
      }),
    ),
    'media_type_not_allowed',
  );
  assert.equal(code(await check({ path: '/v1/orders', ...json({ sku: 'a', quantity: 2 }) })), 'allowed');
});

test('per-partner content rules: acme may send 64 KiB documents, others 4 KiB', async (t) => {
  const { check } = await setup(t);
  const big = Buffer.concat([
    Buffer.from('%PDF-1.7\n'),
    Buffer.alloc(10_000, 0x41),
    Buffer.from('\n%%EOF\n'),
  ]);
  const pdf = {
    path: '/v1/documents/9',
    method: 'PUT',
    body: big,
    headers: { 'content-type': 'application/pdf' },
  };
  assert.equal(code(await check(pdf)), 'allowed');
  const globex = await check({ ...pdf, principal: 'spiffe://p/globex' });
  assert.equal(code(globex), 'body_too_large');
  assert.equal(globex.denied_response?.status.code, 'PayloadTooLarge');
});

test('clamd killed: deny routes answer 503 scan_unavailable, allow routes pass; a stalled clamd is answered in time', async (t) => {
  const { check, clamd, adminUrl } = await setup(t);
  clamd.stop(); // SIGSTOP: connections are accepted, nothing answers
  const stalled = await check(
    { path: '/v1/documents/5', method: 'PUT', body: PDF, headers: { 'content-type': 'application/pdf' } },
    2000,
  );
  assert.equal(code(stalled), 'scan_unavailable', 'answered within the deadline, not a gRPC timeout');
  clamd.cont();
  await clamd.kill();
  const body = Buffer.from(`%PDF-1.7\n${'B'.repeat(500)}\n%%EOF\n`); // not cached: never scanned clean
  const denied = await check({
    path: '/v1/documents/6',
    method: 'PUT',
    body,
    headers: { 'content-type': 'application/pdf' },
  });
  assert.equal(code(denied), 'scan_unavailable');
  assert.equal(denied.denied_response?.status.code, 'ServiceUnavailable');
  const lenient = await check({ path: '/v1/lenient', body, headers: { 'content-type': 'application/pdf' } });
  assert.equal(code(lenient), 'allowed');
  const metrics = await (await fetch(`${adminUrl}/metrics`)).text();
  assert.match(metrics, /portcullis_scan_results_total\{result="error",cached="false"\} [1-9]/);
});
