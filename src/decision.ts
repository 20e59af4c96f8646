// What the pipeline decides, before the edge turns it into a CheckResponse.
import type { AllowCode, DenyCode } from './errors.js';

export interface Header {
  readonly name: string;
  readonly value: string;
}

/** A stage's refusal. `detail` is for the partner; `reason` only for the audit log. */
export interface Denial {
  readonly code: DenyCode;
  readonly detail?: string;
  readonly reason?: string;
  readonly headers?: readonly Header[];
  /** The partner, when known before the denial (e.g. suspended), for the audit log and metrics. */
  readonly partner?: string;
  /** Extra members of the RFC 9457 problem body (e.g. a schema violation's `errors`). */
  readonly problem?: Readonly<Record<string, unknown>>;
}

interface DecisionBase {
  readonly decisionId: string;
  /** x-request-id, or the decision id when Envoy sent none. */
  readonly requestId: string;
  readonly route: string;
  readonly partner: string;
  readonly policyVersion: string;
  /** Internal explanation for the audit log; never sent to the partner. */
  readonly reason: string;
  /** What the content stages found (body SHA-256, scan verdict), for the audit line. */
  readonly content?: { readonly sha256: string; readonly scan: string };
  /**
   * Set when this decision is the route's `on_error` answer to an internal failure or a missed
   * deadline, or its `on_overload` answer to a Check shed by admission control.
   */
  readonly failure?: 'internal_error' | 'deadline_exceeded' | 'dependency_unavailable' | 'overloaded';
}

export interface Allow extends DecisionBase {
  readonly kind: 'allow';
  readonly code: AllowCode;
  readonly upstreamHeaders: readonly Header[];
  readonly removeHeaders: readonly string[];
  /** Query parameters Envoy removes before the upstream (a token the route let come in the URL). */
  readonly removeQueryParams: readonly string[];
  readonly responseHeaders: readonly Header[];
  /** Dry run: the denial that was not enforced. */
  readonly dryRun?: DenyCode;
}

export interface Deny extends DecisionBase {
  readonly kind: 'deny';
  readonly code: DenyCode;
  readonly detail: string;
  readonly headers: readonly Header[];
  readonly problem?: Readonly<Record<string, unknown>>;
}

export type Decision = Allow | Deny;
