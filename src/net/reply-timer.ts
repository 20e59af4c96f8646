// How long Redis takes to answer, judged fairly: from the moment a command is written to the socket
// to the moment its reply is read, never counting time our own process spent elsewhere.
//
// The commands issued in one event-loop turn are written by the end of it (the quota store's
// TurnCork, released by `onWritten` here; ioredis' auto-pipelining on a Cluster flushes on
// nextTick). We stamp the turn's batch from a setImmediate (so at, or after, the write). Batches
// then wait in one list under ONE timer for all of them (no timer per Check, nor per batch): it
// fires at most every timeoutMs / 10, so a batch is judged between timeoutMs and 1.1 × timeoutMs
// after it was sent, plus one poll phase. When the timer fires, a reply may have been sitting in
// the socket buffer the whole time while our event loop was busy (a burst, GC, a CPU hog on our
// core): Node runs expired timers BEFORE it reads sockets. So due batches are judged one
// setImmediate later, after the poll phase has read whatever Redis already sent; only calls still
// without a reply then are late. And when the timer itself fired late (our process could not run),
// that lateness is given back to each due batch as more waiting, up to 10 × the timeout in all. Our
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

/** A call the timer watches. Its owner sets `state` when the reply comes (1), or ignores a late one. */
export interface Watched {
  /** 0 waiting, 1 answered in time, 2 judged late. */
  state: 0 | 1 | 2;
  /** Judged late: set `state` to 2 and fail the call with `error`. */
  expire(error: StoreTimeout): void;
}

/** A turn's calls, once written: judged at `due` (performance.now() ms), never past `hardLimit`. */
interface Batch {
  readonly calls: readonly Watched[];
  due: number;
  readonly hardLimit: number;
}

export class ReplyTimer {
  /** This turn's calls, until written. */
  private batch: Watched[] | null = null;
  /** Written batches with calls that may still be waiting. */
  private readonly waiting: Batch[] = [];
  private timer: NodeJS.Timeout | null = null;
  /** When the timer is due (performance.now() ms). */
  private timerAt = 0;
  private readonly granularityMs: number;

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
    this.granularityMs = Math.max(1, timeoutMs / 10);
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

  /** Written batches still watched (tests). */
  get watching(): number {
    return this.waiting.length;
  }

  // Bound once: no closures per batch.
  private readonly written = (): void => {
    const calls = this.batch as Watched[];
    this.batch = null;
    this.onWritten?.();
    const now = performance.now();
    this.waiting.push({ calls, due: now + this.timeoutMs, hardLimit: now + MAX_STRETCH * this.timeoutMs });
    // Batches are written in due order: a timer already armed is due no later than this one.
    if (this.timer === null) this.arm(now + this.timeoutMs, now);
  };

  private arm(at: number, now: number): void {
    this.timerAt = at;
    this.timer = setTimeout(this.fired, Math.max(0, at - now));
    this.timer.unref();
  }

  private readonly fired = (): void => {
    setImmediate(this.judge, performance.now());
  };

  /**
   * One poll phase after the timer fired at `firedAt`: drops the answered batches, gives the due
   * ones back the timer's own lateness (time our process could not run, not Redis'), expires the
   * calls of those still unanswered past that, and arms the timer for the next due batch.
   */
  private readonly judge = (firedAt: number): void => {
    this.timer = null;
    const now = performance.now();
    const lateness = firedAt - this.timerAt;
    const waiting = this.waiting;
    let kept = 0;
    let next = Number.POSITIVE_INFINITY;
    for (let i = 0; i < waiting.length; i++) {
      const batch = waiting[i] as Batch;
      if (batch.calls.every(answered)) continue;
      if (batch.due <= firedAt) {
        const late = Math.min(lateness, firedAt - batch.due);
        if (late > 1 && now < batch.hardLimit) {
          batch.due = now + Math.min(late, batch.hardLimit - now);
        } else {
          expire(batch.calls, this.timeoutMs);
          continue;
        }
      }
      waiting[kept++] = batch;
      if (batch.due < next) next = batch.due;
    }
    waiting.length = kept;
    if (kept > 0) this.arm(Math.max(next, now + this.granularityMs), now);
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
