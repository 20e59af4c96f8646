// One truth about when a limit frees up. The RateLimit header's `t`, Retry-After, the problem
// body's `retry_after` and `quota status` all come from here, so that for one limit at one instant
// they agree to the second. Pure: the caller passes the state computed at its own `now`.
import type { LimitSpec, LimitState } from './types.js';

/** Whole seconds for a wait in ms, rounded up (never too early), never negative. */
export function secondsOf(ms: number): number {
  return Math.max(0, Math.ceil(ms / 1000));
}

/**
 * ms until this limit is worth trying again: while it refuses (exceeded), until the cost fits
 * (retryAfterMs); otherwise until it is fully available again (resetMs). A cost that can never fit
 * (retryAfterMs < 0) has no retry time: the full reset is reported.
 */
export function resetMs(state: LimitState): number {
  return state.exceeded && state.retryAfterMs >= 0 ? state.retryAfterMs : state.resetMs;
}

/** resetMs() in whole seconds: the `t` of RateLimit, and the reset of `quota status`. */
export function resetSeconds(state: LimitState): number {
  return secondsOf(resetMs(state));
}

/**
 * Retry-After of a refusal: the seconds until every refusing limit admits the cost, i.e. the
 * largest `t` among them. null when a refusing limit can never admit it (retrying cannot help).
 */
export function retryAfterOf(states: readonly LimitState[]): number | null {
  let seconds = 0;
  for (const s of states) {
    if (!s.exceeded || s.shadow) continue;
    if (s.retryAfterMs < 0) return null;
    seconds = Math.max(seconds, resetSeconds(s));
  }
  return seconds;
}

/** Share of a limit's capacity in use, in 0..1: gcra counts out of its burst, the others out of limit. */
export function usageRatio(
  spec: Pick<LimitSpec, 'algorithm' | 'burst' | 'limit'>,
  state: LimitState,
): number {
  const capacity = spec.algorithm === 'gcra' ? spec.burst : spec.limit;
  if (!(capacity > 0)) return 0;
  // Clamped: a fail_open fallback enforces a divided limit, and a limit edited between charges
  // may report more left than it now holds.
  return Math.min(1, Math.max(0, 1 - state.remaining / capacity));
}

const UNITS: readonly [number, string][] = [
  [86_400, 'd'],
  [3_600, 'h'],
  [60, 'm'],
  [1, 's'],
];

/**
 * A duration for people: its largest unit and the next one when not zero: "0s", "45s", "1m 12s",
 * "2h", "25d 9h". Exact seconds stay in the JSON (`reset_seconds`).
 */
export function humanDuration(totalSeconds: number): string {
  const rest = Math.max(0, Math.ceil(totalSeconds));
  for (const [i, [size, unit]] of UNITS.entries()) {
    if (rest < size) continue;
    const text = `${Math.floor(rest / size)}${unit}`;
    const next = UNITS[i + 1];
    if (!next) return text;
    const more = Math.floor((rest % size) / next[0]);
    return more > 0 ? `${text} ${more}${next[1]}` : text;
  }
  return '0s';
}
