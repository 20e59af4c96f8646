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
import type { Header } from '../decision.js';
import type { Catalog, Partner, QuotaLimitPolicy, RoutePolicy } from '../policy/catalog.js';
import type { ChargedIds } from '../quota/charged-ids.js';
import { periodText } from '../quota/describe.js';
import { quotaHeaders, retryAfterSeconds } from '../quota/headers.js';
import type { OverLimitCache } from '../quota/over-limit.js';
import { idempotencyScope } from '../quota/refund.js';
import type { CalendarWindow, ChargeResult, LimitSpec, LimitState, QuotaStore } from '../quota/types.js';
import type { Request } from '../request.js';
import { type Clock, type Identity, pass, type QuotaOutcome, refuse, type StageResult } from './types.js';

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
  return async function quota(
    request: Request,
    _catalog: Catalog,
    route: RoutePolicy,
    identity: Identity,
  ): Promise<StageResult<QuotaOutcome>> {
    const partner = identity.partner;
    if (!partner) return pass(NONE);
    const applicable = partner.limits.filter(
      (l) =>
        (l.routes.size === 0 || l.routes.has(route.name)) &&
        (l.methods.size === 0 || l.methods.has(request.method)),
    );
    if (applicable.length === 0) return pass(NONE);
    const now = deps.clock.now();
    const specs = applicable.map((l) => specFor(l, partner, request, now, deps));
    const scope = idempotencyScope(
      route.name,
      specs.map((s) => s.id),
    );

    // A retry of a request this replica allowed: free, whatever the cache or the circuit says.
    const known = deps.charged?.get(partner.id, scope, request.requestId, now);
    if (known) {
      return pass({
        headers: quotaHeaders(specs, known.limits, route.quota.headers),
        note: 'retry of an allowed request id: not charged again',
      });
    }

    const enforced = specs.filter((s) => !s.shadow).map((s) => s.id);
    const blocked = deps.overLimit.blocked(partner.id, enforced, now);
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
      return refuse(refusal(route, applicable, [spec], [state], 'known over the limit (local cache)'));
    }

    let result: ChargeResult;
    let note = '';
    let fromFallback = false;
    const charge = { partner: partner.id, requestId: request.requestId, scope, limits: specs, nowMs: now };
    try {
      result = await deps.store.charge(charge);
    } catch (error: unknown) {
      // The store refusing our own arguments is a bug of ours (internal_error), not Redis being down.
      if (error instanceof RangeError) throw error;
      const behaviour = applicable.some((l) => (l.onStoreError ?? route.quota.onStoreError) === 'fail_closed')
        ? 'fail_closed'
        : 'fail_open';
      deps.events.storeFailed(behaviour, error);
      if (behaviour === 'fail_closed' || !deps.fallback) {
        return refuse({
          code: 'quota_unavailable',
          partner: partner.id,
          reason: `quota store: ${describe(error)}`,
        });
      }
      result = await deps.fallback.charge(charge);
      fromFallback = true;
      note = `quota store failed (${describe(error)}): charged this replica's share`;
    }
    deps.events.charged(partner.id, specs, result);

    const shadowRefusals = result.limits.filter((s) => s.exceeded && s.shadow).map((s) => s.id);
    if (shadowRefusals.length > 0)
      note = [note, `shadow limits would refuse: ${shadowRefusals.join(', ')}`].filter(Boolean).join('; ');
    if (!result.allowed) {
      for (const [i, s] of result.limits.entries()) {
        // Cached only for unit-cost requests (a costlier request's wait says nothing about a cheaper
        // one's) and only from the shared store: a fallback refusal must not outlive the outage.
        if (!fromFallback && s.exceeded && !s.shadow && s.retryAfterMs > 0 && specs[i]?.cost === 1) {
          deps.overLimit.remember(partner.id, s.id, now + s.retryAfterMs);
        }
      }
      return refuse(refusal(route, applicable, specs, result.limits, note));
    }
    const store = fromFallback && deps.fallback ? deps.fallback : deps.store;
    const charged = result;
    const settle = (verdict: 'keep' | 'refund') => {
      if (verdict === 'keep') {
        deps.charged?.remember(partner.id, scope, request.requestId, { atMs: now, limits: charged.limits });
      } else if (!charged.duplicate) {
        store.refund(charge, charged).catch((error: unknown) => deps.events.refundFailed?.(error));
      }
    };
    return pass({ headers: quotaHeaders(specs, result.limits, route.quota.headers), note, settle });
  };
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

function specFor(
  l: QuotaLimitPolicy,
  partner: Partner,
  request: Request,
  now: number,
  deps: QuotaDeps,
): LimitSpec {
  const cost = l.cost.kind === 'constant' ? l.cost.units : bodyCost(l, request);
  if (l.window) {
    const window = deps.windowAt(l.window, partner.timeZone, now);
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
  const retry = retryAfterSeconds(states);
  // A cost above the limit never fits: no Retry-After, which would promise what never comes.
  const never = refusing.some((s) => s.retryAfterMs < 0);
  const headers: Header[] = [...quotaHeaders(specs, states, route.quota.headers)];
  if (!never) headers.push({ name: 'retry-after', value: String(retry) });
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

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
