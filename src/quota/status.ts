// A partner's quota status for operators (admin endpoint, `portcullis quota status`): every limit
// of the partner, with what is used and left now. Read-only: nothing is charged.
import type { Catalog, QuotaLimitPolicy } from '../policy/catalog.js';
import { periodText } from './describe.js';
import { humanDuration, resetSeconds } from './reset.js';
import type { CalendarWindow, LimitScope, LimitSpec, QuotaStore } from './types.js';

export interface LimitStatus {
  readonly name: string;
  readonly algorithm: string;
  readonly limit: number;
  readonly period: string;
  /** gcra: the bucket size (what `remaining` is out of); null for the other algorithms. */
  readonly burst: number | null;
  readonly used: number;
  readonly remaining: number;
  /** The same figure as RateLimit `t` (and Retry-After while exhausted): reset.ts. */
  readonly reset_seconds: number;
  /** reset_seconds for people: "1m 12s", "25d 9h". */
  readonly reset: string;
  readonly shadow: boolean;
  readonly routes: readonly string[];
  readonly methods: readonly string[];
}

export interface QuotaStatus {
  readonly partner: string;
  readonly time_zone: string;
  readonly limits: readonly LimitStatus[];
}

export async function quotaStatus(
  catalog: Catalog,
  partnerId: string,
  store: Pick<QuotaStore, 'peek'>,
  nowMs: number,
  windowAt: (unit: NonNullable<QuotaLimitPolicy['window']>, zone: string, nowMs: number) => CalendarWindow,
): Promise<QuotaStatus | null> {
  const partner = catalog.partners.get(partnerId);
  if (!partner) return null;
  // The partner's own limits, then the per-partner limits of routes (counted per partner too).
  const entries: { policy: QuotaLimitPolicy; scope?: LimitScope; routes: readonly string[] }[] = [
    ...partner.limits.map((policy) => ({ policy, routes: [...policy.routes] })),
    ...catalog.routes.flatMap((route) =>
      route.quota.limits
        .filter((l) => l.per === 'partner')
        .map((policy) => ({
          policy,
          scope: { owner: partner.id, key: `r:${route.name}:${policy.name}` },
          routes: [route.name],
        })),
    ),
  ];
  const specs: LimitSpec[] = entries.map(({ policy: l, scope, routes }) => {
    const window = l.window ? windowAt(l.window, partner.timeZone, nowMs) : undefined;
    return {
      // Two routes may each have a limit of one name: unique ids within this one peek.
      id: scope ? `${routes[0]}.${l.name}` : l.name,
      algorithm: l.algorithm,
      limit: l.limit,
      periodMs: window ? window.endMs - window.startMs : l.periodMs,
      burst: l.burst,
      ...(window ? { window } : {}),
      cost: 1,
      shadow: l.shadow,
      ...(scope ? { scope } : {}),
    };
  });
  const states = specs.length > 0 ? await store.peek(partner.id, specs, nowMs) : [];
  return {
    partner: partner.id,
    time_zone: partner.timeZone,
    limits: entries.map(({ policy: l, routes }, i) => {
      const state = states[i];
      const remaining = state?.remaining ?? l.limit;
      return {
        name: l.name,
        algorithm: l.algorithm,
        limit: l.limit,
        period: periodText(l),
        burst: l.algorithm === 'gcra' ? l.burst : null,
        // A gcra `remaining` counts the bucket (burst), not the rate.
        used: Math.max(0, (l.algorithm === 'gcra' ? l.burst : l.limit) - remaining),
        remaining,
        reset_seconds: state ? resetSeconds(state) : 0,
        reset: humanDuration(state ? resetSeconds(state) : 0),
        shadow: l.shadow,
        routes: [...routes],
        methods: [...l.methods],
      };
    }),
  };
}
