// Issue 12, finding 8: one route's policy cannot be reached through another. Routes `admin` (prefix
// /v1/admin, GET/POST, acme only) then `public` (prefix /, anonymous): every variant of an admin path
// an attacker might try is either judged by `admin` or refused, never allowed through `public`.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startTestApp } from '../support/app.js';
import { envoyRequest, type RequestSpec } from '../support/envoy-request.js';
import { OfficialCheckClient, type OfficialCheckResponse } from '../support/official-client.js';

const CATALOG = `
partners:
  - id: acme
    name: Acme
    identities: { principals: ["spiffe://p/acme"] }
routes:
  - name: admin
    match:
      hosts: [api.example.com]
      path: { prefix: /v1/admin }
      methods: [GET, POST]
    access: { allow: { partners: [acme] } }
  - name: export
    match:
      hosts: [api.example.com]
      path: { exact: /v1/reports/export }
      methods: [POST]
    access: { allow: { partners: [acme] } }
  - name: public
    match: { path: { prefix: / } }
    identity: { required: false }
`;

const code = (res: OfficialCheckResponse) => res.dynamic_metadata?.fields.code?.stringValue;
const route = (res: OfficialCheckResponse) => res.dynamic_metadata?.fields.route?.stringValue;

test('finding 8: no admin path variant is allowed through the catch-all public route', async (t) => {
  const { address } = await startTestApp(t, { catalogText: CATALOG });
  const client = new OfficialCheckClient(address);
  t.after(() => client.close());
  const check = (spec: RequestSpec) => client.check(envoyRequest(spec));

  // name, request, the code an anonymous caller must get.
  const cases: [string, RequestSpec, string][] = [
    ['GET (the baseline)', { method: 'GET', path: '/v1/admin/users' }, 'credentials_missing'],
    ['HEAD', { method: 'HEAD', path: '/v1/admin/users' }, 'method_not_allowed'],
    ['DELETE', { method: 'DELETE', path: '/v1/admin/users' }, 'method_not_allowed'],
    [
      'method "get" (methods are case-sensitive)',
      { method: 'get', path: '/v1/admin/users' },
      'method_not_allowed',
    ],
    [
      'host with a trailing dot',
      { host: 'api.example.com.', path: '/v1/admin/users' },
      'credentials_missing',
    ],
    [
      'host in upper case with a port',
      { host: 'API.Example.COM:443', path: '/v1/admin/users' },
      'credentials_missing',
    ],
    ['path parameters (;)', { path: '/v1/admin;x=1/users' }, 'request_path_invalid'],
    ['path parameter on the last segment', { path: '/v1/admin/users;jsessionid=1' }, 'request_path_invalid'],
    ['upper-case path', { path: '/V1/ADMIN/users' }, 'credentials_missing'],
    ['mixed-case path', { path: '/v1/Admin' }, 'credentials_missing'],
    ['trailing slash on the prefix', { path: '/v1/admin/' }, 'credentials_missing'],
    [
      'exact route with a trailing slash',
      { method: 'POST', path: '/v1/reports/export/' },
      'credentials_missing',
    ],
    ['exact route, other method', { method: 'GET', path: '/v1/reports/export' }, 'method_not_allowed'],
    ['exact route, other case', { method: 'POST', path: '/V1/Reports/Export' }, 'credentials_missing'],
  ];
  for (const [name, spec, expected] of cases) {
    const res = await check(spec);
    assert.equal(code(res), expected, `${name}: got ${code(res)} via ${route(res)}`);
    assert.notEqual(route(res), 'public', `${name}: judged by the public route`);
  }

  // The catch-all still serves what no other route owns.
  assert.equal(code(await check({ method: 'GET', path: '/v1/status' })), 'allowed');
  assert.equal(code(await check({ method: 'HEAD', path: '/v1/adminx' })), 'allowed');
  const head405 = await check({ method: 'HEAD', path: '/v1/admin/users' });
  assert.deepEqual(
    head405.denied_response?.headers?.find((h) => h.header.key === 'allow')?.header.value,
    'GET, POST',
  );
});

function validate(file: string): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', 'policy', 'validate', file],
      { timeout: 20_000 },
      (err, stdout) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout }),
    );
  });
}

test('finding 8: policy validate warns when a catch-all route follows more specific ones', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-routing-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'catch-all-last.yaml'), CATALOG);
  const warned = await validate(join(dir, 'catch-all-last.yaml'));
  assert.equal(warned.code, 0, warned.stdout);
  const line = CATALOG.split('\n').findIndex((l) => l.includes('match: { path: { prefix: / } }')) + 1;
  assert.match(
    warned.stdout,
    new RegExp(
      `^warning: .*catch-all-last\\.yaml:${line}:\\d+: routes\\[2\\]\\.match\\.path: catch-all route "public" follows more specific routes \\(admin, export\\)`,
      'm',
    ),
  );
  // Only specific routes: nothing to warn about.
  writeFileSync(join(dir, 'specific.yaml'), CATALOG.slice(0, CATALOG.indexOf('  - name: public')));
  const quiet = await validate(join(dir, 'specific.yaml'));
  assert.equal(quiet.code, 0, quiet.stdout);
  assert.doesNotMatch(quiet.stdout, /warning/);
});
