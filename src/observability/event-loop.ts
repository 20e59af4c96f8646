// How late our own event loop runs: perf_hooks.monitorEventLoopDelay, read and reset every
// `intervalMs`. A late loop means this process is overloaded (CPU, garbage collection, a CPU hog
// on the core): admission control sheds on it (src/admission/limit.ts) rather than letting queued
// work time out in a dependency's name, and /metrics exports it.
import { type IntervalHistogram, monitorEventLoopDelay } from 'node:perf_hooks';

export interface EventLoopDelay {
  /** Over the last interval, in milliseconds. */
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

export class EventLoopMonitor {
  private readonly histogram: IntervalHistogram;
  private readonly timer: NodeJS.Timeout;
  private last: EventLoopDelay = { p50Ms: 0, p99Ms: 0, maxMs: 0 };

  constructor(onInterval: (delay: EventLoopDelay) => void, intervalMs = 500) {
    // 10 ms resolution: the sampling timer itself costs a wake-up per resolution period.
    this.histogram = monitorEventLoopDelay({ resolution: 10 });
    this.histogram.enable();
    this.timer = setInterval(() => {
      const h = this.histogram;
      // The histogram counts delay including the resolution itself; report only the lateness.
      const ms = (ns: number) => (h.count === 0 ? 0 : Math.max(0, ns / 1e6 - 10));
      this.last = { p50Ms: ms(h.percentile(50)), p99Ms: ms(h.percentile(99)), maxMs: ms(h.max) };
      h.reset();
      onInterval(this.last);
    }, intervalMs);
    this.timer.unref();
  }

  latest(): EventLoopDelay {
    return this.last;
  }

  stop(): void {
    clearInterval(this.timer);
    this.histogram.disable();
  }
}
