// JwtVerifier against the attacks and edge cases a bearer-token check must survive. Each case is a
// named test asserting the exact TokenFailure. Keys are real (jose), the issuer's key set is a real
// JwksCache reading a JWKS file; the "attacker" endpoints named by jku/x5u are real local servers
// that must never be asked anything.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { exportSPKI, importJWK, type JWTPayload, SignJWT } from 'jose';
import { pino } from 'pino';
import { JwksCache, type KeySet } from '../../src/identity/jwks.js';
import {
  type IssuerConfig,
  JwtVerifier,
  type JwtVerifierOptions,
  MAX_TOKEN_BYTES,
  TOKEN_FAILURES,
  type TokenFailure,
  type VerifyResult,
} from '../../src/identity/jwt.js';
import {
  CountingKeySet,
  type FakeClock,
  fakeClock,
  generateTestKey,
  type JwksServer,
  jwksOf,
  mintToken,
  rawToken,
  startJwksServer,
  type TestKey,
} from '../support/jwks-server.js';

const ISS = 'https://idp.example.test/';
const AUD = 'https://api.example.test';
const SKEW = 30;
const MAX_LIFETIME = 3600;
const silent = pino({ level: 'silent' });

let dir = '';
let jwksFile = '';
/** Published by the issuer: rs (RS256), ps (PS256), es (ES256, which the issuer does not allow). */
let rs: TestKey;
let ps: TestKey;
let es: TestKey;
/** Never published: the attacker's own key. */
let attacker: TestKey;
let attackerServer: JwksServer;

before(async () => {
  [rs, ps, es, attacker] = await Promise.all([
    generateTestKey('RS256', 'issuer-rs'),
    generateTestKey('PS256', 'issuer-ps'),
    generateTestKey('ES256', 'issuer-es'),
    generateTestKey('RS256', 'attacker-rs'),
  ]);
  dir = mkdtempSync(join(tmpdir(), 'portcullis-jwt-'));
  jwksFile = join(dir, 'jwks.json');
  writeFileSync(jwksFile, JSON.stringify(jwksOf(rs, ps, es)));
  // The attacker also publishes its key under the issuer's kids, to make a fetch tempting.
  attackerServer = await startJwksServer({
    keys: [attacker.publicJwk, { ...attacker.publicJwk, kid: rs.kid }],
  });
});

