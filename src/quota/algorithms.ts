// The quota algorithms, pure: (spec, state, nowMs) → (state', LimitState). No clock, no I/O. The memory
// store runs them directly; the Redis store runs a Lua transcription of them (charge-script.ts) that
// must give the SAME results, which test/integration/quota-redis.test.ts checks on random traffic.
//
// Arithmetic is integer-exact on purpose. Lua (Redis) and JavaScript both compute with IEEE doubles, so
// the same operations in the same order give bit-identical results; but a fractional state would have
// to be serialised through a string in Redis, and float comparisons at the edge of a limit are a trap
// (1 / 49 · 49 is 0.9999999999999999). So every quantity below is an integer below 2^53 (validateLimit
// enforces the bounds), and divisions go through idiv/ceilDiv, which correct the rounding of a / b.
//
// gcra (generic cell rate algorithm, a token bucket without a refill timer)
//   Emission interval T = periodMs / limit; the bucket holds `burst` units, i.e. a tolerance of burst·T.
//   State: the theoretical arrival time TAT. A cost n is admitted iff max(TAT, now) + n·T − now ≤ burst·T,
//   and then TAT' = max(TAT, now) + n·T. To stay exact, time is counted in ticks of 1/limit ms (so
//   T = periodMs ticks) and TAT is kept as whole ms plus a remainder in ticks: TAT = tatMs + tatRem/limit.
//   remaining = floor((burst·T − (TAT' − now)) / T), the units that still fit now (≤ burst, not limit);
//   resetMs   = ceil(TAT' − now): when the bucket is full again;
//   retryAfter = ceil(max(TAT, now) + n·T − now − burst·T): when the cost fits (with no other traffic).
//
// sliding_window (two-counter approximation, as in Cloudflare's and nginx's limiters)
//   Fixed sub-windows of length P = periodMs, index i = floor(now / P). State: the index of the current
//   sub-window and two counters, prev (sub-window i−1) and cur (sub-window i). With e = now − i·P:
//       estimate = prev·(1 − e/P) + cur        (the previous window's traffic assumed uniform)
//   A cost n is admitted iff estimate + n ≤ limit (computed multiplied by P, in integers).
//   ERROR BOUND. The true count over the trailing interval (now − P, now] is cur + the part of prev that
//   fell after now − P, anything from 0 to prev. So the estimate is off by at most prev·max(e/P, 1 − e/P):
//   - over-admission (worst case: all of the previous window's traffic at its very end): in ANY interval
//     of length P at most limit + floor(prev·e/P) ≤ 2·limit − 1 units are admitted, i.e. the excess over
//     `limit` is at most prev·e/P < limit, and falls to 0 as the previous window's traffic spreads out;
//   - under-admission (worst case: all of it at its very start): a request is refused while the true
//     count is as low as estimate − prev·(1 − e/P).
//   The bound is tight (the unit test reaches it). Use gcra or a log when that matters.
//   remaining = floor(limit − estimate') (after the charge); resetMs = until the estimate reaches 0 (end
//   of the next sub-window if cur > 0, else end of this one); retryAfter is exact FOR THE ESTIMATE: the
//   first ms at which the estimate (with no other traffic) admits the cost.
//
// fixed_window (calendar windows, calendar.ts)
//   State: a counter per window id. A cost n is admitted iff count + n ≤ limit. remaining = limit −
//   count'; resetMs = window end − now; retryAfter = window end − now (the cost fits in a fresh window).
//
// Costs that can NEVER fit (n > burst for gcra, n > limit otherwise) report retryAfterMs = RETRY_NEVER
// (−1). The quota stage must not send `Retry-After` then: retrying cannot help, the request itself is
// too expensive for the partner's plan, and the denial should say so.
//
// Stacked limits (chargeAll): all or nothing. If every non-shadow limit admits its cost, every limit
// that admits is charged; otherwise nothing is charged and the refusing limits are marked. A shadow limit
// never refuses, and is charged only when its cost fits (so its counter behaves as an enforced one would,
// and it tells what enforcing it would do).
import { createHash } from 'node:crypto';
import type { LimitSpec, LimitState } from './types.js';

