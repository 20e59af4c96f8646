// Route matching: path matchers on their own, then matchRoute over compiled catalogs.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Catalog } from '../../src/policy/catalog.js';
import { parseCatalog } from '../../src/policy/load.js';
import { compilePathMatch, matchRoute, type RouteMatch } from '../../src/policy/match.js';
import type { PathMatchDocument } from '../../src/policy/schema.js';

describe('compilePathMatch', () => {
  // Each case: one matcher, the paths it must match and the paths it must not.
  const CASES: ReadonlyArray<{ name: string; match: PathMatchDocument; yes: string[]; no: string[] }> = [
    {
      name: 'prefix matches whole segments',
      match: { prefix: '/v1/orders' },
      yes: ['/v1/orders', '/v1/orders/', '/v1/orders/7', '/v1/orders/7/items'],
      no: ['/v1/ordersX', '/v1/order', '/v1', '/', '/v2/orders'],
    },
    {
      name: 'prefix with a trailing slash also matches the bare segment',
      match: { prefix: '/v1/orders/' },
      yes: ['/v1/orders', '/v1/orders/7'],
      no: ['/v1/ordersX'],
    },
    {
      name: 'prefix / matches every path',
      match: { prefix: '/' },
      yes: ['/', '/v1', '/v1/orders/7', '//x'],
      no: [],
    },
    {
      name: 'exact matches only the same string',
      match: { exact: '/v1/status' },
      yes: ['/v1/status'],
      no: ['/v1/status/', '/v1/status/x', '/v1/Status', '/v1/statu'],
    },
    {
      name: 'pattern {id} matches one non-empty segment',
      match: { pattern: '/v1/orders/{id}' },
      yes: ['/v1/orders/7', '/v1/orders/a-b.c'],
      no: ['/v1/orders', '/v1/orders/', '/v1/orders/7/items', '/v1/orders//7'],
    },
    {
      name: 'pattern with several parameters',
      match: { pattern: '/v1/{tenant}/items/{item_id}' },
      yes: ['/v1/acme/items/9'],
      no: ['/v1/acme/items', '/v1/acme/other/9', '/v1//items/9'],
    },
    {
      name: 'pattern with a trailing /** matches the rest, including nothing',
      match: { pattern: '/v1/files/**' },
      yes: ['/v1/files', '/v1/files/', '/v1/files/a', '/v1/files/a/b/c'],
      no: ['/v1/filesX', '/v1/file', '/v1'],
    },
    {
      name: 'pattern /** matches every path',
      match: { pattern: '/**' },
      yes: ['/', '/v1/x'],
      no: [],
    },
    {
      name: 'pattern {id} then /**',
      match: { pattern: '/v1/orders/{id}/**' },
      yes: ['/v1/orders/7', '/v1/orders/7/items/1'],
      no: ['/v1/orders', '/v1/orders/'],
    },
    {
      name: 'pattern: "." in a literal segment is literal',
      match: { pattern: '/v1/a.b' },
      yes: ['/v1/a.b'],
      no: ['/v1/aXb', '/v1/a.bc'],
    },
    {
      name: 'pattern: other regex metacharacters are literal',
      match: { pattern: '/v1/(x)+/a|b/c?/$d^/*' },
      yes: ['/v1/(x)+/a|b/c?/$d^/*'],
      no: ['/v1/xx/a/c/d/', '/v1/x/b/c/d/anything'],
    },
    {
      name: 'pattern: a single * is a literal segment, not a wildcard',
      match: { pattern: '/v1/*/items' },
      yes: ['/v1/*/items'],
      no: ['/v1/7/items'],
    },
  ];
  for (const { name, match, yes, no } of CASES) {
    it(name, () => {
      const matches = compilePathMatch(match);
      assert.deepEqual(
        yes.filter((p) => !matches(p)),
        [],
        'should match',
      );
      assert.deepEqual(
        no.filter((p) => matches(p)),
        [],
        'should not match',
      );
    });
  }
});

/** A RouteMatch with the route replaced by its name, for deepEqual. */
type Outcome = Exclude<RouteMatch, { kind: 'route' }> | { kind: 'route'; name: string };

const outcome = (m: RouteMatch): Outcome => (m.kind === 'route' ? { kind: 'route', name: m.route.name } : m);
const route = (name: string): Outcome => ({ kind: 'route', name });

const CATALOG = parseCatalog(
  `
routes:
  - name: orders-read
    match: { hosts: [API.example.com], path: { prefix: /v1/orders }, methods: [GET, HEAD] }
  - name: orders-write
    match: { hosts: [api.example.com], path: { prefix: /v1/orders }, methods: [POST, GET] }
  - name: order-cancel
    match: { hosts: [api.example.com], path: { pattern: "/v1/orders/{id}/cancel" }, methods: [POST] }
  - name: wildcard-host
    match: { hosts: ["*.example.com"], path: { exact: /v1/wild } }
  - name: shared-first
    match: { path: { prefix: /v1/shared } }
  - name: shared-deeper
    match: { path: { prefix: /v1/shared/deeper } }
  - name: status
    match: { hosts: ["*"], path: { exact: /v1/status }, methods: [GET] }
`,
  'inline.yaml',
);

