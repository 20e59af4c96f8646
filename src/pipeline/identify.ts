// Stage 3, identify: which partner is calling, from the credentials the route accepts —
// mTLS principal, JWT bearer token, API key — each verified, revocation-checked and mapped to a
// partner; all of them must name the same partner. Scopes and step-up are judged in authorize.
import type { Clock } from '../clock.js';
import type { Denial, Header } from '../decision.js';
import { DENY_CODES } from '../errors.js';
import type { ApiKeyVerifier } from '../identity/apikeys.js';
import type { CertificateReader } from '../identity/certificates.js';
import { parseXfcc } from '../identity/certificates.js';
import { challenge } from '../identity/challenge.js';
import type { VerifiedToken, VerifyResult } from '../identity/jwt.js';
import type { RevocationKind, Revocations } from '../identity/revocation.js';
import {
  applicationKey,
  type Catalog,
  type Credential,
  type Partner,
  type RouteIdentity,
  type RoutePolicy,
} from '../policy/catalog.js';
import type { Request } from '../request.js';
import { DependencyUnavailable, type MaybePromise, pass, refuse, type StageResult } from '../stage.js';
import { ANONYMOUS, type Identity } from './outcomes.js';

export interface TokenVerifier {
  /** `trusted`: the issuer names the route accepts (empty = all), judged before any key lookup. */
  verify(token: string, trusted?: ReadonlySet<string>): Promise<VerifyResult>;
  /** The verdict of a verified-token cache, synchronously; null (or absent) = ask verify. */
  cached?(token: string, trusted?: ReadonlySet<string>): VerifyResult | null;
}

export interface IdentityDeps {
  /** null when the catalog has no issuers: every bearer token is then refused. */
  readonly tokens: TokenVerifier | null;
  readonly apiKeys: ApiKeyVerifier;
  readonly certificates: CertificateReader;
  readonly revocations: Revocations;
  readonly clock: Clock;
}

/** The query parameter a token is refused in (RFC 6750 §2.3), unless a route allows it. */
const TOKEN_QUERY_PARAM = 'access_token';
const BEARER = /^bearer +[^\s,]+ *$/i;
const BEARER_SCHEME_LENGTH = 'bearer'.length;
const SPACE = 0x20;

interface Presented {
  mtls?: { principal: string };
  jwt?: { token: string; header: string | null; queryParam: string | null };
  apiKey?: { key: string; header: string };
}

/** Identity.credentials for each set of presented kinds (bit 1 mtls, 2 jwt, 4 api_key), shared. */
const KINDS: readonly (readonly Credential[])[] = (
  [
    [],
    ['mtls'],
    ['jwt'],
    ['mtls', 'jwt'],
    ['api_key'],
    ['mtls', 'api_key'],
    ['jwt', 'api_key'],
    ['mtls', 'jwt', 'api_key'],
  ] as Credential[][]
).map((kinds) => Object.freeze(kinds));
const NONE: readonly string[] = Object.freeze([]);
const AUTHORIZATION: readonly string[] = Object.freeze(['authorization']);
const PASS_ANONYMOUS = Object.freeze(pass(ANONYMOUS));

/** What a verified token means under one catalog. */
interface TokenMeaning {
  readonly catalog: Catalog;
  readonly owner: Partner | undefined;
  /** The answer for the token alone in an Authorization header: [credentials removed, kept]. */
  readonly answers: [StageResult<Identity> | undefined, StageResult<Identity> | undefined];
}

