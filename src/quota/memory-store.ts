// The in-process quota store: the embedded default (one replica, no Redis) and the fail-open fallback
// when Redis is unreachable. It runs the pure algorithms of algorithms.ts directly, so it answers
// exactly like RedisQuotaStore for the same sequence of charges (a test checks this).
//
// - Bounded: limit states live in an LRU of `maxEntries`; each expires once it no longer matters (gcra:
//   when the bucket is full again; sliding_window: when both sub-windows are over; fixed_window: at the
//   window's end), at which point it is equivalent to no state, so expiry never changes an answer.
//   Evicting a live state under pressure forgets that partner's usage (it can then over-admit): size
//   `maxEntries` above the number of live (partner, limit) pairs.
// - Time is the requests' `nowMs` (the largest seen), not a timer: expiry is deterministic.
// - Idempotency: a charged request id is remembered for `idempotencyMs` (default 10 min), at most
//   `maxRequestIds` of them (LRU), within its scope (ChargeRequest.scope: route and limits). A
//   refused request is not remembered: its retry is evaluated again.
// - refund() gives an allowed charge back (refund.ts), once, as RedisQuotaStore does.
// - `divisor` (fail-open use, N replicas each counting alone): every limit and burst is divided by N,
//   rounded down, at least 1. The LimitStates then report the divided limit (what was enforced).
import { LRUCache } from 'lru-cache';
import {
  type CounterState,
  chargeAll,
  DEFAULT_IDEMPOTENCY_MS,
  duplicateViews,
  isDuplicate,
  normalizeRequestId,
  peekAll,
  validateCharge,
} from './algorithms.js';
import { refundCosts, refundState } from './refund.js';
import type { ChargeRequest, ChargeResult, ChargeSink, LimitSpec, LimitState, QuotaStore } from './types.js';

export interface MemoryQuotaStoreOptions {
  /** Most limit states kept (LRU). Default 100 000. */
  readonly maxEntries?: number;
  /** Most charged request ids remembered (LRU). Default 100 000. */
  readonly maxRequestIds?: number;
  /** How long a charged request id counts as charged, in ms of request time. Default 600 000 (10 min). */
  readonly idempotencyMs?: number;
  /** Divide every limit and burst by this (replica count), rounded down, at least 1. Default 1. */
  readonly divisor?: number;
}

export class MemoryQuotaStore implements QuotaStore {
  private clockMs = 0;
  private readonly states: LRUCache<string, CounterState>;
  private readonly requestIds: LRUCache<string, number>;
  private readonly idempotencyMs: number;
  private readonly divisor: number;

  constructor(options: MemoryQuotaStoreOptions = {}) {
    const clock = { now: () => this.clockMs };
    this.idempotencyMs = options.idempotencyMs ?? DEFAULT_IDEMPOTENCY_MS;
    this.divisor = options.divisor ?? 1;
    if (!Number.isSafeInteger(this.idempotencyMs) || this.idempotencyMs < 1) {
      throw new RangeError('idempotencyMs must be an integer ≥ 1');
    }
    if (!Number.isSafeInteger(this.divisor) || this.divisor < 1) {
      throw new RangeError('divisor must be an integer ≥ 1');
    }
    // ttlResolution 0: read our clock on every check (the default caches it with a timer).
    this.states = new LRUCache({ max: options.maxEntries ?? 100_000, perf: clock, ttlResolution: 0 });
    this.requestIds = new LRUCache({
      max: options.maxRequestIds ?? 100_000,
      ttl: this.idempotencyMs,
      perf: clock,
      ttlResolution: 0,
    });
  }

  async charge(request: ChargeRequest): Promise<ChargeResult> {
    return this.chargeNow(request);
  }

  /** QuotaStore.chargeTo: answers `sink` before returning. */
  chargeTo(request: ChargeRequest, sink: ChargeSink): void {
    let result: ChargeResult;
    try {
      result = this.chargeNow(request);
    } catch (error: unknown) {
      sink.failed(error);
      return;
    }
    sink.charged(result);
  }

