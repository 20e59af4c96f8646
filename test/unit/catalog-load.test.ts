// Valid catalogs: the example loads, defaults are applied as documented, and the compiled catalog is
// frozen, versioned by content and indexed for the hot path.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import type { Catalog, RoutePolicy } from '../../src/policy/catalog.js';
import { loadCatalogFile, parseCatalog } from '../../src/policy/load.js';

const EXAMPLE = 'examples/catalog.yaml';
const MINIMAL = 'routes:\n  - name: all\n';

const parse = (text: string): Catalog => parseCatalog(text, 'inline.yaml');

/** The only route of a one-route catalog. */
function onlyRoute(catalog: Catalog): RoutePolicy {
  assert.equal(catalog.routes.length, 1);
  const [route] = catalog.routes;
  assert.ok(route);
  return route;
}

/** An access policy with no lists at all. */
const OPEN = { allowPartners: new Set(), denyPartners: new Set(), allowCidrs: null, denyCidrs: null };

describe('examples/catalog.yaml', () => {
  it('loads, with its routes and partners in catalog order', async () => {
    const catalog = await loadCatalogFile(EXAMPLE);
    assert.equal(catalog.file, EXAMPLE);
    assert.equal(catalog.versionName, 'example-2026-11');
    assert.deepEqual(
      catalog.routes.map((r) => r.name),
      ['orders', 'documents', 'status'],
    );
    assert.deepEqual(
      [...catalog.partners.values()].map((p) => [p.id, p.status]),
      [
        ['acme', 'active'],
        ['globex', 'active'],
        ['initech', 'suspended'],
      ],
    );
    assert.equal(catalog.defaultRoute, undefined);
  });

  it('has the same version as parseCatalog on the same text', async () => {
    const catalog = await loadCatalogFile(EXAMPLE);
    // Same text, same version, wherever it is loaded from (the file name is only for references).
    assert.equal(catalog.version, parseCatalog(readFileSync(EXAMPLE, 'utf8'), EXAMPLE).version);
  });
});

