// `portcullis policy test` and `policy diff` as a CI job runs them: the example catalog's own tests
// pass, a deliberately broken catalog fails them by name, an invalid fixture is a usage error with
// FILE:LINE:COLUMN, and a diff replays real audit lines of a running portcullis.
// First through the exported functions (output captured), then through the real CLI process.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildCheckRequest } from '../../src/cli/check.js';
import { EXAMPLE_SIGNING_KEYS, mintToken } from '../../src/cli/identity.js';
import { policyDiff, policyTest } from '../../src/cli/policy.js';
import { sendCheck } from '../../src/envoy/client.js';
import { BROKEN_CATALOG, brokenCatalog } from '../fixtures/policy-tests/make-broken.js';
import { startTestApp } from '../support/app.js';
import { capture } from '../support/capture.js';
import { EICAR } from '../support/clamd.js';

const BROKEN = 'test/fixtures/policy-tests/broken-catalog.yaml';
const INVALID = 'test/fixtures/policy-tests/invalid';
const DIFF = 'test/fixtures/policy-tests/diff';
const EXAMPLE_PEPPER = 'examples/keys/api-key-pepper.txt';
const SUMMARY = /^(\d+) passed, (\d+) failed$/m;

const FAILED_INITECH =
  'FAIL orders.yaml › the suspended partner initech is refused: expected deny partner_suspended (403), ' +
  'got allow allowed (200) (reason: mtls spiffe://partners.example.com/initech)';
const FAILED_GLOBEX =
  'FAIL documents.yaml › globex is not on the allow list: expected deny partner_not_allowed (403), ' +
  'got allow allowed (200) (reason: mtls spiffe://partners.example.com/globex; jwt app=globex-erp sub=)';
const INVALID_LINES = [
  `${INVALID}/cross-problems.yaml:6:5: cases[1].name: duplicate case name "twice the same name"`,
  `${INVALID}/cross-problems.yaml:13:5: cases[1].expect: expect needs at least one of decision, code, status, headers, …`,
  `${INVALID}/cross-problems.yaml:9:7: cases[1].request.token: give token or headers.authorization, not both`,
  `${INVALID}/cross-problems.yaml:11:7: cases[1].request.source: "not-an-ip" is not an IP address`,
  `${INVALID}/cross-problems.yaml:12:7: cases[1].request.certificate: no such file: missing.pem (paths are relative to this file)`,
  `${INVALID}/schema-problems.yaml:9:7: cases[0].expect.decison: unknown key "decison"`,
  `${INVALID}/schema-problems.yaml:11:5: cases[1].request.url: expected string, got nothing (the key is required)`,
  `${INVALID}/schema-problems.yaml:14:7: cases[1].expect.code: unknown decision code (see docs/errors.md)`,
  '8 problems in the policy tests',
];

const failLines = (text: string) => text.split('\n').filter((l) => l.startsWith('FAIL '));

test('policy test examples/tests: every case passes, exit 0, one summary line', async () => {
  const io = capture();
  const code = await policyTest(['examples/tests', '--pepper-file', EXAMPLE_PEPPER], io);
  assert.equal(code, 0, io.stdout() + io.stderr());
  const out = io.stdout();
  assert.match(
    out,
    /^catalog examples\/catalog\.yaml \(default: DIR\/\.\.\/catalog\.yaml\), version sha256:[0-9a-f]{16} \(example-2026-11\)\n/,
  );
  const [, passed, failed] = SUMMARY.exec(out) ?? [];
  assert.equal(failed, '0');
  assert.ok(Number(passed) >= 30, `${passed} cases`);
  assert.equal(out.split('\n').filter((l) => l.startsWith('PASS ')).length, Number(passed));
  // The example tests cover every route and the denials the catalog is about.
  for (const want of [
    /^PASS orders\.yaml › acme lists orders with a token$/m,
    /^PASS orders\.yaml › globex lists orders with the demo API key$/m,
    /^PASS orders\.yaml › the suspended partner initech is refused$/m,
    /^PASS documents\.yaml › a token without the documents scope$/m,
    /^PASS orders\.yaml › DELETE is not a method of orders$/m,
    /^PASS access\.yaml › an unknown path has no route$/m,
    /^PASS quotas\.yaml › the 41st request of the burst is refused$/m,
    /^PASS access\.yaml › TEST-NET-3 is on the global deny list$/m,
    /^PASS status\.yaml › anyone reads the status, on any host$/m,
  ]) {
    assert.match(out, want);
  }
});

