// The identify stage on a token seen before (the verifier's cache hit): answered without a promise
// and from what was worked out at the first Check, yet with everything that can change between two
// Checks judged again: expiry, revocations, the catalog's partners, the route.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { importJWK, type JWTPayload, SignJWT } from 'jose';
import { pino } from 'pino';
import { ApiKeyVerifier } from '../../src/identity/apikeys.js';
import { CertificateReader } from '../../src/identity/certificates.js';
import { JwksCache } from '../../src/identity/jwks.js';
import { JwtVerifier } from '../../src/identity/jwt.js';
import type { RevocationKind, Revocations } from '../../src/identity/revocation.js';
import { createIdentifyStage } from '../../src/pipeline/identify.js';
import type { Identity } from '../../src/pipeline/outcomes.js';
import type { Catalog, RoutePolicy } from '../../src/policy/catalog.js';
import { parseCatalog } from '../../src/policy/load.js';
import type { Request } from '../../src/request.js';
import type { StageResult } from '../../src/stage.js';
import { CountingKeySet, type FakeClock, fakeClock } from '../support/jwks-server.js';

const ISS = 'https://idp.example.com';
const SKEW = 30;

function catalogOf(status: 'active' | 'suspended'): Catalog {
  const text = `
issuers:
  - name: example-idp
    issuer: ${ISS}
    jwks: { file: keys/jwks.json }
    audiences: [partner-api]
    algorithms: [RS256]
    clock_skew_seconds: ${SKEW}
partners:
  - id: acme
    name: Acme
    status: ${status}
    identities:
      applications: [acme-app]
routes:
  - name: orders
    match: { path: { prefix: /orders } }
    identity: { any_of: [jwt] }
  - name: kept
    match: { path: { prefix: /kept } }
    identity: { any_of: [jwt], keep_credentials: true }
`;
  // Relative to examples/, where the key set is.
  return parseCatalog(text, join(process.cwd(), 'examples', 'identify-cache.yaml'));
}

/** Revocations that can change between two Checks, as Redis's do. */
class LiveRevocations implements Revocations {
  readonly revoked = new Set<string>();
  isRevoked(kind: RevocationKind, id: string): boolean {
    return this.revoked.has(`${kind}:${id}`);
  }
}

async function setup(): Promise<{
  clock: FakeClock;
  keys: CountingKeySet;
  revocations: LiveRevocations;
  identify: ReturnType<typeof createIdentifyStage>;
  catalog: Catalog;
  route: (name: string) => RoutePolicy;
  mint: (extra?: JWTPayload) => Promise<string>;
}> {
  const clock = fakeClock();
  const catalog = catalogOf('active');
  const keys = new CountingKeySet(
    new JwksCache(
      { kind: 'file', path: 'examples/keys/jwks.json', ttlMs: 3_600_000 },
      { clock, logger: pino({ level: 'silent' }), name: 'example-idp' },
    ),
  );
  const issuer = catalog.issuers[0];
  assert.ok(issuer);
  const verifier = new JwtVerifier([{ ...issuer, keys }], { clock, cacheTtlSeconds: 3600 });
  const revocations = new LiveRevocations();
  const identify = createIdentifyStage({
    tokens: verifier,
    apiKeys: new ApiKeyVerifier(null),
    certificates: new CertificateReader(),
    revocations,
    clock,
  });
  const signing = JSON.parse(readFileSync('examples/keys/signing-keys.json', 'utf8')) as {
    keys: Array<{ kid: string; alg: string } & Record<string, unknown>>;
  };
  const jwk = signing.keys.find((k) => k.alg === 'RS256');
  assert.ok(jwk);
  const key = await importJWK(jwk, 'RS256');
  let serial = 0;
  const mint = (extra: JWTPayload = {}) => {
    const now = Math.floor(clock.now() / 1000);
    return new SignJWT({
      iss: ISS,
      aud: 'partner-api',
      client_id: 'acme-app',
      sub: 'user-1',
      scope: 'orders',
      jti: `jti-${++serial}`,
      iat: now,
      exp: now + 300,
      ...extra,
    })
      .setProtectedHeader({ alg: 'RS256', kid: jwk.kid })
      .sign(key);
  };
  const route = (name: string) => {
    const found = catalog.routes.find((r) => r.name === name);
    assert.ok(found);
    return found;
  };
  return { clock, keys, revocations, identify, catalog, route, mint };
}

