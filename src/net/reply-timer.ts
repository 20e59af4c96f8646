// How long Redis takes to answer, judged fairly: from the moment a command is written to the socket
// to the moment its reply is read, never counting time our own process spent elsewhere.
//
// The commands issued in one event-loop turn are written by the end of it (the quota store's
// TurnCork, released by `onWritten` here; ioredis' auto-pipelining on a Cluster flushes on
// nextTick). We stamp the batch from a setImmediate (so at, or after, the write), and arm ONE timer
// per batch (no per-Check timer). When the timer fires, a reply may have been sitting in the socket buffer the whole time
// while our event loop was busy (a burst, GC, a CPU hog on our core): Node runs expired timers
// BEFORE it reads sockets. So an expired batch is judged one setImmediate later, after the poll
// phase has read whatever Redis already sent; only calls still without a reply then are late. And
// when the timer itself fired late (our process could not run), that lateness is given back as more
// waiting, up to 10 × the timeout in all. Our own lag thus never reads as Redis being slow, and a
// Redis that hangs is still caught.
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

/** A call the timer watches. Its owner sets `state` when the reply comes (1), or ignores a late one. */
export interface Watched {
  /** 0 waiting, 1 answered in time, 2 judged late. */
  state: 0 | 1 | 2;
  /** Judged late: set `state` to 2 and fail the call with `error`. */
  expire(error: StoreTimeout): void;
}

export class ReplyTimer {
  private batch: Watched[] | null = null;

  /**
   * `onWritten`: called when the turn's batch closes, before it is stamped as sent (the quota store
   * writes the commands it held back then: TurnCork).
   */
  constructor(
    readonly timeoutMs: number,
    private readonly onWritten?: () => void,
  ) {
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
      const pending: Watched = {
        state: 0,
        expire(error) {
          this.state = 2;
          reject(error);
        },
      };
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

  /**
   * The same for a caller that keeps its own state (one object per call, no closures; the quota
   * store's charges): call it right after issuing the command. `expire` is called if the call is
   * judged late while its `state` is still 0; a reply after that is the caller's to handle.
   * True when `call` opened this turn's batch (it is the turn's first).
   */
  join(call: Watched): boolean {
    if (this.batch) {
      this.batch.push(call);
      return false;
    }
    this.batch = [call];
    // After this turn's writes (ioredis' nextTick flush on a Cluster; onWritten below).
    setImmediate(this.written);
    return true;
  }

  // Bound once, with their state passed as timer arguments: no closures per batch.
  private readonly written = (): void => {
    const batch = this.batch as Watched[];
    this.batch = null;
    this.onWritten?.();
    const now = performance.now();
    this.arm(batch, this.timeoutMs, now + MAX_STRETCH * this.timeoutMs);
  };

  /**
   * Waits `ms`, then judges the batch after one poll phase. A timer that fired late shows that our
   * process could not run (a burst, GC, a starved CPU): that time was not Redis' — it is given back,
   * up to MAX_STRETCH × the timeout in all, so a Redis that really hangs is still caught.
   */
  private arm(batch: readonly Watched[], ms: number, hardLimit: number): void {
    setTimeout(this.fired, ms, batch, performance.now() + ms, hardLimit).unref();
  }

  private readonly fired = (batch: readonly Watched[], due: number, hardLimit: number): void => {
    setImmediate(this.judge, batch, performance.now() - due, hardLimit);
  };

  private readonly judge = (batch: readonly Watched[], late: number, hardLimit: number): void => {
    if (batch.every(answered)) return;
    const now = performance.now();
    if (late > 1 && now < hardLimit) this.arm(batch, Math.min(late, hardLimit - now), hardLimit);
    else expire(batch, this.timeoutMs);
  };
}

function answered(call: Watched): boolean {
  return call.state !== 0;
}

/** The most a batch's wait is stretched to give back our own lateness (× the timeout). */
export const MAX_STRETCH = 10;

function expire(batch: readonly Watched[], timeoutMs: number): void {
  for (const call of batch) {
    if (call.state !== 0) continue;
    call.expire(new StoreTimeout(timeoutMs));
  }
}