test('the broken catalog is the example catalog with its two breaks (else: run make-broken.ts)', () => {
  assert.equal(
    readFileSync(BROKEN_CATALOG, 'utf8'),
    brokenCatalog(readFileSync('examples/catalog.yaml', 'utf8')),
  );
});

test('policy test: the broken catalog fails exactly the cases it breaks, exit 1', async () => {
  const io = capture();
  const code = await policyTest(['examples/tests', '--catalog', BROKEN, '--pepper-file', EXAMPLE_PEPPER], io);
  assert.equal(code, 1, io.stderr());
  const out = io.stdout();
  assert.match(out, /^catalog test\/fixtures\/policy-tests\/broken-catalog\.yaml \(--catalog\)/);
  assert.deepEqual(failLines(out), [FAILED_GLOBEX, FAILED_INITECH]);
  assert.match(
    out,
    /^ {2}got: allow allowed route=orders partner=initech\n {2}at examples\/tests\/orders\.yaml:\d+$/m,
  );
  assert.equal(SUMMARY.exec(out)?.[2], '2');
});

test('policy test: invalid fixtures exit 2 with FILE:LINE:COLUMN, before any case runs', async () => {
  const io = capture();
  assert.equal(await policyTest([INVALID, '--catalog', 'examples/catalog.yaml'], io), 2);
  assert.deepEqual(io.stderr().trimEnd().split('\n'), INVALID_LINES);
  assert.doesNotMatch(io.stdout(), SUMMARY);
});

test('policy test: usage errors and an invalid catalog exit 2', async () => {
  const none = capture();
  assert.equal(await policyTest([], none), 2);
  assert.match(none.stderr(), /expected one DIR/);
  const flag = capture();
  assert.equal(await policyTest(['examples/tests', '--bogus'], flag), 2);
  const missing = capture();
  assert.equal(await policyTest(['no/such/dir'], missing), 2);
  assert.match(missing.stderr(), /no\/such\/dir: no such file or directory/);
  const catalog = capture();
  assert.equal(
    await policyTest(['examples/tests', '--catalog', 'test/fixtures/catalogs/handler-broken.yaml'], catalog),
    2,
  );
  assert.match(
    catalog.stderr(),
    /^test\/fixtures\/catalogs\/handler-broken\.yaml:5:5: routes\[0\]\.on_error: /m,
  );
});

test('policy test --json: the results for tools', async () => {
  const io = capture();
  assert.equal(
    await policyTest(['examples/tests', '--catalog', BROKEN, '--json', '--pepper-file', EXAMPLE_PEPPER], io),
    1,
  );
  const report = JSON.parse(io.stdout());
  assert.equal(report.failed, 2);
  assert.equal(report.catalog.chosen_by, 'flag');
  const initech = report.cases.find(
    (c: { name: string }) => c.name === 'the suspended partner initech is refused',
  );
  assert.equal(initech.passed, false);
  assert.deepEqual(
    initech.mismatches.map((m: { field: string; expected: string; actual: string }) => [
      m.field,
      m.expected,
      m.actual,
    ]),
    [
      ['decision', 'deny', 'allow'],
      ['code', 'partner_suspended', 'allowed'],
      ['status', '403', '200'],
    ],
  );
  assert.equal(initech.actual.partner, 'initech');
});

