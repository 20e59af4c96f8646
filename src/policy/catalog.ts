// The compiled, frozen catalog the pipeline reads. Everything the hot path needs is precomputed
// here at load time (matchers, CIDR block lists, lookup maps), so a Check never parses config.

import type { BlockList } from 'node:net';
import type { ContentPolicy } from '../content/types.js';
import type { Header } from '../decision.js';
import type { JwksSource } from '../identity/jwks.js';
import type { Revocations } from '../identity/revocation.js';
import type { Algorithm } from '../quota/types.js';
import type { CompiledRule } from './rules.js';
import type { CatalogIssue } from './yaml-issues.js';

export interface AccessPolicy {
  readonly allowPartners: ReadonlySet<string>;
  readonly denyPartners: ReadonlySet<string>;
  /** null = no allow list (everyone allowed). */
  readonly allowCidrs: BlockList | null;
  readonly denyCidrs: BlockList | null;
}

export interface QuotaLimitPolicy {
  readonly name: string;
  readonly algorithm: Algorithm;
  readonly limit: number;
  /** gcra, sliding_window: the period. */
  readonly periodMs: number;
  /** fixed_window: the calendar unit. */
  readonly window: CalendarUnit | undefined;
  readonly burst: number;
  readonly cost:
    | { readonly kind: 'constant'; readonly units: number }
    | { readonly kind: 'body'; readonly bytesPerUnit: number };
  readonly shadow: boolean;
  /** Empty = every route / method. */
  readonly routes: ReadonlySet<string>;
  readonly methods: ReadonlySet<string>;
  readonly onStoreError: 'fail_closed' | 'fail_open' | undefined;
}

export type CalendarUnit = 'minute' | 'hour' | 'day' | 'week' | 'month';

export interface Partner {
  readonly id: string;
  readonly name: string;
  readonly status: 'active' | 'suspended';
  readonly timeZone: string;
  /** The plan's limits, then the partner's own. */
  readonly limits: readonly QuotaLimitPolicy[];
  readonly rules: readonly CompiledRule[];
}

export interface RouteMatcher {
  /** true = any host. */
  readonly anyHost: boolean;
  readonly exactHosts: ReadonlySet<string>;
  /** Suffixes of `*.example.com` wildcards, with the leading dot: `.example.com`. */
  readonly hostSuffixes: readonly string[];
  /** Takes the path as routingPath (match.ts) returns it. */
  readonly path: (path: string) => boolean;
  /** Equal for routes whose hosts and path match are the same (see ownerKey in match.ts). */
  readonly owner: string;
  /** Empty = every method. */
  readonly methods: ReadonlySet<string>;
}

export type Credential = 'mtls' | 'jwt' | 'api_key';

export interface RouteIdentity {
  readonly required: boolean;
  /** Credentials that identify the caller on this route (any_of ∪ all_of). */
  readonly accepted: ReadonlySet<Credential>;
  readonly allOf: readonly Credential[];
  /** Issuer names; empty = any issuer of the catalog. */
  readonly issuers: ReadonlySet<string>;
  readonly scopes: readonly string[];
  readonly bindCertificate: boolean;
  readonly queryParam: string | undefined;
  readonly maxAuthAgeSeconds: number | undefined;
  readonly acrValues: readonly string[];
  readonly apiKeyHeader: string;
  readonly keepCredentials: boolean;
}

export interface RouteContent {
  readonly policy: ContentPolicy;
  /** Partners with their own content rules on this route. */
  readonly byPartner: ReadonlyMap<string, ContentPolicy>;
}

/** A limit of a route (`routes[].quota.limits`); `routes` is empty (it is this route). */
export interface RouteLimitPolicy extends QuotaLimitPolicy {
  /** partner: a counter per partner on this route; route: one for all callers; source: one per address block. */
  readonly per: 'partner' | 'route' | 'source';
  /** per: source: the prefix lengths an address is counted under. */
  readonly sourcePrefix: { readonly ipv4: number; readonly ipv6: number };
}

export interface RouteQuota {
  readonly headers: 'draft' | 'legacy' | 'both' | 'none';
  readonly onStoreError: 'fail_closed' | 'fail_open';
  readonly limits: readonly RouteLimitPolicy[];
}

