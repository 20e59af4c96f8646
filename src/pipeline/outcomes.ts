// What the stages hand on to the ones after them and to the decision: who is calling, what
// authorize, quota and the content checks found.

import type { Inspected } from '../content/inspect.js';
import type { ContentPolicy } from '../content/types.js';
import type { Denial, Header } from '../decision.js';
import type { Credential, Partner } from '../policy/catalog.js';

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
  /** Present when a charge was made: settle it once with the Check's final answer. */
  readonly settlement?: Settlement;
}

/** A charge made for a Check, waiting for the Check's final answer. */
export interface Settlement {
  /** `refund` when the Check was refused for a reason that is not the partner's (a 5xx), `keep` otherwise. */
  settle(verdict: 'keep' | 'refund'): void;
}

/** What the content stages found, for the audit line. null when the route inspects nothing. */
export interface ContentFindings {
  readonly policy: ContentPolicy;
  readonly inspected: Inspected;
}
