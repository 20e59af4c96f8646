// The policy harness: the real pipeline in process, for `policy test` and `policy diff`.
//
// A CheckRequest object (as Envoy sends it, e.g. from cli/check.ts buildCheckRequest) is encoded and
// decoded with the real codec, normalized by the real edge, decided by the real stages (createPipeline
// in runtime.ts: route, identify, authorize, quota) and encoded by the server's own encoder
// (encodeCheckResponse), so whatever passes here is sendable to Envoy; `response` is the same answer
// as a readable object (toCheckResponse; test/contract/encode-response.test.ts holds the two equal).
// What differs from `serve`:
//
// - the clock is the caller's (a fixed instant per test file, or the audit line's time);
// - quotas are counted in a fresh in-memory store per harness (no Redis), one replica;
// - revocations are the catalog's own lists (no Redis);
// - malware scans: no clamd; TEST_SCANNER finds the EICAR test string and nothing else;
// - decision ids are deterministic (`ptest-000001`, …);
// - tokens: a fixture may give the token's CLAIMS instead of a signed token. The harness signs them
//   with an ephemeral test key that only its own verifier trusts, in place of the issuer's JWKS, and
//   verifies them with the real JwtVerifier over the catalog's issuers. So every rule but the
//   signature applies: iss, aud, exp/nbf/iat, lifetime, required claims, claim shapes, and then the
//   real identify/authorize rules (partner mapping, issuers per route, scopes, step-up, revocations,
//   certificate binding). Signature verification and key sets are out of scope for policy tests
//   (test/unit/jwt-attacks.test.ts and test/integration/jwks.test.ts cover them). A real signed token
//   string is verified by the real verifier with the catalog's own key sets, fetched on first use;
// - API keys: a real key is verified with the pepper, as in `serve`. A fixture may instead name a key
//   by its catalog id (`apiKeyFor(id)`): the harness then skips the HMAC (it has no secret) but still
//   applies the key's status, expiry and revocations. This lets CI test API-key routes without the
//   production pepper.
import { randomBytes } from 'node:crypto';
import { generateKeyPair, SignJWT } from 'jose';
import { buildCheckRequest, type CheckFlags } from '../cli/check.js';
import type { Clock } from '../clock.js';
import type { MalwareScanner } from '../content/scanner.js';
import type { Decision } from '../decision.js';
import { checkCodec, type WireCheckRequest, type WireCheckResponse } from '../envoy/codec.js';
import { encodeCheckResponse } from '../envoy/encode-response.js';
import { normalize } from '../envoy/normalize.js';
import { toCheckResponse } from '../envoy/respond.js';
import { type ApiKeyResult, ApiKeyVerifier, checkKeyEntry } from '../identity/apikeys.js';
import { CertificateReader } from '../identity/certificates.js';
import type { KeyHeader, KeyLookup, KeySet } from '../identity/jwks.js';
import { JwtVerifier, type VerifyResult } from '../identity/jwt.js';
import { StaticRevocations } from '../identity/revocation.js';
import { createTokens, type Tokens } from '../identity/tokens.js';
import { createLogger } from '../observability/audit.js';
import { type CheckContext, failureDecision, rejectUnreadable } from '../pipeline/check.js';
import type { TokenVerifier } from '../pipeline/identify.js';
import { routeStage } from '../pipeline/route.js';
import type { ApiKeyEntry, Catalog, IssuerPolicy, RoutePolicy } from '../policy/catalog.js';
import { windowAt } from '../quota/calendar.js';
import { MemoryQuotaStore } from '../quota/memory-store.js';
import { OverLimitCache } from '../quota/over-limit.js';
import type { Request } from '../request.js';
import { createPipeline } from '../runtime.js';

export interface HarnessOptions {
  readonly clock: Clock;
  /** The API key pepper; null or absent = none (real keys then get api_key_invalid). */
  readonly apiKeyPepper?: Buffer | null;
  /** The malware scanner; default TEST_SCANNER (no clamd). */
  readonly scanner?: MalwareScanner;
}

/** The EICAR anti-virus test file, assembled at run time so that this file is not flagged itself. */
const EICAR = Buffer.from(
  ['X5O!P%@AP[4', '\\PZX54(P^)7CC)7}$', 'EICAR-STANDARD-ANTIVIRUS', '-TEST-FILE!$H+H*'].join(''),
);
export const TEST_SIGNATURE = 'Eicar-Test-Signature';

/**
 * The scanner of policy tests, standing in for clamd (tested in test/integration/clamd.test.ts): a
 * body holding the EICAR test string is infected, any other is clean.
 */
export const TEST_SCANNER: MalwareScanner = {
  scan: async (bytes) =>
    Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).includes(EICAR)
      ? { verdict: 'infected', signature: TEST_SIGNATURE }
      : { verdict: 'clean' },
};

