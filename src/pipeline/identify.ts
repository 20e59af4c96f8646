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
const BEARER = /^bearer +([^\s,]+) *$/i;

interface Presented {
  mtls?: { principal: string };
  jwt?: { token: string; header: string | null; queryParam: string | null };
  apiKey?: { key: string; header: string };
}

export function createIdentifyStage(deps: IdentityDeps) {
  // Synchronous up to the anonymous caller: a route that lets anyone in costs no promise.
  return function identify(
    request: Request,
    catalog: Catalog,
    route: RoutePolicy,
  ): MaybePromise<StageResult<Identity>> {
    const policy = route.identity;
    const presented = collect(request, catalog, policy);
    if ('denial' in presented) return refuse(presented.denial);
    const kinds = (['mtls', 'jwt', 'api_key'] as const).filter((k) => has(presented, k));
    const missing = policy.allOf.filter((k) => !kinds.includes(k));
    if (kinds.length === 0 ? policy.required : missing.length > 0) {
      return refuse({
        code: 'credentials_missing',
        detail: missing.length > 0 ? `This route requires ${missing.map(label).join(' and ')}.` : undefined,
        reason: missing.length > 0 ? `missing ${missing.join(', ')}` : 'no credentials presented',
        headers: challengesFor(catalog, policy),
      });
    }
    if (kinds.length === 0) return pass(ANONYMOUS);
    return identifyPresented(request, catalog, policy, presented, kinds);
  };

  /** The presented credentials (at least one), verified and mapped to one partner. */
  async function identifyPresented(
    request: Request,
    catalog: Catalog,
    policy: RouteIdentity,
    presented: Presented,
    kinds: Credential[],
  ): Promise<StageResult<Identity>> {
    const owners: { credential: Credential; partner: Partner }[] = [];
    let token: VerifiedToken | null = null;
    let apiKeyId = '';

    if (presented.mtls) {
      const partner = catalog.partnersByPrincipal.get(presented.mtls.principal);
      if (!partner) {
        return refuse({
          code: 'partner_unknown',
          reason: `principal ${presented.mtls.principal} maps to no partner`,
        });
      }
      owners.push({ credential: 'mtls', partner });
    }

    if (presented.jwt) {
      const checked = await verifyToken(deps, catalog, policy, presented.jwt.token);
      if ('denial' in checked) return refuse(checked.denial);
      token = checked.token;
      if (token.certificateThumbprint !== null || policy.bindCertificate) {
        const bound = checkBinding(token, certificateThumbprint(request, catalog, deps));
        if (bound) return refuse({ ...bound, headers: invalidToken(catalog, bound) });
      }
      const partner =
        catalog.partnersByApplication.get(applicationKey(token.issuer, token.application)) ??
        catalog.partnersByApplication.get(token.application);
      if (!partner) {
        return refuse({
          code: 'partner_unknown',
          reason: `application "${token.application}" maps to no partner`,
        });
      }
      owners.push({ credential: 'jwt', partner });
    }

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
      owners.push({ credential: 'api_key', partner: key.partner });
    }

    const partner = owners[0]?.partner ?? null;
    const other = owners.find((o) => o.partner !== partner);
    if (partner && other) {
      return refuse({
        code: 'partner_mismatch',
        reason: `${owners[0]?.credential} names ${partner.id}, ${other.credential} names ${other.partner.id}`,
      });
    }
    if (partner && partner.status !== 'active') {
      return refuse({
        code: 'partner_suspended',
        partner: partner.id,
        reason: `partner ${partner.id} is ${partner.status}`,
      });
    }
    return pass({
      partner,
      credentials: kinds,
      application: token?.application || apiKeyId,
      user: token?.subject ?? '',
      principal: presented.mtls?.principal ?? '',
      scopes: token?.scopes ?? ANONYMOUS.scopes,
      claims: token?.claims ?? ANONYMOUS.claims,
      authTime: token?.authTime,
      acr: token?.acr,
      credentialHeaders: policy.keepCredentials
        ? []
        : [presented.jwt?.header, presented.apiKey?.header].filter((h): h is string => !!h),
      credentialQueryParams:
        presented.jwt?.queryParam && !policy.keepCredentials ? [presented.jwt.queryParam] : [],
    });
  }
}

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

function has(p: Presented, kind: Credential): boolean {
  return kind === 'mtls' ? !!p.mtls : kind === 'jwt' ? !!p.jwt : !!p.apiKey;
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
  const match = BEARER.exec(authorization);
  if (match?.[1]) return match[1];
  return /bearer/i.test(authorization) && authorization.includes(',') ? 'ambiguous' : null;
}

async function verifyToken(
  deps: IdentityDeps,
  catalog: Catalog,
  policy: RouteIdentity,
  raw: string,
): Promise<{ token: VerifiedToken } | { denial: Denial }> {
  const invalid = (denial: Denial) => ({ denial: { ...denial, headers: invalidToken(catalog, denial) } });
  if (!deps.tokens) return invalid({ code: 'token_issuer_invalid', reason: 'the catalog has no issuers' });
  // Every failure to verify a presented token is a denial, whatever the route's on_error: an
  // unavailable key set included (503 token_keys_unavailable: retry later, never let through).
  const result = await deps.tokens.verify(raw, policy.issuers);
  if (!result.ok) {
    if (result.failure === 'token_keys_unavailable')
      return { denial: { code: result.failure, reason: result.reason } };
    return invalid({ code: result.failure, reason: result.reason });
  }
  const token = result.token;
  // Checked by the verifier already, before the keys; kept as the last word on a verified token.
  if (policy.issuers.size > 0 && !policy.issuers.has(token.issuer)) {
    return invalid({
      code: 'token_issuer_invalid',
      reason: `issuer ${token.issuer} is not trusted on this route`,
    });
  }
  // A revoked token is still a verified one: the audit log names whose it was.
  const owner =
    catalog.partnersByApplication.get(applicationKey(token.issuer, token.application)) ??
    catalog.partnersByApplication.get(token.application);
  const partner = owner ? { partner: owner.id } : {};
  if (token.jti && revoked(deps, catalog, 'jti', token.jti)) {
    return invalid({ code: 'token_revoked', reason: `jti ${token.jti} is revoked`, ...partner });
  }
  const app = token.application;
  if (app && revoked(deps, catalog, 'application', app)) {
    return invalid({ code: 'token_revoked', reason: `application ${app} is revoked`, ...partner });
  }
  return { token };
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
