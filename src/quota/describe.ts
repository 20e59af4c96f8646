// How a limit's period reads for people: "minute", "month", "10 seconds".
import type { QuotaLimitPolicy } from '../policy/catalog.js';

const UNITS: readonly [number, string][] = [
  [86_400_000, 'day'],
  [3_600_000, 'hour'],
  [60_000, 'minute'],
  [1000, 'second'],
  [1, 'millisecond'],
];

export function periodText(policy: Pick<QuotaLimitPolicy, 'window' | 'periodMs'>): string {
  if (policy.window) return policy.window;
  for (const [ms, word] of UNITS) {
    if (policy.periodMs % ms === 0) {
      const n = policy.periodMs / ms;
      return n === 1 ? word : `${n} ${word}s`;
    }
  }
  return `${policy.periodMs} ms`;
}
