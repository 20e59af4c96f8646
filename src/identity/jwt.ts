// JWT bearer tokens: which issuer, is it genuine, is it current, who is it for. Every failure is
// one of TOKEN_FAILURES (the partner-facing code) plus a precise reason (for the audit log only).
//
// Order of checks, cheapest and least trusting first:
//   size (16 KiB) → shape (3 base64url segments) → header (JSON object, no crit, no nested JWT,
//   string alg and kid) → payload (JSON object) → issuer by the unverified `iss` → issuer trusted
//   on the route (the caller's list) → alg allowed for that issuer → key from the issuer's key set
//   (by kid and alg only) → signature (node:crypto,
//   signature.ts) → jose's claim rules (iss, aud, exp, nbf, required claims) → our own rules (iat,
//   lifetime, exposed claims).
// The header's `jku`, `x5u`, `jwk` and `x5c` are never read: keys come from the issuer's JWKS only.
//
// Verified tokens are cached (bounded LRU): found by a fingerprint of the signature's end (no hash
// of the whole token per Check), served only when the whole token is the same. A hit skips parsing
// and the signature and returns the same frozen answer, but expiry and nbf are judged again
// against the clock at every hit. One verifier serves one
// catalog (tokens.ts): a reload starts with an empty cache, under the new issuers and keys.
import { KeyObject } from 'node:crypto';
import { type CryptoKey, errors, type JWTPayload, UnsecuredJWT } from 'jose';
import { LRUCache } from 'lru-cache';
import type { Clock } from '../clock.js';
import { type KeyLookup, type KeySet, quote } from './jwks.js';
import { keyMismatch, verifyJws } from './signature.js';

export const TOKEN_FAILURES = [
  'token_malformed',
  'token_signature_invalid',
  'token_key_unknown',
  'token_expired',
  'token_not_yet_valid',
  'token_issuer_invalid',
  'token_audience_invalid',
  'token_algorithm_not_allowed',
  'token_lifetime_invalid',
  'token_claims_invalid',
  'token_keys_unavailable',
] as const;
export type TokenFailure = (typeof TOKEN_FAILURES)[number];

/** Algorithms an issuer may list: asymmetric signatures only (never `none`, never HMAC). */
export const SUPPORTED_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
] as const;

/** A longer token is refused before anything is parsed (Envoy's own header limit is 60 KiB). */
export const MAX_TOKEN_BYTES = 16 * 1024;
export const DEFAULT_APPLICATION_CLAIMS: readonly string[] = ['client_id', 'azp'];
export const DEFAULT_USER_CLAIM = 'sub';
export const DEFAULT_CACHE_MAX_ENTRIES = 10_000;
export const DEFAULT_CACHE_TTL_SECONDS = 60;

export interface IssuerConfig {
  /** The issuer's name in the catalog: what VerifiedToken.issuer says. */
  readonly name: string;
  /** The exact `iss` value of its tokens. */
  readonly issuer: string;
  /** At least one of them must be in the token's `aud`. */
  readonly audiences: readonly string[];
  readonly algorithms: readonly string[];
  readonly clockSkewSeconds: number;
  /** exp - iat (or exp - now without iat) may not exceed this. */
  readonly maxLifetimeSeconds?: number | undefined;
  /** Claims that must be present (exp always is). */
  readonly requiredClaims: readonly string[];
  /** Where the application (client) id is: the first claim present wins. Default client_id, azp. */
  readonly applicationClaims?: readonly string[] | undefined;
  /** Where the end user is. Default sub. */
  readonly userClaim?: string | undefined;
  readonly keys: KeySet;
}

export interface VerifiedToken {
  /** The issuer's name in the catalog (not the `iss` URL). */
  readonly issuer: string;
  /** The whole payload, deep-frozen. */
  readonly claims: Readonly<JWTPayload>;
  readonly application: string;
  /** The user claim; '' when the token has none (a client-credentials token). */
  readonly subject: string;
  readonly scopes: ReadonlySet<string>;
  /** '' when the token has none. */
  readonly jti: string;
  /** Epoch seconds. */
  readonly expiresAt: number;
  readonly issuedAt?: number;
  readonly authTime?: number;
  readonly acr?: string;
  /** `cnf["x5t#S256"]` (RFC 8705): the client certificate the token is bound to, or null. */
  readonly certificateThumbprint: string | null;
}

export type VerifyResult =
  | { readonly ok: true; readonly token: VerifiedToken }
  | { readonly ok: false; readonly failure: TokenFailure; readonly reason: string };

