// The verification keys of one token issuer, from its JWKS endpoint (or a file), parsed once per
// fetch into WebCrypto keys and served from memory. The hot path is a map lookup; the network is
// touched only when the keys are due (ttl), missing (no keys, unknown kid) or too old (stale), and
// never more than once per cooldown, whatever the traffic: a flood of tokens with invented kids
// costs the identity provider at most one request per cooldown. An unknown kid is answered at once
// (`unknown_kid`) and never waits for that refetch: it runs in the background.
//
// Freshness, with `age` = time since the last successful fetch:
//   age < ttl                 served as is;
//   ttl <= age < maxStale     served as is, and a refresh is started in the background;
//   age >= maxStale           "stale": refused (the caller answers token_keys_unavailable) unless a
//                             refresh, awaited, brings fresh keys.
// A failed or garbage fetch changes nothing but the counters and one warning line: the previous keys
// stay in service until they become stale. A file source is re-read after ttl (a rotated file needs
// no restart) and never goes stale: the last good content of the file is kept until it is fixed.
import { readFile } from 'node:fs/promises';
import { type CryptoKey, importJWK, type JWK } from 'jose';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';

export type JwksSource =
  | {
      readonly kind: 'url';
      readonly url: string;
      /** Whole request, body included. */
      readonly timeoutMs: number;
      /** Keys younger than this are served without asking the endpoint. */
      readonly ttlMs: number;
      /** At most one fetch starts per cooldown, whatever triggers it (ttl, unknown kid, stale). */
      readonly cooldownMs: number;
      /** Keys older than this (since the last successful fetch) are no longer served. */
      readonly maxStaleMs: number;
    }
  | { readonly kind: 'file'; readonly path: string; readonly ttlMs: number };

/** What a token's protected header says about its key. Nothing else in the header is ever used. */
export interface KeyHeader {
  readonly kid?: string | undefined;
  readonly alg: string;
}

/**
 * Why no key was found. `unknown_kid`: the set has no key for this kid and alg (a refetch may have
 * been started behind); `no_keys`: no fetch ever succeeded; `stale`: the keys are older than maxStale.
 */
export type KeyFailure = 'unknown_kid' | 'no_keys' | 'stale';

export type KeyLookup =
  | { readonly ok: true; readonly key: CryptoKey; readonly kid: string | null }
  | { readonly ok: false; readonly failure: KeyFailure; readonly reason: string };

/** What a JWT verifier needs from a key set. `JwksCache` is one; tests may wrap it. */
export interface KeySet {
  keyFor(header: KeyHeader): Promise<KeyLookup>;
}

export interface JwksStats {
  readonly fetchesOk: number;
  readonly fetchesFailed: number;
  /** Usable keys in service (a key counts once, whatever the number of algorithms it serves). */
  readonly keys: number;
  /** Clock time (epoch ms) of the last successful fetch; null before the first. */
  readonly lastOkAt: number | null;
  /** Why the last fetch failed; null when it succeeded (or none was made yet). */
  readonly lastError: string | null;
}

export interface JwksCacheOptions {
  readonly clock: Clock;
  readonly logger: Logger;
  /** Names the key set in logs: usually the issuer's name in the catalog. */
  readonly name: string;
}

/** A JWKS larger than this is refused: real ones are a few KiB. */
export const MAX_JWKS_BYTES = 1024 * 1024;

const RSA_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'] as const;
const EC_ALGORITHMS: Readonly<Record<string, string>> = {
  'P-256': 'ES256',
  'P-384': 'ES384',
  'P-521': 'ES512',
};
const OKP_ALGORITHMS: Readonly<Record<string, readonly string[]>> = { Ed25519: ['EdDSA', 'Ed25519'] };
/** JWK members that only private (or symmetric) keys have: such a key has no place in a JWKS. */
const SECRET_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'priv'] as const;
const MIN_RSA_BITS = 2048;

/** One key of the set, imported once for every algorithm it may verify. */
interface Entry {
  readonly kid: string | null;
  readonly byAlg: ReadonlyMap<string, CryptoKey>;
}

interface Loaded {
  readonly entries: readonly Entry[];
  readonly byKid: ReadonlyMap<string, readonly Entry[]>;
  /** Sorted, for change detection and messages. */
  readonly kids: readonly string[];
  readonly fetchedAt: number;
}

interface Timing {
  readonly ttlMs: number;
  readonly cooldownMs: number;
  readonly maxStaleMs: number;
}

export class JwksCache implements KeySet {
  readonly #source: JwksSource;
  readonly #timing: Timing;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #name: string;
  readonly #closing = new AbortController();
  #current: Loaded | null = null;
  #inflight: Promise<void> | null = null;
  #lastAttemptAt: number | null = null;
  #fetchesOk = 0;
  #fetchesFailed = 0;
  #lastError: string | null = null;

