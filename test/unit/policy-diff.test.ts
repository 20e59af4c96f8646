// `policy diff`: the structural changes and the decision flips of prepared pairs of catalogs
// (test/fixtures/policy-tests/diff: base.yaml and one copy per change), with the policy tests of
// tests/ and the audit log audit.jsonl (real lines of a portcullis serving base.yaml, made by
// make-audit.ts) as sample requests.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { policyDiff } from '../../src/cli/policy.js';
import {
  compareDecisions,
  diffDocuments,
  type EntityChange,
  type Flip,
  type LoadedCatalog,
  loadForDiff,
  parseAuditLog,
} from '../../src/policy-tools/diff.js';
import { type FixtureFile, findFixtureFiles, loadFixtures } from '../../src/policy-tools/policy-test.js';
import { capture } from '../support/capture.js';

const DIR = 'test/fixtures/policy-tests/diff';
const AUDIT = `${DIR}/audit.jsonl`;
const options = { apiKeyPepper: null };

const base = await loadForDiff(`${DIR}/base.yaml`);
const variant = (name: string): Promise<LoadedCatalog> => loadForDiff(`${DIR}/${name}.yaml`);
const fixtures = (): FixtureFile[] => {
  const { files, issues } = loadFixtures(findFixtureFiles(`${DIR}/tests`), `${DIR}/tests`);
  assert.deepEqual(issues, []);
  return files;
};

/** The version_name change every variant carries, after the one that matters. */
const renamed = (to: string): EntityChange => ({
  kind: 'catalog',
  name: '',
  change: 'changed',
  fields: [{ path: 'version_name', kind: 'changed', old: 'base', new: to }],
});

/** A flip in few words: sample, kind, old code → new code, partner, repetition. */
const brief = (f: Flip) =>
  `${f.partner}: ${f.sample} ${f.kind} ${f.old.code}→${f.new.code}` +
  (f.repeat > 1
    ? ` (request ${f.iteration} of ${f.repeat}, ${f.flipped} flip, final ${f.final?.old.code}→${f.final?.new.code})`
    : '');

async function flips(next: LoadedCatalog, inputs: { tests?: boolean; audit?: boolean }): Promise<string[]> {
  const report = await compareDecisions(
    base.catalog,
    next.catalog,
    {
      ...(inputs.tests ? { tests: fixtures() } : {}),
      ...(inputs.audit ? { audit: { file: 'audit.jsonl', text: readFileSync(AUDIT, 'utf8') } } : {}),
    },
    options,
  );
  assert.deepEqual(report.notCompared, []);
  assert.deepEqual(report.dryRunChanges, []);
  if (report.audit) assert.deepEqual(report.audit.disagreements, [], 'OLD replays the log as it was decided');
  return report.flips.map(brief);
}

const CASES: ReadonlyArray<{
  name: string;
  changes: EntityChange[];
  tests: string[];
  audit: string[];
}> = [
  {
    name: 'partner-suspended',
    changes: [
      {
        kind: 'partner',
        name: 'globex',
        change: 'changed',
        fields: [{ path: 'status', kind: 'changed', old: 'active', new: 'suspended' }],
      },
      renamed('globex-suspended'),
    ],
    tests: [
      'globex: samples.yaml › globex lists orders with its API key allow→deny allowed→partner_suspended',
      'globex: samples.yaml › globex administers allow→deny allowed→partner_suspended',
    ],
    audit: [
      'globex: audit.jsonl:5 allow→deny allowed→partner_suspended',
      'globex: audit.jsonl:6 allow→deny allowed→partner_suspended',
    ],
  },
  {
    name: 'scope-added',
    changes: [
      {
        kind: 'route',
        name: 'orders',
        change: 'changed',
        fields: [{ path: 'identity.jwt.scopes', kind: 'items', added: ['orders'], removed: [] }],
      },
      renamed('orders-scope'),
    ],
    // Scopes live in tokens: a route that lists one refuses certificates and API keys as well.
    tests: [
      'acme: samples.yaml › acme lists orders with a token allow→deny allowed→insufficient_scope',
      'acme: samples.yaml › acme lists orders with its certificate allow→deny allowed→insufficient_scope',
      'globex: samples.yaml › globex lists orders with its API key allow→deny allowed→insufficient_scope',
    ],
    // In the log's order, fewer allowed orders leave acme's quota to its later searches.
    audit: [
      'acme: audit.jsonl:3 allow→deny allowed→insufficient_scope',
      'acme: audit.jsonl:4 allow→deny allowed→insufficient_scope',
      'globex: audit.jsonl:5 allow→deny allowed→insufficient_scope',
      'acme: audit.jsonl:13 deny→allow quota_exceeded→allowed',
      'acme: audit.jsonl:14 deny→allow quota_exceeded→allowed',
    ],
  },
  {
    name: 'limit-lowered',
    changes: [
      {
        kind: 'plan',
        name: 'basic',
        change: 'changed',
        fields: [{ path: 'limits[per-second].burst', kind: 'changed', old: 5, new: 3 }],
        note: 'partners on this plan: acme, globex',
      },
      renamed('burst-3'),
    ],
    tests: [
      'acme: samples.yaml › acme searches in a burst of 5 allow→deny allowed→quota_exceeded (request 4 of 5, 2 flip, final allowed→quota_exceeded)',
      'acme: samples.yaml › the 6th search of a burst is refused allow→deny allowed→quota_exceeded (request 4 of 6, 2 flip, final quota_exceeded→quota_exceeded)',
    ],
    audit: [
      'acme: audit.jsonl:11 allow→deny allowed→quota_exceeded',
      'acme: audit.jsonl:12 allow→deny allowed→quota_exceeded',
    ],
  },
  {
    name: 'allow-narrowed',
    changes: [
      {
        kind: 'route',
        name: 'admin',
        change: 'changed',
        fields: [{ path: 'access.allow.partners', kind: 'items', added: [], removed: ['globex'] }],
      },
      renamed('admin-acme-only'),
    ],
    tests: ['globex: samples.yaml › globex administers allow→deny allowed→partner_not_allowed'],
    audit: ['globex: audit.jsonl:6 allow→deny allowed→partner_not_allowed'],
  },
];

