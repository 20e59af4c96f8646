// The adaptive concurrency limit: how many Checks this process lets work at once.
//
// A gradient limit in the style of Envoy's adaptive_concurrency filter and Netflix's Gradient2,
// driven by latency measured against a no-load baseline:
//
// - Every admitted Check reports its service time (admission to answer, queue wait excluded).
// - Samples are gathered in windows (at least `windowMs` and `windowSamples` samples). A window's
//   latency is the mean of its samples.
// - The no-load baseline is the lowest window latency of the last `baselineWindows` windows: what a
//   Check costs when nothing queues in front of it (the window after a quiet spell re-measures it).
// - At the end of a window:
//     gradient = clamp(tolerance × baseline / latency, 0.5, 1)
//     grown    = limit × gradient + √limit      (the headroom, only if the window used ≥ half the limit)
//     limit    = clamp(limit + (grown − limit) / 2, floor, ceiling)
//   So while latency stays within `tolerance` × baseline the limit grows by about √limit per window;
//   once latency passes it, the limit shrinks in proportion (by at most half a window's worth).
// - Our own lateness counts too: when the event loop's delay over the window passed
//   `eventLoopDelayMs`, the gradient is at most 0.8 whatever the latency says. A late process
//   sheds at the door instead of letting queued work time out in a dependency's name.
//
// Pure: the caller passes the time and the measurements. No timers, no clock of its own.

export interface LimitOptions {
  /** The floor: the limit never goes below it. */
  readonly min: number;
  /** The ceiling: never above it. min = max gives a fixed limit. */
  readonly max: number;
  /** Where it starts (clamped to [min, max]). */
  readonly initial: number;
  /** Latency may grow to this multiple of the no-load baseline before the limit shrinks. */
  readonly tolerance: number;
  /** Event-loop delay (ms) above which the process counts as overloaded. */
  readonly eventLoopDelayMs: number;
  /** A window lasts at least this long… */
  readonly windowMs?: number;
  /** …and holds at least this many samples. */
  readonly windowSamples?: number;
  /** The baseline is the lowest window latency among this many last windows. */
  readonly baselineWindows?: number;
}

export interface LimitSnapshot {
  readonly limit: number;
  /** No-load latency (ms); NaN before the first window. */
  readonly baselineMs: number;
  /** Latency of the last window (ms); NaN before the first window. */
  readonly latencyMs: number;
}

const DEFAULT_WINDOW_MS = 250;
const DEFAULT_WINDOW_SAMPLES = 20;
const DEFAULT_BASELINE_WINDOWS = 120;
/** The gradient applied when our event loop is late. */
const LATE_GRADIENT = 0.8;

export class GradientLimit {
  private value: number;
  private options: Required<LimitOptions>;
  private windowStart = Number.NaN;
  private sum = 0;
  private count = 0;
  /** Highest in-flight seen in the window: growth only when the limit was actually used. */
  private peakInFlight = 0;
  private readonly recent: number[] = [];
  private latency = Number.NaN;
  private eventLoopDelay = 0;

  constructor(options: LimitOptions) {
    this.options = complete(options);
    this.value = clamp(options.initial, this.options.min, this.options.max);
  }

  /** New bounds (a reloaded catalog): the current limit is kept, clamped into them. */
  configure(options: LimitOptions): void {
    this.options = complete(options);
    this.value = clamp(this.value, this.options.min, this.options.max);
  }

  /** The whole number of Checks that may work at once. */
  get limit(): number {
    return Math.max(1, Math.floor(this.value));
  }

  /** The event loop's recent delay (ms), e.g. the p99 of the last interval. */
  eventLoopDelayMs(ms: number): void {
    this.eventLoopDelay = ms;
  }

  /** One admitted Check finished after `latencyMs`, with `inFlight` Checks working when it started. */
  sample(now: number, latencyMs: number, inFlight: number): void {
    if (Number.isNaN(this.windowStart)) this.windowStart = now;
    this.sum += latencyMs;
    this.count++;
    if (inFlight > this.peakInFlight) this.peakInFlight = inFlight;
    const { windowMs, windowSamples } = this.options;
    if (this.count >= windowSamples && now - this.windowStart >= windowMs) this.closeWindow(now);
  }

  /** What a Check is expected to take once admitted (ms): the no-load baseline, 0 before any. */
  get serviceMs(): number {
    const baseline = this.baseline();
    return Number.isNaN(baseline) ? 0 : baseline;
  }

  snapshot(): LimitSnapshot {
    return { limit: this.limit, baselineMs: this.baseline(), latencyMs: this.latency };
  }

  // Read on every Check (serviceMs): an indexed loop, not Math.min(...recent), which boxes every
  // entry, nor an interpreted for-of, which allocates an iterator result per entry.
  private baseline(): number {
    const recent = this.recent;
    if (recent.length === 0) return Number.NaN;
    let min = Number.POSITIVE_INFINITY;
    for (let i = 0; i < recent.length; i++) {
      const ms = recent[i] as number;
      if (ms < min) min = ms;
    }
    return min;
  }

  private closeWindow(now: number): void {
    const latency = Math.max(this.sum / this.count, 0.001);
    const used = this.peakInFlight;
    this.windowStart = now;
    this.sum = 0;
    this.count = 0;
    this.peakInFlight = 0;
    this.latency = latency;
    this.recent.push(latency);
    if (this.recent.length > this.options.baselineWindows) this.recent.shift();

    const { tolerance, min, max, eventLoopDelayMs } = this.options;
    let gradient = clamp((tolerance * this.baseline()) / latency, 0.5, 1);
    if (this.eventLoopDelay > eventLoopDelayMs) gradient = Math.min(gradient, LATE_GRADIENT);
    const headroom = gradient === 1 && used * 2 >= this.limit ? Math.sqrt(this.value) : 0;
    const target = this.value * gradient + headroom;
    this.value = clamp(this.value + (target - this.value) / 2, min, max);
  }
}

function complete(options: LimitOptions): Required<LimitOptions> {
  if (!(options.min >= 1 && options.max >= options.min)) {
    throw new RangeError(
      `concurrency limit bounds must satisfy 1 ≤ min ≤ max (${options.min}, ${options.max})`,
    );
  }
  return {
    windowMs: DEFAULT_WINDOW_MS,
    windowSamples: DEFAULT_WINDOW_SAMPLES,
    baselineWindows: DEFAULT_BASELINE_WINDOWS,
    ...options,
  };
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}