export function createIdentifyStage(deps: IdentityDeps) {
  // What a verified token means under a catalog, worked out at its first Check and reused while the
  // verifier's cache hands back the same VerifiedToken object: the partner it maps to and, for a
  // token alone, the whole answer. Everything judged per Check (exp/nbf in the verifier,
  // revocations, binding, route issuers, partner status) is still judged on every hit.
  const meanings = new WeakMap<VerifiedToken, TokenMeaning>();
  const meaningOf = (token: VerifiedToken, catalog: Catalog): TokenMeaning => {
    let meaning = meanings.get(token);
    if (meaning === undefined || meaning.catalog !== catalog) {
      const owner =
        catalog.partnersByApplication.get(applicationKey(token.issuer, token.application)) ??
        catalog.partnersByApplication.get(token.application);
      meaning = { catalog, owner, answers: [undefined, undefined] };
      meanings.set(token, meaning);
    }
    return meaning;
  };

  /** The stage after the token's verification: revocations, binding, partners, the Identity. */
  const withToken = (
    request: Request,
    catalog: Catalog,
    policy: RouteIdentity,
    presented: Presented,
    mtls: Partner | null,
    result: VerifyResult,
  ): StageResult<Identity> => {
    // Every failure to verify a presented token is a denial, whatever the route's on_error: an
    // unavailable key set included (503 token_keys_unavailable: retry later, never let through).
    if (!result.ok) {
      if (result.failure === 'token_keys_unavailable')
        return refuse({ code: result.failure, reason: result.reason });
      return refuse(invalid(catalog, { code: result.failure, reason: result.reason }));
    }
    const token = result.token;
    // Checked by the verifier already, before the keys; kept as the last word on a verified token.
    if (policy.issuers.size > 0 && !policy.issuers.has(token.issuer)) {
      return refuse(
        invalid(catalog, {
          code: 'token_issuer_invalid',
          reason: `issuer ${token.issuer} is not trusted on this route`,
        }),
      );
    }
    const meaning = meaningOf(token, catalog);
    const owner = meaning.owner;
    // A revoked token is still a verified one: the audit log names whose it was.
    if (token.jti && revoked(deps, catalog, 'jti', token.jti)) {
      return refuse(
        invalid(catalog, {
          code: 'token_revoked',
          reason: `jti ${token.jti} is revoked`,
          ...(owner ? { partner: owner.id } : {}),
        }),
      );
    }
    const app = token.application;
    if (app && revoked(deps, catalog, 'application', app)) {
      return refuse(
        invalid(catalog, {
          code: 'token_revoked',
          reason: `application ${app} is revoked`,
          ...(owner ? { partner: owner.id } : {}),
        }),
      );
    }
    if (token.certificateThumbprint !== null || policy.bindCertificate) {
      const bound = checkBinding(token, certificateThumbprint(request, catalog, deps));
      if (bound) return refuse({ ...bound, headers: invalidToken(catalog, bound) });
    }
    if (!owner) {
      return refuse({
        code: 'partner_unknown',
        reason: `application "${token.application}" maps to no partner`,
      });
    }
    // A token alone in the Authorization header: the answer depends on nothing else, made once.
    if (mtls === null && presented.apiKey === undefined && presented.jwt?.header === 'authorization') {
      if (owner.status !== 'active') return suspended(owner);
      const slot = policy.keepCredentials ? 1 : 0;
      let answer = meaning.answers[slot];
      if (answer === undefined) {
        answer = Object.freeze(pass(Object.freeze(identityOf(policy, presented, owner, token, ''))));
        meaning.answers[slot] = answer;
      }
      return answer;
    }
    return conclude(catalog, policy, presented, mtls, owner, token);
  };

  /** The API key, if any; then all credentials must name one active partner. */
  const conclude = (
    catalog: Catalog,
    policy: RouteIdentity,
    presented: Presented,
    mtls: Partner | null,
    jwt: Partner | null,
    token: VerifiedToken | null,
  ): StageResult<Identity> => {
    let keyOwner: Partner | null = null;
    let apiKeyId = '';
    if (presented.apiKey) {
      const result = deps.apiKeys.verify(catalog, presented.apiKey.key, deps.clock.now());
      if (!result.ok)
        return refuse({
          code: result.failure,
          reason: result.reason,
          ...(result.partner ? { partner: result.partner } : {}),
          headers: apiKeyChallenge(catalog, policy),
        });
      const key = result.key;
      if (revoked(deps, catalog, 'api_key', key.id)) {
        return refuse({
          code: 'api_key_revoked',
          reason: `API key ${key.id} is revoked`,
          partner: key.partner.id,
          headers: apiKeyChallenge(catalog, policy),
        });
      }
      apiKeyId = key.id;
      keyOwner = key.partner;
    }

    // Every credential presented names a partner (or was refused above): the first, in the order
    // mtls, jwt, api_key, must be the one the others name.
    const partner = (mtls ?? jwt ?? keyOwner) as Partner;
    const first: Credential = mtls ? 'mtls' : jwt ? 'jwt' : 'api_key';
    const other: [Credential, Partner] | null =
      jwt && jwt !== partner ? ['jwt', jwt] : keyOwner && keyOwner !== partner ? ['api_key', keyOwner] : null;
    if (other) {
      return refuse({
        code: 'partner_mismatch',
        reason: `${first} names ${partner.id}, ${other[0]} names ${other[1].id}`,
      });
    }
    if (partner.status !== 'active') return suspended(partner);
    return pass(identityOf(policy, presented, partner, token, apiKeyId));
  };

  return function identify(
    request: Request,
    catalog: Catalog,
    route: RoutePolicy,
  ): MaybePromise<StageResult<Identity>> {
    const policy = route.identity;
    const presented = collect(request, catalog, policy);
    if ('denial' in presented) return refuse(presented.denial);
    const kinds = kindsOf(presented);
    if (kinds.length === 0 ? policy.required : !coversAll(kinds, policy.allOf)) {
      const missing = policy.allOf.filter((k) => !kinds.includes(k));
      return refuse({
        code: 'credentials_missing',
        detail: missing.length > 0 ? `This route requires ${missing.map(label).join(' and ')}.` : undefined,
        reason: missing.length > 0 ? `missing ${missing.join(', ')}` : 'no credentials presented',
        headers: challengesFor(catalog, policy),
      });
    }
    if (kinds.length === 0) return PASS_ANONYMOUS;

    let mtls: Partner | null = null;
    if (presented.mtls) {
      const partner = catalog.partnersByPrincipal.get(presented.mtls.principal);
      if (!partner) {
        return refuse({
          code: 'partner_unknown',
          reason: `principal ${presented.mtls.principal} maps to no partner`,
        });
      }
      mtls = partner;
    }

    const jwt = presented.jwt;
    if (jwt === undefined) return conclude(catalog, policy, presented, mtls, null, null);
    const tokens = deps.tokens;
    if (!tokens) {
      return refuse(invalid(catalog, { code: 'token_issuer_invalid', reason: 'the catalog has no issuers' }));
    }
    // A token seen before is answered without a promise; the first sight verifies (keys, signature).
    const known = tokens.cached?.(jwt.token, policy.issuers) ?? null;
    if (known !== null) return withToken(request, catalog, policy, presented, mtls, known);
    return tokens
      .verify(jwt.token, policy.issuers)
      .then((result) => withToken(request, catalog, policy, presented, mtls, result));
  };
}

