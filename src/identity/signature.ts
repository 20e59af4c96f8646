// JWS signature verification on node:crypto, synchronously. jose's jwtVerify goes through WebCrypto,
// which queues every verification on libuv's thread pool and resolves a promise chain: on a busy
// sidecar that hop costs more than the RSA arithmetic itself. The claims are still judged by jose
// (see jwt.ts); only the signature is checked here.
import { constants, type KeyObject, verify } from 'node:crypto';

interface Scheme {
  /** Digest for crypto.verify; null for EdDSA (the digest is part of the algorithm). */
  readonly hash: string | null;
  /** The key types that may serve this algorithm (KeyObject.asymmetricKeyType). */
  readonly keyTypes: readonly string[];
  readonly curve?: string;
  readonly pss?: true;
}

const SCHEMES: Readonly<Record<string, Scheme>> = {
  RS256: { hash: 'sha256', keyTypes: ['rsa'] },
  RS384: { hash: 'sha384', keyTypes: ['rsa'] },
  RS512: { hash: 'sha512', keyTypes: ['rsa'] },
  PS256: { hash: 'sha256', keyTypes: ['rsa', 'rsa-pss'], pss: true },
  PS384: { hash: 'sha384', keyTypes: ['rsa', 'rsa-pss'], pss: true },
  PS512: { hash: 'sha512', keyTypes: ['rsa', 'rsa-pss'], pss: true },
  ES256: { hash: 'sha256', keyTypes: ['ec'], curve: 'prime256v1' },
  ES384: { hash: 'sha384', keyTypes: ['ec'], curve: 'secp384r1' },
  ES512: { hash: 'sha512', keyTypes: ['ec'], curve: 'secp521r1' },
  EdDSA: { hash: null, keyTypes: ['ed25519'] },
  Ed25519: { hash: null, keyTypes: ['ed25519'] },
};

/** RFC 7518 §3.3: RSA keys under 2048 bits are refused, whatever the key set let through. */
const MIN_RSA_BITS = 2048;

/**
 * Why `key` cannot verify `alg` signatures, or null when it can. The key sets import keys per
 * algorithm already; this is the last guard against a key of the wrong type or size.
 */
export function keyMismatch(alg: string, key: KeyObject): string | null {
  const scheme = SCHEMES[alg];
  if (scheme === undefined) return `alg ${alg} is not supported`;
  if (key.type !== 'public') return `a ${key.type} key cannot verify`;
  const type = key.asymmetricKeyType ?? '';
  if (!scheme.keyTypes.includes(type)) return `a ${type || 'non-asymmetric'} key cannot verify ${alg}`;
  const details = key.asymmetricKeyDetails ?? {};
  if (scheme.curve !== undefined && details.namedCurve !== scheme.curve) {
    return `${alg} needs curve ${scheme.curve}, the key is on ${details.namedCurve ?? 'no curve'}`;
  }
  if (type.startsWith('rsa') && (details.modulusLength ?? 0) < MIN_RSA_BITS) {
    return `${alg} needs an RSA key of ${MIN_RSA_BITS} bits or more`;
  }
  return null;
}

/**
 * Whether `signature` is `alg`'s signature of `signingInput` (the token's `header.payload`, ASCII)
 * under `key`. Call keyMismatch first: this only answers true or false. ECDSA signatures are the
 * JOSE form (r‖s, RFC 7518 §3.4), not DER.
 */
export function verifyJws(alg: string, key: KeyObject, signingInput: string, signature: Buffer): boolean {
  const scheme = SCHEMES[alg];
  if (scheme === undefined) return false;
  const data = Buffer.from(signingInput, 'latin1');
  try {
    if (scheme.pss) {
      return verify(
        scheme.hash,
        data,
        { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST },
        signature,
      );
    }
    if (scheme.keyTypes[0] === 'ec')
      return verify(scheme.hash, data, { key, dsaEncoding: 'ieee-p1363' }, signature);
    return verify(scheme.hash, data, key, signature);
  } catch {
    // OpenSSL refuses some malformed signatures (wrong length, out-of-range values) by throwing.
    return false;
  }
}