function request(token: string, path = '/orders'): Request {
  return {
    requestId: '',
    method: 'GET',
    path,
    query: new Map(),
    host: 'api.example.com',
    scheme: 'https',
    // A new string per Check, as the decoder makes: a hit must not depend on string identity.
    headers: new Map([['authorization', Buffer.from(`Bearer ${token}`).toString()]]),
    body: new Uint8Array(0),
    bodyTruncated: false,
    source: { address: '192.0.2.1', port: 40000, principal: '', certificatePem: '' },
    sni: '',
    contextExtensions: new Map(),
    protocol: 'HTTP/1.1',
  };
}

function allowed(result: StageResult<Identity>): Identity {
  if (!result.ok) assert.fail(`denied: ${result.denial.code} (${result.denial.reason ?? ''})`);
  return result.value;
}

function deniedWith(result: StageResult<Identity>, code: string): void {
  assert.equal(result.ok, false, `expected ${code}, got an allow`);
  if (!result.ok) assert.equal(result.denial.code, code, result.denial.reason);
}

describe('identify: a token seen before', () => {
  it('is answered synchronously, with the same identity, and no key lookup', async () => {
    const { identify, catalog, route, keys, mint } = await setup();
    const token = await mint();
    const first = await identify(request(token), catalog, route('orders'));
    const identity = allowed(first);
    assert.equal(identity.partner?.id, 'acme');
    assert.deepEqual(identity.credentials, ['jwt']);
    assert.deepEqual(identity.credentialHeaders, ['authorization']);
    assert.deepEqual([...identity.scopes], ['orders']);
    const second = identify(request(token), catalog, route('orders'));
    assert.equal(second instanceof Promise, false, 'a cache hit needs no promise');
    assert.equal(allowed(await second), identity);
    assert.equal(keys.calls, 1);
  });

  it('an expired token in the cache is refused (token_expired), with the skew', async () => {
    const { identify, catalog, route, clock, mint } = await setup();
    const token = await mint({ exp: Math.floor(clock.now() / 1000) + 100 });
    allowed(await identify(request(token), catalog, route('orders')));
    clock.advance((100 + SKEW - 1) * 1000);
    allowed(await identify(request(token), catalog, route('orders')));
    clock.advance(1000);
    deniedWith(await identify(request(token), catalog, route('orders')), 'token_expired');
  });

  it('a cached token is refused once its jti, then its application, is revoked', async () => {
    const { identify, catalog, route, revocations, mint } = await setup();
    const token = await mint({ jti: 'jti-revoke-me' });
    allowed(await identify(request(token), catalog, route('orders')));
    revocations.revoked.add('jti:jti-revoke-me');
    const byJti = await identify(request(token), catalog, route('orders'));
    deniedWith(byJti, 'token_revoked');
    assert.equal(!byJti.ok && byJti.denial.partner, 'acme');
    revocations.revoked.clear();
    allowed(await identify(request(token), catalog, route('orders')));
    revocations.revoked.add('application:acme-app');
    deniedWith(await identify(request(token), catalog, route('orders')), 'token_revoked');
  });

  it('the answer is not reused under another catalog: a partner suspended there is refused', async () => {
    const { identify, catalog, route, mint } = await setup();
    const token = await mint();
    allowed(await identify(request(token), catalog, route('orders')));
    const suspended = catalogOf('suspended');
    const orders = suspended.routes.find((r) => r.name === 'orders');
    assert.ok(orders);
    deniedWith(await identify(request(token), suspended, orders), 'partner_suspended');
    allowed(await identify(request(token), catalog, route('orders')));
  });

  it('each route gets its own answer: credentials removed on one, kept on the other', async () => {
    const { identify, catalog, route, mint } = await setup();
    const token = await mint();
    for (let i = 0; i < 2; i++) {
      const removed = allowed(await identify(request(token), catalog, route('orders')));
      assert.deepEqual(removed.credentialHeaders, ['authorization']);
      const kept = allowed(await identify(request(token, '/kept'), catalog, route('kept')));
      assert.deepEqual(kept.credentialHeaders, []);
    }
  });
});
