// What the quota stage charges for one (route, partner, method), worked out once and reused: which
// limits apply, where each is counted, the charge's owner and idempotency scope, the declared
// behaviour on a store failure. None of it depends on the request beyond those three, so a Check
// only resolves what does: the calendar window, a body's cost, a per-source counter's address
// block. The limit specs themselves are reused too while their window and cost stay the same (a
// fixed window's spec for its whole window), and with them the spec array: the RateLimit-Policy
// header is built once per array (headers.ts).
//
// Memoised per catalog object (route and partner are replaced on reload, the WeakMaps let the old
// ones go), and per method only as far as methods matter: every method no limit names shares one plan.
import { sourceBlock } from '../net/source-block.js';
import type { Partner, QuotaLimitPolicy, RouteLimitPolicy, RoutePolicy } from '../policy/catalog.js';
import { idempotencyScope } from '../quota/refund.js';
import type { CalendarWindow, LimitScope, LimitSpec } from '../quota/types.js';
import type { Request } from '../request.js';

export type WindowAt = (
  unit: NonNullable<QuotaLimitPolicy['window']>,
  zone: string,
  nowMs: number,
) => CalendarWindow;

/** One applicable limit, with what is fixed about it. */
interface Planned {
  readonly policy: QuotaLimitPolicy;
  /** The zone of its calendar window. */
  readonly zone: string;
  /** Where it is counted when not the partner's own counter and not per source. */
  readonly scope: LimitScope | undefined;
  /** A per-source route limit: its counter depends on the caller's address. */
  readonly perSource: RouteLimitPolicy | undefined;
  readonly route: string;
  /** The spec last built for it (not for per-source limits), reused while window and cost match. */
  last: LimitSpec | undefined;
}

export class QuotaPlan {
  /** The applicable limits' policies: the partner's, then the route's. */
  readonly policies: readonly QuotaLimitPolicy[];
  /** The hash tag owner of the charge (its request-id key). */
  readonly owner: string;
  /** The partner's id for metrics, '' for an anonymous caller. */
  readonly label: string;
  /** The idempotency scope of the charge (route and the set of limits). */
  readonly scope: string;
  /** Ids of the partner's own enforced counters: the ones the over-limit cache may answer for. */
  readonly enforced: readonly string[];
  readonly onStoreError: 'fail_closed' | 'fail_open';
  private readonly limits: readonly Planned[];
  /** The specs last built; returned again while every one of them is reused. */
  private specs: readonly LimitSpec[] = [];

  constructor(route: RoutePolicy, partner: Partner | null, method: string) {
    const applicable = partner
      ? partner.limits.filter(
          (l) =>
            (l.routes.size === 0 || l.routes.has(route.name)) &&
            (l.methods.size === 0 || l.methods.has(method)),
        )
      : [];
    const routeLimits = route.quota.limits.filter(
      (l) =>
        (l.methods.size === 0 || l.methods.has(method)) &&
        // per partner: identified callers only; per source: anonymous callers only (an identified
        // one is counted per partner); per route: everyone.
        (l.per === 'route' || (l.per === 'partner') === (partner !== null)),
    );
    const zone = partner?.timeZone ?? 'UTC';
    const base = { route: route.name, last: undefined };
    this.limits = [
      ...applicable.map((policy) => ({ ...base, policy, zone, scope: undefined, perSource: undefined })),
      ...routeLimits.map((policy) => ({
        ...base,
        policy,
        zone: policy.per === 'partner' ? zone : 'UTC',
        scope: staticScope(policy, route.name, partner?.id),
        perSource: policy.per === 'source' ? policy : undefined,
      })),
    ];
    this.policies = [...applicable, ...routeLimits];
    // The charge's owner (hash tag of its request-id key): the one owner of all its counters when
    // there is one (the partner, or the route for a caller counted only by the route's limits), so
    // that every key of the charge shares one Redis Cluster slot; else the partner.
    const owners = new Set(
      this.limits.map((l) => (l.perSource ? `r:${route.name}` : l.scope?.owner) ?? partner?.id ?? ''),
    );
    const only = owners.size === 1 ? [...owners][0] : undefined;
    this.owner = only || partner?.id || `r:${route.name}`;
    this.label = partner?.id ?? '';
    this.scope = idempotencyScope(
      route.name,
      this.limits.map((l) => l.policy.name),
    );
    this.enforced = this.limits
      .filter((l) => !l.policy.shadow && !l.scope && !l.perSource)
      .map((l) => l.policy.name);
    this.onStoreError = this.policies.some(
      (l) => (l.onStoreError ?? route.quota.onStoreError) === 'fail_closed',
    )
      ? 'fail_closed'
      : 'fail_open';
  }

  /** The limits resolved for this request at `now`, in the order of `policies`. */
  specsFor(request: Request, now: number, windowAt: WindowAt): readonly LimitSpec[] {
    const last = this.specs;
    let fresh: LimitSpec[] | null = null;
    for (let i = 0; i < this.limits.length; i++) {
      const spec = specOf(this.limits[i] as Planned, request, now, windowAt);
      if (fresh === null && spec !== last[i]) fresh = last.slice(0, i);
      fresh?.push(spec);
    }
    if (fresh === null) return last;
    this.specs = fresh;
    return fresh;
  }
}

