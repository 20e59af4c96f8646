// Stage 6, quota: charge every limit that applies to this partner, route and method in one store
// call — all or nothing. A refusal is a 429 naming the limit, with Retry-After; an allow carries
// the RateLimit headers. When the store fails, each limit's declared behaviour applies.
//
// A partner never pays for our refusal: an allow carries `settle`, which the orchestrator calls with
// the Check's final answer. A Check answered by a refusal of ours (a 5xx: scan unavailable, a
// dependency error, the deadline) gets its charge refunded; an allowed one has its request id
// remembered here (ChargedIds), so that its retries are allowed at once, even while the over-limit
// cache or an open circuit would refuse anything new. Request ids are idempotent per partner, route
// and set of limits charged (idempotencyScope): an id reused on another route is charged there.
import type { Clock } from '../clock.js';
import type { Header } from '../decision.js';
import { sourceBlock } from '../net/source-block.js';
import { plainStoreError } from '../plain-errors.js';
import type { Catalog, Partner, QuotaLimitPolicy, RouteLimitPolicy, RoutePolicy } from '../policy/catalog.js';
import type { ChargedIds } from '../quota/charged-ids.js';
import { periodText } from '../quota/describe.js';
import { quotaHeaders, retryAfterSeconds } from '../quota/headers.js';
import type { OverLimitCache } from '../quota/over-limit.js';
import { idempotencyScope } from '../quota/refund.js';
import type {
  CalendarWindow,
  ChargeResult,
  LimitScope,
  LimitSpec,
  LimitState,
  QuotaStore,
} from '../quota/types.js';
import type { Request } from '../request.js';
import { type MaybePromise, pass, refuse, type StageResult } from '../stage.js';
import type { Identity, QuotaOutcome } from './outcomes.js';

const NONE: QuotaOutcome = Object.freeze({ headers: [], note: '' });

export interface QuotaEvents {
  charged(partner: string, specs: readonly LimitSpec[], result: ChargeResult): void;
  storeFailed(behaviour: 'fail_closed' | 'fail_open', error: unknown): void;
  /** A refund of a Check we refused after charging it failed (the charge stays). */
  refundFailed?(error: unknown): void;
}

export interface QuotaDeps {
  /** The shared store (Redis, behind its circuit breaker), or the in-memory one without Redis. */
  readonly store: Pick<QuotaStore, 'charge' | 'refund'>;
  /** fail_open: the same limits in this process, divided by the replica count. null = none. */
  readonly fallback: Pick<QuotaStore, 'charge' | 'refund'> | null;
  /** Request ids this replica allowed (for free retries); absent = always ask the store. */
  readonly charged?: ChargedIds;
  readonly windowAt: (
    unit: NonNullable<QuotaLimitPolicy['window']>,
    zone: string,
    nowMs: number,
  ) => CalendarWindow;
  readonly overLimit: OverLimitCache;
  readonly clock: Clock;
  readonly events: QuotaEvents;
}

