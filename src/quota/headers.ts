// What partners see of their quotas: the IETF httpapi RateLimit headers (draft-ietf-httpapi-
// ratelimit-headers: `RateLimit-Policy: "name";q=600;w=60`, `RateLimit: "name";r=599;t=1`), the
// legacy X-RateLimit-* trio where a route asks for it, and Retry-After on 429.
// Shadow limits are never shown: they are an operator's experiment, not a contract.
import type { Header } from '../decision.js';
import { resetSeconds, retryAfterOf, secondsOf as seconds } from './reset.js';
import type { LimitSpec, LimitState } from './types.js';

export type HeaderMode = 'draft' | 'legacy' | 'both' | 'none';

export function quotaHeaders(
  specs: readonly LimitSpec[],
  states: readonly LimitState[],
  mode: HeaderMode,
): Header[] {
  if (mode === 'none') return [];
  // The shown limits (not shadow, with a state), and among them the one with the least left.
  let shown = 0;
  let complete = true;
  let tightest = -1;
  for (let i = 0; i < specs.length; i++) {
    const state = states[i];
    if ((specs[i] as LimitSpec).shadow) continue;
    if (state === undefined) {
      complete = false;
      continue;
    }
    shown++;
    if (tightest < 0 || state.remaining < (states[tightest] as LimitState).remaining) tightest = i;
  }
  if (shown === 0) return [];
  const headers: Header[] = [];
  if (mode === 'draft' || mode === 'both') {
    headers.push(complete ? policyHeader(specs) : policyOf(specs, states));
    let value = '';
    for (let i = 0; i < specs.length; i++) {
      const spec = specs[i] as LimitSpec;
      const s = states[i];
      if (spec.shadow || s === undefined) continue;
      const item = `"${spec.id}";r=${s.remaining};t=${resetSeconds(s)}`;
      value = value === '' ? item : `${value}, ${item}`;
    }
    headers.push({ name: 'ratelimit', value });
  }
  if (mode === 'legacy' || mode === 'both') {
    // One limit for the trio: the one with the least left.
    const spec = specs[tightest] as LimitSpec;
    const state = states[tightest] as LimitState;
    headers.push({
      name: 'x-ratelimit-limit',
      value: String(spec.algorithm === 'gcra' ? spec.burst : spec.limit),
    });
    headers.push({ name: 'x-ratelimit-remaining', value: String(state.remaining) });
    headers.push({ name: 'x-ratelimit-reset', value: String(resetSeconds(state)) });
  }
  return headers;
}

// RateLimit-Policy depends on the specs alone: built once per spec array (the quota stage reuses
// one array while no window or cost changes, quota-plan.ts). Headers are never mutated downstream.
const policies = new WeakMap<readonly LimitSpec[], Header>();

function policyHeader(specs: readonly LimitSpec[]): Header {
  let header = policies.get(specs);
  if (header === undefined) {
    header = policyOf(specs, specs);
    policies.set(specs, header);
  }
  return header;
}

/** RateLimit-Policy of the specs that are not shadow and have an entry in `present`. */
function policyOf(specs: readonly LimitSpec[], present: readonly unknown[]): Header {
  let value = '';
  for (let i = 0; i < specs.length; i++) {
    const spec = specs[i] as LimitSpec;
    if (spec.shadow || present[i] === undefined) continue;
    value = value === '' ? policyItem(spec) : `${value}, ${policyItem(spec)}`;
  }
  return Object.freeze({ name: 'ratelimit-policy', value });
}

/**
 * A limit as a RateLimit-Policy item. A GCRA bucket holds `burst` units and refills in
 * burst × period / limit: that is its quota and window, so `r` never exceeds `q`.
 */
function policyItem(spec: LimitSpec): string {
  if (spec.algorithm === 'gcra') {
    return `"${spec.id}";q=${spec.burst};w=${seconds((spec.burst * spec.periodMs) / spec.limit)}`;
  }
  return `"${spec.id}";q=${spec.limit};w=${seconds(spec.periodMs)}`;
}

/**
 * Seconds until every refusing limit admits this request's cost (rounded up: never too early): the
 * largest `t` of the refusing limits (reset.ts). null = a refusing limit never admits it.
 */
export function retryAfterSeconds(states: readonly LimitState[]): number | null {
  return retryAfterOf(states);
}
