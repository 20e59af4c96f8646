// Scopes are space-delimited tokens (RFC 6749 §3.3): a scope that itself contains a space would
// be split into scopes nobody granted when it is forwarded upstream as one space-joined header.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { JWTPayload } from 'jose';
import { pino } from 'pino';
import { JwksCache } from '../../src/identity/jwks.js';
import { JwtVerifier } from '../../src/identity/jwt.js';
import { fakeClock, generateTestKey, jwksOf, mintToken, type TestKey } from '../support/jwks-server.js';

const ISS = 'https://idp.example.test/';
const AUD = 'https://api.example.test';
let key: TestKey;
let dir = '';

before(async () => {
  key = await generateTestKey('RS256', 'k1');
  dir = mkdtempSync(join(tmpdir(), 'portcullis-scopes-'));
  writeFileSync(join(dir, 'jwks.json'), JSON.stringify(jwksOf(key)));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function verifier() {
  const clock = fakeClock();
  const keys = new JwksCache(
    { kind: 'file', path: join(dir, 'jwks.json'), ttlMs: 3_600_000 },
    { clock, logger: pino({ level: 'silent' }), name: 'idp' },
  );
  const v = new JwtVerifier(
    [
      {
        name: 'idp',
        issuer: ISS,
        audiences: [AUD],
        algorithms: ['RS256'],
        clockSkewSeconds: 30,
        requiredClaims: [],
        keys,
      },
    ],
    { clock },
  );
  const now = Math.floor(clock.now() / 1000);
  const claims = (extra: JWTPayload): JWTPayload => ({
    iss: ISS,
    aud: AUD,
    iat: now,
    exp: now + 300,
    client_id: 'app',
    ...extra,
  });
  return { v, claims };
}

test('finding 12: scp ["orders admin", "read"] is refused (token_claims_invalid), never forwarded as an admin scope', async () => {
  const { v, claims } = verifier();
  const result = await v.verify(await mintToken(key, claims({ scp: ['orders admin', 'read'] })));
  assert.equal(result.ok, false);
  assert.equal(result.ok ? '' : result.failure, 'token_claims_invalid');
  assert.match(result.ok ? '' : result.reason, /scope contains a space/);
});

test('scopes: a tab or other whitespace inside an scp entry is refused too', async () => {
  const { v, claims } = verifier();
  const result = await v.verify(await mintToken(key, claims({ scp: ['orders\u00a0admin'] })));
  assert.equal(result.ok ? 'ok' : result.failure, 'token_claims_invalid');
});

test('scopes: a space-delimited scope string and a clean scp list are accepted', async () => {
  const { v, claims } = verifier();
  const a = await v.verify(await mintToken(key, claims({ scope: 'orders  read' })));
  assert.deepEqual(a.ok ? [...a.token.scopes] : a.reason, ['orders', 'read']);
  const b = await v.verify(await mintToken(key, claims({ scp: ['orders', 'read'] })));
  assert.deepEqual(b.ok ? [...b.token.scopes] : b.reason, ['orders', 'read']);
});