/** The Identity the credentials make (their partner checked by the caller). */
function identityOf(
  policy: RouteIdentity,
  presented: Presented,
  partner: Partner,
  token: VerifiedToken | null,
  apiKeyId: string,
): Identity {
  const jwtHeader = presented.jwt?.header;
  const keyHeader = presented.apiKey?.header;
  const queryParam = presented.jwt?.queryParam;
  return {
    partner,
    credentials: kindsOf(presented),
    application: token?.application || apiKeyId,
    user: token?.subject ?? '',
    principal: presented.mtls?.principal ?? '',
    scopes: token?.scopes ?? ANONYMOUS.scopes,
    claims: token?.claims ?? ANONYMOUS.claims,
    authTime: token?.authTime,
    acr: token?.acr,
    credentialHeaders: policy.keepCredentials
      ? NONE
      : jwtHeader === 'authorization' && !keyHeader
        ? AUTHORIZATION
        : [jwtHeader, keyHeader].filter((h): h is string => !!h),
    credentialQueryParams: queryParam && !policy.keepCredentials ? [queryParam] : NONE,
  };
}

const suspended = (partner: Partner): StageResult<never> =>
  refuse({
    code: 'partner_suspended',
    partner: partner.id,
    reason: `partner ${partner.id} is ${partner.status}`,
  });