interface Case {
  readonly name: string;
  readonly named?: string;
  readonly host?: string;
  readonly path: string;
  readonly method?: string;
  readonly expected: Outcome;
}

function runCases(catalog: Catalog, cases: readonly Case[]): void {
  for (const { name, named, host = 'api.example.com', path, method = 'GET', expected } of cases) {
    it(name, () => assert.deepEqual(outcome(matchRoute(catalog, named, host, path, method)), expected));
  }
}

describe('matchRoute', () => {
  describe('hosts', () => {
    runCases(CATALOG, [
      {
        name: 'exact host (catalog spelling lower-cased)',
        path: '/v1/orders',
        expected: route('orders-read'),
      },
      {
        name: 'exact host: another host misses',
        host: 'api.example.org',
        path: '/v1/orders',
        expected: { kind: 'none' },
      },
      {
        name: '*.example.com matches one label',
        host: 'a.example.com',
        path: '/v1/wild',
        expected: route('wildcard-host'),
      },
      {
        name: '*.example.com matches several labels',
        host: 'a.b.example.com',
        path: '/v1/wild',
        expected: route('wildcard-host'),
      },
      {
        name: '*.example.com does not match example.com',
        host: 'example.com',
        path: '/v1/wild',
        expected: { kind: 'none' },
      },
      {
        name: '*.example.com does not match badexample.com',
        host: 'badexample.com',
        path: '/v1/wild',
        expected: { kind: 'none' },
      },
      { name: '* matches any host', host: 'anything.test', path: '/v1/status', expected: route('status') },
      {
        name: 'default hosts (none listed) match any host',
        host: 'x.test',
        path: '/v1/shared',
        expected: route('shared-first'),
      },
    ]);
  });

  describe('paths, methods and order', () => {
    runCases(CATALOG, [
      { name: 'prefix matches a sub-path', path: '/v1/orders/7', expected: route('orders-read') },
      { name: 'prefix does not match a longer segment', path: '/v1/ordersX', expected: { kind: 'none' } },
      { name: 'method picks the route', path: '/v1/orders', method: 'POST', expected: route('orders-write') },
      {
        name: 'first match wins: GET is listed by two routes',
        path: '/v1/orders',
        method: 'GET',
        expected: route('orders-read'),
      },
      {
        name: 'first match wins: the earlier, shorter prefix shadows the deeper one',
        path: '/v1/shared/deeper/x',
        expected: route('shared-first'),
      },
      {
        name: 'first match wins: an earlier prefix route takes the method of a later pattern route',
        path: '/v1/orders/7/cancel',
        method: 'POST',
        expected: route('orders-write'),
      },
      {
        name: "wrong method: 405 with the union of the matching routes' methods, in order",
        path: '/v1/orders/7',
        method: 'DELETE',
        expected: { kind: 'method', allowed: ['GET', 'HEAD', 'POST'] },
      },
      {
        name: 'wrong method on a single route',
        host: 'x.test',
        path: '/v1/status',
        method: 'POST',
        expected: { kind: 'method', allowed: ['GET'] },
      },
      {
        name: 'methods: [] accepts every method',
        path: '/v1/shared',
        method: 'PATCH',
        expected: route('shared-first'),
      },
      { name: 'nothing matches', path: '/v2', expected: { kind: 'none' } },
    ]);
  });

  describe('the route context extension', () => {
    runCases(CATALOG, [
      {
        name: 'found: host and path are not consulted',
        named: 'order-cancel',
        host: 'elsewhere.test',
        path: '/unrelated',
        method: 'POST',
        expected: route('order-cancel'),
      },
      {
        name: 'unknown name',
        named: 'nope',
        path: '/v1/orders',
        expected: { kind: 'unknown_name', name: 'nope' },
      },
      {
        name: "found, wrong method: only that route's methods are allowed",
        named: 'orders-read',
        path: '/v1/orders',
        method: 'POST',
        expected: { kind: 'method', allowed: ['GET', 'HEAD'] },
      },
      {
        name: 'empty: matched by host, path and method',
        named: '',
        path: '/v1/orders',
        method: 'POST',
        expected: route('orders-write'),
      },
    ]);
  });

  describe('default route', () => {
    const withDefault = parseCatalog(
      `
routes:
  - name: orders
    match: { hosts: [api.example.com], path: { prefix: /v1/orders }, methods: [GET] }
  - name: fallback
    match: { hosts: [fallback.invalid] }
default_route: fallback
`,
      'inline.yaml',
    );
    runCases(withDefault, [
      { name: 'used when nothing matches', path: '/v2/anything', expected: route('fallback') },
      { name: 'not used when a route matches', path: '/v1/orders', expected: route('orders') },
      {
        name: 'not used for an unknown context extension route',
        named: 'gone',
        path: '/v1/orders',
        expected: { kind: 'unknown_name', name: 'gone' },
      },
    ]);

    // A path that matches a route with another method must stay a 405: falling through to the
    // default route would apply the fallback's (usually looser) identity and access rules instead.
    it('not used when a route matches the path with another method', () => {
      assert.deepEqual(
        outcome(matchRoute(withDefault, undefined, 'api.example.com', '/v1/orders', 'DELETE')),
        {
          kind: 'method',
          allowed: ['GET'],
        },
      );
    });
  });
});
