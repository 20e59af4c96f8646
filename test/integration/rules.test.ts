// Rules and dry runs through the real server: deny with the rule's message, allow short-circuits,
// partner rules after the route's, a runtime error fails safe (a deny rule applies, an allow rule
// does not), dry runs pass marked.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startTestApp } from '../support/app.js';
import { envoyRequest, type RequestSpec } from '../support/envoy-request.js';
import { OfficialCheckClient, type OfficialCheckResponse } from '../support/official-client.js';

const CATALOG = `
partners:
  - id: acme
    name: Acme
    identities: { principals: ["spiffe://p/acme"] }
    rules:
      - name: acme-no-deletes
        when: "method == 'DELETE'"
        message: Acme may not delete.
  - id: globex
    name: Globex
    identities: { principals: ["spiffe://p/globex"] }
routes:
  - name: orders
    match: { path: { prefix: /v1/orders } }
    rules:
      - name: vip-bypass
        when: "'x-vip' in headers && headers['x-vip'] == 'yes'"
        action: allow
      - name: no-bulk
        when: "'bulk' in query"
        message: Bulk operations are disabled.
      - name: tenant-trial
        when: "'x-tenant' in headers && headers['x-tenant'] != 'eu'"
        dry_run: true
  - name: strict
    match: { path: { prefix: /v1/strict } }
    rules:
      - name: needs-header
        when: "headers['x-required'] == 'no'"
  - name: lenient
    match: { path: { prefix: /v1/lenient } }
    on_error: allow
    rules:
      - name: needs-header
        when: "headers['x-required'] == 'no'"
  - name: region
    match: { path: { prefix: /v1/region } }
    on_error: allow
    rules:
      - name: eu-only
        when: "headers['x-region'] != 'eu' && method != 'GET'"
        message: Only EU traffic may write here.
  - name: vip-only
    match: { path: { prefix: /v1/vip-only } }
    on_error: allow
    rules:
      - name: vip
        when: "headers['x-vip'] == 'yes'"
        action: allow
      - name: everyone-else
        when: "true"
        message: VIPs only.
  - name: trial
    match: { path: { prefix: /v1/trial } }
    dry_run: true
    access: { deny: { partners: [globex] } }
`;

const code = (res: OfficialCheckResponse) => res.dynamic_metadata?.fields.code?.stringValue;
const upstream = (res: OfficialCheckResponse) =>
  Object.fromEntries((res.ok_response?.headers ?? []).map((h) => [h.header.key, h.header.value]));

async function setup(t: import('node:test').TestContext) {
  const server = await startTestApp(t, { catalogText: CATALOG });
  const client = new OfficialCheckClient(server.address);
  t.after(() => client.close());
  const check = (spec: RequestSpec) => client.check(envoyRequest({ principal: 'spiffe://p/acme', ...spec }));
  return { ...server, check };
}

test('a deny rule refuses with its message; an earlier allow rule short-circuits', async (t) => {
  const { check, logs } = await setup(t);
  const bulk = await check({ path: '/v1/orders?bulk=1' });
  assert.equal(bulk.denied_response?.status.code, 'Forbidden');
  assert.equal(code(bulk), 'rule_denied');
  assert.equal(JSON.parse(bulk.denied_response?.body ?? '{}').detail, 'Bulk operations are disabled.');
  assert.equal(logs.decisions().at(-1)?.reason, 'rule no-bulk');
  const vip = await check({ path: '/v1/orders?bulk=1', headers: { 'x-vip': 'yes' } });
  assert.equal(code(vip), 'allowed');
});

test("a partner's rules apply after the route's, to that partner only", async (t) => {
  const { check } = await setup(t);
  const acme = await check({ method: 'DELETE', path: '/v1/orders/1' });
  assert.equal(code(acme), 'rule_denied');
  assert.equal(JSON.parse(acme.denied_response?.body ?? '{}').detail, 'Acme may not delete.');
  const globex = await check({ method: 'DELETE', path: '/v1/orders/1', principal: 'spiffe://p/globex' });
  assert.equal(code(globex), 'allowed');
});

test('a runtime error in a deny rule counts as the rule applying, on deny and allow routes alike', async (t) => {
  const { check, logs } = await setup(t);
  const strict = await check({ path: '/v1/strict' });
  assert.equal(code(strict), 'rule_denied');
  assert.equal(strict.denied_response?.status.code, 'Forbidden');
  const lenient = await check({ path: '/v1/lenient' });
  assert.equal(code(lenient), 'rule_denied');
  assert.match(
    String(logs.decisions().at(-1)?.reason),
    /rule needs-header: evaluation failed, counted as applying/,
  );
});

test('finding 3: a deny rule on an on_error: allow route, input without the field it reads → denied, not allowed', async (t) => {
  const { check } = await setup(t);
  const missing = await check({ method: 'POST', path: '/v1/region' });
  assert.equal(code(missing), 'rule_denied');
  assert.equal(JSON.parse(missing.denied_response?.body ?? '{}').detail, 'Only EU traffic may write here.');
  assert.equal(
    code(await check({ method: 'POST', path: '/v1/region', headers: { 'x-region': 'eu' } })),
    'allowed',
  );
  assert.equal(
    code(await check({ method: 'POST', path: '/v1/region', headers: { 'x-region': 'us' } })),
    'rule_denied',
  );
});

test('a runtime error in an allow rule counts as the rule not applying: later rules decide', async (t) => {
  const { check } = await setup(t);
  const noHeader = await check({ path: '/v1/vip-only' });
  assert.equal(code(noHeader), 'rule_denied');
  assert.equal(JSON.parse(noHeader.denied_response?.body ?? '{}').detail, 'VIPs only.');
  assert.equal(code(await check({ path: '/v1/vip-only', headers: { 'x-vip': 'yes' } })), 'allowed');
});

test('a dry-run rule: the request passes, marked upstream, logged and counted', async (t) => {
  const { check, logs, adminUrl } = await setup(t);
  const res = await check({ path: '/v1/orders', headers: { 'x-tenant': 'us' } });
  assert.equal(code(res), 'allowed');
  assert.equal(upstream(res)['x-portcullis-dry-run'], 'rule_denied');
  const line = logs.decisions().at(-1);
  assert.equal(line?.dry_run, 'rule_denied');
  assert.match(String(line?.reason), /dry run: would deny rule_denied \(rule tenant-trial\)/);
  const metrics = await (await fetch(`${adminUrl}/metrics`)).text();
  assert.match(metrics, /portcullis_dry_run_denials_total\{route="orders",code="rule_denied"\} 1/);
  const eu = await check({ path: '/v1/orders', headers: { 'x-tenant': 'eu' } });
  assert.equal(upstream(eu)['x-portcullis-dry-run'], undefined);
});

test('a dry-run route: any denial passes, marked; the same request elsewhere is refused', async (t) => {
  const { check } = await setup(t);
  const res = await check({ path: '/v1/trial', principal: 'spiffe://p/globex' });
  assert.equal(res.http_response, 'ok_response');
  assert.equal(upstream(res)['x-portcullis-dry-run'], 'partner_denied');
  const anonymous = await check({ path: '/v1/trial', principal: '' });
  assert.equal(upstream(anonymous)['x-portcullis-dry-run'], 'credentials_missing');
  assert.equal(upstream(anonymous)['x-portcullis-partner'], undefined);
});
