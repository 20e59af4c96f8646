// Partner identity end to end: the real server (startTestApp), a real JWKS endpoint on 127.0.0.1,
// real tokens (jose), real API keys hashed with the test pepper, real X.509 certificates (openssl),
// a real redis-server for live revocations, and a client built from Envoy's OFFICIAL protos.
// Every case asserts what the partner sees (HTTP status, problem code, WWW-Authenticate) and what
// Envoy sees (gRPC status, headers for the upstream).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { before, describe, type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { JWTPayload } from 'jose';
import { changeRevocation } from '../../src/cli/identity.js';
import type { Clock } from '../../src/clock.js';
import { DENY_CODES, type DenyCode } from '../../src/errors.js';
import { generateApiKey, hashApiKey } from '../../src/identity/apikeys.js';
import { RedisRevocations } from '../../src/identity/revocation.js';
import { createLogger } from '../../src/observability/audit.js';
import { type LogCapture, startTestApp, TEST_PEPPER, type TestApp } from '../support/app.js';
import { clientCertificate, type TestCertificate } from '../support/certs.js';
import { envoyRequest, type RequestSpec } from '../support/envoy-request.js';
import {
  generateTestKey,
  type JwksServer,
  mintToken,
  startJwksServer,
  type TestKey,
} from '../support/jwks-server.js';
import { OfficialCheckClient, type OfficialCheckResponse } from '../support/official-client.js';
import { startRedis } from '../support/redis.js';

// ---------------------------------------------------------------------------------------------
// The world: an issuer, three partners, API keys, certificates, and a catalog over them

const ISS = 'https://idp.example.test/';
const AUD = 'https://api.example.test';
const REALM = 'partner-api "eu"';
/** The realm as it appears inside a challenge: a quoted-string, its quotes escaped. */
const REALM_PARAM = 'realm="partner-api \\"eu\\""';
const ACME = 'spiffe://partners.example.com/acme';
const ACME_EU = 'spiffe://partners.example.com/acme-eu';
const GLOBEX = 'spiffe://partners.example.com/globex';
const ACR_MFA = 'urn:example:acr:mfa';
const ACR_HW = 'urn:example:acr:hwk';

/** Raw API keys: only their HMACs go into the catalog. */
const KEYS = {
  active: generateApiKey(),
  expired: generateApiKey(),
  retired: generateApiKey(),
  leaked: generateApiKey(),
  unknown: generateApiKey(),
} as const;
const hmac = (key: string) => `hmac-sha256:${hashApiKey(key, TEST_PEPPER)}`;

let signer: TestKey;
/** Same kid as `signer`, another key: what a forger would sign with. */
let forger: TestKey;
let certA: TestCertificate;
let certB: TestCertificate;

before(async () => {
  signer = await generateTestKey('RS256', 'idp-2026');
  forger = await generateTestKey('RS256', 'idp-2026');
  certA = clientCertificate({ cn: 'acme', subject: { O: 'Acme' }, uris: [ACME] });
  certB = clientCertificate({ cn: 'acme-eu', subject: { O: 'Acme' }, uris: [ACME_EU] });
});

interface CatalogOptions {
  readonly jwksUrl: string;
  readonly trustXfcc?: boolean;
  readonly ttlSeconds?: number;
  readonly maxStaleSeconds?: number;
  readonly identityHeaders?: Readonly<Record<string, string>>;
}

function catalogText(o: CatalogOptions): string {
  const jwks = [`url: "${o.jwksUrl}"`, 'allow_http: true', 'cooldown_seconds: 1'];
  if (o.ttlSeconds !== undefined) jwks.push(`ttl_seconds: ${o.ttlSeconds}`);
  if (o.maxStaleSeconds !== undefined) jwks.push(`max_stale_seconds: ${o.maxStaleSeconds}`);
  return `
version_name: identity-tests
settings:
  realm: '${REALM}'
  trust_xfcc: ${o.trustXfcc ?? false}
  identity_headers: ${JSON.stringify(o.identityHeaders ?? {})}
  audit: { headers: true }
issuers:
  - name: main
    issuer: "${ISS}"
    jwks:
${jwks.map((l) => `      ${l}`).join('\n')}
    audiences: ["${AUD}"]
    algorithms: [RS256]
partners:
  - id: acme
    name: Acme
    identities:
      principals: ["${ACME}", "${ACME_EU}"]
      applications: [acme-portal]
      api_keys:
        - id: acme-ci
          hash: ${hmac(KEYS.active)}
        - id: acme-old
          hash: ${hmac(KEYS.expired)}
          expires_at: "2024-01-01T00:00:00Z"
        - id: acme-retired
          hash: ${hmac(KEYS.retired)}
          status: revoked
        - id: acme-leaked
          hash: ${hmac(KEYS.leaked)}
  - id: globex
    name: Globex
    identities:
      principals: ["${GLOBEX}"]
      applications: [globex-app]
  - id: initech
    name: Initech
    status: suspended
    identities:
      applications: [initech-app]
revocations:
  api_keys: [acme-leaked]
routes:
  - name: scoped
    match: { path: { prefix: /v1/scoped } }
    identity:
      jwt: { scopes: ["orders:read", "orders:write"] }
  - name: both
    match: { path: { prefix: /v1/both } }
    identity:
      all_of: [mtls, jwt]
  - name: bind-required
    match: { path: { prefix: /v1/bind-required } }
    identity:
      jwt: { bind_certificate: true }
  - name: step-up
    match: { path: { prefix: /v1/step-up } }
    identity:
      jwt:
        max_auth_age_seconds: 300
        acr_values: ["${ACR_MFA}", "${ACR_HW}"]
  - name: query
    match: { path: { prefix: /v1/query } }
    identity:
      jwt: { query_param: access_token }
  - name: keep
    match: { path: { prefix: /v1/keep } }
    identity:
      keep_credentials: true
  - name: mtls-only
    match: { path: { prefix: /v1/mtls } }
    identity:
      any_of: [mtls]
  - name: lenient
    match: { path: { prefix: /v1/lenient } }
    on_error: allow
  - name: orders
    match: { path: { prefix: /v1/orders } }
`;
}