const invalid = (catalog: Catalog, denial: Denial): Denial => ({
  ...denial,
  headers: invalidToken(catalog, denial),
});

/**
 * Where this route reads credentials from: the headers and query parameters removed before the
 * upstream on every allow, an on_error allow included (whatever was presented). None when the route
 * keeps credentials.
 */
export function credentialCarriers(policy: RouteIdentity): { headers: string[]; queryParams: string[] } {
  if (policy.keepCredentials) return { headers: [], queryParams: [] };
  const headers: string[] = [];
  if (policy.accepted.has('jwt')) headers.push('authorization');
  if (policy.accepted.has('api_key')) headers.push(policy.apiKeyHeader);
  return { headers, queryParams: policy.accepted.has('jwt') && policy.queryParam ? [policy.queryParam] : [] };
}

/** Identity.credentials of what was presented, in the order mtls, jwt, api_key. */
function kindsOf(p: Presented): readonly Credential[] {
  return KINDS[(p.mtls ? 1 : 0) | (p.jwt ? 2 : 0) | (p.apiKey ? 4 : 0)] ?? [];
}

/** Every credential the route requires all of is among those presented. */
function coversAll(kinds: readonly Credential[], required: readonly Credential[]): boolean {
  for (const kind of required) if (!kinds.includes(kind)) return false;
  return true;
}

const label = (c: Credential) =>
  c === 'mtls' ? 'a client certificate' : c === 'jwt' ? 'a bearer token' : 'an API key';

/** The credentials of the kinds the route accepts, or a denial when they are ambiguous. */
function collect(request: Request, catalog: Catalog, policy: RouteIdentity): Presented | { denial: Denial } {
  const presented: Presented = {};
  const accepted = policy.accepted;

  // A token in the URL leaks into logs and caches: refused wherever the route does not opt in.
  const queryTokens = policy.queryParam ? request.query.get(policy.queryParam) : undefined;
  if (policy.queryParam !== TOKEN_QUERY_PARAM && request.query.has(TOKEN_QUERY_PARAM)) {
    return { denial: { code: 'token_in_query', reason: `token in query parameter ${TOKEN_QUERY_PARAM}` } };
  }
  // Envoy removes query parameters by their raw name: a percent-encoded spelling of the token's
  // parameter (acc%65ss_token) would stay in the URL and reach the upstream, which decodes it.
  if (policy.queryParam && request.encodedQueryNames?.has(policy.queryParam)) {
    return {
      denial: {
        code: 'token_in_query',
        detail: `Send the token in the ${policy.queryParam} query parameter spelled without percent-encoding, or in an Authorization: Bearer header.`,
        reason: `query parameter ${policy.queryParam} with a percent-encoded name`,
      },
    };
  }
  if (accepted.has('jwt')) {
    const authorization = request.headers.get('authorization');
    const bearer = authorization === undefined ? null : bearerToken(authorization);
    if (bearer === 'ambiguous' || (queryTokens && (queryTokens.length > 1 || bearer))) {
      return { denial: { code: 'credentials_ambiguous', reason: 'more than one bearer token' } };
    }
    if (bearer) presented.jwt = { token: bearer, header: 'authorization', queryParam: null };
    else if (queryTokens?.[0])
      presented.jwt = { token: queryTokens[0], header: null, queryParam: policy.queryParam ?? null };
  }
  if (accepted.has('api_key')) {
    const key = request.headers.get(policy.apiKeyHeader);
    // Envoy joins repeated headers with ','; keys never contain one.
    if (key?.includes(','))
      return { denial: { code: 'credentials_ambiguous', reason: `repeated ${policy.apiKeyHeader}` } };
    if (key) presented.apiKey = { key: key.trim(), header: policy.apiKeyHeader };
  }
  if (accepted.has('mtls')) {
    const principal = request.source.principal;
    if (principal !== '') {
      presented.mtls = { principal };
    } else if (catalog.settings.trustXfcc) {
      const xfcc = parseXfcc(request.headers.get('x-forwarded-client-cert') ?? '');
      if (xfcc) presented.mtls = { principal: xfcc.principal };
    }
  }
  return presented;
}