export interface JwtVerifierOptions {
  readonly clock: Clock;
  /** Verified tokens kept in memory. Default 10 000. */
  readonly cacheMaxEntries?: number;
  /** A cached token is verified again after this long (or sooner: at its exp). Default 60. 0 = no cache. */
  readonly cacheTtlSeconds?: number;
}

interface Issuer {
  readonly name: string;
  readonly issuer: string;
  readonly audiences: string[];
  readonly algorithms: ReadonlySet<string>;
  readonly algorithmList: string[];
  readonly skew: number;
  readonly maxLifetime: number | undefined;
  readonly requiredClaims: string[];
  readonly applicationClaims: readonly string[];
  readonly userClaim: string;
  readonly keys: KeySet;
}

interface CacheEntry {
  /** The token as verified: a hit is this exact string, never only its fingerprint. */
  readonly raw: string;
  readonly token: VerifiedToken;
  /** The answer to a hit, built once. */
  readonly hit: VerifyResult;
  readonly notBefore: number | undefined;
  readonly skew: number;
  /** Clock ms after which the token is verified again from scratch. */
  readonly until: number;
}

const SEGMENT = /^[A-Za-z0-9_-]+$/;
/** C0 controls (CR, LF, NUL, TAB…), DEL and C1 controls: none may reach an HTTP header. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const THUMBPRINT = /^[A-Za-z0-9_-]{43}$/;

const fail = (failure: TokenFailure, reason: string): VerifyResult => ({ ok: false, failure, reason });

const ALL_ISSUERS: ReadonlySet<string> = new Set();
const isTrusted = (name: string, trusted: ReadonlySet<string>) => trusted.size === 0 || trusted.has(name);
const untrusted = (name: string) =>
  fail('token_issuer_invalid', `issuer ${name} is not trusted on this route`);
/** A scope is one space-delimited token (RFC 6749 §3.3): whitespace inside one would forge others. */
const WHITESPACE = /\s/;

export class JwtVerifier {
  readonly #byIss = new Map<string, Issuer>();
  readonly #clock: Clock;
  readonly #cache: LRUCache<number, CacheEntry> | null;
  readonly #cacheTtlMs: number;

  constructor(issuers: readonly IssuerConfig[], options: JwtVerifierOptions) {
    const names = new Set<string>();
    for (const config of issuers) {
      const issuer = checkIssuer(config);
      if (names.has(issuer.name)) throw new Error(`issuer "${issuer.name}": the name is used twice`);
      if (this.#byIss.has(issuer.issuer)) {
        throw new Error(
          `issuer "${issuer.name}": iss ${JSON.stringify(issuer.issuer)} is already another issuer's`,
        );
      }
      names.add(issuer.name);
      this.#byIss.set(issuer.issuer, issuer);
    }
    this.#clock = options.clock;
    const max = options.cacheMaxEntries ?? DEFAULT_CACHE_MAX_ENTRIES;
    const ttl = options.cacheTtlSeconds ?? DEFAULT_CACHE_TTL_SECONDS;
    if (!(Number.isInteger(max) && max >= 0))
      throw new Error('cacheMaxEntries must be a whole number, 0 or more');
    if (!(Number.isFinite(ttl) && ttl >= 0)) throw new Error('cacheTtlSeconds must be 0 or more');
    this.#cache = max > 0 && ttl > 0 ? new LRUCache<number, CacheEntry>({ max }) : null;
    this.#cacheTtlMs = ttl * 1000;
  }

  /**
   * Never rejects: every outcome, an unexpected error included, is a VerifyResult. `trusted`: the
   * issuer names the caller (a route) accepts, empty = all. It is judged on the unverified `iss`,
   * before any key is looked up: a token naming an issuer the route does not trust never makes us
   * touch that issuer's keys, whose outage is then none of this request's business.
   */
  async verify(token: string, trusted: ReadonlySet<string> = ALL_ISSUERS): Promise<VerifyResult> {
    if (typeof token !== 'string') return fail('token_malformed', 'token is not a string');
    if (token.length > MAX_TOKEN_BYTES) {
      return fail(
        'token_malformed',
        `token is ${token.length} bytes, over the ${MAX_TOKEN_BYTES}-byte limit`,
      );
    }
    const hit = this.cached(token, trusted);
    if (hit !== null) return hit;
    try {
      return await this.#verify(token, trusted);
    } catch (error: unknown) {
      // A bug or a surprise in a library must not let a token through, nor escape as an exception.
      return fail('token_malformed', `unexpected verifier error: ${errorText(error)}`);
    }
  }

