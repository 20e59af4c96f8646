// Body integrity: Content-Digest (RFC 9530, sha-256 and sha-512), and the legacy Content-MD5 (RFC 1864,
// base64) and X-Checksum-SHA256 (hex) where a route asks for them. Hashes are computed at most once per
// request and algorithm (BodyHashes), and the SHA-256 is shared with the audit line and the scan cache.
import { Buffer } from 'node:buffer';
import crypto, { createHash, timingSafeEqual } from 'node:crypto';
import type { Header } from '../decision.js';
import { type ContentFailure, type DigestPolicy, fail, type Outcome, ok } from './types.js';

type HashName = 'sha256' | 'sha512' | 'md5';

/**
 * The hashes of one body, each computed on first use. The SHA-256, which every inspected body needs
 * (the audit line), is computed as hex; a digest header compared with it reuses those bytes.
 */
export class BodyHashes {
  readonly #bytes: Uint8Array;
  #done: Map<HashName, Buffer> | undefined;
  #sha256Hex: string | undefined;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
  }

  digest(name: HashName): Buffer {
    this.#done ??= new Map();
    let d = this.#done.get(name);
    if (!d) {
      d =
        name === 'sha256'
          ? Buffer.from(this.sha256Hex(), 'hex')
          : createHash(name).update(this.#bytes).digest();
      this.#done.set(name, d);
    }
    return d;
  }

  /** Lower-case hex SHA-256 of the body: the audit line's `body_sha256` and the scan cache key. */
  sha256Hex(): string {
    this.#sha256Hex ??= sha256Hex(this.#bytes);
    return this.#sha256Hex;
  }
}

// crypto.hash (Node ≥ 20.12) hashes in one call, without a Hash object: a quarter less CPU for a
// few-KiB body. Older Node 20 releases take createHash.
const oneShot = (crypto as { hash?: typeof crypto.hash }).hash;

export function sha256Hex(bytes: Uint8Array): string {
  return oneShot ? oneShot('sha256', bytes, 'hex') : createHash('sha256').update(bytes).digest('hex');
}

/** Content-Digest algorithms we verify (RFC 9530 §5: the others are deprecated or insecure). */
const ALGORITHMS: ReadonlyMap<string, { readonly hash: HashName; readonly bytes: number }> = new Map([
  ['sha-256', { hash: 'sha256', bytes: 32 }],
  ['sha-512', { hash: 'sha512', bytes: 64 }],
]);

/** Sent with digest_missing: which algorithms we want, by preference (RFC 9530 §4). */
const WANT: Header = { name: 'want-content-digest', value: 'sha-256=10, sha-512=5' };

export interface DigestCheck {
  /** What matched: 'sha-256', 'sha-512', 'content-md5', 'x-checksum-sha256'. Empty when nothing was sent. */
  readonly verified: readonly string[];
}

const invalid = (detail: string, reason: string): ContentFailure => ({
  code: 'digest_invalid',
  detail,
  reason,
});

/**
 * Verifies every digest the request carries that the policy covers: each known Content-Digest member
 * (unknown algorithms are ignored) and each listed legacy header. Any mismatch refuses the request; with
 * `require`, so does carrying none of them.
 */
export function verifyDigests(
  headers: ReadonlyMap<string, string>,
  hashes: BodyHashes,
  policy: DigestPolicy,
): Outcome<DigestCheck> {
  const verified: string[] = [];
  const header = headers.get('content-digest');
  let unknownOnly = false;
  if (header !== undefined) {
    const dict = parseDictionary(header);
    if (!dict.ok)
      return fail(
        invalid(
          'The Content-Digest header is malformed; send e.g. "sha-256=:<base64 of the SHA-256 of the body>:".',
          `content-digest: ${dict.reason}`,
        ),
      );
    for (const [key, item] of dict.value) {
      const alg = ALGORITHMS.get(key);
      if (!alg) continue;
      if (item === 'duplicate')
        return fail(invalid(`The Content-Digest header gives ${key} twice.`, `content-digest: ${key} twice`));
      if (!(item instanceof Uint8Array) || item.length !== alg.bytes) {
        return fail(
          invalid(
            `The ${key} value in Content-Digest must be a byte sequence (:base64:) of ${alg.bytes} bytes.`,
            `content-digest: ${key} is not ${alg.bytes} bytes`,
          ),
        );
      }
      if (!equal(item, hashes.digest(alg.hash))) return fail(mismatch(key, 'Content-Digest'));
      verified.push(key);
    }
    unknownOnly = verified.length === 0;
  }
  if (policy.legacy.includes('content-md5')) {
    const md5 = headers.get('content-md5');
    if (md5 !== undefined) {
      const value = md5.trim();
      if (!/^[A-Za-z0-9+/]{22}==$/.test(value))
        return fail(
          invalid(
            'The Content-MD5 header must be the base64 of an MD5 hash (24 characters).',
            'content-md5 malformed',
          ),
        );
      if (!equal(Buffer.from(value, 'base64'), hashes.digest('md5')))
        return fail(mismatch('md5', 'Content-MD5'));
      verified.push('content-md5');
    }
  }
  if (policy.legacy.includes('x-checksum-sha256')) {
    const hex = headers.get('x-checksum-sha256');
    if (hex !== undefined) {
      const value = hex.trim();
      if (!/^[0-9a-fA-F]{64}$/.test(value))
        return fail(
          invalid(
            'The X-Checksum-SHA256 header must be the hex SHA-256 of the body (64 characters).',
            'x-checksum-sha256 malformed',
          ),
        );
      if (!equal(Buffer.from(value, 'hex'), hashes.digest('sha256')))
        return fail(mismatch('sha-256', 'X-Checksum-SHA256'));
      verified.push('x-checksum-sha256');
    }
  }
  if (verified.length === 0 && policy.require) {
    const legacy = policy.legacy.length > 0 ? ` (or ${policy.legacy.map(headerName).join(' or ')})` : '';
    return fail({
      code: 'digest_missing',
      detail: unknownOnly
        ? `The Content-Digest header names no algorithm this route accepts; send sha-256 or sha-512${legacy}.`
        : `This route requires a digest of the body: send Content-Digest with sha-256 or sha-512 (RFC 9530)${legacy}.`,
      reason: unknownOnly ? 'content-digest with unsupported algorithms only' : 'no digest header',
      headers: [WANT],
    });
  }
  return ok({ verified });
}