// ---------------------------------------------------------------------------------------------
// Helpers

interface Harness extends TestApp {
  readonly jwks: JwksServer;
  readonly client: OfficialCheckClient;
  check(spec: RequestSpec, timeoutMs?: number): Promise<OfficialCheckResponse>;
  metrics(): Promise<string>;
}

async function setup(
  t: TestContext,
  options: Partial<Omit<CatalogOptions, 'jwksUrl'>> & {
    jwks?: JwksServer;
    clock?: Clock;
    revocations?: RedisRevocations;
  } = {},
): Promise<Harness> {
  const jwks = options.jwks ?? (await startJwksServer([signer]));
  if (!options.jwks) t.after(() => jwks.close());
  const server = await startTestApp(t, {
    catalogText: catalogText({ ...options, jwksUrl: jwks.url }),
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.revocations ? { revocations: options.revocations } : {}),
  });
  const client = new OfficialCheckClient(server.address);
  t.after(() => client.close());
  return {
    ...server,
    jwks,
    client,
    check: (spec, timeoutMs) => client.check(envoyRequest(spec), timeoutMs),
    metrics: async () => (await fetch(`${server.adminUrl}/metrics`)).text(),
  };
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

/** A token of acme's application, fresh, with a new jti; `claims` overrides (undefined drops). */
function token(claims: JWTPayload = {}, key: TestKey = signer): Promise<string> {
  const now = nowSeconds();
  const payload: JWTPayload = {
    iss: ISS,
    aud: AUD,
    client_id: 'acme-portal',
    sub: 'user-42',
    scope: 'orders:read orders:write',
    jti: randomUUID(),
    iat: now,
    exp: now + 600,
    ...claims,
  };
  for (const [k, v] of Object.entries(payload)) if (v === undefined) delete payload[k];
  return mintToken(key, payload);
}

const bearer = (jwt: string) => ({ authorization: `Bearer ${jwt}` });
/** What Envoy sends for a peer certificate: its principal and the URL-encoded PEM. */
const peer = (cert: TestCertificate, principal: string) => ({ principal, certificate: cert.urlEncoded });

const headerMap = (options: { header: { key: string; value: string } }[] | undefined) =>
  Object.fromEntries((options ?? []).map((o) => [o.header.key, o.header.value]));
const meta = (res: OfficialCheckResponse) =>
  Object.fromEntries(Object.entries(res.dynamic_metadata?.fields ?? {}).map(([k, v]) => [k, v.stringValue]));
const challengeOf = (res: OfficialCheckResponse) =>
  headerMap(res.denied_response?.headers)['www-authenticate'];

/** Envoy's HTTP status enum names, for the statuses identity answers with. */
const HTTP_NAMES: Readonly<Record<number, string>> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  503: 'ServiceUnavailable',
};

interface Problem {
  type: string;
  title: string;
  status: number;
  code: string;
  detail: string;
  request_id: string;
}

/** A denial with this HTTP status, gRPC status and problem code. Returns the problem body. */
function assertDenied(res: OfficialCheckResponse, http: number, grpcCode: number, code: DenyCode): Problem {
  assert.equal(res.http_response, 'denied_response', `expected ${code}, got ${JSON.stringify(meta(res))}`);
  assert.equal(res.status.code, grpcCode, 'gRPC status');
  assert.equal(res.denied_response?.status.code, HTTP_NAMES[http], 'HTTP status');
  const problem = JSON.parse(res.denied_response?.body ?? '{}') as Problem;
  assert.equal(problem.code, code);
  assert.equal(problem.status, http);
  assert.equal(problem.title, DENY_CODES[code].title);
  assert.equal(meta(res).code, code);
  return problem;
}

function assertAllowed(res: OfficialCheckResponse): Record<string, string> {
  assert.equal(res.http_response, 'ok_response', `expected allowed, got ${JSON.stringify(meta(res))}`);
  assert.equal(res.status.code ?? 0, 0);
  assert.equal(meta(res).code, 'allowed');
  return headerMap(res.ok_response?.headers);
}