  /**
   * The cache's answer for `token`, synchronously (the hot path needs no promise): the verified
   * token, or its failure now (expired, not yet valid, issuer not trusted by `trusted`). null = not
   * cached or due for verification again: call verify.
   */
  cached(token: string, trusted: ReadonlySet<string> = ALL_ISSUERS): VerifyResult | null {
    if (this.#cache === null) return null;
    const key = fingerprint(token);
    const entry = this.#cache.get(key);
    if (entry === undefined || entry.raw !== token) return null;
    if (!isTrusted(entry.token.issuer, trusted)) return untrusted(entry.token.issuer);
    return this.#fromCache(key, entry);
  }

  /** Verified tokens currently cached. */
  cachedTokens(): number {
    return this.#cache?.size ?? 0;
  }

  /** A cache hit judged against the clock now; null = gone, verify from scratch. */
  #fromCache(cacheKey: number, entry: CacheEntry): VerifyResult | null {
    const nowMs = this.#clock.now();
    const now = Math.floor(nowMs / 1000);
    const { token } = entry;
    if (token.expiresAt <= now - entry.skew) {
      this.#cache?.delete(cacheKey);
      return fail('token_expired', `token expired at ${token.expiresAt} (now ${now}, skew ${entry.skew} s)`);
    }
    if (entry.notBefore !== undefined && entry.notBefore > now + entry.skew) {
      return fail(
        'token_not_yet_valid',
        `token not valid before ${entry.notBefore} (now ${now}, skew ${entry.skew} s)`,
      );
    }
    if (nowMs >= entry.until) {
      this.#cache?.delete(cacheKey);
      return null;
    }
    return entry.hit;
  }