const ANONYMOUS = {};

/** Plans per route, partner and method (see the module header). */
export class Plans {
  private readonly byRoute = new WeakMap<RoutePolicy, WeakMap<object, PartnerPlans>>();

  /** The plan of this Check; null when no limit applies. */
  of(route: RoutePolicy, partner: Partner | null, method: string): QuotaPlan | null {
    let byPartner = this.byRoute.get(route);
    if (byPartner === undefined) {
      byPartner = new WeakMap();
      this.byRoute.set(route, byPartner);
    }
    const who = partner ?? ANONYMOUS;
    let plans = byPartner.get(who);
    if (plans === undefined) {
      plans = new PartnerPlans(route, partner);
      byPartner.set(who, plans);
    }
    return plans.of(method);
  }
}

class PartnerPlans {
  /** Every method some applicable limit names; any other method gets the plan of '' (none named). */
  private readonly named: ReadonlySet<string>;
  private readonly byMethod = new Map<string, QuotaPlan | null>();

  constructor(
    private readonly route: RoutePolicy,
    private readonly partner: Partner | null,
  ) {
    const named = new Set<string>();
    for (const l of [...(partner?.limits ?? []), ...route.quota.limits])
      for (const m of l.methods) named.add(m);
    this.named = named;
  }

  of(method: string): QuotaPlan | null {
    // Methods are only compared for membership: one no limit names behaves like any other such one.
    const key = this.named.has(method) ? method : '';
    let plan = this.byMethod.get(key);
    if (plan === undefined) {
      const built = new QuotaPlan(this.route, this.partner, key === '' ? unnamed(this.named) : key);
      plan = built.policies.length === 0 ? null : built;
      this.byMethod.set(key, plan);
    }
    return plan;
  }
}

/** A method none of `named` is (so that a limit restricted to methods does not apply). */
function unnamed(named: ReadonlySet<string>): string {
  let method = '';
  while (named.has(method)) method += '_';
  return method;
}

/**
 * Where a route's limit is counted (keys in redis-store.ts):
 *   per partner  {q:<partner>}:r:<route>:<limit>           with the partner's own counters
 *   per route    {q:r:<route>}:all:<limit>                 one counter for every caller
 *   per source   {q:r:<route>}:src:<address/prefix>:<limit> one per client address block (sourceScope)
 */
function staticScope(
  l: RouteLimitPolicy,
  route: string,
  partner: string | undefined,
): LimitScope | undefined {
  if (l.per === 'partner') return { owner: partner ?? '', key: `r:${route}:${l.name}` };
  if (l.per === 'route') return { owner: `r:${route}`, key: `all:${l.name}` };
  return undefined;
}

function sourceScope(l: RouteLimitPolicy, route: string, address: string): LimitScope {
  return { owner: `r:${route}`, key: `src:${sourceBlock(address, l.sourcePrefix)}:${l.name}` };
}

/** The limit's spec for this request: the last one built when window and cost are unchanged. */
function specOf(planned: Planned, request: Request, now: number, windowAt: WindowAt): LimitSpec {
  const l = planned.policy;
  const cost = l.cost.kind === 'constant' ? l.cost.units : bodyCost(l, request);
  const window = l.window ? windowAt(l.window, planned.zone, now) : undefined;
  const last = planned.last;
  if (last !== undefined && last.cost === cost && last.window === window) return last;
  const scope = planned.perSource
    ? sourceScope(planned.perSource, planned.route, request.source.address)
    : planned.scope;
  // Frozen: the Redis store reuses its key and arguments while it is (redis-store.ts wireOf).
  const spec: LimitSpec = Object.freeze({
    id: l.name,
    algorithm: l.algorithm,
    limit: l.limit,
    periodMs: window ? window.endMs - window.startMs : l.periodMs,
    burst: l.burst,
    ...(window ? { window } : {}),
    cost,
    shadow: l.shadow,
    ...(scope ? { scope } : {}),
  });
  if (!planned.perSource) planned.last = spec;
  return spec;
}

/** One unit per started `bytesPerUnit` of body, at least 1, clamped just past the limit's capacity. */
function bodyCost(l: QuotaLimitPolicy, request: Request): number {
  if (l.cost.kind !== 'body') return 1;
  // A truncated body is charged for what it declared, not for the part Envoy forwarded.
  const declared = request.bodyTruncated ? Number(request.headers.get('content-length')) || 0 : 0;
  const bytes = Math.max(request.body.length, declared);
  // Past the capacity a cost never fits whatever its size: clamping keeps it a 429 of this partner
  // (within the stores' exact arithmetic), never a store failure.
  const capacity = l.algorithm === 'gcra' ? l.burst : l.limit;
  return Math.min(Math.max(1, Math.ceil(bytes / l.cost.bytesPerUnit)), capacity + 1);
}