export interface RoutePolicy {
  readonly name: string;
  readonly match: RouteMatcher;
  readonly identity: RouteIdentity;
  readonly quota: RouteQuota;
  /** null = the body is not inspected. */
  readonly content: RouteContent | null;
  readonly rules: readonly CompiledRule[];
  /** Denials become allows, logged, counted and marked upstream. */
  readonly dryRun: boolean;
  readonly access: AccessPolicy;
  readonly onError: 'deny' | 'allow';
  /** What a Check shed by admission control gets on this route. */
  readonly onOverload: 'deny' | 'allow';
  readonly upstreamSet: readonly Header[];
  readonly upstreamRemove: readonly string[];
  readonly responseSet: readonly Header[];
}

export interface CatalogSettings {
  readonly problemBaseUrl: string;
  readonly maxHeaderValueBytes: number;
  readonly auditHeaders: boolean;
  readonly realm: string;
  readonly trustXfcc: boolean;
  readonly quotas: { readonly replicas: number; readonly idempotencySeconds: number };
  readonly admission: AdmissionSettings;
  readonly identityHeaders: {
    readonly partner: string;
    readonly application: string;
    readonly subject: string;
    readonly scopes: string;
  };
}

/** settings.admission (docs/configuration.md#admission). */
export interface AdmissionSettings {
  readonly minLimit: number;
  readonly maxLimit: number;
  readonly initialLimit: number;
  readonly maxQueue: number;
  readonly maxQueueWaitMs: number;
  readonly latencyTolerance: number;
  readonly eventLoopDelayMs: number;
}

export interface ApiKeyEntry {
  readonly id: string;
  readonly partner: Partner;
  /** HMAC-SHA-256 of the key under the pepper, raw bytes (compared in constant time). */
  readonly hash: Buffer;
  readonly status: 'active' | 'revoked';
  /** Epoch ms, or null for no expiry. */
  readonly expiresAt: number | null;
}

export interface IssuerPolicy {
  readonly name: string;
  readonly issuer: string;
  readonly jwks: JwksSource;
  readonly audiences: readonly string[];
  readonly algorithms: readonly string[];
  readonly clockSkewSeconds: number;
  readonly maxLifetimeSeconds: number | undefined;
  readonly requiredClaims: readonly string[];
  readonly applicationClaims: readonly string[];
  readonly userClaim: string;
}

/** A file the catalog names: part of the version, watched, compared by `policy diff`. */
export interface CatalogReference {
  readonly kind: 'schema' | 'jwks';
  /** As written in the catalog (relative to its directory, or absolute). */
  readonly path: string;
  /** Absolute. */
  readonly file: string;
  /** Hex SHA-256 of its content; '' when it could not be read. */
  readonly sha256: string;
  /** Its content as loaded ('' when it could not be read). */
  readonly text: string;
}

export interface Catalog {
  /**
   * `sha256:` + the first 16 hex digits of the SHA-256 of the file and of every file it names
   * (schemas, JWKS files): changes whenever a byte of any of them does.
   */
  readonly version: string;
  /** The files the catalog names, in the version; the watcher watches them too. */
  readonly references: readonly CatalogReference[];
  readonly versionName: string;
  readonly file: string;
  readonly settings: CatalogSettings;
  readonly access: AccessPolicy;
  readonly routes: readonly RoutePolicy[];
  readonly routesByName: ReadonlyMap<string, RoutePolicy>;
  readonly defaultRoute: RoutePolicy | undefined;
  readonly partners: ReadonlyMap<string, Partner>;
  readonly partnersByPrincipal: ReadonlyMap<string, Partner>;
  /** By client id (from any issuer), or by `issuer + NUL + client id` (issuer-qualified). */
  readonly partnersByApplication: ReadonlyMap<string, Partner>;
  /** By the base64url HMAC of the key: O(1) lookup. */
  readonly apiKeysByHash: ReadonlyMap<string, ApiKeyEntry>;
  readonly issuers: readonly IssuerPolicy[];
  /** The catalog's static revocations (live ones come from Redis). */
  readonly revocations: Revocations;
  /** Legal but likely unintended (printed by `policy validate`). */
  readonly warnings: readonly CatalogIssue[];
}

/** The key of an issuer-qualified application in `partnersByApplication`. */
export function applicationKey(issuer: string, clientId: string): string {
  return `${issuer}\u0000${clientId}`;
}