/** retryAfterMs of a cost that can never fit this limit (cost > burst, or cost > limit). */
export const RETRY_NEVER = -1;

/** gcra: TAT = tatMs + tatRem / limit (ms since the epoch), 0 ≤ tatRem < limit. */
export interface GcraState {
  readonly algorithm: 'gcra';
  readonly tatMs: number;
  readonly tatRem: number;
}

/** sliding_window: `index` = floor(time / periodMs) of the current sub-window. */
export interface SlidingState {
  readonly algorithm: 'sliding_window';
  readonly index: number;
  readonly prev: number;
  readonly cur: number;
}

/** fixed_window: the units charged in the calendar window `windowId`. */
export interface FixedState {
  readonly algorithm: 'fixed_window';
  readonly windowId: string;
  readonly count: number;
}

/** A limit's stored state; `undefined` = nothing stored (a fresh limit). */
export type CounterState = GcraState | SlidingState | FixedState;

/** One limit evaluated at one instant, for one cost. */
export interface Evaluation {
  /** The cost fits now. */
  readonly fits: boolean;
  /** The state after charging the cost (meaningful when `fits`). */
  readonly next: CounterState;
  /** How long `next` matters: after this many ms it is equivalent to no state at all. ≥ 1. */
  readonly nextTtlMs: number;
  /** Units that fit now, and ms until fully available, on the unchanged state. */
  readonly remainingBefore: number;
  readonly resetBeforeMs: number;
  /** The same after charging the cost (meaningful when `fits`). */
  readonly remainingAfter: number;
  readonly resetAfterMs: number;
  /** When the cost does not fit: ms until it would (with no other traffic), or RETRY_NEVER. Else 0. */
  readonly retryAfterMs: number;
}

/** The result of charging stacked limits at once. */
export interface StackedCharge {
  /** Every non-shadow limit admitted its cost: the charged limits' states are in `states`. */
  readonly allowed: boolean;
  /** The new state of each limit (the input state when not charged), in the order of the specs. */
  readonly states: readonly (CounterState | undefined)[];
  /** Which limits were charged (their state must be stored). */
  readonly charged: readonly boolean[];
  /** For each charged limit, how long its new state must be kept (ms); 0 when not charged. */
  readonly ttlMs: readonly number[];
  readonly limits: readonly LimitState[];
}

// ---------------------------------------------------------------------------------------------------
// Validation: integer inputs, and bounds that keep every intermediate value exact (< 2^53).

/** Products such as limit·periodMs must stay below this (2^51: headroom for sums of a few of them). */
export const MAX_EXACT = 2 ** 51;

/** Limit ids become part of Redis keys: keep them plain. `rid` is reserved (idempotency keys). */
const LIMIT_ID = /^[A-Za-z0-9_.-]{1,128}$/;

/** How long a charged request id counts as charged, by default (ms of request time). */
export const DEFAULT_IDEMPOTENCY_MS = 600_000;

/** Request ids longer than this are replaced by their SHA-256 (hex) in keys. */
export const MAX_REQUEST_ID_LENGTH = 128;

function positiveInt(value: number): boolean {
  return Number.isSafeInteger(value) && value >= 1;
}