test('policy test: a real signed token is verified with the catalog key set; without the pepper, a hint', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-policy-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const clock = '2026-11-28T12:00:00Z';
  const nowSeconds = Date.parse(clock) / 1000;
  const token = await mintToken({
    keysFile: EXAMPLE_SIGNING_KEYS,
    kid: undefined,
    issuer: 'https://idp.example.com',
    audience: 'partner-api',
    clientId: 'acme-orders-app',
    subject: 'alice',
    scope: 'orders',
    ttlSeconds: 600,
    certFile: undefined,
    authTime: undefined,
    acr: undefined,
    claims: [],
    nowSeconds,
  });
  const [head, payload] = token.split('.');
  writeFileSync(
    join(dir, 'signed.yaml'),
    `clock: ${clock}
cases:
  - name: a token signed by the example issuer
    request: { url: https://api.example.com/v1/orders, token: "${token}" }
    expect: { decision: allow, partner: acme, upstream_headers: { x-portcullis-subject: alice } }
  - name: the same token with another signature
    request: { url: https://api.example.com/v1/orders, token: "${head}.${payload}.${'A'.repeat(86)}" }
    expect: { decision: deny, code: token_signature_invalid }
  - name: the demo API key
    request: { url: https://api.example.com/v1/orders, api_key: pcl_ARV0BpsrxJFrWHOMIdCsnXbsnSIUYxkvTwA0qkIPJw4 }
    expect: { decision: allow }
`,
  );
  // Uploads are scanned: without clamd, the test scanner finds the EICAR test string.
  writeFileSync(join(dir, 'eicar.pdf'), Buffer.concat([Buffer.from('%PDF-1.7\n'), EICAR]));
  writeFileSync(
    join(dir, 'scan.yaml'),
    `clock: ${clock}
cases:
  - name: an infected upload
    request:
      method: PUT
      url: https://api.example.com/v1/documents/7
      principal: spiffe://partners.example.com/acme
      token: { client_id: acme-orders-app, scope: documents }
      headers: { content-type: application/pdf }
      body: { file: eicar.pdf }
    expect: { decision: deny, code: malware_detected, status: 422 }
`,
  );
  // The pepper comes from --pepper-file (or the environment), whatever the catalog's path.
  const io = capture();
  assert.equal(
    await policyTest([dir, '--catalog', 'examples/catalog.yaml', '--pepper-file', EXAMPLE_PEPPER], io),
    0,
    io.stdout(),
  );
  assert.match(io.stdout(), /^4 passed, 0 failed$/m);
  // A copy of the catalog elsewhere, with the same flag: the same result.
  writeFileSync(
    join(dir, 'catalog.yaml'),
    readFileSync('examples/catalog.yaml', 'utf8').replace(
      /(file|schema): (keys|schemas)\//g,
      `$1: ${process.cwd()}/examples/$2/`,
    ),
  );
  const copied = capture();
  assert.equal(
    await policyTest(
      [join(dir, 'signed.yaml'), '--catalog', join(dir, 'catalog.yaml'), '--pepper-file', EXAMPLE_PEPPER],
      copied,
    ),
    0,
    copied.stdout(),
  );
  // Without it, the example catalog and its copy fail alike, with a hint that says what to pass.
  for (const catalog of ['examples/catalog.yaml', join(dir, 'catalog.yaml')]) {
    const nopepper = capture();
    const saved = { ...process.env };
    delete process.env.PORTCULLIS_API_KEY_PEPPER;
    delete process.env.PORTCULLIS_API_KEY_PEPPER_FILE;
    try {
      assert.equal(await policyTest([join(dir, 'signed.yaml'), '--catalog', catalog], nopepper), 1);
    } finally {
      Object.assign(process.env, saved);
    }
    assert.match(
      nopepper.stdout(),
      /^FAIL signed\.yaml › the demo API key: expected decision allow, got deny api_key_invalid \(401\)/m,
    );
    assert.match(nopepper.stdout(), /^ {2}hint: no API key pepper is configured: pass --pepper-file/m);
  }
});

