// CEL rules: compiled at load (type errors found then), evaluated per request over a stable input.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CatalogError, formatIssue, parseCatalog } from '../../src/policy/load.js';
import { compileRule, type RuleInput } from '../../src/policy/rules.js';

const input = (over: Partial<RuleInput> = {}): RuleInput => ({
  method: 'POST',
  path: '/v1/orders',
  host: 'api.example.com',
  route: 'orders',
  source_ip: '192.0.2.1',
  content_type: 'application/json',
  headers: new Map([['x-tenant', 'eu']]),
  query: new Map([['bulk', ['1']]]),
  body_bytes: 2048n,
  partner: 'acme',
  partner_name: 'Acme',
  application: 'acme-app',
  user: 'alice',
  principal: '',
  scopes: ['orders'],
  claims: new Map<string, unknown>([
    ['region', 'eu'],
    ['amr', ['pwd', 'otp']],
  ]),
  credentials: ['jwt'],
  now: 1_795_000_000n,
  hour: 14n,
  weekday: 3n,
  ...over,
});
const rule = (when: string) => compileRule({ name: 'r', when, action: 'deny', message: 'm', dryRun: false });

const evaluations: [string, string, boolean][] = [
  ['string equality', "method == 'POST'", true],
  ['membership in a list', "'orders' in scopes && !('admin' in scopes)", true],
  ['map lookup', "headers['x-tenant'] == 'eu'", true],
  ['presence test before lookup', "'x-missing' in headers && headers['x-missing'] == 'a'", false],
  ['query list', "'bulk' in query && query['bulk'][0] == '1'", true],
  ['int comparison', 'body_bytes > 1024 && hour >= 8 && hour < 18 && weekday == 3', true],
  ['claims of any type', "claims['region'] == 'eu' && 'otp' in claims['amr']", true],
  ['string functions', "path.startsWith('/v1/') && host.endsWith('.example.com')", true],
  ['macros', "scopes.exists(s, s.startsWith('ord'))", true],
];
for (const [name, when, expected] of evaluations) {
  test(`evaluates: ${name}`, () => {
    const compiled = rule(when);
    assert.ok(typeof compiled !== 'string', String(compiled));
    assert.equal(compiled.evaluate(input()), expected);
  });
}

const loadErrors: [string, string, RegExp][] = [
  ['syntax error', '1 +', /^CEL: .*1:3/],
  ['unknown variable', "metod == 'POST'", /unresolved attribute/],
  ['type error', 'method + 1', /no matching overload for '_\+_' applied to '\(string, int\)'/],
  ['non-boolean result', "'yes'", /must be a bool, got string/],
  ['int result', 'body_bytes', /must be a bool, got int/],
  ['too long', `${"method == 'x' || ".repeat(200)}true`, /longer than 2048/],
];
for (const [name, when, error] of loadErrors) {
  test(`refused at load: ${name}`, () => {
    const compiled = rule(when);
    assert.equal(typeof compiled, 'string');
    assert.match(compiled as string, error);
  });
}

test('a runtime error names the rule and throws (the route decides with on_error)', () => {
  const compiled = rule("headers['x-absent'] == 'a'");
  assert.ok(typeof compiled !== 'string');
  assert.throws(() => compiled.evaluate(input()), /rule r: .*x-absent/);
});

test('the catalog loader reports a bad rule with its file, line and path', () => {
  const text = [
    'routes:',
    '  - name: orders',
    '    rules:',
    '      - name: ok',
    '        when: "method == \'GET\'"',
    '      - name: broken',
    '        when: "method + 1"',
  ].join('\n');
  assert.throws(
    () => parseCatalog(text, 'rules.yaml'),
    (err: unknown) => {
      assert.ok(err instanceof CatalogError);
      assert.deepEqual(err.issues.map(formatIssue), [
        "rules.yaml:7:9: routes[0].rules[1].when: CEL: found no matching overload for '_+_' applied to '(string, int)'",
      ]);
      return true;
    },
  );
});