after(async () => {
  await attackerServer.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Setup {
  readonly verifier: JwtVerifier;
  readonly keys: CountingKeySet;
  readonly clock: FakeClock;
  /** The clock's time in epoch seconds. */
  readonly now: number;
}

function setup(issuer: Partial<IssuerConfig> = {}, options: Partial<JwtVerifierOptions> = {}): Setup {
  const clock = fakeClock();
  const cache = new JwksCache(
    { kind: 'file', path: jwksFile, ttlMs: 3_600_000 },
    { clock, logger: silent, name: 'test' },
  );
  const keys = new CountingKeySet(cache);
  const verifier = new JwtVerifier(
    [
      {
        name: 'example-idp',
        issuer: ISS,
        audiences: [AUD],
        algorithms: ['RS256', 'PS256'],
        clockSkewSeconds: SKEW,
        maxLifetimeSeconds: MAX_LIFETIME,
        requiredClaims: [],
        keys,
        ...issuer,
      },
    ],
    { clock, ...options },
  );
  return { verifier, keys, clock, now: Math.floor(clock.now() / 1000) };
}

let serial = 0;
/** A well-formed claim set at `now`, overlaid with `extra` (undefined drops a claim). */
function claims(now: number, extra: JWTPayload = {}): JWTPayload {
  return {
    iss: ISS,
    aud: AUD,
    sub: 'user-1',
    client_id: 'acme-app',
    jti: `jti-${++serial}`,
    iat: now,
    exp: now + 300,
    scope: 'orders:read orders:write',
    ...extra,
  };
}

function expectFailure(result: VerifyResult, failure: TokenFailure, reason?: RegExp): void {
  assert.equal(result.ok, false, `expected ${failure}, got ok`);
  if (result.ok) return;
  assert.equal(result.failure, failure, `reason: ${result.reason}`);
  if (reason) assert.match(result.reason, reason);
}

function expectOk(result: VerifyResult): asserts result is Extract<VerifyResult, { ok: true }> {
  assert.ok(result.ok, result.ok ? '' : `expected ok, got ${result.failure}: ${result.reason}`);
}

/** Base64url of arbitrary text, for hand-built segments. */
const b64 = (text: string) => Buffer.from(text).toString('base64url');

interface AttackCase {
  readonly name: string;
  readonly token: (now: number) => Promise<string> | string;
  readonly failure: TokenFailure;
  readonly reason?: RegExp;
  readonly issuer?: Partial<IssuerConfig>;
  /** The key set must not even be asked (the token is refused before). */
  readonly noKeyLookup?: boolean;
}

const ATTACKS: readonly AttackCase[] = [
  // Algorithms
  {
    name: 'alg none, no signature',
    token: (now) => rawToken({ alg: 'none', typ: 'JWT' }, claims(now)),
    failure: 'token_algorithm_not_allowed',
    reason: /"none" is not allowed/,
    noKeyLookup: true,
  },
  {
    name: 'alg none with a real kid',
    token: (now) => rawToken({ alg: 'none', kid: rs.kid }, claims(now)),
    failure: 'token_algorithm_not_allowed',
    noKeyLookup: true,
  },
  {
    name: 'alg NONE (case games)',
    token: (now) => rawToken({ alg: 'NONE' }, claims(now)),
    failure: 'token_algorithm_not_allowed',
    noKeyLookup: true,
  },
  {
    name: 'HS256 signed with the RSA public key (PEM) as HMAC secret',
    token: async (now) =>
      new SignJWT(claims(now))
        .setProtectedHeader({ alg: 'HS256', kid: rs.kid })
        .sign(new TextEncoder().encode(await exportSPKI(rs.publicKey))),
    failure: 'token_algorithm_not_allowed',
    reason: /"HS256" is not allowed/,
    noKeyLookup: true,
  },
  {
    name: 'HS256 signed with the public JWK JSON as HMAC secret',
    token: (now) =>
      new SignJWT(claims(now))
        .setProtectedHeader({ alg: 'HS256', kid: rs.kid })
        .sign(new TextEncoder().encode(JSON.stringify(rs.publicJwk))),
    failure: 'token_algorithm_not_allowed',
    noKeyLookup: true,
  },
  {
    name: 'ES256 token from a published ES256 key, issuer allows only RS256 and PS256',
    token: (now) => mintToken(es, claims(now)),
    failure: 'token_algorithm_not_allowed',
    reason: /allowed: RS256, PS256/,
    noKeyLookup: true,
  },
  {
    name: 'alg swapped to another allowed one (PS256 header, kid of the RS256 key)',
    token: async (now) => {
      const real = await mintToken(rs, claims(now));
      const [, payload, signature] = real.split('.');
      return `${b64(JSON.stringify({ alg: 'PS256', kid: rs.kid }))}.${payload}.${signature}`;
    },
    failure: 'token_key_unknown',
    reason: /no PS256 key for kid "issuer-rs"/,
  },

  // Keys
  {
    name: 'kid naming a key the issuer does not have',
    token: (now) => mintToken(attacker, claims(now)),
    failure: 'token_key_unknown',
    reason: /kid "attacker-rs"/,
  },
  {
    name: 'jku pointing at the attacker, attacker key and kid',
    token: (now) => mintToken(attacker, claims(now), { jku: attackerServer.url }),
    failure: 'token_key_unknown',
  },
  {
    name: "jku pointing at the attacker, attacker key under the issuer's kid",
    token: (now) => mintToken(attacker, claims(now), { kid: rs.kid, jku: attackerServer.url }),
    failure: 'token_signature_invalid',
  },
  {
    name: "x5u pointing at the attacker, attacker key under the issuer's kid",
    token: (now) => mintToken(attacker, claims(now), { kid: rs.kid, x5u: attackerServer.url }),
    failure: 'token_signature_invalid',
  },
  {
    name: 'embedded jwk header carrying the attacker public key',
    token: (now) => mintToken(attacker, claims(now), { kid: rs.kid, jwk: attacker.publicJwk }),
    failure: 'token_signature_invalid',
  },
  {
    name: 'embedded jwk header without kid',
    token: (now) => mintToken(attacker, claims(now), { kid: undefined, jwk: attacker.publicJwk }),
    failure: 'token_signature_invalid',
  },
  {
    name: 'x5c header carrying a certificate chain',
    token: (now) => mintToken(attacker, claims(now), { kid: rs.kid, x5c: ['MIIBfake'] }),
    failure: 'token_signature_invalid',
  },
  {
    name: 'payload swapped under a genuine signature',
    token: async (now) => {
      const real = await mintToken(rs, claims(now));
      const forged = await mintToken(rs, claims(now, { client_id: 'someone-else' }));
      const [header, , signature] = real.split('.');
      return `${header}.${forged.split('.')[1]}.${signature}`;
    },
    failure: 'token_signature_invalid',
  },
  {
    name: 'signature stripped (empty third segment)',
    token: async (now) => `${(await mintToken(rs, claims(now))).split('.').slice(0, 2).join('.')}.`,
    failure: 'token_signature_invalid',
  },

  // Header extensions
  {
    name: 'crit with an unknown extension',
    token: (now) =>
      mintToken(rs, claims(now), { crit: ['urn:example:must-understand'], 'urn:example:must-understand': 1 }),
    failure: 'token_malformed',
    reason: /critical extensions/,
    noKeyLookup: true,
  },
  {
    name: 'crit naming b64 (unencoded payload)',
    token: (now) => mintToken(rs, claims(now), { crit: ['b64'], b64: true }),
    failure: 'token_malformed',
    noKeyLookup: true,
  },
  {
    name: 'nested JWT (cty: JWT)',
    token: (now) => mintToken(rs, claims(now), { cty: 'JWT' }),
    failure: 'token_malformed',
    reason: /nested/,
    noKeyLookup: true,
  },
  {
    name: 'nested JWT (cty: jwt, lower case)',
    token: (now) => mintToken(rs, claims(now), { cty: 'jwt' }),
    failure: 'token_malformed',
    noKeyLookup: true,
  },
  {
    name: 'kid that is not a string',
    token: (now) => rawToken({ alg: 'RS256', kid: 7 }, claims(now), 'c2ln'),
    failure: 'token_malformed',
    noKeyLookup: true,
  },
  {
    name: 'no alg',
    token: (now) => rawToken({ kid: rs.kid }, claims(now), 'c2ln'),
    failure: 'token_malformed',
    noKeyLookup: true,
  },

  // Time
  {
    name: 'exp = now - skew - 1',
    token: (now) => mintToken(rs, claims(now, { iat: now - 600, exp: now - SKEW - 1 })),
    failure: 'token_expired',
  },
  {
    name: 'exp = now - skew (the boundary is expired)',
    token: (now) => mintToken(rs, claims(now, { iat: now - 600, exp: now - SKEW })),
    failure: 'token_expired',
  },
  {
    name: 'exp = now with no skew allowed',
    token: (now) => mintToken(rs, claims(now, { iat: now - 600, exp: now })),
    failure: 'token_expired',
    issuer: { clockSkewSeconds: 0 },
  },
  {
    name: 'nbf = now + skew + 1',
    token: (now) => mintToken(rs, claims(now, { nbf: now + SKEW + 1 })),
    failure: 'token_not_yet_valid',
  },
  {
    name: 'iat far in the future',
    token: (now) => mintToken(rs, claims(now, { iat: now + 86_400, exp: now + 86_400 + 300 })),
    failure: 'token_lifetime_invalid',
    reason: /in the future/,
  },
  {
    name: 'iat = now + skew + 1',
    token: (now) => mintToken(rs, claims(now, { iat: now + SKEW + 1 })),
    failure: 'token_lifetime_invalid',
  },
  {
    name: 'exp - iat over maxLifetimeSeconds',
    token: (now) => mintToken(rs, claims(now, { iat: now, exp: now + MAX_LIFETIME + 1 })),
    failure: 'token_lifetime_invalid',
    reason: /3601 s \(exp - iat\), over the 3600 s limit/,
  },
  {
    name: 'no iat, exp - now over maxLifetimeSeconds',
    token: (now) => mintToken(rs, claims(now, { iat: undefined, exp: now + MAX_LIFETIME + 1 })),
    failure: 'token_lifetime_invalid',
    reason: /exp - now/,
  },
  {
    name: 'no exp',
    token: (now) => mintToken(rs, claims(now, { exp: undefined })),
    failure: 'token_claims_invalid',
    reason: /"exp"/,
  },
  {
    name: 'no exp, issuer without maxLifetimeSeconds',
    token: (now) => mintToken(rs, claims(now, { exp: undefined })),
    failure: 'token_claims_invalid',
    issuer: { maxLifetimeSeconds: undefined },
  },
  {
    name: 'exp is a string',
    token: (now) => mintToken(rs, claims(now, { exp: String(now + 300) as unknown as number })),
    failure: 'token_claims_invalid',
  },

  // Issuer and audience
  {
    name: 'unknown iss',
    token: (now) => mintToken(rs, claims(now, { iss: 'https://evil.example.test/' })),
    failure: 'token_issuer_invalid',
    reason: /unknown issuer "https:\/\/evil\.example\.test\/"/,
    noKeyLookup: true,
  },
  {
    name: 'iss differing only by a trailing slash',
    token: (now) => mintToken(rs, claims(now, { iss: 'https://idp.example.test' })),
    failure: 'token_issuer_invalid',
    noKeyLookup: true,
  },
  {
    name: 'no iss',
    token: (now) => mintToken(rs, claims(now, { iss: undefined })),
    failure: 'token_issuer_invalid',
    noKeyLookup: true,
  },
  {
    name: 'wrong aud',
    token: (now) => mintToken(rs, claims(now, { aud: 'https://other-api.example.test' })),
    failure: 'token_audience_invalid',
    reason: /names none of https:\/\/api\.example\.test/,
  },
  {
    name: 'aud list without ours',
    token: (now) => mintToken(rs, claims(now, { aud: ['a', 'b'] })),
    failure: 'token_audience_invalid',
  },
  {
    name: 'no aud',
    token: (now) => mintToken(rs, claims(now, { aud: undefined })),
    failure: 'token_audience_invalid',
  },

  // Shape
  {
    name: 'a 100 KB token',
    token: (now) => mintToken(rs, claims(now, { pad: 'x'.repeat(100_000) })),
    failure: 'token_malformed',
    reason: new RegExp(`over the ${MAX_TOKEN_BYTES}-byte limit`),
    noKeyLookup: true,
  },
  {
    name: 'a 100 KB string of junk',
    token: () => 'A'.repeat(100 * 1024),
    failure: 'token_malformed',
    noKeyLookup: true,
  },
  {
    name: "header segment with '+' and '/' (base64, not base64url)",
    token: async (now) => `ab+/${(await mintToken(rs, claims(now))).slice(4)}`,
    failure: 'token_malformed',
    reason: /header is not base64url/,
    noKeyLookup: true,
  },
  {
    name: 'payload segment with padding',
    token: async (now) => {
      const [h, p, s] = (await mintToken(rs, claims(now))).split('.');
      return `${h}.${p}==.${s}`;
    },
    failure: 'token_malformed',
    noKeyLookup: true,
  },
  {
    name: 'signature segment with a space',
    token: async (now) => `${await mintToken(rs, claims(now))} x`,
    failure: 'token_malformed',
    noKeyLookup: true,
  },
  {
    name: 'header that is base64url of non-JSON',
    token: (now) => `${b64('{"alg":"RS256"')}.${b64(JSON.stringify(claims(now)))}.c2ln`,
    failure: 'token_malformed',
    noKeyLookup: true,
  },
  {
    name: 'header that is a JSON array',
    token: (now) => rawToken(['RS256'], claims(now), 'c2ln'),
    failure: 'token_malformed',
    noKeyLookup: true,
  },
  {
    name: 'payload that is a JSON string',
    token: () => rawToken({ alg: 'RS256', kid: rs.kid }, 'hello', 'c2ln'),
    failure: 'token_malformed',
    noKeyLookup: true,
  },
  {
    name: 'two segments',
    token: async (now) => (await mintToken(rs, claims(now))).split('.').slice(0, 2).join('.'),
    failure: 'token_malformed',
    reason: /2 segments/,
    noKeyLookup: true,
  },
  {
    name: 'four segments',
    token: async (now) => `${await mintToken(rs, claims(now))}.c2ln`,
    failure: 'token_malformed',
    reason: /4 segments/,
    noKeyLookup: true,
  },
  {
    name: 'five segments (JWE)',
    token: () => 'eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d',
    failure: 'token_malformed',
    reason: /JWE/,
    noKeyLookup: true,
  },
  { name: 'empty string', token: () => '', failure: 'token_malformed', noKeyLookup: true },
  { name: 'one segment', token: () => 'eyJhbGciOiJSUzI1NiJ9', failure: 'token_malformed', noKeyLookup: true },

  // Claims that would end up in headers
  {
    name: 'client_id with CR LF (header injection)',
    token: (now) => mintToken(rs, claims(now, { client_id: 'acme-app\r\nx-partner: globex' })),
    failure: 'token_claims_invalid',
    reason: /application contains control characters/,
  },
  {
    name: 'sub with LF',
    token: (now) => mintToken(rs, claims(now, { sub: 'user-1\nx-admin: yes' })),
    failure: 'token_claims_invalid',
  },
  {
    name: 'scope with NUL',
    token: (now) => mintToken(rs, claims(now, { scope: 'orders:read\u0000admin' })),
    failure: 'token_claims_invalid',
  },
  {
    name: 'scp entry with CR',
    token: (now) => mintToken(rs, claims(now, { scope: undefined, scp: ['orders:read', 'admin\r'] })),
    failure: 'token_claims_invalid',
  },
  {
    name: 'jti with CR',
    token: (now) => mintToken(rs, claims(now, { jti: 'abc\rdef' })),
    failure: 'token_claims_invalid',
  },
  {
    name: 'acr with LF',
    token: (now) => mintToken(rs, claims(now, { acr: 'urn:mfa\n' })),
    failure: 'token_claims_invalid',
  },
  {
    name: 'no application claim at all',
    token: (now) => mintToken(rs, claims(now, { client_id: undefined })),
    failure: 'token_claims_invalid',
    reason: /no application \(client_id, azp\)/,
  },
  {
    name: 'client_id that is not a string',
    token: (now) => mintToken(rs, claims(now, { client_id: 42 })),
    failure: 'token_claims_invalid',
  },
  {
    name: 'scope that is an array',
    token: (now) => mintToken(rs, claims(now, { scope: ['a'] })),
    failure: 'token_claims_invalid',
  },
  {
    name: 'cnf thumbprint that is not base64url SHA-256',
    token: (now) => mintToken(rs, claims(now, { cnf: { 'x5t#S256': 'abc\r\n' } })),
    failure: 'token_claims_invalid',
  },
  {
    name: 'a required claim missing',
    token: (now) => mintToken(rs, claims(now, { tenant: undefined })),
    failure: 'token_claims_invalid',
    reason: /"tenant"/,
    issuer: { requiredClaims: ['tenant'] },
  },
];

describe('JwtVerifier: attacks', () => {
  it('every failure code of the union is a listed constant', () => {
    assert.equal(new Set(TOKEN_FAILURES).size, TOKEN_FAILURES.length);
    assert.equal(TOKEN_FAILURES.length, 11);
  });

  for (const c of ATTACKS) {
    it(`${c.name} → ${c.failure}`, async () => {
      const { verifier, keys, now } = setup(c.issuer);
      const before = attackerServer.requests;
      const result = await verifier.verify(await c.token(now));
      expectFailure(result, c.failure, c.reason);
      if (c.noKeyLookup) assert.equal(keys.calls, 0, 'the key set was asked');
      assert.equal(attackerServer.requests, before, 'a URL from the token header was fetched');
    });
  }
});

describe('JwtVerifier: time edges that pass', () => {
  const EDGES: ReadonlyArray<{ name: string; claims: (now: number) => JWTPayload }> = [
    { name: 'exp = now (inside the skew)', claims: (now) => ({ iat: now - 600, exp: now }) },
    { name: 'exp = now - skew + 1', claims: (now) => ({ iat: now - 600, exp: now - SKEW + 1 }) },
    { name: 'nbf = now + skew', claims: (now) => ({ nbf: now + SKEW }) },
    { name: 'nbf = now + skew - 1', claims: (now) => ({ nbf: now + SKEW - 1 }) },
    { name: 'iat = now + skew', claims: (now) => ({ iat: now + SKEW, exp: now + SKEW + 300 }) },
    { name: 'exp - iat = maxLifetimeSeconds', claims: (now) => ({ iat: now, exp: now + MAX_LIFETIME }) },
    {
      name: 'no iat, exp - now = maxLifetimeSeconds',
      claims: (now) => ({ iat: undefined, exp: now + MAX_LIFETIME }),
    },
  ];
  for (const edge of EDGES) {
    it(`${edge.name} → ok`, async () => {
      const { verifier, now } = setup();
      expectOk(await verifier.verify(await mintToken(rs, claims(now, edge.claims(now)))));
    });
  }
});

describe('JwtVerifier: valid tokens', () => {
  it('exposes issuer name, application, subject, scopes, jti, times and frozen claims', async () => {
    const { verifier, now } = setup();
    const token = await mintToken(
      rs,
      claims(now, {
        jti: 'token-1',
        nbf: now - 10,
        auth_time: now - 60,
        acr: 'urn:example:mfa',
        azp: 'ignored-when-client_id-present',
      }),
    );
    const result = await verifier.verify(token);
    expectOk(result);
    const t = result.token;
    assert.equal(t.issuer, 'example-idp');
    assert.equal(t.application, 'acme-app');
    assert.equal(t.subject, 'user-1');
    assert.deepEqual([...t.scopes], ['orders:read', 'orders:write']);
    assert.equal(t.jti, 'token-1');
    assert.equal(t.expiresAt, now + 300);
    assert.equal(t.issuedAt, now);
    assert.equal(t.authTime, now - 60);
    assert.equal(t.acr, 'urn:example:mfa');
    assert.equal(t.certificateThumbprint, null);
    assert.ok(Object.isFrozen(t));
    assert.ok(Object.isFrozen(t.claims));
    assert.throws(() => {
      (t.claims as Record<string, unknown>).client_id = 'globex';
    }, TypeError);
  });

  it('application falls back to azp when client_id is absent', async () => {
    const { verifier, now } = setup();
    const result = await verifier.verify(
      await mintToken(rs, claims(now, { client_id: undefined, azp: 'globex-app' })),
    );
    expectOk(result);
    assert.equal(result.token.application, 'globex-app');
  });

  it('application claims and user claim are configurable', async () => {
    const { verifier, now } = setup({ applicationClaims: ['appid'], userClaim: 'oid' });
    const result = await verifier.verify(
      await mintToken(rs, claims(now, { appid: 'entra-app', oid: 'user-oid' })),
    );
    expectOk(result);
    assert.equal(result.token.application, 'entra-app');
    assert.equal(result.token.subject, 'user-oid');
  });

  it('scopes from an scp array', async () => {
    const { verifier, now } = setup();
    const result = await verifier.verify(
      await mintToken(rs, claims(now, { scope: undefined, scp: ['documents:read', 'documents:write'] })),
    );
    expectOk(result);
    assert.deepEqual([...result.token.scopes], ['documents:read', 'documents:write']);
  });

  it('scopes from an scp string (Entra ID style), and none at all', async () => {
    const { verifier, now } = setup();
    const fromString = await verifier.verify(
      await mintToken(rs, claims(now, { scope: undefined, scp: 'a b  c' })),
    );
    expectOk(fromString);
    assert.deepEqual([...fromString.token.scopes], ['a', 'b', 'c']);
    const none = await verifier.verify(await mintToken(rs, claims(now, { scope: undefined })));
    expectOk(none);
    assert.equal(none.token.scopes.size, 0);
  });

  it('client-credentials token without sub or jti: subject and jti are empty', async () => {
    const { verifier, now } = setup();
    const result = await verifier.verify(
      await mintToken(rs, claims(now, { sub: undefined, jti: undefined })),
    );
    expectOk(result);
    assert.equal(result.token.subject, '');
    assert.equal(result.token.jti, '');
  });

  it('cnf x5t#S256 is the certificate thumbprint', async () => {
    const { verifier, now } = setup();
    const thumbprint = 'bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2';
    const result = await verifier.verify(
      await mintToken(rs, claims(now, { cnf: { 'x5t#S256': thumbprint } })),
    );
    expectOk(result);
    assert.equal(result.token.certificateThumbprint, thumbprint);
  });

  it('PS256 tokens verify, and ES256 ones where the issuer allows ES256', async () => {
    const { verifier, now } = setup();
    expectOk(await verifier.verify(await mintToken(ps, claims(now))));
    const ecIssuer = setup({ algorithms: ['ES256'] });
    expectOk(await ecIssuer.verifier.verify(await mintToken(es, claims(ecIssuer.now))));
  });

  it('a token without kid verifies when exactly one key of the set fits its alg', async () => {
    const { verifier, now } = setup();
    expectOk(await verifier.verify(await mintToken(rs, claims(now), { kid: undefined })));
  });

  it('aud as a list containing ours', async () => {
    const { verifier, now } = setup();
    expectOk(await verifier.verify(await mintToken(rs, claims(now, { aud: ['other', AUD] }))));
  });

  it('jku, x5u and jwk headers on a genuine token are ignored, never fetched', async () => {
    const { verifier, now } = setup();
    const before = attackerServer.requests;
    const token = await mintToken(rs, claims(now), {
      jku: attackerServer.url,
      x5u: attackerServer.url,
      jwk: attacker.publicJwk,
    });
    expectOk(await verifier.verify(token));
    assert.equal(attackerServer.requests, before);
  });
});

describe('JwtVerifier: configuration', () => {
  const REFUSED: ReadonlyArray<{ name: string; issuer: Partial<IssuerConfig>; message: RegExp }> = [
    { name: 'alg none', issuer: { algorithms: ['RS256', 'none'] }, message: /"none" is refused/ },
    { name: 'HS256', issuer: { algorithms: ['HS256'] }, message: /"HS256" is refused: HMAC/ },
    { name: 'hs512 in lower case', issuer: { algorithms: ['hs512'] }, message: /"hs512" is refused/ },
    { name: 'an unknown algorithm', issuer: { algorithms: ['RS1'] }, message: /"RS1" is not supported/ },
    { name: 'no algorithms', issuer: { algorithms: [] }, message: /at least one algorithm/ },
    { name: 'no audiences', issuer: { audiences: [] }, message: /at least one non-empty audience/ },
    { name: 'a negative skew', issuer: { clockSkewSeconds: -1 }, message: /clockSkewSeconds/ },
    { name: 'a zero max lifetime', issuer: { maxLifetimeSeconds: 0 }, message: /maxLifetimeSeconds/ },
  ];
  for (const c of REFUSED) {
    it(`refuses ${c.name}`, () => {
      assert.throws(() => setup(c.issuer), c.message);
    });
  }

  it('refuses two issuers with the same iss', () => {
    const clock = fakeClock();
    const keys = new JwksCache(
      { kind: 'file', path: jwksFile, ttlMs: 60_000 },
      { clock, logger: silent, name: 'x' },
    );
    const base = {
      issuer: ISS,
      audiences: [AUD],
      algorithms: ['RS256'],
      clockSkewSeconds: 0,
      requiredClaims: [],
      keys,
    };
    assert.throws(
      () =>
        new JwtVerifier(
          [
            { ...base, name: 'a' },
            { ...base, name: 'b' },
          ],
          { clock },
        ),
      /already another issuer's/,
    );
  });
});

describe('JwtVerifier: key set failures', () => {
  it('a key set that throws → token_keys_unavailable, never an exception', async () => {
    const broken: KeySet = {
      keyFor: () => Promise.reject(new Error('redis is on fire')),
    };
    const { verifier, now } = setup({ keys: broken });
    expectFailure(
      await verifier.verify(await mintToken(rs, claims(now))),
      'token_keys_unavailable',
      /on fire/,
    );
  });
});

describe('JwtVerifier: verified-token cache', () => {
  it('a second verify of the same token does not ask the key set again', async () => {
    const { verifier, keys, now } = setup();
    const token = await mintToken(rs, claims(now));
    expectOk(await verifier.verify(token));
    assert.equal(keys.calls, 1);
    const again = await verifier.verify(token);
    expectOk(again);
    assert.equal(keys.calls, 1);
    assert.equal(verifier.cachedTokens(), 1);
  });

  it('a cached token past its exp (and the skew) is refused as token_expired, without a key lookup', async () => {
    const { verifier, keys, clock, now } = setup({}, { cacheTtlSeconds: 3600 });
    const token = await mintToken(rs, claims(now, { exp: now + 100 }));
    expectOk(await verifier.verify(token));
    clock.advance((100 + SKEW - 1) * 1000);
    expectOk(await verifier.verify(token));
    clock.advance(1000);
    expectFailure(await verifier.verify(token), 'token_expired');
    assert.equal(keys.calls, 1);
  });

  it('a cached token is judged again on nbf if the clock goes back', async () => {
    const { verifier, keys, clock, now } = setup();
    const token = await mintToken(rs, claims(now, { nbf: now }));
    expectOk(await verifier.verify(token));
    clock.advance(-(SKEW + 1) * 1000);
    expectFailure(await verifier.verify(token), 'token_not_yet_valid');
    assert.equal(keys.calls, 1);
  });

  it('after the cache ttl the token is verified again from scratch', async () => {
    const { verifier, keys, clock, now } = setup({}, { cacheTtlSeconds: 60 });
    const token = await mintToken(rs, claims(now));
    expectOk(await verifier.verify(token));
    clock.advance(60_000);
    expectOk(await verifier.verify(token));
    assert.equal(keys.calls, 2);
  });

  it("a token with a cached token's length and signature but another payload is not a hit", async () => {
    const { verifier, keys, now } = setup();
    const token = await mintToken(rs, claims(now));
    expectOk(await verifier.verify(token));
    // Same length, same signature: the same cache fingerprint, another user.
    const [header = '', payload = '', signature = ''] = token.split('.');
    const other = Buffer.from(payload, 'base64url').toString().replace('"user-1"', '"user-2"');
    const forged = `${header}.${Buffer.from(other).toString('base64url')}.${signature}`;
    assert.notEqual(forged, token);
    assert.equal(forged.length, token.length);
    assert.equal(verifier.cached(forged), null);
    expectFailure(await verifier.verify(forged), 'token_signature_invalid');
    assert.equal(keys.calls, 2);
    expectOk(await verifier.verify(token));
    assert.equal(keys.calls, 2);
  });

  it('cached() answers a hit synchronously, and an expired cached token as token_expired', async () => {
    const { verifier, keys, clock, now } = setup({}, { cacheTtlSeconds: 3600 });
    const token = await mintToken(rs, claims(now, { exp: now + 100 }));
    assert.equal(verifier.cached(token), null);
    const verified = await verifier.verify(token);
    expectOk(verified);
    assert.equal(verifier.cached(token), verified);
    clock.advance((100 + SKEW) * 1000);
    const expired = verifier.cached(token);
    assert.ok(expired);
    expectFailure(expired, 'token_expired');
    assert.equal(keys.calls, 1);
  });

  it('cached() refuses a cached token whose issuer the route does not trust', async () => {
    const { verifier, now } = setup();
    const token = await mintToken(rs, claims(now));
    expectOk(await verifier.verify(token));
    const refused = verifier.cached(token, new Set(['another-idp']));
    assert.ok(refused);
    expectFailure(refused, 'token_issuer_invalid');
  });

  it('failures are not cached', async () => {
    const { verifier, keys, now } = setup();
    const token = await mintToken(attacker, claims(now), { kid: rs.kid });
    expectFailure(await verifier.verify(token), 'token_signature_invalid');
    expectFailure(await verifier.verify(token), 'token_signature_invalid');
    assert.equal(keys.calls, 2);
    assert.equal(verifier.cachedTokens(), 0);
  });

  it('is bounded by cacheMaxEntries', async () => {
    const { verifier, now } = setup({}, { cacheMaxEntries: 2 });
    for (let i = 0; i < 3; i++) expectOk(await verifier.verify(await mintToken(rs, claims(now))));
    assert.equal(verifier.cachedTokens(), 2);
  });

  it('cacheTtlSeconds 0 turns the cache off', async () => {
    const { verifier, keys, now } = setup({}, { cacheTtlSeconds: 0 });
    const token = await mintToken(rs, claims(now));
    expectOk(await verifier.verify(token));
    expectOk(await verifier.verify(token));
    assert.equal(keys.calls, 2);
  });
});

describe('examples/keys', () => {
  it('jwks.json holds only public keys, and each signing key verifies against it', async () => {
    const jwks = JSON.parse(readFileSync('examples/keys/jwks.json', 'utf8')) as {
      keys: Record<string, unknown>[];
    };
    const signing = JSON.parse(readFileSync('examples/keys/signing-keys.json', 'utf8')) as {
      keys: Array<{ kid: string; alg: 'RS256' | 'ES256' } & Record<string, unknown>>;
    };
    assert.deepEqual(
      jwks.keys.map((k) => k.kid),
      ['example-rs256-1', 'example-es256-1'],
    );
    for (const key of jwks.keys) assert.equal('d' in key, false, `${String(key.kid)} is private`);
    const clock = fakeClock();
    const keys = new JwksCache(
      { kind: 'file', path: 'examples/keys/jwks.json', ttlMs: 60_000 },
      { clock, logger: silent, name: 'example' },
    );
    const verifier = new JwtVerifier(
      [
        {
          name: 'example',
          issuer: ISS,
          audiences: [AUD],
          algorithms: ['RS256', 'ES256'],
          clockSkewSeconds: 0,
          requiredClaims: [],
          keys,
        },
      ],
      { clock },
    );
    const now = Math.floor(clock.now() / 1000);
    for (const jwk of signing.keys) {
      const privateKey = await importJWK(jwk, jwk.alg);
      const token = await new SignJWT(claims(now))
        .setProtectedHeader({ alg: jwk.alg, kid: jwk.kid })
        .sign(privateKey);
      expectOk(await verifier.verify(token));
    }
  });
});