for (const c of CASES) {
  test(`diff base → ${c.name}: structural changes`, async () => {
    const next = await variant(c.name);
    assert.deepEqual(diffDocuments(base.document, next.document), c.changes);
  });
  test(`diff base → ${c.name}: flips of the policy tests' requests`, async () => {
    assert.deepEqual(await flips(await variant(c.name), { tests: true }), c.tests);
  });
  test(`diff base → ${c.name}: flips of the audit log replayed`, async () => {
    assert.deepEqual(await flips(await variant(c.name), { audit: true }), c.audit);
  });
}

test('diff of a catalog with itself: no changes, no flips', async () => {
  assert.deepEqual(diffDocuments(base.document, base.document), []);
  assert.deepEqual(await flips(base, { tests: true, audit: true }), []);
});

test('audit log: what is rebuilt, what is assumed, what is skipped', () => {
  const parsed = parseAuditLog(readFileSync(AUDIT, 'utf8'), base.catalog);
  assert.equal(parsed.lines, 17);
  assert.equal(parsed.decisions, 13);
  assert.equal(parsed.otherVersions, 0);
  // The expired token is not in the log: that line cannot be replayed.
  assert.deepEqual(parsed.skipped, [
    { reason: 'refused while verifying a credential, which the log does not hold', lines: [7] },
  ]);
  const byLine = new Map(parsed.samples.map((s) => [s.line, s]));
  assert.equal(parsed.samples.length, 12);

  // Allowed lines name their credentials.
  assert.equal(byLine.get(3)?.request.principal, 'spiffe://example.com/acme');
  assert.deepEqual(byLine.get(4)?.request.token, { iss: 'idp', client_id: 'acme-app', sub: 'alice' });
  assert.deepEqual(byLine.get(5)?.request.apiKey, { id: 'globex-key' });
  assert.equal(byLine.get(4)?.request.url, 'https://api.example.com/v1/orders'); // the query is not logged
  assert.equal(byLine.get(6)?.request.method, 'DELETE');
  assert.equal(byLine.get(6)?.request.source, '192.0.2.10');
  for (const line of [3, 4, 5, 6]) assert.deepEqual(byLine.get(line)?.assumptions, []);

  // Decided before credentials were read: replayed without any, and said so.
  assert.deepEqual(byLine.get(8)?.assumptions, ['credentials not logged: replayed without any']);
  assert.equal(byLine.get(8)?.request.principal, undefined);
  assert.deepEqual(byLine.get(9)?.assumptions, []); // credentials_missing: there were none

  // Denied after identification: the partner's credentials in OLD stand in.
  assert.equal(byLine.get(13)?.request.principal, 'spiffe://example.com/acme');
  assert.deepEqual(byLine.get(13)?.assumptions, [
    'credentials not logged: partner acme stood in by its mtls spiffe://example.com/acme in OLD',
  ]);
  assert.equal(byLine.get(13)?.logged.code, 'quota_exceeded');
});

test('audit log: lines it cannot use are counted, never fatal', () => {
  const text = [
    'not json',
    JSON.stringify({ msg: 'serving' }),
    JSON.stringify({ msg: 'decision', decision: 'deny', code: 'request_malformed', partner: '', route: '' }),
    JSON.stringify({
      msg: 'decision',
      decision: 'deny',
      code: 'dependency_unavailable',
      method: 'GET',
      host: 'api.example.com',
      path: '/v1/orders',
      policy_version: 'sha256:0000000000000000',
    }),
    JSON.stringify({
      msg: 'decision',
      decision: 'deny',
      code: 'partner_not_allowed',
      partner: 'acme',
      route: 'gone',
      method: 'GET',
      host: 'api.example.com',
      path: '/v1/gone',
    }),
  ].join('\n');
  const parsed = parseAuditLog(text, base.catalog);
  assert.deepEqual(parsed.samples, []);
  assert.equal(parsed.otherVersions, 1);
  assert.deepEqual(parsed.skipped, [
    { reason: 'not a JSON object', lines: [1] },
    { reason: 'the CheckRequest could not be read: no request in the line', lines: [3] },
    { reason: 'an infrastructure failure (on_error), not a policy decision', lines: [4] },
    { reason: 'route gone is not in OLD', lines: [5] },
  ]);
});