describe('defaults', () => {
  // One case per documented default, each on the minimal catalog plus what the case needs.
  const DEFAULTS: ReadonlyArray<{ name: string; yaml?: string; check: (c: Catalog) => void }> = [
    { name: 'version_name: none → ""', check: (c) => assert.equal(c.versionName, '') },
    {
      name: 'settings.problem_base_url: https://portcullis.dev/docs/partner-errors',
      check: (c) => assert.equal(c.settings.problemBaseUrl, 'https://portcullis.dev/docs/partner-errors'),
    },
    {
      name: 'settings.max_header_value_bytes: 16384',
      check: (c) => assert.equal(c.settings.maxHeaderValueBytes, 16384),
    },
    { name: 'settings.audit.headers: false', check: (c) => assert.equal(c.settings.auditHeaders, false) },
    {
      name: 'settings given in part: the other settings keep their defaults',
      yaml: 'settings:\n  audit: { headers: true }\n',
      check: (c) =>
        assert.deepEqual(c.settings, {
          problemBaseUrl: 'https://portcullis.dev/docs/partner-errors',
          maxHeaderValueBytes: 16384,
          auditHeaders: true,
          realm: 'partner-api',
          quotas: { replicas: 1, idempotencySeconds: 600 },
          trustXfcc: false,
          admission: {
            minLimit: 16,
            maxLimit: 1024,
            initialLimit: 64,
            maxQueue: 2048,
            maxQueueWaitMs: 1000,
            latencyTolerance: 2,
            eventLoopDelayMs: 100,
          },
          identityHeaders: {
            partner: 'x-portcullis-partner',
            application: 'x-portcullis-application',
            subject: 'x-portcullis-subject',
            scopes: 'x-portcullis-scopes',
          },
        }),
    },
    { name: 'access: no global lists', check: (c) => assert.deepEqual(c.access, OPEN) },
    {
      name: 'access given in part: the missing lists are empty',
      yaml: 'access:\n  deny:\n    cidrs: [10.0.0.0/8]\n',
      check: (c) => {
        assert.equal(c.access.allowCidrs, null);
        assert.equal(c.access.allowPartners.size, 0);
        assert.equal(c.access.denyPartners.size, 0);
        assert.ok(c.access.denyCidrs?.check('10.1.2.3', 'ipv4'));
      },
    },
    { name: 'partners: none', check: (c) => assert.equal(c.partners.size, 0) },
    {
      name: 'partners[].status: active',
      yaml: 'partners:\n  - { id: acme, name: Acme }\n',
      check: (c) => assert.equal(c.partners.get('acme')?.status, 'active'),
    },
    {
      name: 'partners[].identities.principals: none',
      yaml: 'partners:\n  - { id: acme, name: Acme }\n',
      check: (c) => assert.equal(c.partnersByPrincipal.size, 0),
    },
    { name: 'routes[].match.hosts: ["*"]', check: (c) => assert.equal(onlyRoute(c).match.anyHost, true) },
    {
      name: 'routes[].match.path: { prefix: / }',
      check: (c) => {
        const { path } = onlyRoute(c).match;
        for (const p of ['/', '/v1', '/v1/orders/7']) assert.ok(path(p), p);
      },
    },
    {
      name: 'routes[].match.methods: [] (every method)',
      check: (c) => assert.equal(onlyRoute(c).match.methods.size, 0),
    },
    {
      name: 'routes[].identity.required: true',
      check: (c) => assert.equal(onlyRoute(c).identity.required, true),
    },
    { name: 'routes[].access: no lists', check: (c) => assert.deepEqual(onlyRoute(c).access, OPEN) },
    { name: 'routes[].on_error: deny', check: (c) => assert.equal(onlyRoute(c).onError, 'deny') },
    {
      name: 'routes[].upstream_headers.set: {}',
      check: (c) => assert.deepEqual(onlyRoute(c).upstreamSet, []),
    },
    {
      name: 'routes[].upstream_headers.remove: []',
      check: (c) => assert.deepEqual(onlyRoute(c).upstreamRemove, []),
    },
    {
      name: 'routes[].response_headers.set: {}',
      check: (c) => assert.deepEqual(onlyRoute(c).responseSet, []),
    },
    { name: 'default_route: none', check: (c) => assert.equal(c.defaultRoute, undefined) },
  ];
  for (const { name, yaml = '', check } of DEFAULTS) {
    it(name, () => check(parse(`${yaml}${MINIMAL}`)));
  }
});

describe('the compiled catalog is frozen', () => {
  const catalog = parse(`${MINIMAL}  - name: other\n`);
  const route = catalog.routes[0];
  assert.ok(route);

  const FROZEN: ReadonlyArray<{ name: string; value: object }> = [
    { name: 'catalog', value: catalog },
    { name: 'settings', value: catalog.settings },
    { name: 'access', value: catalog.access },
    { name: 'routes', value: catalog.routes },
    { name: 'a route', value: route },
    { name: 'a route matcher', value: route.match },
    { name: 'a route header list', value: route.upstreamSet },
  ];
  for (const { name, value } of FROZEN) {
    it(`${name} is frozen`, () => assert.ok(Object.isFrozen(value)));
  }

  // Test files are ES modules, hence strict mode: writes to frozen objects throw.
  const WRITES: ReadonlyArray<{ name: string; write: () => void }> = [
    { name: 'catalog.version', write: () => ((catalog as { version: string }).version = 'sha256:0') },
    {
      name: 'settings.maxHeaderValueBytes',
      write: () => ((catalog.settings as { maxHeaderValueBytes: number }).maxHeaderValueBytes = 1),
    },
    { name: 'routes.push', write: () => (catalog.routes as RoutePolicy[]).push(route) },
    { name: 'routes[0] =', write: () => ((catalog.routes as RoutePolicy[])[0] = route) },
    { name: 'route.onError', write: () => ((route as { onError: string }).onError = 'allow') },
  ];
  for (const { name, write } of WRITES) {
    it(`assigning ${name} throws`, () => assert.throws(write, TypeError));
  }
});