  constructor(source: JwksSource, options: JwksCacheOptions) {
    this.#source = source;
    this.#clock = options.clock;
    this.#logger = options.logger;
    this.#name = options.name;
    if (source.kind === 'url') {
      const protocol = URL.canParse(source.url) ? new URL(source.url).protocol : '';
      if (protocol !== 'https:' && protocol !== 'http:') {
        throw new Error(
          `JWKS "${options.name}": url must be an http(s) URL, got ${JSON.stringify(source.url)}`,
        );
      }
      requirePositive(options.name, 'timeoutMs', source.timeoutMs);
      requirePositive(options.name, 'ttlMs', source.ttlMs);
      requireNonNegative(options.name, 'cooldownMs', source.cooldownMs);
      requirePositive(options.name, 'maxStaleMs', source.maxStaleMs);
      if (source.maxStaleMs < source.ttlMs) {
        throw new Error(`JWKS "${options.name}": maxStaleMs must be at least ttlMs`);
      }
      this.#timing = source;
    } else {
      requirePositive(options.name, 'ttlMs', source.ttlMs);
      // A file is re-read at most once per ttl, whatever the tokens say, and never goes stale.
      this.#timing = { ttlMs: source.ttlMs, cooldownMs: source.ttlMs, maxStaleMs: Number.POSITIVE_INFINITY };
    }
  }