function headerName(l: string): string {
  return l === 'content-md5' ? 'Content-MD5' : 'X-Checksum-SHA256';
}

function mismatch(alg: string, header: string): ContentFailure {
  return {
    code: 'digest_mismatch',
    detail: `The ${header} ${alg} digest does not match the body received; the body was altered or the digest computed over other bytes.`,
    reason: `${header} ${alg} mismatch`,
  };
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

// --- RFC 8941 Dictionary, as far as Content-Digest needs it -------------------------------------------

/** A member's value: its bytes for a byte sequence, 'duplicate' for a key given twice, else 'other'. */
type MemberValue = Uint8Array | 'other' | 'duplicate';

/**
 * Parses a Structured Field Dictionary (RFC 8941 §4.2.2; RFC 9651's dates and display strings
 * included). Keeps what Content-Digest needs: each key and, for byte sequences, the bytes. Any syntax
 * error fails the whole field, as the RFC requires.
 */
export function parseDictionary(
  input: string,
): { ok: true; value: Map<string, MemberValue> } | { ok: false; reason: string } {
  const s = input;
  let i = 0;
  const out = new Map<string, MemberValue>();
  const err = (what: string) => ({ ok: false as const, reason: `${what} at ${i}` });
  const sp = () => {
    while (s[i] === ' ') i++;
  };
  const ows = () => {
    while (s[i] === ' ' || s[i] === '\t') i++;
  };
  const key = (): string | null => {
    const m = /^[a-z*][a-z0-9_\-.*]*/.exec(s.slice(i, i + 256));
    if (!m) return null;
    i += m[0].length;
    return m[0];
  };
  // Returns the bytes of a byte sequence, 'other' for any other bare item, or null on a syntax error.
  const bareItem = (): Uint8Array | 'other' | null => {
    const c = s[i];
    if (c === undefined) return null;
    if (c === ':') {
      const end = s.indexOf(':', i + 1);
      if (end === -1) return null;
      const b64 = s.slice(i + 1, end);
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) return null;
      i = end + 1;
      return Buffer.from(b64, 'base64');
    }
    if (c === '-' || (c >= '0' && c <= '9')) {
      const m = /^-?\d{1,15}(?:\.\d{1,3})?/.exec(s.slice(i, i + 20));
      if (!m) return null;
      i += m[0].length;
      return 'other';
    }
    if (c === '@') {
      const m = /^@-?\d{1,15}/.exec(s.slice(i, i + 20));
      if (!m) return null;
      i += m[0].length;
      return 'other';
    }
    if (c === '"' || (c === '%' && s[i + 1] === '"')) {
      i += c === '%' ? 2 : 1;
      for (;;) {
        const d = s[i];
        if (d === undefined) return null;
        i++;
        if (d === '"') return 'other';
        if (d === '\\' && c === '"') {
          if (s[i] !== '"' && s[i] !== '\\') return null;
          i++;
        } else if (d < ' ' || d > '~') return null;
      }
    }
    if (c === '?') {
      if (s[i + 1] !== '0' && s[i + 1] !== '1') return null;
      i += 2;
      return 'other';
    }
    if (c === '*' || /[A-Za-z]/.test(c)) {
      const m = /^[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*/.exec(s.slice(i));
      i += (m as RegExpExecArray)[0].length;
      return 'other';
    }
    return null;
  };
  const params = (): boolean => {
    while (s[i] === ';') {
      i++;
      sp();
      if (key() === null) return false;
      if (s[i] === '=') {
        i++;
        if (bareItem() === null) return false;
      }
    }
    return true;
  };
  const innerList = (): boolean => {
    i++; // (
    for (;;) {
      sp();
      if (s[i] === ')') {
        i++;
        return params();
      }
      if (bareItem() === null || !params()) return false;
      if (s[i] !== ' ' && s[i] !== ')') return false;
    }
  };

  sp();
  if (i >= s.length) return { ok: true, value: out };
  for (;;) {
    const k = key();
    if (k === null) return err('expected a key');
    let value: MemberValue = 'other';
    if (s[i] === '=') {
      i++;
      if (s[i] === '(') {
        if (!innerList()) return err('bad inner list');
      } else {
        const item = bareItem();
        if (item === null) return err('bad value');
        value = item;
        if (!params()) return err('bad parameter');
      }
    } else if (!params()) return err('bad parameter');
    out.set(k, out.has(k) ? 'duplicate' : value);
    ows();
    if (i >= s.length) return { ok: true, value: out };
    if (s[i] !== ',') return err('expected ","');
    i++;
    ows();
    if (i >= s.length) return err('trailing ","');
  }
}
