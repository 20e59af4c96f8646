// The circuit breaker around the shared quota store. It judges Redis, and only Redis:
//
// - No timer of its own. A charge fails when the store says so: Redis refused it, the connection is
//   down, or the store's own timeout — measured from the moment the command was written to the
//   socket (src/net/reply-timer.ts) — expired. (It replaced opossum, whose timeout around the whole call
//   also counted the time a charge waited in our own event loop and client queue: under a burst or
//   a CPU hog our own lag read as a slow Redis, the circuit opened, and partners got 503 while
//   Redis idled.) Our mistakes (RangeError: a charge the store refuses as malformed) count neither
//   way.
// - Closed → open when, over the last `windowMs` (rolling, 10 buckets), at least `volumeThreshold`
//   charges were made and at least half of them failed. While open, charges are refused at once
//   (the caller applies the route's on_store_error): a dead Redis costs microseconds per Check.
// - Open → half-open `resetMs` after it opened, once the connection is up again (`connected()`, when
//   given: no point probing a socket known to be down). Half-open is a RAMP, not one probe: for
//   `rampStepMs` each, a growing share of charges is let through (`rampShares`, default 10 %, 50 %),
//   then all of them (closed). The share is kept exactly (admitted ≤ share × offered, counted),
//   so the first charge of each step always goes. A step ends only once one of its charges has
//   succeeded; any failure in half-open opens the circuit again. With the defaults, normal service
//   is back about 100 + 2 × 100 ms after the connection is.
//
// Refunds are not charges: they go straight to the store and never move the circuit.
import type { ChargeRequest, ChargeResult, ChargeSink, QuotaStore } from './types.js';

export interface BreakerOptions {
  /** Pause after opening before the ramp may start. Default 100 ms. */
  readonly resetMs: number;
  /** Charges (in the rolling window) before the failure ratio may open the circuit. Default 5. */
  readonly volumeThreshold: number;
  /** The rolling window over which failures are counted. Default 1 000 ms. */
  readonly windowMs?: number;
  /** Shares of charges let through during the ramp, one step each, increasing, in (0, 1). */
  readonly rampShares?: readonly number[];
  /** Length of each ramp step. Default 100 ms. */
  readonly rampStepMs?: number;
}

export const DEFAULT_BREAKER: BreakerOptions = {
  resetMs: 100,
  volumeThreshold: 5,
  windowMs: 1000,
  rampShares: [0.1, 0.5],
  rampStepMs: 100,
};

export type BreakerState = 'closed' | 'open' | 'half_open';

/** A charge refused by the open (or ramping) circuit, without calling the store. */
export class CircuitOpen extends Error {
  constructor(state: BreakerState) {
    super(state === 'open' ? 'circuit open: redis failed recently' : 'circuit half-open: ramping up');
    this.name = 'CircuitOpen';
  }
}

export interface BreakerDeps {
  /** Monotonic milliseconds (performance.now). Injected so the ramp can be tested. */
  readonly now: () => number;
  /** Whether the store's connection is up; absent = assume it is. */
  readonly connected?: () => boolean;
}

const BUCKETS = 10;

export class StoreBreaker {
  private current: BreakerState = 'closed';
  private openedAt = 0;
  private step = 0;
  private stepSince = 0;
  private stepOffered = 0;
  private stepAdmitted = 0;
  private stepSucceeded = 0;
  // The rolling window: per bucket, calls and failures; `bucketAt` = start of the newest bucket.
  private readonly calls = new Array<number>(BUCKETS).fill(0);
  private readonly failures = new Array<number>(BUCKETS).fill(0);
  private newest = 0;
  private bucketAt = 0;
  private readonly resetMs: number;
  private readonly volumeThreshold: number;
  private readonly bucketMs: number;
  private readonly shares: readonly number[];
  private readonly stepMs: number;

  constructor(
    private readonly store: Pick<QuotaStore, 'chargeTo' | 'refund'>,
    options: BreakerOptions = DEFAULT_BREAKER,
    private readonly deps: BreakerDeps = { now: () => performance.now() },
  ) {
    this.resetMs = options.resetMs;
    this.volumeThreshold = options.volumeThreshold;
    this.bucketMs = (options.windowMs ?? DEFAULT_BREAKER.windowMs ?? 1000) / BUCKETS;
    this.shares = options.rampShares ?? DEFAULT_BREAKER.rampShares ?? [];
    this.stepMs = options.rampStepMs ?? DEFAULT_BREAKER.rampStepMs ?? 100;
    if (this.shares.some((s, i) => !(s > 0 && s < 1) || (i > 0 && s <= (this.shares[i - 1] as number)))) {
      throw new RangeError('rampShares must increase, each in (0, 1)');
    }
    this.bucketAt = deps.now();
  }