test('policy diff: the broken catalog, judged by the example tests', async () => {
  const io = capture();
  assert.equal(
    await policyDiff(['examples/catalog.yaml', BROKEN, '--tests', 'examples/tests'], io),
    1,
    io.stderr(),
  );
  const out = io.stdout();
  assert.match(out, /^ {2}~ partner initech\n {6}status: suspended → active$/m);
  assert.match(out, /^ {2}~ route documents\n {6}access\.allow\.partners: added globex$/m);
  assert.match(
    out,
    /^ {2}partner globex \(1\)\n {4}deny→allow {2}documents\.yaml › globex is not on the allow list$/m,
  );
  assert.match(
    out,
    /^ {2}partner initech \(1\)\n {4}deny→allow {2}orders\.yaml › the suspended partner initech is refused$/m,
  );
  assert.match(out, /^ {16}deny partner_suspended \(403\) → allow allowed$/m);
  assert.match(out, /^2 decisions flip\.$/m);
});

test('policy diff --audit: audit lines of a running portcullis are replayed', async (t) => {
  const { address, logs } = await startTestApp(t, { catalogFile: `${DIFF}/base.yaml` });
  const check = (target: string, headers: string[], principal?: string) =>
    sendCheck(
      address,
      buildCheckRequest({
        target,
        headers,
        principal,
        source: '192.0.2.10',
        server: address,
        timeoutMs: 2000,
      }),
      2000,
    );
  await check('https://api.example.com/v1/orders', [], 'spiffe://example.com/acme');
  await check('https://api.example.com/v1/orders', ['x-api-key: pcl_policy-diff-test-key']);
  await check('https://api.example.com/v1/admin/x', [], 'spiffe://example.com/globex');
  await check('https://api.example.com/v1/orders', ['x-api-key: pcl_wrong']);
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-policy-diff-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const audit = join(dir, 'audit.jsonl');
  writeFileSync(audit, `${logs.lines.map((l) => JSON.stringify(l)).join('\n')}\n`);

  const io = capture();
  assert.equal(
    await policyDiff([`${DIFF}/base.yaml`, `${DIFF}/partner-suspended.yaml`, '--audit', audit, '--json'], io),
    1,
  );
  const report = JSON.parse(io.stdout());
  assert.equal(report.audit.decisions, 4);
  assert.equal(report.audit.replayed, 3);
  assert.deepEqual(report.audit.disagreements, []);
  assert.deepEqual(
    report.flips.map((f: { request: string; kind: string; new: { code: string } }) => [
      f.request,
      f.kind,
      f.new.code,
    ]),
    [
      [
        'GET api.example.com/v1/orders (API key globex-key, from 192.0.2.10)',
        'allow→deny',
        'partner_suspended',
      ],
      [
        'GET api.example.com/v1/admin/x (mtls spiffe://example.com/globex, from 192.0.2.10)',
        'allow→deny',
        'partner_suspended',
      ],
    ],
  );
});