/** RFC 6750 §3.1 invalid_token challenge, with the registry's title as description. */
const invalidToken = (code: DenyCode) =>
  `Bearer ${REALM_PARAM}, error="invalid_token", error_description="${DENY_CODES[code].title}"`;

/** The audit log, every line, as one string (to look for secrets). */
const allLogs = (logs: LogCapture) => logs.lines.map((l) => JSON.stringify(l)).join('\n');

// ---------------------------------------------------------------------------------------------
// JWT bearer tokens

describe('JWT bearer tokens', () => {
  test('allow: identity headers upstream, authorization removed, audit names the app, token never logged', async (t) => {
    const { check, logs } = await setup(t);
    const jwt = await token();
    const res = await check({ headers: bearer(jwt), requestId: 'req-jwt-allow' });
    const upstream = assertAllowed(res);
    assert.equal(upstream['x-portcullis-partner'], 'acme');
    assert.equal(upstream['x-portcullis-application'], 'acme-portal');
    assert.equal(upstream['x-portcullis-subject'], 'user-42');
    assert.equal(upstream['x-portcullis-scopes'], 'orders:read orders:write');
    assert.ok(
      res.ok_response?.headers_to_remove?.includes('authorization'),
      'the token does not go upstream',
    );
    assert.equal(meta(res).partner, 'acme');

    const line = logs.decisions().find((l) => l.request_id === 'req-jwt-allow');
    assert.ok(line, 'one audit line for the request');
    assert.match(String(line.reason), /app=acme-portal/);
    assert.equal(line.partner, 'acme');
    const text = allLogs(logs);
    assert.ok(!text.includes(jwt), 'the raw token is in the logs');
    assert.ok(!text.includes(jwt.split('.')[2] ?? jwt), 'the token signature is in the logs');
  });

  const INVALID: ReadonlyArray<{ name: string; code: DenyCode; make: () => Promise<string> }> = [
    {
      name: 'expired (beyond the clock skew)',
      code: 'token_expired',
      make: () => token({ iat: nowSeconds() - 900, exp: nowSeconds() - 120 }),
    },
    {
      name: 'wrong audience',
      code: 'token_audience_invalid',
      make: () => token({ aud: 'https://other.test' }),
    },
    {
      name: 'unknown issuer',
      code: 'token_issuer_invalid',
      make: () => token({ iss: 'https://evil.example.test/' }),
    },
    {
      name: 'signed by another key with the same kid',
      code: 'token_signature_invalid',
      make: () => token({}, forger),
    },
  ];
  for (const { name, code, make } of INVALID) {
    test(`deny ${code}: ${name}, with an invalid_token challenge`, async (t) => {
      const { check, logs } = await setup(t);
      const jwt = await make();
      const res = await check({ headers: bearer(jwt) });
      assertDenied(res, 401, 16, code);
      assert.equal(challengeOf(res), invalidToken(code));
      assert.ok(!allLogs(logs).includes(jwt), 'the raw token is in the logs');
    });
  }

  test('deny insufficient_scope: 403 with error="insufficient_scope" and the required scopes', async (t) => {
    const { check } = await setup(t);
    const res = await check({ path: '/v1/scoped/1', headers: bearer(await token({ scope: 'orders:read' })) });
    const problem = assertDenied(res, 403, 7, 'insufficient_scope');
    assert.equal(
      challengeOf(res),
      `Bearer ${REALM_PARAM}, error="insufficient_scope", scope="orders:read orders:write"`,
    );
    assert.match(problem.detail, /orders:write/);
    assert.doesNotMatch(problem.detail, /orders:read/, 'names only the missing scope');
    // Both scopes: allowed (the scope claim may also be `scp`, a list).
    assertAllowed(await check({ path: '/v1/scoped/1', headers: bearer(await token()) }));
    assertAllowed(
      await check({
        path: '/v1/scoped/1',
        headers: bearer(await token({ scope: undefined, scp: ['orders:write', 'orders:read'] })),
      }),
    );
  });

  test('deny partner_mismatch: the certificate of one partner with the token of another', async (t) => {
    const { check } = await setup(t);
    const res = await check({
      principal: ACME,
      headers: bearer(await token({ client_id: 'globex-app' })),
    });
    assertDenied(res, 403, 7, 'partner_mismatch');
    // Each alone is fine.
    assertAllowed(await check({ principal: ACME, headers: bearer(await token()) }));
    assertAllowed(
      await check({ principal: GLOBEX, headers: bearer(await token({ client_id: 'globex-app' })) }),
    );
  });

  test('deny partner_unknown (an application no partner owns) and partner_suspended', async (t) => {
    const { check } = await setup(t);
    assertDenied(
      await check({ headers: bearer(await token({ client_id: 'nobody-app' })) }),
      403,
      7,
      'partner_unknown',
    );
    const suspended = await check({ headers: bearer(await token({ client_id: 'initech-app' })) });
    assertDenied(suspended, 403, 7, 'partner_suspended');
    assert.equal(meta(suspended).partner, 'initech');
  });

  test('all_of [mtls, jwt]: the token alone is credentials_missing naming the certificate; both pass', async (t) => {
    const { check } = await setup(t);
    const jwt = await token();
    const res = await check({ path: '/v1/both', headers: bearer(jwt) });
    const problem = assertDenied(res, 401, 16, 'credentials_missing');
    assert.match(problem.detail, /client certificate/);
    assert.doesNotMatch(problem.detail, /bearer token/, 'the token was presented');
    assert.equal(challengeOf(res), `mTLS ${REALM_PARAM}, Bearer ${REALM_PARAM}`);
    const ok = assertAllowed(await check({ path: '/v1/both', principal: ACME, headers: bearer(jwt) }));
    assert.equal(ok['x-portcullis-partner'], 'acme');
    assert.equal(ok['x-portcullis-application'], 'acme-portal');
  });

  test('keep_credentials: the authorization header goes upstream', async (t) => {
    const { check } = await setup(t);
    const res = await check({ path: '/v1/keep', headers: bearer(await token()) });
    assertAllowed(res);
    assert.ok(!res.ok_response?.headers_to_remove?.includes('authorization'));
    // The default route removes it (control).
    const removed = await check({ path: '/v1/orders', headers: bearer(await token()) });
    assert.ok(removed.ok_response?.headers_to_remove?.includes('authorization'));
  });
});