  async peek(partner: string, limits: readonly LimitSpec[], nowMs: number): Promise<readonly LimitState[]> {
    return this.peekNow(partner, limits, nowMs);
  }

  /** charge(), synchronously (the store is in-process: nothing to wait for). */
  chargeNow(request: ChargeRequest): ChargeResult {
    const { partner, nowMs } = request;
    const limits = request.limits.map((spec) => this.divide(spec));
    validateCharge(partner, limits, nowMs);
    this.tick(nowMs);
    const keys = limits.map((spec) => stateKey(partner, spec));
    const states = keys.map((key) => this.states.get(key));
    const ridKey = requestIdKey(request);
    if (ridKey !== '' && isDuplicate(this.requestIds.get(ridKey), nowMs, this.idempotencyMs)) {
      return { allowed: true, duplicate: true, limits: duplicateViews(limits, states, nowMs) };
    }
    const result = chargeAll(limits, states, nowMs);
    if (result.allowed) {
      result.charged.forEach((charged, i) => {
        const state = result.states[i];
        if (charged && state) this.states.set(keys[i] as string, state, { ttl: result.ttlMs[i] as number });
      });
      if (ridKey !== '') this.requestIds.set(ridKey, nowMs);
    }
    return { allowed: result.allowed, duplicate: false, limits: result.limits };
  }

  async refund(request: ChargeRequest, result: ChargeResult): Promise<void> {
    this.refundNow(request, result);
  }

  /** refund(), synchronously. */
  refundNow(request: ChargeRequest, result: ChargeResult): void {
    const costs = refundCosts(request, result);
    if (!costs.some((cost) => cost > 0)) return;
    const ridKey = requestIdKey(request);
    if (ridKey !== '') {
      if (this.requestIds.get(ridKey) !== request.nowMs) return;
      this.requestIds.delete(ridKey);
    }
    request.limits.forEach((original, i) => {
      const spec = this.divide(original);
      const key = stateKey(request.partner, spec);
      const state = this.states.get(key);
      const next = refundState(spec, state, request.nowMs, costs[i] as number);
      // Keeps the entry's TTL: a refund never makes a state live longer.
      if (next && next !== state) this.states.set(key, next, { noUpdateTTL: true });
    });
  }

  /** peek(), synchronously. */
  peekNow(partner: string, limits: readonly LimitSpec[], nowMs: number): LimitState[] {
    const specs = limits.map((spec) => this.divide({ ...spec, cost: 1 }));
    validateCharge(partner, specs, nowMs);
    this.tick(nowMs);
    return peekAll(
      specs,
      specs.map((spec) => this.states.get(stateKey(partner, spec))),
      nowMs,
    );
  }

  /**
   * Drops every expired state and request id now (they are otherwise dropped when next read, or
   * evicted by the LRU bound). Optional: call it periodically to return memory early.
   */
  prune(): void {
    this.states.purgeStale();
    this.requestIds.purgeStale();
  }

  /** Number of limit states and request ids held (metrics, tests). */
  get size(): { readonly states: number; readonly requestIds: number } {
    return { states: this.states.size, requestIds: this.requestIds.size };
  }

  private tick(nowMs: number): void {
    if (nowMs > this.clockMs) this.clockMs = nowMs;
  }

  private divide(spec: LimitSpec): LimitSpec {
    if (this.divisor === 1) return spec;
    return {
      ...spec,
      limit: Math.max(1, Math.floor(spec.limit / this.divisor)),
      burst: Math.max(1, Math.floor(spec.burst / this.divisor)),
    };
  }
}

function requestIdKey(request: ChargeRequest): string {
  if (request.requestId === '') return '';
  const scope = request.scope ?? '';
  return `${request.partner}\u0000${scope}\u0000${normalizeRequestId(request.requestId)}`;
}

function stateKey(partner: string, spec: LimitSpec): string {
  const base = spec.scope ? `${spec.scope.owner}\u0000${spec.scope.key}` : `${partner}\u0000${spec.id}`;
  return spec.algorithm === 'fixed_window' ? `${base}\u0000${spec.window?.id ?? ''}` : base;
}