/** Throws a RangeError when the spec cannot be evaluated exactly. Call it when loading a policy. */
export function validateLimit(spec: LimitSpec): void {
  const where = `limit ${JSON.stringify(spec.id)}`;
  if (typeof spec.id !== 'string' || !LIMIT_ID.test(spec.id) || spec.id === 'rid') {
    throw new RangeError(`${where}: the id must match ${LIMIT_ID} and not be "rid"`);
  }
  if (!positiveInt(spec.limit)) throw new RangeError(`${where}: limit must be an integer ≥ 1`);
  if (!positiveInt(spec.cost)) throw new RangeError(`${where}: cost must be an integer ≥ 1`);
  if (typeof spec.shadow !== 'boolean') throw new RangeError(`${where}: shadow must be a boolean`);
  switch (spec.algorithm) {
    case 'gcra':
      if (!positiveInt(spec.burst)) throw new RangeError(`${where}: burst must be an integer ≥ 1`);
      if (!positiveInt(spec.periodMs)) throw new RangeError(`${where}: periodMs must be an integer ≥ 1`);
      if (spec.burst * spec.periodMs > MAX_EXACT || spec.cost * spec.periodMs > MAX_EXACT) {
        throw new RangeError(`${where}: burst·periodMs and cost·periodMs must be ≤ 2^51`);
      }
      return;
    case 'sliding_window':
      if (!positiveInt(spec.periodMs)) throw new RangeError(`${where}: periodMs must be an integer ≥ 1`);
      if (spec.limit * spec.periodMs > MAX_EXACT || spec.cost * spec.periodMs > MAX_EXACT) {
        throw new RangeError(`${where}: limit·periodMs and cost·periodMs must be ≤ 2^51`);
      }
      return;
    case 'fixed_window': {
      const w = spec.window;
      if (!w || typeof w.id !== 'string' || w.id === '' || !Number.isSafeInteger(w.endMs)) {
        throw new RangeError(`${where}: a fixed_window limit needs its calendar window`);
      }
      if (spec.limit > MAX_EXACT || spec.cost > MAX_EXACT) throw new RangeError(`${where}: too large`);
      return;
    }
    default:
      throw new RangeError(`${where}: unknown algorithm ${JSON.stringify(spec.algorithm)}`);
  }
}

/** Validates a whole charge: partner usable in a hash tag, time, every limit, ids unique. */
export function validateCharge(partner: string, limits: readonly LimitSpec[], nowMs: number): void {
  if (typeof partner !== 'string' || partner === '' || /[{}]/.test(partner)) {
    throw new RangeError(`partner ${JSON.stringify(partner)}: must be non-empty, without { or }`);
  }
  if (!Number.isSafeInteger(nowMs) || nowMs < 0) throw new RangeError(`nowMs must be an integer ≥ 0`);
  for (let i = 0; i < limits.length; i++) {
    const spec = limits[i] as LimitSpec;
    if (!valid.has(spec)) {
      validateLimit(spec);
      if (Object.isFrozen(spec)) valid.add(spec);
    }
    // A handful of limits: comparing pairs is cheaper than a Set per charge.
    for (let j = 0; j < i; j++) {
      if ((limits[j] as LimitSpec).id === spec.id) {
        throw new RangeError(`limit ${JSON.stringify(spec.id)} appears twice`);
      }
    }
  }
}

// Frozen specs already validated: the quota stage reuses one per window (quota-plan.ts), so it is
// checked once, not per charge. Unfrozen ones could change and are checked every time.
const valid = new WeakSet<LimitSpec>();

/** The request id as stored: itself, or its SHA-256 when longer than MAX_REQUEST_ID_LENGTH. */
export function normalizeRequestId(requestId: string): string {
  if (requestId.length <= MAX_REQUEST_ID_LENGTH) return requestId;
  return `sha256:${createHash('sha256').update(requestId).digest('hex')}`;
}

// ---------------------------------------------------------------------------------------------------
// Exact integer division (the Lua script has the same two functions).

/** floor(a / b) for integers a and b > 0, exact even where a / b rounds to a neighbouring integer. */
export function idiv(a: number, b: number): number {
  let q = Math.floor(a / b);
  if (q * b > a) q -= 1;
  else if ((q + 1) * b <= a) q += 1;
  return q + 0; // never -0
}

/** ceil(a / b) for integers a and b > 0. */
export function ceilDiv(a: number, b: number): number {
  return 0 - idiv(-a, b);
}

// ---------------------------------------------------------------------------------------------------
// One limit