// ---------------------------------------------------------------------------------------------
// Certificate-bound tokens (RFC 8705)

describe('certificate-bound tokens (RFC 8705)', () => {
  const bound = () => token({ cnf: { 'x5t#S256': certA.thumbprint } });

  test('bound to certificate A, presented with certificate A: allowed', async (t) => {
    const { check } = await setup(t);
    const res = await check({ ...peer(certA, ACME), headers: bearer(await bound()) });
    const upstream = assertAllowed(res);
    assert.equal(upstream['x-portcullis-partner'], 'acme');
  });

  const MISMATCHES: ReadonlyArray<{ name: string; spec: () => Promise<RequestSpec> }> = [
    {
      name: "with the partner's other certificate B",
      spec: async () => ({ ...peer(certB, ACME_EU), headers: bearer(await bound()) }),
    },
    { name: 'with no certificate at all', spec: async () => ({ headers: bearer(await bound()) }) },
    {
      name: "with A's principal but no certificate (Envoy without include_peer_certificate)",
      spec: async () => ({ principal: ACME, headers: bearer(await bound()) }),
    },
    {
      name: 'an unbound token on a route with bind_certificate: true',
      spec: async () => ({ path: '/v1/bind-required', ...peer(certA, ACME), headers: bearer(await token()) }),
    },
  ];
  for (const { name, spec } of MISMATCHES) {
    test(`certificate_mismatch: ${name}`, async (t) => {
      const { check } = await setup(t);
      const res = await check(await spec());
      assertDenied(res, 401, 16, 'certificate_mismatch');
      assert.equal(challengeOf(res), invalidToken('certificate_mismatch'));
    });
  }

  test('bind_certificate: true with a bound token and its certificate: allowed', async (t) => {
    const { check } = await setup(t);
    assertAllowed(
      await check({ path: '/v1/bind-required', ...peer(certA, ACME), headers: bearer(await bound()) }),
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Step-up (RFC 9470)

describe('step-up (RFC 9470)', () => {
  const PATH = '/v1/step-up/payments';
  const STEP_UP =
    `Bearer ${REALM_PARAM}, error="insufficient_user_authentication", ` +
    'error_description="A more recent or stronger authentication is required", ' +
    `max_age="300", acr_values="${ACR_MFA} ${ACR_HW}"`;

  test('an old auth_time: step_up_required with max_age', async (t) => {
    const { check } = await setup(t);
    const res = await check({
      path: PATH,
      headers: bearer(await token({ auth_time: nowSeconds() - 3600, acr: ACR_MFA })),
    });
    assertDenied(res, 401, 16, 'step_up_required');
    assert.equal(challengeOf(res), STEP_UP);
  });

  test('no auth_time at all: step_up_required', async (t) => {
    const { check } = await setup(t);
    const res = await check({ path: PATH, headers: bearer(await token({ acr: ACR_MFA })) });
    assertDenied(res, 401, 16, 'step_up_required');
  });

  test('a fresh authentication with the wrong acr: step_up_required with acr_values', async (t) => {
    const { check } = await setup(t);
    const res = await check({
      path: PATH,
      headers: bearer(await token({ auth_time: nowSeconds() - 10, acr: 'urn:example:acr:password' })),
    });
    assertDenied(res, 401, 16, 'step_up_required');
    assert.match(challengeOf(res) ?? '', /error="insufficient_user_authentication"/);
    assert.match(challengeOf(res) ?? '', new RegExp(`acr_values="${ACR_MFA} ${ACR_HW}"`));
  });

  test('a fresh authentication with an accepted acr: allowed', async (t) => {
    const { check } = await setup(t);
    for (const acr of [ACR_MFA, ACR_HW]) {
      assertAllowed(
        await check({ path: PATH, headers: bearer(await token({ auth_time: nowSeconds() - 10, acr })) }),
      );
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Where tokens may come from

describe('token location and ambiguity', () => {
  test('a token in the query on a normal route: token_in_query (400), never logged', async (t) => {
    const { check, logs } = await setup(t);
    const jwt = await token();
    const res = await check({ path: `/v1/orders?access_token=${jwt}` });
    const problem = assertDenied(res, 400, 3, 'token_in_query');
    assert.match(problem.detail, /Authorization: Bearer/);
    assert.equal(challengeOf(res), undefined);
    assert.ok(!allLogs(logs).includes(jwt));
  });

  test('a token in the query on a route with query_param: allowed, and the parameter removed', async (t) => {
    const { check, logs } = await setup(t);
    const jwt = await token();
    const res = await check({ path: `/v1/query/items?page=2&access_token=${jwt}` });
    const upstream = assertAllowed(res);
    assert.equal(upstream['x-portcullis-application'], 'acme-portal');
    const ok = res.ok_response as { query_parameters_to_remove?: string[] } | undefined;
    assert.deepEqual(ok?.query_parameters_to_remove, ['access_token']);
    assert.ok(!allLogs(logs).includes(jwt));
  });

  test('a token in the query and one in the header: credentials_ambiguous', async (t) => {
    const { check } = await setup(t);
    const res = await check({
      path: `/v1/query?access_token=${await token()}`,
      headers: bearer(await token()),
    });
    assertDenied(res, 400, 3, 'credentials_ambiguous');
  });

  test('two bearer tokens (Envoy joins repeated headers with ","): credentials_ambiguous', async (t) => {
    const { check } = await setup(t);
    const [a, b] = [await token(), await token()];
    for (const authorization of [`Bearer ${a},Bearer ${b}`, `Bearer ${a}, Bearer ${b}`]) {
      assertDenied(await check({ headers: { authorization } }), 400, 3, 'credentials_ambiguous');
    }
  });

  test('a repeated x-api-key: credentials_ambiguous, neither key logged', async (t) => {
    const { check, logs } = await setup(t);
    const res = await check({ headers: { 'x-api-key': `${KEYS.active},${KEYS.unknown}` } });
    assertDenied(res, 400, 3, 'credentials_ambiguous');
    const text = allLogs(logs);
    assert.ok(!text.includes(KEYS.active) && !text.includes(KEYS.unknown));
  });
});

// ---------------------------------------------------------------------------------------------
// API keys

describe('API keys', () => {
  const APIKEY_CHALLENGE = `APIKey ${REALM_PARAM}, header="x-api-key"`;

  test('allow: the key id is the application, the key header is removed', async (t) => {
    const { check } = await setup(t);
    const res = await check({ headers: { 'x-api-key': KEYS.active } });
    const upstream = assertAllowed(res);
    assert.equal(upstream['x-portcullis-partner'], 'acme');
    assert.equal(upstream['x-portcullis-application'], 'acme-ci');
    assert.equal(upstream['x-portcullis-subject'], undefined);
    assert.ok(res.ok_response?.headers_to_remove?.includes('x-api-key'));
  });

  const DENIED: ReadonlyArray<{ name: string; key: string; code: DenyCode }> = [
    { name: 'a key of no catalog entry', key: KEYS.unknown, code: 'api_key_invalid' },
    {
      name: 'an almost-right key (last character changed)',
      key: `${KEYS.active.slice(0, -1)}x`,
      code: 'api_key_invalid',
    },
    { name: 'a key whose expires_at passed', key: KEYS.expired, code: 'api_key_expired' },
    { name: 'a key with status: revoked', key: KEYS.retired, code: 'api_key_revoked' },
  ];
  for (const { name, key, code } of DENIED) {
    test(`deny ${code}: ${name}, with an APIKey challenge`, async (t) => {
      const { check } = await setup(t);
      const res = await check({ headers: { 'x-api-key': key } });
      assertDenied(res, 401, 16, code);
      assert.equal(challengeOf(res), APIKEY_CHALLENGE);
    });
  }

  test('deny api_key_revoked: a key listed in the catalog revocations', async (t) => {
    const { check } = await setup(t);
    const res = await check({ headers: { 'x-api-key': KEYS.leaked } });
    assertDenied(res, 401, 16, 'api_key_revoked');
  });

  test('credential denials name the partner in the audit line when the key is known (revoked, expired)', async (t) => {
    const { check, logs } = await setup(t);
    const cases = [
      { key: KEYS.leaked, code: 'api_key_revoked', requestId: 'req-key-listed' },
      { key: KEYS.retired, code: 'api_key_revoked', requestId: 'req-key-retired' },
      { key: KEYS.expired, code: 'api_key_expired', requestId: 'req-key-expired' },
      { key: KEYS.unknown, code: 'api_key_invalid', requestId: 'req-key-unknown' },
    ];
    for (const c of cases) await check({ headers: { 'x-api-key': c.key }, requestId: c.requestId });
    const partnerOf = (requestId: string) => logs.decisions().find((l) => l.request_id === requestId);
    for (const c of cases) {
      const line = partnerOf(c.requestId);
      assert.equal(line?.code, c.code);
      // An unknown key names nobody: it matches no catalog entry.
      assert.equal(line?.partner, c.code === 'api_key_invalid' ? '' : 'acme', c.requestId);
    }
  });

  test('a key revoked by the revocation list is answered like one revoked by status (a 401 carries a challenge)', async (t) => {
    const { check } = await setup(t);
    const listed = await check({ headers: { 'x-api-key': KEYS.leaked } });
    assert.equal(challengeOf(listed), APIKEY_CHALLENGE);
  });

  test('raw keys never reach the logs nor /metrics', async (t) => {
    const { check, logs, metrics } = await setup(t);
    for (const key of Object.values(KEYS)) await check({ headers: { 'x-api-key': key } });
    const text = `${allLogs(logs)}\n${await metrics()}`;
    assert.equal(logs.decisions().length, Object.values(KEYS).length);
    for (const [name, key] of Object.entries(KEYS)) {
      assert.ok(!text.includes(key), `the ${name} key leaks`);
      assert.ok(!text.includes(hashApiKey(key, TEST_PEPPER)), `the ${name} key's hash leaks`);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Credentials on routes that require something else

describe('requirements a route states must hold whatever the credential', () => {
  test('a route requiring scopes is not passable with an API key (which has no scopes)', async (t) => {
    const { check } = await setup(t);
    const res = await check({ path: '/v1/scoped/1', headers: { 'x-api-key': KEYS.active } });
    assert.equal(res.http_response, 'denied_response', `got ${meta(res).code}`);
  });

  test('a step-up route is not passable with a client certificate alone', async (t) => {
    const { check } = await setup(t);
    const res = await check({ path: '/v1/step-up/payments', principal: ACME });
    assert.equal(res.http_response, 'denied_response', `got ${meta(res).code}`);
  });
});

// ---------------------------------------------------------------------------------------------
// Spoofed identity headers and XFCC

describe('identity headers cannot be forged', () => {
  const FORGED = {
    'x-portcullis-partner': 'globex',
    'x-portcullis-application': 'evil-app',
    'x-portcullis-subject': 'admin',
    'x-portcullis-scopes': 'admin:all',
  };

  test('with a token: ours overwrite the forged ones', async (t) => {
    const { check } = await setup(t);
    const res = await check({ headers: { ...FORGED, ...bearer(await token()) } });
    const upstream = assertAllowed(res);
    assert.equal(upstream['x-portcullis-partner'], 'acme');
    assert.equal(upstream['x-portcullis-application'], 'acme-portal');
    assert.equal(upstream['x-portcullis-subject'], 'user-42');
    assert.equal(upstream['x-portcullis-scopes'], 'orders:read orders:write');
    for (const h of res.ok_response?.headers ?? []) {
      assert.deepEqual(h.append, { value: false }, `${h.header.key} must overwrite, not append`);
      // Envoy removes after it sets: a header we set must not also be on the remove list.
      assert.ok(
        !res.ok_response?.headers_to_remove?.includes(h.header.key),
        `${h.header.key} is also removed`,
      );
    }
  });

  test('with a certificate only: the forged ones we do not set are removed', async (t) => {
    const { check } = await setup(t);
    const res = await check({ principal: ACME, headers: FORGED });
    const upstream = assertAllowed(res);
    assert.equal(upstream['x-portcullis-partner'], 'acme');
    for (const name of ['x-portcullis-application', 'x-portcullis-subject', 'x-portcullis-scopes']) {
      assert.equal(upstream[name], undefined, `${name} is not ours to set here`);
      assert.ok(res.ok_response?.headers_to_remove?.includes(name), `${name} must be removed`);
    }
  });
});

test('custom identity header names: ours are set under them, forged ones under either name removed', async (t) => {
  const { check } = await setup(t, {
    identityHeaders: { application: 'x-client-app', subject: 'x-end-user' },
  });
  const forged = {
    'x-client-app': 'evil-app',
    'x-end-user': 'admin',
    'x-portcullis-application': 'evil-app',
  };
  const jwt = await check({ headers: { ...forged, ...bearer(await token()) } });
  const upstream = assertAllowed(jwt);
  assert.equal(upstream['x-client-app'], 'acme-portal');
  assert.equal(upstream['x-end-user'], 'user-42');
  assert.equal(upstream['x-portcullis-application'], undefined);
  assert.ok(jwt.ok_response?.headers_to_remove?.includes('x-portcullis-application'));

  const mtls = await check({ principal: ACME, headers: forged });
  assertAllowed(mtls);
  assert.deepEqual(mtls.ok_response?.headers_to_remove?.filter((h) => h in forged).sort(), [
    'x-client-app',
    'x-end-user',
    'x-portcullis-application',
  ]);
});

describe('x-forwarded-client-cert', () => {
  const xfcc = (cert: TestCertificate, uri: string) =>
    `By=spiffe://cluster.local/ns/gw/sa/envoy;Hash=${cert.hashHex};Subject="${cert.subject}";URI=${uri}`;

  test('trust_xfcc: true and no peer principal: the header identifies the partner', async (t) => {
    const { check } = await setup(t, { trustXfcc: true });
    const res = await check({ path: '/v1/mtls', headers: { 'x-forwarded-client-cert': xfcc(certA, ACME) } });
    const upstream = assertAllowed(res);
    assert.equal(upstream['x-portcullis-partner'], 'acme');
    assert.equal(meta(res).partner, 'acme');
    // Its Hash also serves certificate binding.
    const jwt = await token({ cnf: { 'x5t#S256': certA.thumbprint } });
    assertAllowed(await check({ headers: { 'x-forwarded-client-cert': xfcc(certA, ACME), ...bearer(jwt) } }));
    const other = await check({
      headers: { 'x-forwarded-client-cert': xfcc(certB, ACME_EU), ...bearer(jwt) },
    });
    assertDenied(other, 401, 16, 'certificate_mismatch');
  });

  test('trust_xfcc: false (the default): the same header is ignored', async (t) => {
    const { check } = await setup(t, { trustXfcc: false });
    const res = await check({ path: '/v1/mtls', headers: { 'x-forwarded-client-cert': xfcc(certA, ACME) } });
    assertDenied(res, 401, 16, 'credentials_missing');
  });
});

// ---------------------------------------------------------------------------------------------
// The identity provider's JWKS endpoint goes away

describe('JWKS unavailable', () => {
  test('keys older than max_stale_seconds and the JWKS server closed: 503 token_keys_unavailable, on on_error: allow routes too', async (t) => {
    // The clock moves past max_stale (10 s) without waiting: an injected clock ahead of real time.
    // Envoy's deadline is real time, so the client gives the Check a long one.
    let offsetMs = 0;
    const clock: Clock = { now: () => Date.now() + offsetMs };
    const jwks = await startJwksServer([signer]);
    t.after(() => jwks.close());
    const { check, metrics, logs } = await setup(t, { jwks, clock, ttlSeconds: 10, maxStaleSeconds: 10 });
    assertAllowed(await check({ headers: bearer(await token()) }));

    await jwks.close();
    offsetMs = 11_000;
    // Fresh tokens (new jti): a verified token would be served from the token cache.
    const denied = await check({ headers: bearer(await token()) }, 30_000);
    const problem = assertDenied(denied, 503, 14, 'token_keys_unavailable');
    assert.equal(challengeOf(denied), undefined, 'not the partner’s fault: no challenge');
    assert.doesNotMatch(JSON.stringify(problem), /127\.0\.0\.1|jwks|stale/i, 'no internals in the body');

    // A token nobody can verify is never let through, whatever on_error says.
    const lenient = await check({ path: '/v1/lenient', headers: bearer(await token()) }, 30_000);
    assertDenied(lenient, 503, 14, 'token_keys_unavailable');

    const text = await metrics();
    assert.match(text, /portcullis_jwks_fetches_total\{issuer="main",result="failed"\} [1-9]/);
    assert.doesNotMatch(text, /portcullis_failures_total\{route="lenient",cause="[a-z_]+"\} [1-9]/);
    const line = logs.decisions().find((l) => l.code === 'token_keys_unavailable');
    assert.match(String(line?.reason), /JWKS main/, 'the audit log says which key set');
  });

  test('the JWKS server down when portcullis starts: 503 token_keys_unavailable, not a 401', async (t) => {
    const jwks = await startJwksServer([signer]);
    await jwks.close();
    const { check, metrics } = await setup(t, { jwks });
    const res = await check({ headers: bearer(await token()) });
    assertDenied(res, 503, 14, 'token_keys_unavailable');
    const text = await metrics();
    assert.match(text, /portcullis_jwks_age_seconds\{issuer="main"\} \+Inf\n/);
    assert.match(text, /portcullis_jwks_fetches_total\{issuer="main",result="ok"\} 0\n/);
  });
});

// ---------------------------------------------------------------------------------------------
// Live revocation across replicas

/** Polls `probe` every 20 ms until true; fails at the deadline. Returns the observed delay. */
async function within(t: TestContext, what: string, probe: () => Promise<boolean>, deadlineMs = 1000) {
  const start = performance.now();
  for (;;) {
    if (await probe()) {
      const elapsed = Math.round(performance.now() - start);
      t.diagnostic(`${what}: observed after ${elapsed} ms`);
      return elapsed;
    }
    if (performance.now() - start > deadlineMs) assert.fail(`${what}: not within ${deadlineMs} ms`);
    await sleep(20);
  }
}

describe('live revocation', () => {
  test('revoke and unrevoke a jti and an application: both replicas follow within 1 s', async (t) => {
    const redis = await startRedis(t);
    const jwks = await startJwksServer([signer]);
    t.after(() => jwks.close());
    const replicas: Harness[] = [];
    for (let i = 0; i < 2; i++) {
      const revocations = new RedisRevocations({ url: redis.url, logger: createLogger('silent') });
      t.after(() => revocations.close());
      await revocations.start();
      replicas.push(await setup(t, { jwks, revocations }));
    }
    const codes = async (jwt: string) =>
      Promise.all(replicas.map(async (r) => meta(await r.check({ headers: bearer(jwt) })).code));
    const everywhere = (jwt: string, code: string) => async () => (await codes(jwt)).every((c) => c === code);

    const jti = randomUUID();
    const jwt = await token({ jti });
    assert.deepEqual(await codes(jwt), ['allowed', 'allowed']);

    await changeRevocation(redis.url, 'revoke', 'jti', jti, undefined);
    await within(t, 'jti revoked on both replicas', everywhere(jwt, 'token_revoked'));
    const denied = await replicas[1]?.check({ headers: bearer(jwt) });
    assert.ok(denied);
    assertDenied(denied, 401, 16, 'token_revoked');
    assert.equal(challengeOf(denied), invalidToken('token_revoked'));
    // The token was verified before it was found revoked: the audit line names its partner.
    const revokedLine = replicas[1]?.logs.decisions().find((l) => l.code === 'token_revoked');
    assert.equal(revokedLine?.partner, 'acme');
    assert.deepEqual(await codes(await token()), ['allowed', 'allowed'], 'only that token');

    await changeRevocation(redis.url, 'unrevoke', 'jti', jti, undefined);
    await within(t, 'jti unrevoked on both replicas', everywhere(jwt, 'allowed'));

    await changeRevocation(redis.url, 'revoke', 'application', 'acme-portal', undefined);
    await within(t, 'application revoked on both replicas', everywhere(jwt, 'token_revoked'));
    assert.deepEqual(
      await codes(await token()),
      ['token_revoked', 'token_revoked'],
      'every token of the app',
    );
    assert.deepEqual(
      await codes(await token({ client_id: 'globex-app' })),
      ['allowed', 'allowed'],
      'other applications unaffected',
    );

    await changeRevocation(redis.url, 'unrevoke', 'application', 'acme-portal', undefined);
    await within(t, 'application unrevoked on both replicas', everywhere(jwt, 'allowed'));
  });
});

// ---------------------------------------------------------------------------------------------
// Metrics

test('metrics: JWKS age and successful fetches per issuer', async (t) => {
  const { check, metrics } = await setup(t);
  assertAllowed(await check({ headers: bearer(await token()) }));
  const text = await metrics();
  const age = /^portcullis_jwks_age_seconds\{issuer="main"\} (\S+)$/m.exec(text)?.[1];
  assert.ok(age !== undefined, 'portcullis_jwks_age_seconds{issuer="main"} is exported');
  assert.ok(Number(age) >= 0, `age ${age} >= 0`);
  const fetches = /^portcullis_jwks_fetches_total\{issuer="main",result="ok"\} (\S+)$/m.exec(text)?.[1];
  assert.ok(fetches !== undefined, 'portcullis_jwks_fetches_total{issuer="main",result="ok"} is exported');
  assert.ok(Number(fetches) >= 1, `fetches ${fetches} >= 1`);
});

// ---------------------------------------------------------------------------------------------
// Two issuers: a client id is only trusted from the issuer it is registered with

describe('two issuers', () => {
  test("an issuer cannot mint another issuer's client id; a stray access_token is refused", async (t) => {
    const keyA = await generateTestKey('RS256', 'a-1');
    const keyB = await generateTestKey('ES256', 'b-1');
    const jwksA = await startJwksServer([keyA]);
    const jwksB = await startJwksServer([keyB]);
    t.after(() => Promise.all([jwksA.close(), jwksB.close()]));
    const issuer = (name: string, url: string, alg: string) =>
      `  - { name: ${name}, issuer: "https://${name}.example/", jwks: { url: "${url}", allow_http: true }, audiences: [api], algorithms: [${alg}] }`;
    const { address } = await startTestApp(t, {
      catalogText: [
        'issuers:',
        issuer('idp-a', jwksA.url, 'RS256'),
        issuer('idp-b', jwksB.url, 'ES256'),
        'partners:',
        '  - id: acme',
        '    name: Acme',
        '    identities: { applications: [{ client_id: acme-app, issuer: idp-a }] }',
        'routes:',
        '  - name: orders',
        '    match: { path: { prefix: /v1/orders } }',
        '    identity: { any_of: [jwt], jwt: { query_param: token } }',
      ].join('\n'),
    });
    const client = new OfficialCheckClient(address);
    t.after(() => client.close());
    const claims = { client_id: 'acme-app', aud: 'api', exp: Math.floor(Date.now() / 1000) + 300 };
    const fromA = await mintToken(keyA, { ...claims, iss: 'https://idp-a.example/' });
    const fromB = await mintToken(keyB, { ...claims, iss: 'https://idp-b.example/' });
    const check = (spec: RequestSpec) => client.check(envoyRequest(spec));

    assertAllowed(await check({ headers: bearer(fromA) }));
    assertDenied(await check({ headers: bearer(fromB) }), 403, 7, 'partner_unknown');
    // The route takes tokens from ?token=, so the conventional ?access_token= is still refused.
    assertAllowed(await check({ path: `/v1/orders?token=${fromA}` }));
    assertDenied(await check({ path: `/v1/orders?access_token=${fromA}` }), 400, 3, 'token_in_query');
  });
});
