// A circuit breaker around the quota store (opossum): a timeout per call, open once failures
// dominate, a half-open probe after a pause. A dead Redis then costs microseconds per Check (the
// breaker refuses at once) instead of a timeout each, and service resumes within `resetMs` of
// Redis coming back.
import CircuitBreaker from 'opossum';
import type { ChargeRequest, ChargeResult, QuotaStore } from './types.js';

export interface BreakerOptions {
  /** A store call slower than this counts as a failure. */
  readonly timeoutMs: number;
  /** Pause before the half-open probe. */
  readonly resetMs: number;
  /** Calls (in the rolling second) before the failure ratio may open the circuit. */
  readonly volumeThreshold: number;
}

/**
 * 150 ms: above the Redis client's own 100 ms command timeout (which fails first and cleanly), so
 * event-loop lag on a busy replica does not trip the breaker while Redis is healthy; 250 ms before
 * the half-open probe.
 */
export const DEFAULT_BREAKER: BreakerOptions = { timeoutMs: 150, resetMs: 250, volumeThreshold: 5 };

export type BreakerState = 'closed' | 'open' | 'half_open';

export class StoreBreaker {
  private readonly breaker: CircuitBreaker<[ChargeRequest], ChargeResult>;

  constructor(store: QuotaStore, options: BreakerOptions = DEFAULT_BREAKER) {
    this.breaker = new CircuitBreaker((request: ChargeRequest) => store.charge(request), {
      timeout: options.timeoutMs,
      resetTimeout: options.resetMs,
      volumeThreshold: options.volumeThreshold,
      errorThresholdPercentage: 50,
      rollingCountTimeout: 1000,
      rollingCountBuckets: 10,
      // A charge the store refuses as malformed (RangeError) is our bug, not Redis being down.
      errorFilter: (error: unknown) => error instanceof RangeError,
    });
  }

  /** Rejects at once while open; the caller applies the declared failure behaviour. */
  charge(request: ChargeRequest): Promise<ChargeResult> {
    return this.breaker.fire(request);
  }

  state(): BreakerState {
    return this.breaker.opened ? 'open' : this.breaker.halfOpen ? 'half_open' : 'closed';
  }

  shutdown(): void {
    this.breaker.shutdown();
  }
}