/** The token of a single `Bearer` credential; 'ambiguous' for several; null for other schemes. */
function bearerToken(authorization: string): string | 'ambiguous' | null {
  // test, not exec: no match array per Check. The token is what lies between the spaces after
  // "bearer" and the trailing spaces, since the pattern allows no space inside it.
  if (BEARER.test(authorization)) {
    let start = BEARER_SCHEME_LENGTH;
    while (authorization.charCodeAt(start) === SPACE) start++;
    let end = authorization.length;
    while (authorization.charCodeAt(end - 1) === SPACE) end--;
    return authorization.slice(start, end);
  }
  return /bearer/i.test(authorization) && authorization.includes(',') ? 'ambiguous' : null;
}

/** Revoked live (Redis) or in the catalog. Unknown (never loaded from Redis): a dependency failure. */
function revoked(deps: IdentityDeps, catalog: Catalog, kind: RevocationKind, id: string): boolean {
  if (catalog.revocations.isRevoked(kind, id)) return true;
  if (deps.revocations.loaded?.() === false) {
    throw new DependencyUnavailable('revocations', 'revoked credentials not loaded from Redis yet');
  }
  return deps.revocations.isRevoked(kind, id);
}

function certificateThumbprint(request: Request, catalog: Catalog, deps: IdentityDeps): string {
  const cert = deps.certificates.read(request.source.certificatePem);
  if (cert) return cert.thumbprint;
  if (catalog.settings.trustXfcc)
    return parseXfcc(request.headers.get('x-forwarded-client-cert') ?? '')?.thumbprint ?? '';
  return '';
}

/** RFC 8705: the token's cnf.x5t#S256 must be the presented certificate's thumbprint. */
function checkBinding(token: VerifiedToken, thumbprint: string): Denial | null {
  if (token.certificateThumbprint === null) {
    return {
      code: 'certificate_mismatch',
      reason: 'route requires a certificate-bound token; token has no cnf',
    };
  }
  if (thumbprint === '') {
    return {
      code: 'certificate_mismatch',
      reason: 'token is certificate-bound but no client certificate came',
    };
  }
  if (thumbprint !== token.certificateThumbprint) {
    return {
      code: 'certificate_mismatch',
      reason: 'cnf.x5t#S256 differs from the client certificate thumbprint',
    };
  }
  return null;
}

function invalidToken(catalog: Catalog, denial: Denial): Header[] {
  return [
    {
      name: 'www-authenticate',
      value: challenge('Bearer', {
        realm: catalog.settings.realm,
        error: 'invalid_token',
        error_description: DENY_CODES[denial.code].title,
      }),
    },
  ];
}

function apiKeyChallenge(catalog: Catalog, policy: RouteIdentity): Header[] {
  return [
    {
      name: 'www-authenticate',
      value: challenge('APIKey', { realm: catalog.settings.realm, header: policy.apiKeyHeader }),
    },
  ];
}

function challengesFor(catalog: Catalog, policy: RouteIdentity): Header[] {
  const values: string[] = [];
  // A 401 must carry a challenge (RFC 9110 §11.6.1); a client certificate has no registered
  // scheme, so name it plainly for the partner's developers.
  if (policy.accepted.has('mtls')) values.push(challenge('mTLS', { realm: catalog.settings.realm }));
  if (policy.accepted.has('jwt')) values.push(challenge('Bearer', { realm: catalog.settings.realm }));
  if (policy.accepted.has('api_key')) {
    values.push(challenge('APIKey', { realm: catalog.settings.realm, header: policy.apiKeyHeader }));
  }
  return values.length > 0 ? [{ name: 'www-authenticate', value: values.join(', ') }] : [];
}