describe('version', () => {
  const sha = (text: string) => `sha256:${createHash('sha256').update(text).digest('hex').slice(0, 16)}`;

  it('is "sha256:" and the first 16 hex digits of the text\'s SHA-256', () => {
    const { version } = parse(MINIMAL);
    assert.match(version, /^sha256:[0-9a-f]{16}$/);
    assert.equal(version, sha(MINIMAL));
  });

  it('is stable for the same text', () => {
    assert.equal(parse(MINIMAL).version, parse(MINIMAL).version);
    assert.equal(parseCatalog(MINIMAL, 'a.yaml').version, parseCatalog(MINIMAL, 'b.yaml').version);
  });

  // Any byte counts, even where the meaning does not change.
  const CHANGES: ReadonlyArray<{ name: string; text: string }> = [
    { name: 'one letter of a name', text: 'routes:\n  - name: alm\n' },
    { name: 'a trailing newline', text: `${MINIMAL}\n` },
    { name: 'a comment', text: `# x\n${MINIMAL}` },
  ];
  for (const { name, text } of CHANGES) {
    it(`changes with ${name}`, () => assert.notEqual(parse(text).version, parse(MINIMAL).version));
  }

  it('carries version_name alongside, not in place of, the hash', () => {
    const text = `version_name: release-7\n${MINIMAL}`;
    const catalog = parse(text);
    assert.equal(catalog.versionName, 'release-7');
    assert.equal(catalog.version, sha(text));
  });
});

describe('header names are lower-cased', () => {
  const route = onlyRoute(
    parse(
      [
        'routes:',
        '  - name: all',
        '    upstream_headers:',
        '      set: { X-Api-Version: "2026-11", x-plain: v }',
        '      remove: [X-Debug, Authorization]',
        '    response_headers:',
        '      set: { Cache-Control: max-age=10 }',
        '',
      ].join('\n'),
    ),
  );
  const CASES: ReadonlyArray<{ name: string; actual: unknown; expected: unknown }> = [
    {
      name: 'upstream_headers.set',
      actual: route.upstreamSet,
      expected: [
        { name: 'x-api-version', value: '2026-11' },
        { name: 'x-plain', value: 'v' },
      ],
    },
    { name: 'upstream_headers.remove', actual: route.upstreamRemove, expected: ['x-debug', 'authorization'] },
    {
      name: 'response_headers.set (values keep their case)',
      actual: route.responseSet,
      expected: [{ name: 'cache-control', value: 'max-age=10' }],
    },
  ];
  for (const { name, actual, expected } of CASES) {
    it(name, () => assert.deepEqual(actual, expected));
  }
});

describe('lookup maps', () => {
  const catalog = parse(
    [
      'partners:',
      '  - id: acme',
      '    name: Acme',
      '    identities: { principals: [spiffe://p/acme, acme.partners.example.com] }',
      '  - id: globex',
      '    name: Globex',
      '    identities: { principals: [spiffe://p/globex] }',
      'routes:',
      '  - name: orders',
      '  - name: fallback',
      'default_route: fallback',
      '',
    ].join('\n'),
  );

  it('routesByName holds every route, the same objects as routes', () => {
    assert.deepEqual([...catalog.routesByName.keys()], ['orders', 'fallback']);
    for (const route of catalog.routes) assert.equal(catalog.routesByName.get(route.name), route);
  });

  it('partnersByPrincipal maps every principal to its partner', () => {
    const owners = [...catalog.partnersByPrincipal].map(([principal, p]) => [principal, p.id]);
    assert.deepEqual(owners, [
      ['spiffe://p/acme', 'acme'],
      ['acme.partners.example.com', 'acme'],
      ['spiffe://p/globex', 'globex'],
    ]);
    assert.equal(catalog.partnersByPrincipal.get('spiffe://p/acme'), catalog.partners.get('acme'));
  });

  it('defaultRoute is the named route', () => {
    assert.ok(catalog.defaultRoute);
    assert.equal(catalog.defaultRoute, catalog.routesByName.get('fallback'));
  });
});
