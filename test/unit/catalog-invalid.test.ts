// Invalid catalogs: every fixture in test/fixtures/catalogs/invalid/ must be refused with exactly
// the listed `FILE:LINE:COL: PATH: MESSAGE` lines. Run from the repo root: paths are relative to it.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { CatalogError, formatIssue, loadCatalogFile } from '../../src/policy/load.js';

const DIR = 'test/fixtures/catalogs/invalid';

interface Case {
  /** Expected `formatIssue` lines, in order, without the `FILE:` prefix (added by the test). */
  readonly lines: readonly string[];
}

const METHODS = '"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"';

/** Fixture name (without .yaml) → expected lines. Every fixture must be listed, and vice versa. */
const CASES: Readonly<Record<string, Case>> = {
  // Structure
  'unknown-top-level-key': { lines: ['3:1: partner: unknown key "partner"'] },
  'unknown-route-key': { lines: ['3:5: routes[0].on_eror: unknown key "on_eror"'] },
  // A route's limits live under quota.limits: the error says where.
  'route-limits-top-level': {
    lines: [
      '3:5: routes[0].limits: unknown key "limits" (a route\'s limits go under quota.limits, with per: partner, route or source)',
    ],
  },
  'route-limit-name-clash': {
    lines: [
      '9:13: routes[0].quota.limits[0].name: limit "per-minute" is also a plan or partner limit: give the route\'s limit its own name',
    ],
  },
  'route-limit-source-prefix-not-per-source': {
    lines: [
      '5:84: routes[0].quota.limits[0].source_prefix: only limits with per: source have a source_prefix',
    ],
  },
  // `path` is a union of three strict objects: a typo fails all three, reported once on `path`.
  'unknown-nested-key': {
    lines: [
      '4:7: routes[0].match.path: must have exactly one of "prefix", "exact" or "pattern", starting with "/"',
    ],
  },
  // Only one union member is close: zod reports its issue (and its own wording) directly.
  'path-prefix-without-slash': {
    lines: ['4:15: routes[0].match.path.prefix: Invalid string: must start with "/"'],
  },
  'wrong-type-string-for-list': {
    lines: ['4:7: routes[0].match.hosts: expected array, got string'],
  },
  'wrong-type-root-not-a-mapping': { lines: ['1:1: (root): expected object, got a list'] },
  'host-bad-forms': {
    lines: [
      '5:15: routes[0].match.hosts[0]: "api.example.com:8443" is not a host name, "*.domain" or "*" (no ports, no other wildcards)',
      '5:39: routes[0].match.hosts[1]: "api.*" is not a host name, "*.domain" or "*" (no ports, no other wildcards)',
      '5:48: routes[0].match.hosts[2]: "*foo.com" is not a host name, "*.domain" or "*" (no ports, no other wildcards)',
    ],
  },
  'routes-empty': { lines: ['2:1: routes: at least one route is required'] },
  // A missing key is located at its nearest existing ancestor: here the root mapping.
  'routes-missing': { lines: ['1:1: routes: expected array, got nothing (the key is required)'] },
  empty: { lines: ['1:1: routes: expected array, got nothing (the key is required)'] },

  // Enums
  'bad-enum-status': { lines: ['4:5: partners[0].status: must be one of "active", "suspended"'] },
  'bad-enum-on-error': { lines: ['3:5: routes[0].on_error: must be one of "deny", "allow"'] },
  'admission-bounds': {
    lines: [
      '5:5: settings.admission.max_queue: Too small: expected number to be >=0',
      '3:5: settings.admission.min_limit: min_limit must not be above max_limit',
      '8:5: routes[0].on_overload: must be one of "deny", "allow"',
    ],
  },

  // CIDRs
  'bad-cidr-not-an-ip': {
    lines: ['5:9: access.deny.cidrs[1]: "not-an-ip" is not an IP address or CIDR range'],
  },
  'bad-cidr-ipv4-prefix-too-long': {
    lines: ['3:13: access.allow.cidrs[0]: "10.0.0.0/33" has an invalid prefix length (0-32 for IPv4)'],
  },
  'bad-cidr-ipv6-prefix-too-long': {
    lines: [
      '6:13: routes[0].access.deny.cidrs[0]: "2001:db8::/129" has an invalid prefix length (0-128 for IPv6)',
    ],
  },

  // Uniqueness and references
  'duplicate-route-name': { lines: ['5:5: routes[1].name: duplicate route name "orders"'] },
  'duplicate-partner-id': { lines: ['4:5: partners[1].id: duplicate partner id "acme"'] },
  'unknown-partner-global': { lines: ['6:22: access.deny.partners[1]: unknown partner "globex"'] },
  'unknown-partner-route': { lines: ['9:13: routes[0].access.allow.partners[0]: unknown partner "initech"'] },
  'principal-claimed-twice': {
    lines: [
      '11:11: partners[1].identities.principals[1]: principal "spiffe://partners.example.com/shared" already belongs to partner "acme"',
    ],
  },
  'unknown-default-route': { lines: ['3:1: default_route: unknown route "fallback"'] },

  // Path patterns
  'pattern-unclosed-brace': {
    lines: [
      '4:15: routes[0].match.path.pattern: segment "{id" must be a literal or a whole {name} parameter',
    ],
  },
  'pattern-double-star-not-last': {
    lines: ['5:9: routes[0].match.path.pattern: "/**" is only allowed at the end of a pattern'],
  },

  // Headers
  'header-name-with-space': {
    lines: ['6:9: routes[0].upstream_headers.set.x bad: not a valid HTTP header name (RFC 7230 token)'],
  },
  'header-value-newline': {
    lines: [
      '5:9: routes[0].upstream_headers.set.x-injected: header value must not contain control characters',
    ],
  },
  // Header names are case-insensitive: two spellings of one name must not silently collapse.
  'header-name-case-collision': {
    lines: [
      '6:9: routes[0].upstream_headers.set.x-tenant: duplicate header name "x-tenant" (names are case-insensitive)',
    ],
  },

  // YAML
  'yaml-syntax-error': {
    lines: [
      '3:38: (yaml): Flow sequence in block collection must be sufficiently indented and end with a ]',
      '3:39: (yaml): Flow map in block collection must be sufficiently indented and end with a }',
    ],
  },
  'yaml-duplicate-key': { lines: ['4:5: (yaml): Map keys must be unique'] },

  // Identity: issuers
  // HMAC and "none" are not in the algorithm enum: refused by the schema, never reaching the verifier.
  'issuer-algorithm-hs256': {
    lines: [
      '6:25: issuers[0].algorithms[1]: must be one of "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519" (HMAC and "none" are never accepted)',
    ],
  },
  'issuer-algorithm-none': {
    lines: [
      '7:9: issuers[0].algorithms[0]: must be one of "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519" (HMAC and "none" are never accepted)',
    ],
  },
  // `jwks` is a union of two strict objects ({url, …} or {file, …}): both at once match neither.
  'issuer-jwks-url-and-file': {
    lines: ['4:5: issuers[0].jwks: must have either "url" (with its options) or "file"'],
  },
  'issuer-audiences-missing': {
    lines: ['2:5: issuers[0].audiences: expected array, got nothing (the key is required)'],
  },
  'issuer-jwks-plain-http': {
    lines: ['5:13: issuers[0].jwks.url: must be https (or set allow_http: true, for tests only)'],
  },
  // Two issuers: a bare client id could be minted by either, so it must name its issuer.
  'application-unqualified-two-issuers': {
    lines: [
      '10:11: partners[0].identities.applications[0]: with several issuers, name the issuer: {client_id: acme-app, issuer: ...}',
      '11:37: partners[0].identities.applications[1].issuer: unknown issuer "idp-c"',
    ],
  },
  'issuer-audiences-empty': { lines: ['5:5: issuers[0].audiences: list at least one audience'] },
  'issuer-name-duplicate': { lines: ['7:5: issuers[1].name: duplicate issuer name "idp"'] },
  // Both would crash `serve` at startup (JwtVerifier, JwksCache) if the loader let them through.
  'issuer-iss-duplicate': {
    lines: ['8:5: issuers[1].issuer: issuer "https://idp.example.com/" already belongs to issuer "idp"'],
  },
  'issuer-max-stale-below-ttl': {
    lines: ['7:7: issuers[0].jwks.max_stale_seconds: must be at least ttl_seconds (300)'],
  },

  // Identity: routes
  'route-unknown-issuer': {
    lines: ['11:24: routes[0].identity.jwt.issuers[1]: unknown issuer "partner-idp"'],
  },
  'all-of-jwt-without-issuers': {
    lines: ['4:7: routes[0].identity.all_of: requires jwt, but the catalog has no issuers'],
  },
  'bind-certificate-without-jwt': {
    lines: [
      '6:9: routes[0].identity.jwt.bind_certificate: binds tokens to certificates, but the route does not accept jwt',
    ],
  },

  // Identity: partners
  'api-key-hash-wrong-format': {
    lines: [
      '7:11: partners[0].identities.api_keys[0].hash: must be "hmac-sha256:" and 43 base64url characters',
    ],
  },
  'application-claimed-twice': {
    lines: [
      '11:11: partners[1].identities.applications[1]: application "shared-app" already belongs to partner "acme"',
    ],
  },
  'api-key-id-twice': {
    lines: [
      '12:11: partners[1].identities.api_keys[0].id: API key id "ci-key" already belongs to partner "acme"',
    ],
  },
  'api-key-id-twice-same-partner': {
    lines: ['8:11: partners[0].identities.api_keys[1].id: duplicate API key id "ci-key"'],
  },

  // Quotas: the shape of a limit (schema)
  // A missing key is located at its nearest existing ancestor: the limit's mapping.
  'quota-fixed-window-without-window': {
    lines: ['5:9: partners[0].limits[0].window: fixed_window needs "window" (and no "period")'],
  },
  'quota-gcra-with-window': {
    lines: ['8:9: partners[0].limits[0].period: gcra needs "period" (and no "window")'],
  },
  'quota-burst-on-sliding-window': {
    lines: ['9:9: partners[0].limits[0].burst: only gcra limits have a burst'],
  },
  'quota-bad-duration': {
    lines: ['8:9: partners[0].limits[0].period: must be a duration such as 1s, 30s, 1m, 1h or 1d'],
  },

  // Quotas: references and names (cross-checks)
  'quota-unknown-plan': { lines: ['8:5: partners[0].plan: unknown plan "premium"'] },
  'quota-limit-defined-twice': {
    lines: [
      '10:11: partners[0].limits[0].name: limit "daily" is already defined (by the partner or its plan)',
    ],
  },
  'quota-limit-unknown-route': {
    lines: ['9:23: partners[0].limits[0].routes[1]: unknown route "documents"'],
  },
  'quota-limit-named-rid': {
    lines: ['5:9: partners[0].limits[0].name: "rid" is reserved (it names request ids in the quota store)'],
  },
  'quota-bad-time-zone': { lines: ['4:5: partners[0].time_zone: "Mars/Olympus" is not an IANA time zone'] },
  // What the quota stores would refuse at charge time (integer-exact arithmetic), refused at load.
  'quota-limit-too-large': {
    lines: ['5:9: partners[0].limits[0].name: limit·periodMs and cost·periodMs must be ≤ 2^51'],
  },

  // Several problems at once: all schema problems in one report...
  'many-problems': {
    lines: [
      '6:5: partners[0].status: must be one of "active", "suspended"',
      "8:5: routes[0].name: route name must be 1-63 characters of a-z, 0-9, '.', '_' or '-'",
      `10:22: routes[0].match.methods[1]: must be one of ${METHODS}`,
      '11:5: routes[0].on_error: must be one of "deny", "allow"',
      // zod reports unknown keys of an object after the problems inside it, so not in line order.
      '2:1: settngs: unknown key "settngs"',
    ],
  },
  // ...and all cross-reference problems in one report.
  'many-cross-problems': {
    lines: [
      '4:5: partners[1].id: duplicate partner id "acme"',
      '8:16: access.allow.partners[0]: unknown partner "globex"',
      '13:17: routes[0].access.deny.cidrs[0]: "300.1.1.1/8" is not an IP address or CIDR range',
      '14:5: routes[1].name: duplicate route name "orders"',
      '16:15: routes[1].match.path.pattern: "/**" is only allowed at the end of a pattern',
      '17:1: default_route: unknown route "fallback"',
    ],
  },
};