// Through the real command, as CI runs it.
const CLI = ['--import', 'tsx', 'src/cli/main.ts'];

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [...CLI, ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

test('CLI: portcullis policy test examples/tests exits 0 with the summary', async () => {
  const ok = await run(['policy', 'test', 'examples/tests', '--pepper-file', EXAMPLE_PEPPER]);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.equal(SUMMARY.exec(ok.stdout)?.[2], '0');
});

test('CLI: the broken catalog exits 1 naming the failed cases', async () => {
  const broken = await run([
    'policy',
    'test',
    'examples/tests',
    '--catalog',
    BROKEN,
    '--pepper-file',
    EXAMPLE_PEPPER,
  ]);
  assert.equal(broken.code, 1, broken.stderr);
  assert.deepEqual(failLines(broken.stdout), [FAILED_GLOBEX, FAILED_INITECH]);
  assert.equal(SUMMARY.exec(broken.stdout)?.[2], '2');
});

test('CLI: an invalid fixture exits 2 with FILE:LINE:COLUMN', async () => {
  const invalid = await run(['policy', 'test', INVALID, '--catalog', 'examples/catalog.yaml']);
  assert.equal(invalid.code, 2);
  assert.deepEqual(invalid.stderr.trimEnd().split('\n'), INVALID_LINES);
});

test('CLI: policy diff exits 1 on flips, 0 without; help documents both', async () => {
  const flips = await run([
    'policy',
    'diff',
    `${DIFF}/base.yaml`,
    `${DIFF}/allow-narrowed.yaml`,
    '--tests',
    `${DIFF}/tests`,
  ]);
  assert.equal(flips.code, 1, flips.stderr);
  assert.match(flips.stdout, /^1 decision flips\.$/m);
  const same = await run([
    'policy',
    'diff',
    `${DIFF}/base.yaml`,
    `${DIFF}/base.yaml`,
    '--tests',
    `${DIFF}/tests`,
  ]);
  assert.equal(same.code, 0, same.stderr);
  const help = await run(['help', 'policy']);
  assert.match(help.stdout, /portcullis policy test DIR/);
  assert.match(help.stdout, /portcullis policy diff OLD NEW/);
});

test('policy diff: a schema-only change is a JSON diff with the flips it causes; an added partner is shown in full', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-diff-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const side of ['old', 'new']) {
    cpSync('examples/catalog.yaml', join(dir, side, 'catalog.yaml'));
    cpSync('examples/schemas', join(dir, side, 'schemas'), { recursive: true });
    cpSync('examples/keys', join(dir, side, 'keys'), { recursive: true });
  }
  // NEW: the order schema requires a currency, the catalog gains a partner, and globex's plan
  // burst shrinks (the 41-request case then ends as it did: 429).
  const schema = JSON.parse(readFileSync('examples/schemas/order.json', 'utf8')) as {
    required: string[];
    properties: Record<string, unknown>;
  };
  schema.required.push('currency');
  schema.properties.currency = { type: 'string' };
  writeFileSync(join(dir, 'new', 'schemas', 'order.json'), JSON.stringify(schema, null, 2));
  const catalog = readFileSync('examples/catalog.yaml', 'utf8');
  writeFileSync(
    join(dir, 'new', 'catalog.yaml'),
    catalog.replace(
      /^partners:\n/m,
      'partners:\n  - id: wayne\n    name: Wayne Enterprises\n    identities:\n      principals: [spiffe://partners.example.com/wayne]\n',
    ),
  );
  const io = capture();
  const code = await policyDiff(
    [
      join(dir, 'old', 'catalog.yaml'),
      join(dir, 'new', 'catalog.yaml'),
      '--tests',
      'examples/tests',
      '--pepper-file',
      EXAMPLE_PEPPER,
    ],
    io,
  );
  const out = io.stdout();
  assert.equal(code, 1, out + io.stderr());
  // Same catalog text but the schema: the versions differ.
  assert.match(out, /~ schema schemas\/order\.json\n( {6}.*\n)* {6}required: added currency\n/);
  assert.match(
    out,
    /~ schema schemas\/order\.json\n( {6}.*\n)* {6}properties\.currency: added \{type: string\}\n/,
  );
  assert.match(
    out,
    /\+ partner wayne added\n {6}id: wayne\n {6}name: Wayne Enterprises\n(.*\n)* {6}identities:\n {8}principals:\n {10}- spiffe:\/\/partners\.example\.com\/wayne\n/,
  );
  assert.match(
    out,
    /allow→deny {2}orders\.yaml › acme places an order with its client certificate\n.*\n.*allow allowed → deny schema_violation \(422\)/,
  );
});