export interface HarnessResult {
  readonly decision: Decision;
  /** The CheckResponse as sent to Envoy (it was encoded with the real codec). */
  readonly response: WireCheckResponse;
  readonly bytes: Uint8Array;
  /** The normalized request; null when the CheckRequest could not be read. */
  readonly request: Request | null;
}

export interface Harness {
  readonly catalog: Catalog;
  /** One Check through the real pipeline. `wire` is a CheckRequest object (proto field names). */
  check(wire: object): Promise<HarnessResult>;
  /**
   * A bearer token carrying these claims, trusted by this harness only (see the module header).
   * Defaults: iss (the issuer named by `iss`, as catalog name or iss value, else the catalog's only
   * issuer), aud (its first audience), iat (now), exp (now + 300 s, or less under max_lifetime).
   * A claim given as null is left out; exp/nbf/iat/auth_time accept "now", "now+5m", "now-1h".
   */
  token(claims: Readonly<Record<string, unknown>>): Promise<string>;
  /** An API key value standing for the catalog's key `id` in this harness only. */
  apiKeyFor(id: string): string;
  /** The route this CheckRequest goes to, if any (to put an API key in the route's header). */
  routeFor(wire: object): RoutePolicy | undefined;
  /** Closes the catalog's key sets, if a real token made the harness open them. */
  close(): Promise<void>;
}

/** Input the harness cannot run (a fixture naming an issuer the catalog lacks, …). */
export class HarnessInputError extends Error {
  override name = 'HarnessInputError';
}

/** A clock the caller moves: fixed unless set. */
export class TestClock implements Clock {
  constructor(private ms: number) {}
  now(): number {
    return this.ms;
  }
  set(ms: number): void {
    this.ms = ms;
  }
}

const codec = checkCodec();
const TEST_KID = 'portcullis-policy-test';
const DEFAULT_TOKEN_TTL_SECONDS = 300;
const silent = createLogger('silent');

export function createHarness(catalog: Catalog, options: HarnessOptions): Harness {
  const { clock } = options;
  const minted = new Set<string>();
  const keyRefs = new Map<string, string>();
  const nonce = randomBytes(6).toString('base64url').replace(/[-_]/g, 'x');
  let sequence = 0;
  let real: Tokens | undefined;

  const testKeys = new TestKeySet();
  const testVerifier =
    catalog.issuers.length === 0
      ? null
      : new JwtVerifier(
          catalog.issuers.map((issuer) => ({ ...issuer, keys: testKeys })),
          { clock, cacheTtlSeconds: 0 },
        );
  const tokens: TokenVerifier | null = testVerifier
    ? {
        verify: (token: string): Promise<VerifyResult> => {
          if (minted.has(token)) return testVerifier.verify(token);
          real ??= createTokens(catalog, { clock, logger: silent });
          return (real.verifier as JwtVerifier).verify(token);
        },
      }
    : null;

  const pipeline = createPipeline({
    identity: {
      tokens,
      apiKeys: new HarnessApiKeys(options.apiKeyPepper ?? null, keyRefs, catalog),
      certificates: new CertificateReader(),
      revocations: new StaticRevocations(),
      clock,
    },
    quota: {
      store: new MemoryQuotaStore({ idempotencyMs: catalog.settings.quotas.idempotencySeconds * 1000 }),
      fallback: null,
      windowAt,
      overLimit: new OverLimitCache(),
      clock,
      events: { charged: () => {}, storeFailed: () => {} },
    },
    scanner: options.scanner ?? TEST_SCANNER,
    clock,
  });
  const limits = { maxHeaderValueBytes: catalog.settings.maxHeaderValueBytes };

  const decode = (wire: object): WireCheckRequest => {
    try {
      return codec.decodeRequest(codec.encodeRequest(wire));
    } catch (err: unknown) {
      throw new HarnessInputError(`not a CheckRequest: ${err instanceof Error ? err.message : String(err)}`);
    }
  };

  return {
    catalog,

    async check(wire: object): Promise<HarnessResult> {
      sequence += 1;
      const ctx: CheckContext = {
        catalog,
        decisionId: `ptest-${String(sequence).padStart(6, '0')}`,
        deadline: Number.POSITIVE_INFINITY,
      };
      const normalized = normalize(decode(wire), limits);
      let request: Request | null = null;
      let decision: Decision;
      if (normalized.ok) {
        request = normalized.request;
        decision = (await pipeline.check(request, ctx)).decision;
      } else {
        decision = rejectUnreadable(ctx, normalized.requestId, normalized.denial);
      }
      // As the server does: a decision that cannot be encoded becomes the route's on_error.
      let response: WireCheckResponse;
      let bytes: Uint8Array;
      try {
        bytes = encodeCheckResponse(decision, catalog.settings.problemBaseUrl);
        response = toCheckResponse(decision, catalog.settings.problemBaseUrl);
      } catch (err: unknown) {
        decision = failureDecision(
          request,
          ctx,
          catalog.routesByName.get(decision.route),
          decision.partner,
          'internal_error',
          err instanceof Error ? err.message : String(err),
        );
        bytes = encodeCheckResponse(decision, catalog.settings.problemBaseUrl);
        response = toCheckResponse(decision, catalog.settings.problemBaseUrl);
      }
      return { decision, response, bytes, request };
    },

    async token(claims: Readonly<Record<string, unknown>>): Promise<string> {
      const nowSeconds = Math.floor(clock.now() / 1000);
      const issuer = resolveIssuer(catalog, claims.iss);
      const payload: Record<string, unknown> = {};
      if (issuer) {
        const ttl = Math.min(
          DEFAULT_TOKEN_TTL_SECONDS,
          issuer.maxLifetimeSeconds ?? DEFAULT_TOKEN_TTL_SECONDS,
        );
        Object.assign(payload, {
          iss: issuer.issuer,
          aud: issuer.audiences[0],
          iat: nowSeconds,
          exp: nowSeconds + ttl,
        });
      } else {
        Object.assign(payload, { iat: nowSeconds, exp: nowSeconds + DEFAULT_TOKEN_TTL_SECONDS });
      }
      for (const [name, value] of Object.entries(claims)) {
        if (name === 'iss' && issuer) continue;
        if (value === null) delete payload[name];
        else payload[name] = TIME_CLAIMS.has(name) ? timeClaim(name, value, nowSeconds) : value;
      }
      const alg = issuer?.algorithms[0] ?? 'ES256';
      const key = await testKeys.privateKey(alg);
      const token = await new SignJWT(payload)
        .setProtectedHeader({ alg, kid: TEST_KID, typ: 'JWT' })
        .sign(key);
      minted.add(token);
      return token;
    },

    apiKeyFor(id: string): string {
      const marker = `ptest_${nonce}_${id}`;
      keyRefs.set(marker, id);
      return marker;
    },

    routeFor(wire: object): RoutePolicy | undefined {
      const normalized = normalize(decode(wire), limits);
      if (!normalized.ok) return undefined;
      const found = routeStage(normalized.request, catalog);
      return found.ok ? found.value : undefined;
    },

    async close(): Promise<void> {
      await real?.close();
    },
  };
}