/** Evaluates one limit for a cost (default: the spec's) on a state, without changing anything. */
export function evaluate(
  spec: LimitSpec,
  state: CounterState | undefined,
  nowMs: number,
  cost: number = spec.cost,
): Evaluation {
  switch (spec.algorithm) {
    case 'gcra':
      return gcra(spec, state?.algorithm === 'gcra' ? state : undefined, nowMs, cost);
    case 'sliding_window':
      return sliding(spec, state?.algorithm === 'sliding_window' ? state : undefined, nowMs, cost);
    case 'fixed_window':
      return fixed(spec, state?.algorithm === 'fixed_window' ? state : undefined, nowMs, cost);
  }
}

function gcra(spec: LimitSpec, state: GcraState | undefined, now: number, cost: number): Evaluation {
  const L = spec.limit;
  const P = spec.periodMs; // the emission interval T, in ticks of 1/L ms
  const cap = spec.burst * P; // burst·T
  // diff = max(TAT, now) − now, in ticks
  let diff = 0;
  if (state) {
    diff = (state.tatMs - now) * L + Math.min(state.tatRem, L - 1);
    if (diff < 0) diff = 0;
  }
  const need = diff + cost * P; // max(TAT, now) + n·T − now
  const fits = need <= cap;
  const whole = idiv(need, L);
  return {
    fits,
    next: { algorithm: 'gcra', tatMs: now + whole, tatRem: need - whole * L },
    nextTtlMs: Math.max(1, ceilDiv(need, L)),
    remainingBefore: Math.max(0, idiv(cap - diff, P)),
    resetBeforeMs: ceilDiv(diff, L),
    remainingAfter: Math.max(0, idiv(cap - need, P)),
    resetAfterMs: ceilDiv(need, L),
    retryAfterMs: fits ? 0 : cost > spec.burst ? RETRY_NEVER : ceilDiv(need - cap, L),
  };
}

function sliding(spec: LimitSpec, state: SlidingState | undefined, now: number, cost: number): Evaluation {
  const L = spec.limit;
  const P = spec.periodMs;
  const nowIndex = idiv(now, P);
  let index = nowIndex;
  let prev = 0;
  let cur = 0;
  if (state) {
    if (state.index === nowIndex) {
      prev = state.prev;
      cur = state.cur;
    } else if (state.index === nowIndex - 1) {
      prev = state.cur;
    } else if (state.index > nowIndex) {
      // The clock went back (another replica's clock ran ahead): keep the newer sub-window.
      index = state.index;
      prev = state.prev;
      cur = state.cur;
    }
  }
  let e = now - index * P;
  if (e < 0) e = 0;
  const LP = L * P;
  const weighted = prev * (P - e) + cur * P; // estimate·P
  const need = weighted + cost * P;
  const fits = need <= LP;

  let retryAfterMs = 0;
  if (!fits) {
    if (cost > L) {
      retryAfterMs = RETRY_NEVER;
    } else if (L - cost - cur >= 0) {
      // Fits later in this sub-window (or at the start of the next) as prev's weight decays: the first
      // e' with prev·(P − e') ≤ (L − cost − cur)·P. Here prev > 0, else it would fit now.
      const eNeed = P - idiv((L - cost - cur) * P, prev);
      retryAfterMs = index * P + eNeed - now;
    } else {
      // This sub-window alone is too full: in the next one prev' = cur, so the first e' with
      // cur·(P − e') ≤ (L − cost)·P (here cur > L − cost ≥ 0).
      const eNeed = P - idiv((L - cost) * P, cur);
      retryAfterMs = (index + 1) * P + eNeed - now;
    }
  }
  const resetAfterMs = (index + 2) * P - now;
  return {
    fits,
    next: { algorithm: 'sliding_window', index, prev, cur: cur + cost },
    nextTtlMs: Math.max(1, resetAfterMs),
    remainingBefore: Math.max(0, idiv(LP - weighted, P)),
    resetBeforeMs: cur > 0 ? (index + 2) * P - now : prev > 0 ? (index + 1) * P - now : 0,
    remainingAfter: Math.max(0, idiv(LP - need, P)),
    resetAfterMs,
    retryAfterMs,
  };
}