  /** Rejects at once (CircuitOpen) while open or not admitted by the ramp; the caller applies the declared failure behaviour. */
  charge(request: ChargeRequest): Promise<ChargeResult> {
    return new Promise((resolve, reject) => this.chargeTo(request, { charged: resolve, failed: reject }));
  }

  /** charge() without a promise (QuotaStore.chargeTo): the quota stage's path. */
  chargeTo(request: ChargeRequest, sink: ChargeSink): void {
    if (!this.admit(this.deps.now())) {
      sink.failed(new CircuitOpen(this.current));
      return;
    }
    this.store.chargeTo(request, new BreakerWatch(this, sink));
  }

  recordSuccess(): void {
    this.record(this.deps.now(), false);
  }

  recordFailure(error: unknown): void {
    // A charge we built wrong is our bug: it says nothing about Redis.
    if (!(error instanceof RangeError)) this.record(this.deps.now(), true);
  }

  refund(request: ChargeRequest, result: ChargeResult): Promise<void> {
    return this.store.refund(request, result);
  }

  state(): BreakerState {
    // Reading the state moves it on in time (open → half-open → closed) like a charge would.
    this.advance(this.deps.now());
    return this.current;
  }

  /** The share of charges let through now: 0 open, 1 closed, the ramp's step in between. */
  share(): number {
    this.advance(this.deps.now());
    if (this.current === 'open') return 0;
    if (this.current === 'closed') return 1;
    return this.shares[this.step] ?? 1;
  }

  /** Nothing to release (no timers); kept so the app can stop every part the same way. */
  shutdown(): void {}

  private admit(now: number): boolean {
    this.advance(now);
    if (this.current === 'closed') return true;
    if (this.current === 'open') return false;
    const share = this.shares[this.step] ?? 1;
    this.stepOffered++;
    if (this.stepAdmitted >= share * this.stepOffered) return false;
    this.stepAdmitted++;
    return true;
  }

  private advance(now: number): void {
    if (this.current === 'open') {
      if (now - this.openedAt < this.resetMs) return;
      if (this.deps.connected && !this.deps.connected()) return;
      this.current = 'half_open';
      this.startStep(0, now);
    }
    while (this.current === 'half_open' && this.stepSucceeded > 0 && now - this.stepSince >= this.stepMs) {
      if (this.step + 1 >= this.shares.length) {
        this.close(now);
        return;
      }
      this.startStep(this.step + 1, now);
    }
  }

  private startStep(step: number, now: number): void {
    this.step = step;
    this.stepSince = now;
    this.stepOffered = 0;
    this.stepAdmitted = 0;
    this.stepSucceeded = 0;
  }

  private close(now: number): void {
    this.current = 'closed';
    this.calls.fill(0);
    this.failures.fill(0);
    this.bucketAt = now;
  }

  private record(now: number, failed: boolean): void {
    if (this.current === 'half_open') {
      if (failed) this.open(now);
      else {
        this.stepSucceeded++;
        this.advance(now);
      }
      return;
    }
    if (this.current === 'open') return; // a call admitted before the circuit opened
    this.roll(now);
    (this.calls[this.newest] as number)++;
    if (failed) (this.failures[this.newest] as number)++;
    if (!failed) return;
    const calls = sum(this.calls);
    if (calls >= this.volumeThreshold && sum(this.failures) * 2 >= calls) this.open(now);
  }

  private open(now: number): void {
    this.current = 'open';
    this.openedAt = now;
  }

  private roll(now: number): void {
    const elapsed = Math.floor((now - this.bucketAt) / this.bucketMs);
    if (elapsed <= 0) return;
    for (let i = 1; i <= Math.min(elapsed, BUCKETS); i++) {
      const index = (this.newest + i) % BUCKETS;
      this.calls[index] = 0;
      this.failures[index] = 0;
    }
    this.newest = (this.newest + elapsed) % BUCKETS;
    this.bucketAt += elapsed * this.bucketMs;
  }
}

/** One charge on its way through the breaker: counted, then handed to the caller's sink. */
class BreakerWatch implements ChargeSink {
  constructor(
    private readonly breaker: StoreBreaker,
    private readonly sink: ChargeSink,
  ) {}

  charged(result: ChargeResult): void {
    this.breaker.recordSuccess();
    this.sink.charged(result);
  }

  failed(error: unknown): void {
    this.breaker.recordFailure(error);
    this.sink.failed(error);
  }
}

function sum(values: readonly number[]): number {
  let total = 0;
  for (const v of values) total += v;
  return total;
}