/** The issuer `iss` names (catalog name or iss value), else the only one; null = none of the catalog. */
function resolveIssuer(catalog: Catalog, iss: unknown): IssuerPolicy | null {
  if (iss !== undefined && iss !== null) {
    if (typeof iss !== 'string') throw new HarnessInputError('token claim iss must be a string');
    return catalog.issuers.find((i) => i.name === iss || i.issuer === iss) ?? null;
  }
  if (catalog.issuers.length === 1) return catalog.issuers[0] ?? null;
  if (catalog.issuers.length === 0) return null;
  throw new HarnessInputError(
    `the token names no issuer and the catalog has ${catalog.issuers.length} (${catalog.issuers
      .map((i) => i.name)
      .join(', ')}): add iss`,
  );
}

const TIME_CLAIMS = new Set(['exp', 'nbf', 'iat', 'auth_time']);
const RELATIVE = /^now(?:([+-])(\d{1,9})(s|m|h|d))?$/;
const UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86_400 } as const;

/** "now", "now+5m", "now-1h" → epoch seconds of the harness clock; anything else as given. */
function timeClaim(name: string, value: unknown, nowSeconds: number): unknown {
  if (typeof value !== 'string') return value;
  const match = RELATIVE.exec(value);
  if (!match) throw new HarnessInputError(`token claim ${name}: expected seconds or "now[+-]N(s|m|h|d)"`);
  const [, sign, amount, unit] = match;
  if (!sign || !amount || !unit) return nowSeconds;
  const delta = Number(amount) * UNIT_SECONDS[unit as keyof typeof UNIT_SECONDS];
  return sign === '+' ? nowSeconds + delta : nowSeconds - delta;
}

type KeyPair = Awaited<ReturnType<typeof generateKeyPair>>;
/** Ephemeral keys, one per algorithm, shared by every harness of the process (an RSA key takes ~50 ms). */
const testKeyPairs = new Map<string, Promise<KeyPair>>();

/** The harness's stand-in for an issuer's JWKS: the ephemeral test key of each algorithm. */
class TestKeySet implements KeySet {
  private pair(alg: string): Promise<KeyPair> {
    let pair = testKeyPairs.get(alg);
    if (!pair) {
      pair = generateKeyPair(
        alg === 'Ed25519' ? 'EdDSA' : alg,
        alg.startsWith('Ed') ? { crv: 'Ed25519' } : {},
      );
      testKeyPairs.set(alg, pair);
    }
    return pair;
  }

