// The quota model shared by the pure algorithms, the stores (memory, Redis) and the quota stage.
// A store charges every limit of one request at once: all or nothing.

export type Algorithm = 'gcra' | 'sliding_window' | 'fixed_window';

/** A calendar window of a fixed_window limit, computed in the partner's time zone. */
export interface CalendarWindow {
  /** Names the window in its key, e.g. `2026-11` for a month, `2026-W48` for a week. */
  readonly id: string;
  readonly startMs: number;
  readonly endMs: number;
}

/** One limit applied to one request, fully resolved (window computed, cost known). */
export interface LimitSpec {
  /** The limit's name, unique per partner: part of its key, its headers and its metrics. */
  readonly id: string;
  readonly algorithm: Algorithm;
  /** Units (requests, or cost units) admitted per period or window. */
  readonly limit: number;
  /** gcra and sliding_window: the period. fixed_window: the window's length (endMs - startMs). */
  readonly periodMs: number;
  /** gcra only: the most units admitted at once (the bucket size); default = limit. */
  readonly burst: number;
  /** fixed_window only. */
  readonly window?: CalendarWindow;
  /** Units this request costs (>= 1). */
  readonly cost: number;
  /** A shadow limit is reported but never refuses. */
  readonly shadow: boolean;
  /**
   * Whose counter this is, when not the charge's partner's own: a route's limit counted per route or
   * per source address (see RoutePolicy quota limits). `owner` names the key's hash tag `{q:<owner>}`
   * and `key` the counter within it. Absent: the key of the charge's partner and the limit's id.
   */
  readonly scope?: LimitScope;
}

export interface LimitScope {
  readonly owner: string;
  readonly key: string;
}

export interface ChargeRequest {
  /**
   * Keys are hash-tagged by partner: every key of one request is in one Redis Cluster slot. For an
   * anonymous caller, the owner of the route's counters (`r:<route>`).
   */
  readonly partner: string;
  /** x-request-id: a retried Check with the same id is charged once. '' = no idempotency. */
  readonly requestId: string;
  /**
   * What a request id is idempotent within: a retry counts as a duplicate only in the same scope.
   * The quota stage passes the route and the set of limits charged (`idempotencyScope`), so one id
   * reused on another route charges that route's limits. '' (or absent) = the partner as a whole.
   */
  readonly scope?: string;
  readonly limits: readonly LimitSpec[];
  readonly nowMs: number;
}

export interface LimitState {
  readonly id: string;
  readonly limit: number;
  /** Units still available after this request (never negative). */
  readonly remaining: number;
  /** ms until the limit is fully available again (gcra/sliding) or the window ends (fixed). */
  readonly resetMs: number;
  /** This request's cost does not fit. */
  readonly exceeded: boolean;
  /**
   * When exceeded: ms until this request's cost would fit. 0 otherwise. -1 (RETRY_NEVER in
   * algorithms.ts) when it never fits: the cost exceeds the limit (or a gcra limit's burst), so
   * retrying cannot help; send no Retry-After then.
   */
  readonly retryAfterMs: number;
  readonly shadow: boolean;
}

export interface ChargeResult {
  /** true = every non-shadow limit admitted the cost and all limits were charged. */
  readonly allowed: boolean;
  /** The request id was already charged: nothing was charged again, `allowed` is true. */
  readonly duplicate: boolean;
  /** In the order of the request's limits. */
  readonly limits: readonly LimitState[];
}

/** Receives one charge's outcome: exactly one of its methods, once (QuotaStore.chargeTo). */
export interface ChargeSink {
  charged(result: ChargeResult): void;
  failed(error: unknown): void;
}

export interface QuotaStore {
  charge(request: ChargeRequest): Promise<ChargeResult>;
  /**
   * charge() without a promise: the outcome goes to `sink`, possibly before chargeTo returns (an
   * in-process store, a refused argument, an open circuit). The quota stage's path: a charge costs
   * no promise and no microtask hop per layer.
   */
  chargeTo(request: ChargeRequest, sink: ChargeSink): void;
  /**
   * Gives back what `charge(request)` charged when it answered `result` (allowed, not a duplicate):
   * the Check was then answered otherwise, for a reason that is not the partner's. Keyed by the
   * request id: the request id is forgotten too, and a refund of a charge whose id is no longer the
   * one stored (expired, or already refunded) does nothing. Without a request id, call it once.
   */
  refund(request: ChargeRequest, result: ChargeResult): Promise<void>;
  /** Whether its connection is up now (a remote store); absent = always. The breaker's ramp waits for it. */
  connected?(): boolean;
  /**
   * Tells `listener` of each refund the store sends by itself: a charge whose reply came after the
   * store's timeout (the Check was answered without it). Absent = the store never does.
   */
  watchLateRefunds?(listener: (refunded: boolean, error?: unknown) => void): void;
  /** The limits' current state without charging (for status endpoints); cost is ignored. */
  peek(partner: string, limits: readonly LimitSpec[], nowMs: number): Promise<readonly LimitState[]>;
}
