// Shared shapes of the pipeline stages. A stage is a function of the request, the catalog and
// what earlier stages found; it returns data (a value or a Denial) and does its I/O only through
// the interfaces it is given.
import type { Denial, Header } from '../decision.js';
import type { Catalog, Credential, Partner, RoutePolicy } from '../policy/catalog.js';
import type { Request } from '../request.js';
import type { ContentFindings } from './content.js';

export type StageResult<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly denial: Denial };

export const pass = <T>(value: T): StageResult<T> => ({ ok: true, value });
export const refuse = (denial: Denial): StageResult<never> => ({ ok: false, denial });

/** Who is calling. `partner` is null for an anonymous caller on a route that allows it. */
export interface Identity {
  readonly partner: Partner | null;
  /** The credentials that were verified, in the order mtls, jwt, api_key. */
  readonly credentials: readonly Credential[];
  /** The partner's application: the token's client id, or the API key id. '' when none. */
  readonly application: string;
  /** The end user (the token's user claim), kept apart from the application. '' when none. */
  readonly user: string;
  /** The mTLS principal (SPIFFE id, DNS SAN or subject). '' when none. */
  readonly principal: string;
  readonly scopes: ReadonlySet<string>;
  /** The token's claims ({} without a token), for rules. */
  readonly claims: Readonly<Record<string, unknown>>;
  /** Step-up inputs from the token: `auth_time` (epoch s) and `acr`. */
  readonly authTime: number | undefined;
  readonly acr: string | undefined;
  /** Request headers and query parameters that carried credentials (removed before the upstream). */
  readonly credentialHeaders: readonly string[];
  readonly credentialQueryParams: readonly string[];
}

export const ANONYMOUS: Identity = Object.freeze({
  partner: null,
  credentials: [],
  application: '',
  user: '',
  principal: '',
  scopes: new Set<string>(),
  claims: Object.freeze({}),
  authTime: undefined,
  acr: undefined,
  credentialHeaders: [],
  credentialQueryParams: [],
});

/**
 * A dependency (identity provider, Redis, clamd) cannot answer. The pipeline turns it into the
 * route's `on_error` with the code `dependency_unavailable`, never into a denial of the partner.
 */
export class DependencyUnavailable extends Error {
  constructor(
    readonly dependency: string,
    message: string,
  ) {
    super(`${dependency}: ${message}`);
    this.name = 'DependencyUnavailable';
  }
}

/** A denial a dry-run rule (or a dry-run route) would have made: logged, counted, not enforced. */
export interface AuthorizeOutcome {
  readonly dryRun: Denial | null;
}

/** What the quota stage adds to an allow. */
export interface QuotaOutcome {
  /** Response headers for the partner (RateLimit, RateLimit-Policy or X-RateLimit-*). */
  readonly headers: readonly Header[];
  /** For the audit log: shadow refusals, local fallback. '' when there is nothing to say. */
  readonly note: string;
  /**
   * Present when a charge was made: call it once with the Check's final answer — `refund` when it
   * was refused for a reason that is not the partner's (a 5xx), `keep` otherwise.
   */
  readonly settle?: (verdict: 'keep' | 'refund') => void;
}

export type MaybePromise<T> = T | Promise<T>;

/** The stages in pipeline order. Injected so tests (and later capabilities) can supply their own. */
export interface Stages {
  route(request: Request, catalog: Catalog): MaybePromise<StageResult<RoutePolicy>>;
  identify(request: Request, catalog: Catalog, route: RoutePolicy): MaybePromise<StageResult<Identity>>;
  authorize(
    request: Request,
    catalog: Catalog,
    route: RoutePolicy,
    identity: Identity,
  ): MaybePromise<StageResult<AuthorizeOutcome>>;
  inspect(
    request: Request,
    route: RoutePolicy,
    identity: Identity,
  ): MaybePromise<StageResult<ContentFindings | null>>;
  quota(
    request: Request,
    catalog: Catalog,
    route: RoutePolicy,
    identity: Identity,
  ): MaybePromise<StageResult<QuotaOutcome>>;
  /** `deadlineMs`: epoch ms by which the scan must be done (inside Envoy's deadline). */
  scan(findings: ContentFindings | null, deadlineMs: number): MaybePromise<StageResult<string>>;
}

/** Time, injected so decisions stay pure and tests can fix it. Milliseconds since the epoch. */
export interface Clock {
  now(): number;
}
export const systemClock: Clock = { now: () => Date.now() };