  async keyFor(header: KeyHeader): Promise<KeyLookup> {
    let now = this.#clock.now();
    let current = this.#current;
    let fetched = false;
    if (current === null || now - current.fetchedAt >= this.#timing.maxStaleMs) {
      if (this.#inflight !== null || this.#mayStart(now)) {
        fetched = true;
        await this.#fetchShared(now);
        now = this.#clock.now();
        current = this.#current;
      }
      if (current === null) {
        return { ok: false, failure: 'no_keys', reason: `JWKS ${this.#name} has no keys: ${this.#why()}` };
      }
      const age = now - current.fetchedAt;
      if (age >= this.#timing.maxStaleMs) {
        return {
          ok: false,
          failure: 'stale',
          reason: `JWKS ${this.#name} keys are ${Math.floor(age / 1000)} s old, over the ${Math.floor(this.#timing.maxStaleMs / 1000)} s limit: ${this.#why()}`,
        };
      }
    } else if (now - current.fetchedAt >= this.#timing.ttlMs && this.#mayStart(now)) {
      // Due, but still good: serve now, refresh behind. #fetchShared never rejects.
      void this.#fetchShared(now);
    }

    const found = find(current, header);
    if (found !== null) return { ok: true, key: found.key, kid: found.kid };

    // Unknown kid: maybe a rotation, maybe a forgery. Answered now, never after a network round trip
    // (a slow endpoint must not hold the Check past Envoy's deadline); one refetch starts behind,
    // shared by every concurrent miss, at most once per cooldown. Once it lands, the new kid verifies.
    if (!fetched && (this.#inflight !== null || this.#mayStart(now))) void this.#fetchShared(now);
    const kid = header.kid === undefined ? 'no kid' : `kid ${quote(header.kid)}`;
    return {
      ok: false,
      failure: 'unknown_kid',
      reason: `JWKS ${this.#name} has no ${header.alg} key for ${kid} (kids: ${current.kids.map(quote).join(', ') || 'none'})`,
    };
  }

  /** Seconds since the last successful fetch; null before the first. */
  ageSeconds(): number | null {
    const current = this.#current;
    return current === null ? null : (this.#clock.now() - current.fetchedAt) / 1000;
  }

  stats(): JwksStats {
    return {
      fetchesOk: this.#fetchesOk,
      fetchesFailed: this.#fetchesFailed,
      keys: this.#current?.entries.length ?? 0,
      lastOkAt: this.#current?.fetchedAt ?? null,
      lastError: this.#lastError,
    };
  }

  /**
   * Fetch now, ignoring ttl and cooldown (joins a fetch already running). For warm-up at startup and
   * for operators; never called because of a token. Resolves when done, whatever the outcome.
   */
  refresh(): Promise<void> {
    return this.#fetchShared(this.#clock.now());
  }

  /** Resolves when no fetch is running (a background refresh included). */
  async idle(): Promise<void> {
    while (this.#inflight !== null) await this.#inflight;
  }

  /** Aborts a running fetch and waits for it. There are no timers to stop. */
  async close(): Promise<void> {
    this.#closing.abort();
    await this.idle();
  }

  #mayStart(now: number): boolean {
    if (this.#closing.signal.aborted) return false;
    return this.#lastAttemptAt === null || now - this.#lastAttemptAt >= this.#timing.cooldownMs;
  }

  #why(): string {
    if (this.#lastError !== null) return this.#lastError;
    return this.#closing.signal.aborted ? 'closed' : 'no fetch allowed yet (cooldown)';
  }

  /** Starts a fetch, or joins the one running. The inflight promise is set before any await. */
  #fetchShared(now: number): Promise<void> {
    if (this.#inflight === null) {
      this.#lastAttemptAt = now;
      this.#inflight = this.#load().finally(() => {
        this.#inflight = null;
      });
    }
    return this.#inflight;
  }

  async #load(): Promise<void> {
    let loaded: Loaded;
    try {
      const text = await this.#read();
      loaded = await importKeySet(text, this.#clock);
    } catch (error: unknown) {
      if (this.#closing.signal.aborted) return;
      this.#fetchesFailed += 1;
      const reason = describe(error, this.#source);
      this.#lastError = reason;
      const current = this.#current;
      if (!this.#logger.isLevelEnabled('warn')) return;
      this.#logger.warn(
        {
          jwks: this.#name,
          source: this.#source.kind === 'url' ? this.#source.url : this.#source.path,
          error: reason,
          keptKeys: current?.entries.length ?? 0,
          keysAgeSeconds:
            current === null ? null : Math.floor((this.#clock.now() - current.fetchedAt) / 1000),
        },
        current === null
          ? 'JWKS fetch failed; no keys to serve yet'
          : 'JWKS fetch failed; still serving the previous keys',
      );
      return;
    }
    const previous = this.#current;
    this.#current = loaded;
    this.#fetchesOk += 1;
    this.#lastError = null;
    const changed = previous === null || previous.kids.join('\n') !== loaded.kids.join('\n');
    if (changed && this.#logger.isLevelEnabled('info')) {
      this.#logger.info(
        { jwks: this.#name, kids: loaded.kids, keys: loaded.entries.length },
        'JWKS keys loaded',
      );
    }
  }

  async #read(): Promise<string> {
    const source = this.#source;
    if (source.kind === 'file') {
      const bytes = await readFile(source.path, { signal: this.#closing.signal });
      if (bytes.length > MAX_JWKS_BYTES) throw new JwksError(`file is over ${MAX_JWKS_BYTES} bytes`);
      return decodeUtf8(bytes);
    }
    const signal = AbortSignal.any([this.#closing.signal, AbortSignal.timeout(source.timeoutMs)]);
    const response = await fetch(source.url, { signal, headers: { accept: 'application/json' } });
    if (response.status !== 200) {
      await response.body?.cancel();
      throw new JwksError(`HTTP ${response.status}`);
    }
    return decodeUtf8(await readLimited(response, MAX_JWKS_BYTES));
  }
}

/** A JWKS document that is not one, said precisely. */
class JwksError extends Error {}

function find(set: Loaded, header: KeyHeader): { key: CryptoKey; kid: string | null } | null {
  if (header.kid !== undefined) {
    for (const entry of set.byKid.get(header.kid) ?? []) {
      const key = entry.byAlg.get(header.alg);
      if (key !== undefined) return { key, kid: entry.kid };
    }
    return null;
  }
  // No kid: only an unambiguous key will do (one key of the set can verify this alg).
  let match: { key: CryptoKey; kid: string | null } | null = null;
  for (const entry of set.entries) {
    const key = entry.byAlg.get(header.alg);
    if (key === undefined) continue;
    if (match !== null) return null;
    match = { key, kid: entry.kid };
  }
  return match;
}

/**
 * Parses a JWKS and imports every usable key. A key is usable when it is a public signature key of
 * a supported type (RSA of 2048 bits or more, EC P-256/384/521, Ed25519), not marked for encryption,
 * and importable. Unusable keys are skipped; a document with none at all is refused, so a broken
 * endpoint cannot replace good keys with an empty set.
 */
async function importKeySet(text: string, clock: Clock): Promise<Loaded> {
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch {
    throw new JwksError('response is not JSON');
  }
  if (!isPlainObject(document)) throw new JwksError('response is not a JSON object');
  const keys = document.keys;
  if (!Array.isArray(keys)) throw new JwksError('response has no "keys" array');
  const imported = await Promise.all(keys.map((jwk: unknown) => importOne(jwk)));
  const entries = imported.filter((e): e is Entry => e !== null);
  if (entries.length === 0) throw new JwksError(`no usable signature key among ${keys.length}`);
  const byKid = new Map<string, Entry[]>();
  for (const entry of entries) {
    if (entry.kid === null) continue;
    const list = byKid.get(entry.kid);
    if (list) list.push(entry);
    else byKid.set(entry.kid, [entry]);
  }
  const kids = [...byKid.keys()].sort();
  return { entries, byKid, kids, fetchedAt: clock.now() };
}

async function importOne(jwk: unknown): Promise<Entry | null> {
  if (!isPlainObject(jwk)) return null;
  if (SECRET_MEMBERS.some((member) => Object.hasOwn(jwk, member))) return null;
  if (jwk.use !== undefined && jwk.use !== 'sig') return null;
  if (jwk.key_ops !== undefined && !(Array.isArray(jwk.key_ops) && jwk.key_ops.includes('verify')))
    return null;
  if (jwk.kid !== undefined && typeof jwk.kid !== 'string') return null;
  const algorithms = algorithmsFor(jwk);
  if (algorithms.length === 0) return null;
  const byAlg = new Map<string, CryptoKey>();
  for (const alg of algorithms) {
    try {
      const key = await importJWK(jwk as JWK, alg);
      if (!isCryptoKey(key)) continue;
      if (alg.startsWith('RS') || alg.startsWith('PS')) {
        const { modulusLength } = key.algorithm as { modulusLength?: number };
        if (modulusLength === undefined || modulusLength < MIN_RSA_BITS) continue;
      }
      byAlg.set(alg, key);
    } catch {
      // Not importable for this algorithm (bad material, unsupported curve): skip it.
    }
  }
  if (byAlg.size === 0) return null;
  return { kid: typeof jwk.kid === 'string' ? jwk.kid : null, byAlg };
}

/** The algorithms a JWK may verify: its own `alg` if it names one that fits its type, else all that fit. */
function algorithmsFor(jwk: Record<string, unknown>): readonly string[] {
  let fitting: readonly string[];
  if (jwk.kty === 'RSA') fitting = RSA_ALGORITHMS;
  else if (jwk.kty === 'EC') {
    const alg = typeof jwk.crv === 'string' ? EC_ALGORITHMS[jwk.crv] : undefined;
    fitting = alg === undefined ? [] : [alg];
  } else if (jwk.kty === 'OKP') {
    fitting = (typeof jwk.crv === 'string' ? OKP_ALGORITHMS[jwk.crv] : undefined) ?? [];
  } else fitting = [];
  if (jwk.alg === undefined) return fitting;
  return typeof jwk.alg === 'string' && fitting.includes(jwk.alg) ? [jwk.alg] : [];
}

function isCryptoKey(key: CryptoKey | Uint8Array): key is CryptoKey {
  return !(key instanceof Uint8Array);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

async function readLimited(response: Response, max: number): Promise<Uint8Array> {
  const declared = Number(response.headers.get('content-length') ?? '0');
  if (declared > max) {
    await response.body?.cancel();
    throw new JwksError(`response is over ${max} bytes`);
  }
  if (response.body === null) return new Uint8Array();
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > max) {
      await reader.cancel();
      throw new JwksError(`response is over ${max} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

function decodeUtf8(bytes: Uint8Array): string {
  try {
    return UTF8.decode(bytes);
  } catch {
    throw new JwksError('response is not UTF-8');
  }
}

/** One line on why a fetch failed, for the warning and for `keyFor` reasons. */
function describe(error: unknown, source: JwksSource): string {
  if (error instanceof JwksError) return error.message;
  if (error instanceof Error) {
    if (error.name === 'TimeoutError' && source.kind === 'url')
      return `timed out after ${source.timeoutMs} ms`;
    const cause = error.cause;
    if (cause instanceof Error) {
      const code = (cause as NodeJS.ErrnoException).code;
      const detail =
        code === undefined || cause.message.includes(code) ? cause.message : `${code} ${cause.message}`;
      return `${error.message}: ${detail}`;
    }
    const code = (error as NodeJS.ErrnoException).code;
    return code === undefined ? error.message : `${code}: ${error.message}`;
  }
  return String(error);
}

/** An attacker-controlled string, bounded and quoted for a log line. */
export function quote(value: string): string {
  return JSON.stringify(value.length > 100 ? `${value.slice(0, 100)}…` : value);
}

function requirePositive(name: string, field: string, value: number): void {
  if (!(Number.isFinite(value) && value > 0)) {
    throw new Error(`JWKS "${name}": ${field} must be a positive number of milliseconds`);
  }
}

function requireNonNegative(name: string, field: string, value: number): void {
  if (!(Number.isFinite(value) && value >= 0)) {
    throw new Error(`JWKS "${name}": ${field} must be zero or a positive number of milliseconds`);
  }
}