/** The formatted issues `loadCatalogFile` throws for `file`; fails the test if it loads. */
async function issuesOf(file: string): Promise<CatalogError> {
  try {
    await loadCatalogFile(file);
  } catch (err: unknown) {
    assert.ok(err instanceof CatalogError, `expected a CatalogError, got ${String(err)}`);
    return err;
  }
  assert.fail(`${file} loaded, but it is invalid`);
}

/** 1-based line and column of the first occurrence of `needle` in `text`. */
function positionOf(text: string, needle: string): { line: number; column: number } {
  const offset = text.indexOf(needle);
  assert.notEqual(offset, -1, `"${needle}" not in fixture`);
  const before = text.slice(0, offset).split('\n');
  return { line: before.length, column: (before.at(-1)?.length ?? 0) + 1 };
}

describe('invalid catalogs', () => {
  it('every fixture has a case and every case a fixture', () => {
    const fixtures = readdirSync(DIR)
      .filter((f) => f.endsWith('.yaml'))
      .map((f) => f.slice(0, -'.yaml'.length))
      .sort();
    assert.deepEqual(fixtures, Object.keys(CASES).sort());
  });

  for (const [name, { lines }] of Object.entries(CASES)) {
    const file = `${DIR}/${name}.yaml`;
    it(name, async () => {
      const err = await issuesOf(file);
      assert.deepEqual(
        err.issues.map(formatIssue),
        lines.map((line) => `${file}:${line}`),
      );
      // The error message carries the same lines, so a thrown error is readable on its own.
      assert.equal(err.message, `invalid policy catalog:\n${err.issues.map(formatIssue).join('\n')}`);
    });
  }

  it('a file that does not exist is reported at line 0', async () => {
    const file = `${DIR}/does-not-exist.yaml`;
    const err = await issuesOf(file);
    assert.deepEqual(err.issues.map(formatIssue), [
      `${file}:0:0: (file): cannot read: ENOENT: no such file or directory, open '${file}'`,
    ]);
  });

  describe('line and column point at the offending key or item', () => {
    const POSITIONS: ReadonlyArray<{ name: string; fixture: string; path: string; needle: string }> = [
      {
        name: 'enum value → its key',
        fixture: 'many-problems',
        path: 'partners[0].status',
        needle: 'status: paused',
      },
      { name: 'unknown key → the key', fixture: 'many-problems', path: 'settngs', needle: 'settngs:' },
      {
        name: 'list item in flow sequence → the item',
        fixture: 'many-problems',
        path: 'routes[0].match.methods[1]',
        needle: 'FETCH',
      },
      {
        name: 'cross-check on a scalar → its key',
        fixture: 'many-cross-problems',
        path: 'default_route',
        needle: 'default_route:',
      },
      {
        name: 'duplicate id in the second partner → that id',
        fixture: 'many-cross-problems',
        path: 'partners[1].id',
        needle: 'id: acme\n    name: Acme twice',
      },
    ];
    for (const { name, fixture, path, needle } of POSITIONS) {
      it(name, async () => {
        const file = `${DIR}/${fixture}.yaml`;
        const err = await issuesOf(file);
        const issue = err.issues.find((i) => i.path === path);
        assert.ok(issue, `no issue at ${path}`);
        assert.deepEqual(
          { line: issue.line, column: issue.column },
          positionOf(readFileSync(file, 'utf8'), needle),
        );
      });
    }
  });
});