test('structure: routes added, removed, reordered; a path changing form; named items nested', () => {
  const route = (name: string, extra: Record<string, unknown> = {}) => ({
    name,
    match: { hosts: ['*'], path: { prefix: `/${name}` } },
    ...extra,
  });
  const before = {
    routes: [route('a'), route('b', { rules: [{ name: 'r1', when: 'true' }] }), route('c')],
    default_route: 'a',
  };
  const after = {
    routes: [
      route('b', {
        rules: [
          { name: 'r1', when: 'false' },
          { name: 'r2', when: 'true' },
        ],
      }),
      { ...route('a'), match: { hosts: ['*'], path: { pattern: '/a/{id}' } } },
      route('d'),
    ],
    default_route: 'b',
  };
  assert.deepEqual(diffDocuments(before, after), [
    { kind: 'route', name: 'c', change: 'removed', fields: [], value: route('c') },
    {
      kind: 'route',
      name: 'b',
      change: 'changed',
      fields: [
        { path: 'rules[r1].when', kind: 'changed', old: 'true', new: 'false' },
        { path: 'rules[r2]', kind: 'added', value: { name: 'r2', when: 'true' } },
      ],
    },
    {
      kind: 'route',
      name: 'a',
      change: 'changed',
      fields: [{ path: 'match.path', kind: 'changed', old: { prefix: '/a' }, new: { pattern: '/a/{id}' } }],
    },
    { kind: 'route', name: 'd', change: 'added', fields: [], value: route('d') },
    {
      kind: 'routes',
      name: '',
      change: 'changed',
      fields: [{ path: 'order', kind: 'reordered', old: ['a', 'b'], new: ['b', 'a'] }],
    },
    {
      kind: 'catalog',
      name: '',
      change: 'changed',
      fields: [{ path: 'default_route', kind: 'changed', old: 'a', new: 'b' }],
    },
  ]);
});

test('policyDiff: a reviewer-readable report; exit 1 on flips, 0 without', async () => {
  const io = capture();
  const code = await policyDiff(
    [`${DIR}/base.yaml`, `${DIR}/allow-narrowed.yaml`, '--tests', `${DIR}/tests`, '--audit', AUDIT],
    io,
  );
  assert.equal(code, 1, io.stderr());
  const text = io.stdout();
  assert.match(text, /^ {2}~ route admin\n {6}access\.allow\.partners: removed globex$/m);
  assert.match(text, /^Decisions: 20 sample requests \(8 from tests, 12 from .*audit\.jsonl\), 2 flips$/m);
  assert.match(text, /^ {2}partner globex \(2\)$/m);
  assert.match(text, /^ {4}allow→deny {2}samples\.yaml › globex administers$/m);
  assert.match(text, /^ {16}allow allowed → deny partner_not_allowed \(403\)$/m);
  assert.match(text, /^2 decisions flip\.$/m);

  const same = capture();
  assert.equal(
    await policyDiff([`${DIR}/base.yaml`, `${DIR}/base.yaml`, '--tests', `${DIR}/tests`], same),
    0,
  );
  assert.match(same.stdout(), /^Catalog: no structural changes$/m);
  assert.match(same.stdout(), /^No decision flips\.$/m);

  const json = capture();
  assert.equal(
    await policyDiff([`${DIR}/base.yaml`, `${DIR}/partner-suspended.yaml`, '--audit', AUDIT, '--json'], json),
    1,
  );
  const report = JSON.parse(json.stdout());
  assert.deepEqual(report.by_partner, { globex: [`${AUDIT}:5`, `${AUDIT}:6`] });
  assert.equal(report.audit.replayed, 12);
});

test('policyDiff: usage and invalid input exit 2', async () => {
  const io = capture();
  assert.equal(await policyDiff([`${DIR}/base.yaml`], io), 2);
  assert.match(io.stderr(), /expected two catalogs, OLD and NEW/);
  const bad = capture();
  assert.equal(await policyDiff([`${DIR}/base.yaml`, 'test/fixtures/catalogs/invalid/empty.yaml'], bad), 2);
  assert.match(bad.stderr(), /^invalid catalog test\/fixtures\/catalogs\/invalid\/empty\.yaml: /m);
  const noAudit = capture();
  assert.equal(
    await policyDiff([`${DIR}/base.yaml`, `${DIR}/base.yaml`, '--audit', `${DIR}/nope.jsonl`], noAudit),
    2,
  );
  assert.match(noAudit.stderr(), /cannot read the audit log/);
});