  #remember(token: string, issuer: Issuer, result: VerifyResult & { ok: true }): void {
    if (this.#cache === null) return;
    const nowMs = this.#clock.now();
    // Kept until the token expires (skew included) or the cache ttl ends, whichever comes first.
    const verified = result.token;
    const until = Math.min(nowMs + this.#cacheTtlMs, (verified.expiresAt + issuer.skew) * 1000);
    if (until <= nowMs) return;
    const nbf = verified.claims.nbf;
    // A fingerprint shared with another cached token replaces it: that one is verified again.
    this.#cache.set(fingerprint(token), {
      // A copy of its own: the token may be a slice of a larger string (a header, a URL) that the
      // cache must not keep alive. Verified, so it is base64url: latin1 is exact.
      raw: Buffer.from(token, 'latin1').toString('latin1'),
      token: verified,
      hit: result,
      notBefore: typeof nbf === 'number' ? nbf : undefined,
      skew: issuer.skew,
      until,
    });
  }

  async #verify(token: string, trusted: ReadonlySet<string>): Promise<VerifyResult> {
    const segments = token.split('.');
    if (segments.length === 5)
      return fail('token_malformed', 'token is a JWE (5 segments); only signed JWTs are accepted');
    if (segments.length !== 3) return fail('token_malformed', `token has ${segments.length} segments, not 3`);
    const [headerPart = '', payloadPart = '', signaturePart = ''] = segments;
    for (const [what, part] of [
      ['header', headerPart],
      ['payload', payloadPart],
      ['signature', signaturePart],
    ] as const) {
      // An empty signature is left to the algorithm check and the signature check.
      if (what === 'signature' && part === '') continue;
      if (!SEGMENT.test(part) || part.length % 4 === 1)
        return fail('token_malformed', `token ${what} is not base64url`);
    }

    const header = decodeJson(headerPart);
    if (header === null) return fail('token_malformed', 'token header is not a JSON object');
    if (header.crit !== undefined) {
      return fail(
        'token_malformed',
        `token header has critical extensions we do not support: ${describeValue(header.crit)}`,
      );
    }
    if (typeof header.cty === 'string' && header.cty.toUpperCase() === 'JWT') {
      return fail('token_malformed', 'token is a nested JWT (cty: JWT); nested tokens are not accepted');
    }
    const alg = header.alg;
    if (typeof alg !== 'string') return fail('token_malformed', 'token header has no alg');
    const kid = header.kid;
    if (kid !== undefined && typeof kid !== 'string')
      return fail('token_malformed', 'token header kid is not a string');

    const unverified = decodeJson(payloadPart);
    if (unverified === null) return fail('token_malformed', 'token payload is not a JSON object');
    const iss = unverified.iss;
    if (typeof iss !== 'string')
      return fail('token_issuer_invalid', 'token has no iss claim (or not a string)');
    const issuer = this.#byIss.get(iss);
    if (issuer === undefined) return fail('token_issuer_invalid', `unknown issuer ${quote(iss)}`);
    if (!isTrusted(issuer.name, trusted)) return untrusted(issuer.name);

    if (!issuer.algorithms.has(alg)) {
      return fail(
        'token_algorithm_not_allowed',
        `alg ${quote(alg)} is not allowed for issuer ${issuer.name} (allowed: ${issuer.algorithmList.join(', ')})`,
      );
    }

    let found: KeyLookup;
    try {
      found = await issuer.keys.keyFor(kid === undefined ? { alg } : { kid, alg });
    } catch (error: unknown) {
      return fail('token_keys_unavailable', `key set of issuer ${issuer.name} failed: ${errorText(error)}`);
    }
    if (!found.ok) {
      return fail(
        found.failure === 'unknown_kid' ? 'token_key_unknown' : 'token_keys_unavailable',
        found.reason,
      );
    }

    // The signature first (node:crypto, synchronous), then the claims, judged by jose as an
    // unsecured JWT: same rules and errors as jwtVerify, without WebCrypto's thread-pool round trip.
    const keyObject = keyObjectOf(found.key);
    const mismatch = keyMismatch(alg, keyObject);
    if (mismatch !== null) {
      return fail(
        'token_signature_invalid',
        `${describeKey(alg, found.kid)} of issuer ${issuer.name} cannot verify this token: ${mismatch}`,
      );
    }
    if (!verifyJws(alg, keyObject, `${headerPart}.${payloadPart}`, Buffer.from(signaturePart, 'base64url'))) {
      return fail(
        'token_signature_invalid',
        `signature does not verify with ${describeKey(alg, found.kid)} of issuer ${issuer.name}`,
      );
    }
    const nowMs = this.#clock.now();
    let payload: JWTPayload;
    try {
      ({ payload } = UnsecuredJWT.decode(`${UNSECURED_HEADER}.${payloadPart}.`, {
        issuer: issuer.issuer,
        audience: issuer.audiences,
        clockTolerance: issuer.skew,
        currentDate: new Date(nowMs),
        requiredClaims: issuer.requiredClaims,
      }));
    } catch (error: unknown) {
      return mapJoseError(error, issuer);
    }
    const result = accept(issuer, payload, Math.floor(nowMs / 1000));
    if (result.ok) this.#remember(token, issuer, result);
    return result;
  }
}

/** Characters of a token's end the cache key reads: a signature's last 192 bits. */
const FINGERPRINT_CHARS = 32;

/**
 * The cache key of a token: its length and last characters (the end of the signature), FNV-1a
 * folded to a small integer. It only finds the entry; the whole token is then compared, so a
 * crafted token with a cached token's ending is a miss, verified from scratch.
 */
function fingerprint(token: string): number {
  let hash = 0x811c9dc5 ^ token.length;
  for (let i = Math.max(0, token.length - FINGERPRINT_CHARS); i < token.length; i++) {
    hash = Math.imul(hash ^ token.charCodeAt(i), 0x01000193);
  }
  return hash >>> 2; // 30 bits: a small integer, never a heap number
}

