// verifyJws / keyMismatch: the synchronous signature check the JWT verifier relies on. Every algorithm
// we accept is signed for real (node:crypto) and must verify; a flipped bit, a signature of another
// input, a DER-encoded ECDSA signature and a truncated one must not; keys of the wrong type, curve or
// size are refused by name.
import assert from 'node:assert/strict';
import { constants, createPublicKey, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { describe, it } from 'node:test';
import { SUPPORTED_ALGORITHMS } from '../../src/identity/jwt.js';
import { keyMismatch, verifyJws } from '../../src/identity/signature.js';

const INPUT = `${Buffer.from('{"alg":"X"}').toString('base64url')}.${Buffer.from('{"sub":"a"}').toString('base64url')}`;

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const smallRsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
const p521 = generateKeyPairSync('ec', { namedCurve: 'P-521' });
const ed = generateKeyPairSync('ed25519');

interface Case {
  readonly alg: string;
  readonly pair: { publicKey: KeyObject; privateKey: KeyObject };
  readonly sign: (data: Buffer, key: KeyObject) => Buffer;
}

const pss = (hash: string) => (data: Buffer, key: KeyObject) =>
  sign(hash, data, {
    key,
    padding: constants.RSA_PKCS1_PSS_PADDING,
    saltLength: constants.RSA_PSS_SALTLEN_DIGEST,
  });
const ecdsa = (hash: string) => (data: Buffer, key: KeyObject) =>
  sign(hash, data, { key, dsaEncoding: 'ieee-p1363' });

const CASES: Case[] = [
  { alg: 'RS256', pair: rsa, sign: (d, k) => sign('sha256', d, k) },
  { alg: 'RS384', pair: rsa, sign: (d, k) => sign('sha384', d, k) },
  { alg: 'RS512', pair: rsa, sign: (d, k) => sign('sha512', d, k) },
  { alg: 'PS256', pair: rsa, sign: pss('sha256') },
  { alg: 'PS384', pair: rsa, sign: pss('sha384') },
  { alg: 'PS512', pair: rsa, sign: pss('sha512') },
  { alg: 'ES256', pair: p256, sign: ecdsa('sha256') },
  { alg: 'ES384', pair: p384, sign: ecdsa('sha384') },
  { alg: 'ES512', pair: p521, sign: ecdsa('sha512') },
  { alg: 'EdDSA', pair: ed, sign: (d, k) => sign(null, d, k) },
  { alg: 'Ed25519', pair: ed, sign: (d, k) => sign(null, d, k) },
];

describe('verifyJws: every accepted algorithm', () => {
  it('covers exactly the algorithms an issuer may list (the lists cannot drift apart)', () => {
    assert.deepEqual(CASES.map((c) => c.alg).sort(), [...SUPPORTED_ALGORITHMS].sort());
  });

  for (const c of CASES) {
    it(`${c.alg}: a genuine signature verifies, a tampered one does not`, () => {
      const signature = c.sign(Buffer.from(INPUT), c.pair.privateKey);
      assert.equal(keyMismatch(c.alg, c.pair.publicKey), null);
      assert.equal(verifyJws(c.alg, c.pair.publicKey, INPUT, signature), true);
      const flipped = Buffer.from(signature);
      flipped[flipped.length - 1] = (flipped.at(-1) ?? 0) ^ 1;
      assert.equal(verifyJws(c.alg, c.pair.publicKey, INPUT, flipped), false);
      assert.equal(verifyJws(c.alg, c.pair.publicKey, `${INPUT}x`, signature), false);
      assert.equal(verifyJws(c.alg, c.pair.publicKey, INPUT, signature.subarray(0, 10)), false);
      assert.equal(verifyJws(c.alg, c.pair.publicKey, INPUT, Buffer.alloc(0)), false);
    });
  }

  it('ES256: a DER-encoded signature (not the JOSE r‖s form) is refused', () => {
    const der = sign('sha256', Buffer.from(INPUT), p256.privateKey);
    assert.equal(verifyJws('ES256', p256.publicKey, INPUT, der), false);
  });

  it('RS256 signature presented as PS256 (same key) is refused', () => {
    const signature = sign('sha256', Buffer.from(INPUT), rsa.privateKey);
    assert.equal(verifyJws('PS256', rsa.publicKey, INPUT, signature), false);
  });

  it('an unknown algorithm never verifies', () => {
    const signature = sign('sha256', Buffer.from(INPUT), rsa.privateKey);
    assert.equal(verifyJws('HS256', rsa.publicKey, INPUT, signature), false);
    assert.equal(verifyJws('none', rsa.publicKey, INPUT, Buffer.alloc(0)), false);
  });
});

describe('keyMismatch: keys that cannot serve the algorithm', () => {
  it('an RSA key under 2048 bits', () => {
    assert.match(keyMismatch('RS256', smallRsa.publicKey) ?? '', /2048 bits or more/);
    assert.match(keyMismatch('PS256', smallRsa.publicKey) ?? '', /2048 bits or more/);
  });
  it('an EC key on another curve than the algorithm names', () => {
    assert.match(
      keyMismatch('ES256', p384.publicKey) ?? '',
      /needs curve prime256v1, the key is on secp384r1/,
    );
    assert.match(keyMismatch('ES512', p256.publicKey) ?? '', /needs curve secp521r1/);
  });
  it('a key of another type', () => {
    assert.match(keyMismatch('RS256', p256.publicKey) ?? '', /a ec key cannot verify RS256/);
    assert.match(keyMismatch('ES256', rsa.publicKey) ?? '', /a rsa key cannot verify ES256/);
    assert.match(keyMismatch('EdDSA', rsa.publicKey) ?? '', /cannot verify EdDSA/);
  });
  it('a private key (a verifier only ever holds public keys)', () => {
    assert.match(keyMismatch('RS256', rsa.privateKey) ?? '', /a private key cannot verify/);
  });
  it('an algorithm we do not support', () => {
    assert.match(keyMismatch('HS256', rsa.publicKey) ?? '', /not supported/);
  });
  it('the public half derived from a private key is fine', () => {
    assert.equal(keyMismatch('RS256', createPublicKey(rsa.privateKey)), null);
  });
});
