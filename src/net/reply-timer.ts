// How long Redis takes to answer, judged fairly: from the moment a command is written to the socket
// to the moment its reply is read, never counting time our own process spent elsewhere.
//
// ioredis (with enableAutoPipelining) writes the commands issued in one event-loop turn in one go,
// from a setImmediate. We stamp the batch from a setImmediate queued after that one (so at the
// write), and arm ONE timer per batch (no per-Check timer). When the timer fires, a reply may have
// been sitting in the socket buffer the whole time while our event loop was busy (a burst, GC, a
// CPU hog on our core): Node runs expired timers BEFORE it reads sockets. So an expired batch is
// judged one setImmediate later, after the poll phase has read whatever Redis already sent; only
// calls still without a reply then are late. And when the timer itself fired late (our process
// could not run), that lateness is given back as more waiting, up to 10 × the timeout in all. Our
// own lag thus never reads as Redis being slow, and a Redis that hangs is still caught.
//
// A call judged late is rejected with StoreTimeout (the breaker counts it). If its reply still
// comes, `onLate` gets it: the caller gave up, but Redis may have applied the command (a charge
// must then be refunded).

/** Redis did not answer within the store's timeout (measured from the write, see above). */
export class StoreTimeout extends Error {
  constructor(timeoutMs: number) {
    super(`no reply from redis within ${timeoutMs} ms of the command being sent`);
    this.name = 'StoreTimeout';
  }
}

interface Pending {
  /** 0 waiting, 1 answered in time, 2 judged late. */
  state: 0 | 1 | 2;
  readonly reject: (error: Error) => void;
}

export class ReplyTimer {
  private batch: Pending[] | null = null;

  constructor(readonly timeoutMs: number) {
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1) {
      throw new RangeError('timeoutMs must be an integer ≥ 1');
    }
  }

  /**
   * `reply`, unless it is judged late: then a StoreTimeout. Call it right after issuing the command
   * (same event-loop turn). `onLate` receives a reply that arrives after the StoreTimeout.
   */
  watch<T>(reply: Promise<T>, onLate: (value: T) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const pending: Pending = { state: 0, reject };
      this.join(pending);
      reply.then(
        (value) => {
          if (pending.state === 2) return onLate(value);
          pending.state = 1;
          resolve(value);
        },
        (error: unknown) => {
          if (pending.state === 2) return;
          pending.state = 1;
          reject(error);
        },
      );
    });
  }

  private join(pending: Pending): void {
    if (this.batch) {
      this.batch.push(pending);
      return;
    }
    const batch: Pending[] = [pending];
    this.batch = batch;
    // Queued after ioredis' own flush of this turn's commands: runs when they have been written.
    setImmediate(() => {
      this.batch = null;
      const now = performance.now();
      this.arm(batch, this.timeoutMs, now + MAX_STRETCH * this.timeoutMs);
    });
  }

  /**
   * Waits `ms`, then judges the batch after one poll phase. A timer that fired late shows that our
   * process could not run (a burst, GC, a starved CPU): that time was not Redis' — it is given back,
   * up to MAX_STRETCH × the timeout in all, so a Redis that really hangs is still caught.
   */
  private arm(batch: readonly Pending[], ms: number, hardLimit: number): void {
    const due = performance.now() + ms;
    setTimeout(() => {
      const late = performance.now() - due;
      setImmediate(() => {
        if (batch.every((p) => p.state !== 0)) return;
        const now = performance.now();
        if (late > 1 && now < hardLimit) this.arm(batch, Math.min(late, hardLimit - now), hardLimit);
        else expire(batch, this.timeoutMs);
      });
    }, ms).unref();
  }
}

/** The most a batch's wait is stretched to give back our own lateness (× the timeout). */
export const MAX_STRETCH = 10;

function expire(batch: readonly Pending[], timeoutMs: number): void {
  for (const pending of batch) {
    if (pending.state !== 0) continue;
    pending.state = 2;
    pending.reject(new StoreTimeout(timeoutMs));
  }
}
