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
  const shown: [LimitSpec, LimitState][] = [];
  specs.forEach((spec, i) => {
    const state = states[i];
    if (state && !spec.shadow) shown.push([spec, state]);
  });
  if (shown.length === 0) return [];
  const headers: Header[] = [];
  if (mode === 'draft' || mode === 'both') {
    headers.push({ name: 'ratelimit-policy', value: shown.map(([spec]) => policyItem(spec)).join(', ') });
    headers.push({
      name: 'ratelimit',
      value: shown.map(([spec, s]) => `"${spec.id}";r=${s.remaining};t=${resetSeconds(s)}`).join(', '),
    });
  }
  if (mode === 'legacy' || mode === 'both') {
    // One limit for the trio: the one with the least left.
    let tightest = shown[0] as [LimitSpec, LimitState];
    for (const entry of shown) if (entry[1].remaining < tightest[1].remaining) tightest = entry;
    const [spec] = tightest;
    headers.push({
      name: 'x-ratelimit-limit',
      value: String(spec.algorithm === 'gcra' ? spec.burst : spec.limit),
    });
    headers.push({ name: 'x-ratelimit-remaining', value: String(tightest[1].remaining) });
    headers.push({ name: 'x-ratelimit-reset', value: String(resetSeconds(tightest[1])) });
  }
  return headers;
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