function fixed(spec: LimitSpec, state: FixedState | undefined, now: number, cost: number): Evaluation {
  const window = spec.window;
  if (!window)
    throw new RangeError(`limit ${JSON.stringify(spec.id)}: a fixed_window limit needs its window`);
  const L = spec.limit;
  const count = state && state.windowId === window.id ? state.count : 0;
  const fits = count + cost <= L;
  const untilEnd = Math.max(0, window.endMs - now);
  return {
    fits,
    next: { algorithm: 'fixed_window', windowId: window.id, count: count + cost },
    nextTtlMs: Math.max(1, untilEnd),
    remainingBefore: Math.max(0, L - count),
    resetBeforeMs: untilEnd,
    remainingAfter: Math.max(0, L - count - cost),
    resetAfterMs: untilEnd,
    retryAfterMs: fits ? 0 : cost > L ? RETRY_NEVER : Math.max(1, untilEnd),
  };
}

// ---------------------------------------------------------------------------------------------------
// Views

function view(
  spec: LimitSpec,
  remaining: number,
  resetMs: number,
  exceeded: boolean,
  retryAfterMs: number,
): LimitState {
  return { id: spec.id, limit: spec.limit, remaining, resetMs, exceeded, retryAfterMs, shadow: spec.shadow };
}

// ---------------------------------------------------------------------------------------------------
// Stacked limits

/**
 * Charges every limit at once: all or nothing (see the module header). `states[i]` belongs to
 * `specs[i]`; missing entries are fresh limits. Pure: the caller stores `states[i]` where `charged[i]`.
 */
export function chargeAll(
  specs: readonly LimitSpec[],
  states: readonly (CounterState | undefined)[],
  nowMs: number,
): StackedCharge {
  const evaluations = specs.map((spec, i) => evaluate(spec, states[i], nowMs));
  const allowed = specs.every((spec, i) => spec.shadow || evaluations[i]?.fits === true);
  const newStates: (CounterState | undefined)[] = [];
  const charged: boolean[] = [];
  const ttlMs: number[] = [];
  const limits: LimitState[] = [];
  specs.forEach((spec, i) => {
    const ev = evaluations[i] as Evaluation;
    const charge = allowed && ev.fits;
    newStates.push(charge ? ev.next : states[i]);
    charged.push(charge);
    ttlMs.push(charge ? ev.nextTtlMs : 0);
    if (charge) limits.push(view(spec, ev.remainingAfter, ev.resetAfterMs, false, 0));
    else if (ev.fits) limits.push(view(spec, ev.remainingBefore, ev.resetBeforeMs, false, 0));
    else limits.push(view(spec, ev.remainingBefore, ev.resetBeforeMs, true, ev.retryAfterMs));
  });
  return { allowed, states: newStates, charged, ttlMs, limits };
}

/**
 * The limits' state without charging (QuotaStore.peek): remaining = units that fit now; exceeded = not
 * even one unit fits, with retryAfterMs until one does. The specs' costs are ignored.
 */
export function peekAll(
  specs: readonly LimitSpec[],
  states: readonly (CounterState | undefined)[],
  nowMs: number,
): LimitState[] {
  return specs.map((spec, i) => {
    const ev = evaluate(spec, states[i], nowMs, 1);
    return view(spec, ev.remainingBefore, ev.resetBeforeMs, !ev.fits, ev.fits ? 0 : ev.retryAfterMs);
  });
}

/**
 * The answer to a request id already charged: nothing charged again, nothing exceeded (the request was
 * admitted when first charged); remaining and reset as they are now.
 */
export function duplicateViews(
  specs: readonly LimitSpec[],
  states: readonly (CounterState | undefined)[],
  nowMs: number,
): LimitState[] {
  return specs.map((spec, i) => {
    const ev = evaluate(spec, states[i], nowMs);
    return view(spec, ev.remainingBefore, ev.resetBeforeMs, false, 0);
  });
}

/** A request id is a duplicate while `nowMs − chargedAtMs < ttlMs` (also when the clock went back). */
export function isDuplicate(chargedAtMs: number | undefined, nowMs: number, ttlMs: number): boolean {
  return chargedAtMs !== undefined && nowMs - chargedAtMs < ttlMs;
}