  async privateKey(alg: string): Promise<KeyPair['privateKey']> {
    return (await this.pair(alg)).privateKey;
  }

  async keyFor(header: KeyHeader): Promise<KeyLookup> {
    if (header.kid !== TEST_KID || !testKeyPairs.has(header.alg)) {
      return { ok: false, failure: 'unknown_kid', reason: `no test key for kid ${String(header.kid)}` };
    }
    return { ok: true, key: (await this.pair(header.alg)).publicKey, kid: TEST_KID };
  }
}

/**
 * Real API keys are verified as in `serve`. A key named by id (a marker from apiKeyFor) skips the
 * HMAC, which needs the secret, but is judged like a real one afterwards: status, then expiry (the
 * same order and messages as ApiKeyVerifier.verify; revocations are checked by identify).
 */
class HarnessApiKeys extends ApiKeyVerifier {
  private readonly byId: Map<string, ApiKeyEntry>;

  constructor(
    pepper: Buffer | null,
    private readonly refs: ReadonlyMap<string, string>,
    catalog: Catalog,
  ) {
    super(pepper);
    this.byId = new Map([...catalog.apiKeysByHash.values()].map((entry) => [entry.id, entry]));
  }

  override verify(catalog: Catalog, presented: string, nowMs: number): ApiKeyResult {
    const id = this.refs.get(presented);
    if (id === undefined) return super.verify(catalog, presented, nowMs);
    const entry = this.byId.get(id);
    if (!entry)
      return { ok: false, failure: 'api_key_invalid', reason: `no API key with id ${id} in the catalog` };
    return checkKeyEntry(entry, nowMs);
  }
}

/** A request in the terms of a policy test (or of a replayed audit line), before it is a CheckRequest. */
export interface SampleRequest {
  /** Default GET, or POST with a body. */
  readonly method?: string | undefined;
  /** `https://host/path?query`, or a path with a `host` header. */
  readonly url: string;
  readonly headers?: Readonly<Record<string, string>> | undefined;
  /** The `route` context extension Envoy would send. */
  readonly route?: string | undefined;
  /** A signed token, or the claims of one (see Harness.token). Sent as `authorization: Bearer`. */
  readonly token?: string | Readonly<Record<string, unknown>> | undefined;
  /** A real API key, or a catalog key by id; sent in the API key header of the route it goes to. */
  readonly apiKey?: string | { readonly id: string } | undefined;
  readonly principal?: string | undefined;
  /** Absolute path of a client certificate (PEM); gives the principal unless one is given. */
  readonly certificate?: string | undefined;
  readonly body?: { readonly file: string } | { readonly text: string } | undefined;
  /** Client address; default 127.0.0.1. */
  readonly source?: string | undefined;
  /** x-request-id unless the headers have one. */
  readonly requestId: string;
}

/** The CheckRequest Envoy would send for this sample, built by `portcullis check`'s own builder. */
export async function sampleCheckRequest(harness: Harness, sample: SampleRequest): Promise<object> {
  const headers = Object.entries(sample.headers ?? {}).map(([name, value]) => `${name}: ${value}`);
  const named = new Set(Object.keys(sample.headers ?? {}).map((name) => name.toLowerCase()));
  if (!named.has('x-request-id')) headers.push(`x-request-id: ${sample.requestId}`);
  if (sample.token !== undefined) {
    const token = typeof sample.token === 'string' ? sample.token : await harness.token(sample.token);
    headers.push(`authorization: Bearer ${token}`);
  }
  const body = sample.body;
  if (body && 'text' in body && body.text.startsWith('@')) {
    throw new HarnessInputError('a body starting with "@" must come from a file');
  }
  const flags: CheckFlags = {
    target: sample.url,
    method: sample.method,
    headers,
    data: body === undefined ? undefined : 'file' in body ? `@${body.file}` : body.text,
    principal: sample.principal,
    cert: sample.certificate,
    route: sample.route,
    source: sample.source ?? '127.0.0.1',
    server: '',
    timeoutMs: 0,
  };
  const build = (f: CheckFlags) => {
    try {
      return buildCheckRequest(f);
    } catch (err: unknown) {
      throw new HarnessInputError(err instanceof Error ? err.message : String(err));
    }
  };
  if (sample.apiKey === undefined) return build(flags);
  const key = typeof sample.apiKey === 'string' ? sample.apiKey : harness.apiKeyFor(sample.apiKey.id);
  const route = harness.routeFor(build(flags));
  const header = route?.identity.accepted.has('api_key') ? route.identity.apiKeyHeader : 'x-api-key';
  return build({ ...flags, headers: [...headers, `${header}: ${key}`] });
}