/** Our rules on top of jose's, and the VerifiedToken. */
function accept(issuer: Issuer, payload: JWTPayload, now: number): VerifyResult {
  const exp = payload.exp;
  if (typeof exp !== 'number') return fail('token_claims_invalid', 'exp is not a number');
  const iat = payload.iat;
  if (iat !== undefined && iat > now + issuer.skew) {
    return fail('token_lifetime_invalid', `iat ${iat} is in the future (now ${now}, skew ${issuer.skew} s)`);
  }
  if (issuer.maxLifetime !== undefined) {
    const lifetime = exp - (iat ?? now);
    if (lifetime > issuer.maxLifetime) {
      return fail(
        'token_lifetime_invalid',
        `token lives ${lifetime} s (exp - ${iat === undefined ? 'now' : 'iat'}), over the ${issuer.maxLifetime} s limit of issuer ${issuer.name}`,
      );
    }
  }

  let application: string | undefined;
  for (const claim of issuer.applicationClaims) {
    const value = payload[claim];
    if (value === undefined) continue;
    if (typeof value !== 'string' || value === '')
      return fail('token_claims_invalid', `${claim} is not a non-empty string`);
    application = value;
    break;
  }
  if (application === undefined) {
    return fail(
      'token_claims_invalid',
      `token names no application (${issuer.applicationClaims.join(', ')})`,
    );
  }
  const subject = optionalString(payload, issuer.userClaim);
  if (subject === null) return fail('token_claims_invalid', `${issuer.userClaim} is not a string`);
  const jti = optionalString(payload, 'jti');
  if (jti === null) return fail('token_claims_invalid', 'jti is not a string');
  const acr = optionalString(payload, 'acr');
  if (acr === null) return fail('token_claims_invalid', 'acr is not a string');
  const authTime = payload.auth_time;
  if (authTime !== undefined && !(typeof authTime === 'number' && Number.isFinite(authTime))) {
    return fail('token_claims_invalid', 'auth_time is not a number');
  }
  const scopes = readScopes(payload);
  if (typeof scopes === 'string') return fail('token_claims_invalid', scopes);
  for (const [claim, value] of [
    ['application', application],
    [issuer.userClaim, subject],
    ['jti', jti],
    ['acr', acr ?? ''],
  ] as const) {
    if (CONTROL.test(value)) return fail('token_claims_invalid', `${claim} contains control characters`);
  }
  for (const scope of scopes) {
    if (CONTROL.test(scope)) return fail('token_claims_invalid', 'a scope contains control characters');
    if (WHITESPACE.test(scope)) {
      return fail('token_claims_invalid', `a scope contains a space (or other whitespace): ${quote(scope)}`);
    }
  }
  const thumbprint = readThumbprint(payload.cnf);
  if (thumbprint === false)
    return fail('token_claims_invalid', 'cnf is not an object with a base64url x5t#S256');

  const token: VerifiedToken = {
    issuer: issuer.name,
    claims: deepFreeze(payload),
    application,
    subject,
    scopes,
    jti,
    expiresAt: exp,
    certificateThumbprint: thumbprint,
    ...(typeof iat === 'number' ? { issuedAt: iat } : {}),
    ...(typeof authTime === 'number' ? { authTime } : {}),
    ...(acr !== '' ? { acr } : {}),
  };
  return Object.freeze({ ok: true, token: Object.freeze(token) });
}

function checkIssuer(config: IssuerConfig): Issuer {
  const where = `issuer "${config.name}"`;
  if (config.name === '') throw new Error('an issuer has an empty name');
  if (config.issuer === '') throw new Error(`${where}: issuer (the iss value) is empty`);
  if (config.audiences.length === 0 || config.audiences.some((a) => a === '')) {
    throw new Error(`${where}: audiences must list at least one non-empty audience`);
  }
  if (config.algorithms.length === 0)
    throw new Error(`${where}: algorithms must list at least one algorithm`);
  for (const alg of config.algorithms) {
    if (alg.toLowerCase() === 'none') {
      throw new Error(`${where}: algorithm "none" is refused: unsigned tokens would be accepted`);
    }
    if (/^HS\d+$/i.test(alg)) {
      throw new Error(
        `${where}: algorithm "${alg}" is refused: HMAC needs a shared secret, and with a public key set it invites key-confusion attacks; use an asymmetric algorithm`,
      );
    }
    if (!(SUPPORTED_ALGORITHMS as readonly string[]).includes(alg)) {
      throw new Error(
        `${where}: algorithm "${alg}" is not supported (supported: ${SUPPORTED_ALGORITHMS.join(', ')})`,
      );
    }
  }
  if (!(Number.isInteger(config.clockSkewSeconds) && config.clockSkewSeconds >= 0)) {
    throw new Error(`${where}: clockSkewSeconds must be a whole number of seconds, 0 or more`);
  }
  const maxLifetime = config.maxLifetimeSeconds;
  if (maxLifetime !== undefined && !(Number.isInteger(maxLifetime) && maxLifetime > 0)) {
    throw new Error(`${where}: maxLifetimeSeconds must be a whole number of seconds, more than 0`);
  }
  const applicationClaims = config.applicationClaims ?? DEFAULT_APPLICATION_CLAIMS;
  if (applicationClaims.length === 0)
    throw new Error(`${where}: applicationClaims must name at least one claim`);
  return {
    name: config.name,
    issuer: config.issuer,
    audiences: [...config.audiences],
    algorithms: new Set(config.algorithms),
    algorithmList: [...config.algorithms],
    skew: config.clockSkewSeconds,
    maxLifetime,
    requiredClaims: [...new Set(['exp', ...config.requiredClaims])],
    applicationClaims: [...applicationClaims],
    userClaim: config.userClaim ?? DEFAULT_USER_CLAIM,
    keys: config.keys,
  };
}

