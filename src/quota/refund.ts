// Refunds: giving back what one allowed charge took, when its Check was answered otherwise for a
// reason that is not the partner's (scan unavailable, a dependency error, the deadline). Pure: the
// memory store applies refundState directly; refund-script.ts is its Lua transcription for Redis.
//
// A refund subtracts the charge's cost from the state the limit has NOW (other charges may have
// landed since): charges add, so taking one back is exact whatever came in between.
//   gcra            TAT − cost·T (in ticks of 1/limit ms: − cost·periodMs, relative to the charge's time)
//   sliding_window  the sub-window the charge fell in: `cur` while it is current, `prev` once the
//                   next one started; older than that, it no longer counts: nothing to give back
//   fixed_window    the charge's own calendar window: count − cost
// Counters never go below 0. Limits the charge did not charge (a shadow limit whose cost did not
// fit: `exceeded` in its LimitState) are left alone.
import { type CounterState, idiv } from './algorithms.js';
import type { ChargeRequest, ChargeResult, LimitSpec } from './types.js';

/** The state of `spec` once `cost` charged at `chargedAtMs` is given back; undefined = no state. */
export function refundState(
  spec: LimitSpec,
  state: CounterState | undefined,
  chargedAtMs: number,
  cost: number,
): CounterState | undefined {
  if (!state || cost <= 0 || state.algorithm !== spec.algorithm) return state;
  switch (state.algorithm) {
    case 'gcra': {
      // Relative to the charge's time, as the charge computes, so every product stays exact.
      const ticks = (state.tatMs - chargedAtMs) * spec.limit + state.tatRem - cost * spec.periodMs;
      const whole = idiv(ticks, spec.limit);
      return { algorithm: 'gcra', tatMs: chargedAtMs + whole, tatRem: ticks - whole * spec.limit };
    }
    case 'sliding_window': {
      const index = idiv(chargedAtMs, spec.periodMs);
      if (state.index === index) return { ...state, cur: Math.max(0, state.cur - cost) };
      if (state.index === index + 1) return { ...state, prev: Math.max(0, state.prev - cost) };
      return state;
    }
    case 'fixed_window':
      if (state.windowId !== spec.window?.id) return state;
      return { ...state, count: Math.max(0, state.count - cost) };
  }
}

/**
 * The cost to give back per limit of `request`, in its order: the limit's cost where `result`
 * charged it, 0 where it did not. All zeros unless `result` is an allowed, non-duplicate charge.
 */
export function refundCosts(request: ChargeRequest, result: ChargeResult): number[] {
  const charged = result.allowed && !result.duplicate;
  return request.limits.map((spec, i) => (charged && result.limits[i]?.exceeded === false ? spec.cost : 0));
}

/** The idempotency scope of a charge: the route and the set of limits charged (sorted). */
export function idempotencyScope(route: string, limitIds: readonly string[]): string {
  return `${route}|${[...limitIds].sort().join(',')}`;
}