export function createQuotaStage(deps: QuotaDeps) {
  // Synchronous when no limit applies: a route without quotas costs no promise.
  return function quota(
    request: Request,
    _catalog: Catalog,
    route: RoutePolicy,
    identity: Identity,
  ): MaybePromise<StageResult<QuotaOutcome>> {
    const partner = identity.partner;
    const applicable = partner
      ? partner.limits.filter(
          (l) =>
            (l.routes.size === 0 || l.routes.has(route.name)) &&
            (l.methods.size === 0 || l.methods.has(request.method)),
        )
      : [];
    const routeLimits = route.quota.limits.filter(
      (l) =>
        (l.methods.size === 0 || l.methods.has(request.method)) &&
        // per partner: identified callers only; per source: anonymous callers only (an identified
        // one is counted per partner); per route: everyone.
        (l.per === 'route' || (l.per === 'partner') === (partner !== null)),
    );
    if (applicable.length === 0 && routeLimits.length === 0) return pass(NONE);
    return chargeLimits(request, route, partner, applicable, routeLimits);
  };

  /** Charges the applicable limits (at least one). */
  async function chargeLimits(
    request: Request,
    route: RoutePolicy,
    partner: Partner | null,
    applicable: QuotaLimitPolicy[],
    routeLimits: RouteLimitPolicy[],
  ): Promise<StageResult<QuotaOutcome>> {
    const now = deps.clock.now();
    const zone = partner?.timeZone ?? 'UTC';
    const specs = [
      ...applicable.map((l) => specFor(l, zone, request, now, deps)),
      ...routeLimits.map((l) => ({
        ...specFor(l, l.per === 'partner' ? zone : 'UTC', request, now, deps),
        scope: scopeOf(l, route.name, partner?.id, request.source.address),
      })),
    ];
    const policies: QuotaLimitPolicy[] = [...applicable, ...routeLimits];
    // The charge's owner (hash tag of its request-id key): the one owner of all its counters when
    // there is one (the partner, or the route for a caller counted only by the route's limits), so
    // that every key of the charge shares one Redis Cluster slot; else the partner.
    const owners = new Set(specs.map((s) => s.scope?.owner ?? partner?.id ?? ''));
    const only = owners.size === 1 ? [...owners][0] : undefined;
    const owner = only || partner?.id || `r:${route.name}`;
    const label = partner?.id ?? '';
    const scope = idempotencyScope(
      route.name,
      specs.map((s) => s.id),
    );
    // Anonymous callers get no idempotency: anyone can send any x-request-id, and a replayed id
    // would pass a per-source or per-route limit uncharged. (Their Envoy retries are charged again.)
    const requestId = partner ? request.requestId : '';

    // A retry of a request this replica allowed: free, whatever the cache or the circuit says.
    const known = requestId ? deps.charged?.get(owner, scope, requestId, now) : undefined;
    if (known) {
      return pass({
        headers: quotaHeaders(specs, known.limits, route.quota.headers),
        note: 'retry of an allowed request id: not charged again',
      });
    }

    // Only the partner's own counters are cached locally: a route's shared or per-address counter
    // says nothing about this caller alone.
    const enforced = specs.filter((s) => !s.shadow && !s.scope).map((s) => s.id);
    const blocked = enforced.length > 0 ? deps.overLimit.blocked(owner, enforced, now) : null;
    if (blocked) {
      const spec = specs.find((s) => s.id === blocked.id) as LimitSpec;
      const state: LimitState = {
        id: spec.id,
        limit: spec.limit,
        remaining: 0,
        resetMs: blocked.untilMs - now,
        exceeded: true,
        retryAfterMs: blocked.untilMs - now,
        shadow: false,
      };
      return refuse(refusal(route, policies, [spec], [state], 'known over the limit (local cache)'));
    }

    let result: ChargeResult;
    let note = '';
    let fromFallback = false;
    const charge = { partner: owner, requestId, scope, limits: specs, nowMs: now };
    try {
      result = await deps.store.charge(charge);
    } catch (error: unknown) {
      // The store refusing our own arguments is a bug of ours (internal_error), not Redis being down.
      if (error instanceof RangeError) throw error;
      const behaviour = policies.some((l) => (l.onStoreError ?? route.quota.onStoreError) === 'fail_closed')
        ? 'fail_closed'
        : 'fail_open';
      deps.events.storeFailed(behaviour, error);
      if (behaviour === 'fail_closed' || !deps.fallback) {
        return refuse({
          code: 'quota_unavailable',
          ...(partner ? { partner: partner.id } : {}),
          reason: `quota store: ${describe(error)}`,
        });
      }
      result = await deps.fallback.charge(charge);
      fromFallback = true;
      note = `quota store failed (${describe(error)}): charged this replica's share`;
    }
    deps.events.charged(label, specs, result);

    const shadowRefusals = result.limits.filter((s) => s.exceeded && s.shadow).map((s) => s.id);
    if (shadowRefusals.length > 0)
      note = [note, `shadow limits would refuse: ${shadowRefusals.join(', ')}`].filter(Boolean).join('; ');
    if (!result.allowed) {
      for (const [i, s] of result.limits.entries()) {
        // Cached only for unit-cost requests (a costlier request's wait says nothing about a cheaper
        // one's) and only from the shared store: a fallback refusal must not outlive the outage.
        const spec = specs[i];
        if (
          !fromFallback &&
          s.exceeded &&
          !s.shadow &&
          s.retryAfterMs > 0 &&
          spec?.cost === 1 &&
          !spec.scope
        ) {
          deps.overLimit.remember(owner, s.id, now + s.retryAfterMs);
        }
      }
      return refuse(refusal(route, policies, specs, result.limits, note));
    }
    const store = fromFallback && deps.fallback ? deps.fallback : deps.store;
    const charged = result;
    const settle = (verdict: 'keep' | 'refund') => {
      if (verdict === 'keep') {
        if (requestId) deps.charged?.remember(owner, scope, requestId, { atMs: now, limits: charged.limits });
      } else if (!charged.duplicate) {
        store.refund(charge, charged).catch((error: unknown) => deps.events.refundFailed?.(error));
      }
    };
    return pass({ headers: quotaHeaders(specs, result.limits, route.quota.headers), note, settle });
  }
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

/**
 * Where a route's limit is counted (keys in redis-store.ts):
 *   per partner  {q:<partner>}:r:<route>:<limit>           with the partner's own counters
 *   per route    {q:r:<route>}:all:<limit>                 one counter for every caller
 *   per source   {q:r:<route>}:src:<address/prefix>:<limit> one per client address block
 */
function scopeOf(
  l: RouteLimitPolicy,
  route: string,
  partner: string | undefined,
  address: string,
): LimitScope {
  if (l.per === 'partner') return { owner: partner ?? '', key: `r:${route}:${l.name}` };
  if (l.per === 'route') return { owner: `r:${route}`, key: `all:${l.name}` };
  return { owner: `r:${route}`, key: `src:${sourceBlock(address, l.sourcePrefix)}:${l.name}` };
}

function specFor(
  l: QuotaLimitPolicy,
  timeZone: string,
  request: Request,
  now: number,
  deps: QuotaDeps,
): LimitSpec {
  const cost = l.cost.kind === 'constant' ? l.cost.units : bodyCost(l, request);
  if (l.window) {
    const window = deps.windowAt(l.window, timeZone, now);
    return {
      id: l.name,
      algorithm: l.algorithm,
      limit: l.limit,
      periodMs: window.endMs - window.startMs,
      burst: l.burst,
      window,
      cost,
      shadow: l.shadow,
    };
  }
  return {
    id: l.name,
    algorithm: l.algorithm,
    limit: l.limit,
    periodMs: l.periodMs,
    burst: l.burst,
    cost,
    shadow: l.shadow,
  };
}

function refusal(
  route: RoutePolicy,
  policies: readonly QuotaLimitPolicy[],
  specs: readonly LimitSpec[],
  states: readonly LimitState[],
  note: string,
) {
  const refusing = states.filter((s) => s.exceeded && !s.shadow);
  const policy = policies.find((p) => p.name === refusing[0]?.id);
  // One figure for Retry-After, the refusing limit's RateLimit `t` and the body (reset.ts).
  const retry = retryAfterSeconds(states);
  // A cost above the limit never fits: no Retry-After, which would promise what never comes.
  const never = retry === null;
  const headers: Header[] = [...quotaHeaders(specs, states, route.quota.headers)];
  if (retry !== null) headers.push({ name: 'retry-after', value: String(retry) });
  const what = policy ? `"${policy.name}" (${policy.limit} per ${periodText(policy)})` : 'a quota';
  return {
    code: 'quota_exceeded' as const,
    detail: never
      ? `This request costs more than the limit ${what} admits.`
      : `The limit ${what} is exhausted; retry in ${retry} s.`,
    reason: `refused by ${refusing.map((s) => s.id).join(', ')}${note ? `; ${note}` : ''}`,
    headers,
  };
}

/** In our words (plain-errors.ts): the audit reason is read by people, not by ioredis' authors. */
function describe(error: unknown): string {
  return plainStoreError(error);
}