/**
 * jose's verdict on the claims, in our words. The signature and the key were judged before
 * (signature.ts), so only claim and format errors come from jose.
 */
function mapJoseError(error: unknown, issuer: Issuer): VerifyResult {
  if (error instanceof errors.JWTExpired) {
    return fail(
      'token_expired',
      `${error.message}: exp ${describeValue(error.payload.exp)} (skew ${issuer.skew} s)`,
    );
  }
  if (error instanceof errors.JWTClaimValidationFailed) {
    const { claim, reason } = error;
    if (reason === 'missing') {
      return fail(claim === 'aud' ? 'token_audience_invalid' : 'token_claims_invalid', error.message);
    }
    if (claim === 'aud' && reason === 'check_failed') {
      return fail(
        'token_audience_invalid',
        `aud ${describeValue(error.payload.aud)} names none of ${issuer.audiences.join(', ')}`,
      );
    }
    if (claim === 'iss' && reason === 'check_failed') return fail('token_issuer_invalid', error.message);
    if (claim === 'nbf' && reason === 'check_failed') {
      return fail(
        'token_not_yet_valid',
        `${error.message}: nbf ${describeValue(error.payload.nbf)} (skew ${issuer.skew} s)`,
      );
    }
    return fail('token_claims_invalid', error.message);
  }
  if (
    error instanceof errors.JWSInvalid ||
    error instanceof errors.JWTInvalid ||
    error instanceof errors.JOSENotSupported
  ) {
    return fail('token_malformed', error.message);
  }
  return fail('token_malformed', `unexpected verifier error: ${errorText(error)}`);
}

function describeKey(alg: string, kid: string | null): string {
  return kid === null ? `${alg} key` : `${alg} key ${quote(kid)}`;
}

/** `{"alg":"none"}`: the header under which jose judges the claims of a token we verified ourselves. */
const UNSECURED_HEADER = Buffer.from('{"alg":"none"}').toString('base64url');

/** node:crypto's view of a key set's WebCrypto key, made once per key. */
const KEY_OBJECTS = new WeakMap<CryptoKey, KeyObject>();
function keyObjectOf(key: CryptoKey): KeyObject {
  let object = KEY_OBJECTS.get(key);
  if (object === undefined) {
    object = KeyObject.from(key);
    KEY_OBJECTS.set(key, object);
  }
  return object;
}

/** A base64url segment decoded as a JSON object; null if it is not one. */
function decodeJson(segment: string): Record<string, unknown> | null {
  let value: unknown;
  try {
    value = JSON.parse(UTF8.decode(Buffer.from(segment, 'base64url')));
  } catch {
    return null;
  }
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : null;
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** '' when absent, null when present but not a string. */
function optionalString(payload: JWTPayload, claim: string): string | null {
  const value = payload[claim];
  if (value === undefined) return '';
  return typeof value === 'string' ? value : null;
}

/** `scope` (space-delimited string, RFC 8693) or else `scp` (array, or a string as Entra ID sends). */
function readScopes(payload: JWTPayload): ReadonlySet<string> | string {
  const scope = payload.scope;
  if (scope !== undefined) {
    if (typeof scope !== 'string') return 'scope is not a string';
    return new Set(scope.split(' ').filter((s) => s !== ''));
  }
  const scp = payload.scp;
  if (scp === undefined) return new Set();
  if (typeof scp === 'string') return new Set(scp.split(' ').filter((s) => s !== ''));
  if (Array.isArray(scp) && scp.every((s): s is string => typeof s === 'string')) {
    return new Set(scp.filter((s) => s !== ''));
  }
  return 'scp is neither a string nor an array of strings';
}

/** null = no binding; false = a malformed cnf. */
function readThumbprint(cnf: unknown): string | null | false {
  if (cnf === undefined) return null;
  if (typeof cnf !== 'object' || cnf === null || Array.isArray(cnf)) return false;
  const value = (cnf as Record<string, unknown>)['x5t#S256'];
  if (value === undefined) return null;
  return typeof value === 'string' && THUMBPRINT.test(value) ? value : false;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

function describeValue(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

function errorText(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
