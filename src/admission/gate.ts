// Admission control: at most `limit` Checks work at once in this process; the others wait in a
// bounded queue that is fair across callers, or are shed at once with a declared answer.
//
// - A Check enters with its caller key (src/admission/caller.ts) and the time by which it must
//   start working to still be answered before its deadline. Below the limit with nobody waiting it
//   is admitted synchronously (no promise, no timer): the common case costs two map operations.
// - Otherwise it waits. When a slot frees, the next Check admitted is the head of the caller that
//   holds the FEWEST slots (ties: the one waiting longest). So while others wait, a caller holding
//   more than its share gets no new slot until the others have caught up: a partner sending 10×
//   the others' rate ends up with about one share of the slots, not ten.
// - The queue holds at most `maxQueue` Checks. When it is full, the newest waiter of the caller
//   with the most waiters makes room (if that is the arriving caller itself, the arrival is shed).
// - A waiter whose start-by time passes is shed: it could no longer be answered in time, and
//   letting it run would only charge quotas for an answer nobody reads.
// - When an admitted Check finishes, its service time (admission to release) feeds the adaptive
//   limit (src/admission/limit.ts).
//
// Pure but for time: the clock is passed in; expiry is driven by `expire(now)`, which the owner
// calls from one timer (see `startExpiry`).
import type { GradientLimit, LimitSnapshot } from './limit.js';

export interface Clock {
  now(): number;
}

/** A slot held by an admitted Check: give it back with `leave()`. */
export interface Ticket {
  readonly key: string;
  readonly startedAt: number;
  readonly inFlightAtStart: number;
}

interface Waiter {
  readonly key: string;
  readonly startBy: number;
  readonly seq: number;
  readonly settle: (ticket: Ticket | null) => void;
}

interface Caller {
  inFlight: number;
  readonly waiting: Waiter[];
}

export interface GateSnapshot extends LimitSnapshot {
  readonly inFlight: number;
  readonly queued: number;
}

export class AdmissionGate {
  private inFlight = 0;
  private queued = 0;
  private seq = 0;
  private readonly callers = new Map<string, Caller>();

  constructor(
    private readonly limit: GradientLimit,
    private readonly clock: Clock,
    private maxQueue: number,
    /** Called when the queue stops being empty (the owner starts its expiry timer). */
    private readonly onWait: () => void = () => {},
  ) {}

  setMaxQueue(maxQueue: number): void {
    this.maxQueue = maxQueue;
  }

  /**
   * A Ticket when admitted now; null when shed now; a promise when queued, settled with a Ticket
   * once admitted or null once shed. `startBy`: epoch ms after which waiting is pointless.
   */
  enter(key: string, startBy: number): Ticket | null | Promise<Ticket | null> {
    if (this.queued === 0 && this.inFlight < this.limit.limit) return this.admit(key, this.caller(key));
    const now = this.clock.now();
    if (startBy <= now || this.maxQueue <= 0) return null;
    if (this.queued >= this.maxQueue && !this.makeRoom(key)) return null;
    return new Promise<Ticket | null>((settle) => {
      this.caller(key).waiting.push({ key, startBy, seq: this.seq++, settle });
      if (this.queued++ === 0) this.onWait();
    });
  }

  /** The Check holding `ticket` finished (`measured`: its latency counts towards the limit). */
  leave(ticket: Ticket, measured = true): void {
    const now = this.clock.now();
    this.inFlight--;
    const caller = this.callers.get(ticket.key);
    if (caller) {
      caller.inFlight--;
      this.forget(ticket.key, caller);
    }
    if (measured) this.limit.sample(now, now - ticket.startedAt, ticket.inFlightAtStart);
    this.grant(now);
  }

  /** Sheds every waiter whose start-by time has passed, then admits what the limit allows. */
  expire(now: number): void {
    if (this.queued === 0) return;
    for (const [key, caller] of this.callers) {
      const keep = caller.waiting.filter((w) => w.startBy > now);
      if (keep.length === caller.waiting.length) continue;
      for (const w of caller.waiting) if (w.startBy <= now) w.settle(null);
      this.queued -= caller.waiting.length - keep.length;
      caller.waiting.splice(0, caller.waiting.length, ...keep);
      this.forget(key, caller);
    }
    this.grant(now);
  }

  /** What an admitted Check is expected to take (ms): waiting is pointless with less time left. */
  get serviceMs(): number {
    return this.limit.serviceMs;
  }

  /** Checks waiting for a slot. */
  get waiting(): number {
    return this.queued;
  }

  snapshot(): GateSnapshot {
    return { ...this.limit.snapshot(), inFlight: this.inFlight, queued: this.queued };
  }

  private caller(key: string): Caller {
    let caller = this.callers.get(key);
    if (!caller) {
      caller = { inFlight: 0, waiting: [] };
      this.callers.set(key, caller);
    }
    return caller;
  }

  private forget(key: string, caller: Caller): void {
    if (caller.inFlight === 0 && caller.waiting.length === 0) this.callers.delete(key);
  }

  private admit(key: string, caller: Caller): Ticket {
    const ticket = { key, startedAt: this.clock.now(), inFlightAtStart: this.inFlight + 1 };
    this.inFlight++;
    caller.inFlight++;
    return ticket;
  }

  /** Admits waiters while slots are free: the caller holding the fewest slots first. */
  private grant(now: number): void {
    while (this.queued > 0 && this.inFlight < this.limit.limit) {
      let best: Caller | undefined;
      for (const caller of this.callers.values()) {
        const head = caller.waiting[0];
        if (!head) continue;
        if (
          !best ||
          caller.inFlight < best.inFlight ||
          (caller.inFlight === best.inFlight && head.seq < (best.waiting[0] as Waiter).seq)
        ) {
          best = caller;
        }
      }
      if (!best) return;
      const waiter = best.waiting.shift() as Waiter;
      this.queued--;
      if (waiter.startBy <= now) {
        waiter.settle(null);
        this.forget(waiter.key, best);
        continue;
      }
      waiter.settle(this.admit(waiter.key, best));
    }
  }

  /** The queue is full: the caller with the most waiters gives up its newest, unless that is `key`. */
  private makeRoom(key: string): boolean {
    let victimKey: string | undefined;
    let victim: Caller | undefined;
    for (const [k, caller] of this.callers) {
      if (!victim || caller.waiting.length > victim.waiting.length) {
        victim = caller;
        victimKey = k;
      }
    }
    const mine = this.callers.get(key)?.waiting.length ?? 0;
    if (!victim || victimKey === undefined || victimKey === key || victim.waiting.length <= mine + 1) {
      return false;
    }
    const evicted = victim.waiting.pop() as Waiter;
    this.queued--;
    evicted.settle(null);
    this.forget(victimKey, victim);
    return true;
  }
}

/**
 * Runs `gate.expire` every `everyMs` while Checks wait, and not at all while none do: pass
 * `expiry.wake` as the gate's `onWait`.
 */
export class ExpiryTimer {
  private timer: NodeJS.Timeout | undefined;
  private gate: AdmissionGate | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly everyMs = 5,
  ) {}

  attach(gate: AdmissionGate): void {
    this.gate = gate;
  }

  readonly wake = (): void => {
    if (this.timer) return;
    this.timer = setInterval(() => {
      const gate = this.gate;
      if (!gate) return;
      gate.expire(this.clock.now());
      if (gate.waiting === 0) this.stop();
    }, this.everyMs);
    this.timer.unref();
  };

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
