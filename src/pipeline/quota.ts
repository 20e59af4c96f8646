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
import { plainStoreError } from '../plain-errors.js';
import type { Catalog, Partner, QuotaLimitPolicy, RoutePolicy } from '../policy/catalog.js';
import { type ChargedIds, chargedIdKey } from '../quota/charged-ids.js';
import { periodText } from '../quota/describe.js';
import { quotaHeaders, retryAfterSeconds } from '../quota/headers.js';
import type { OverLimitCache } from '../quota/over-limit.js';
import type { ChargeRequest, ChargeResult, LimitSpec, LimitState, QuotaStore } from '../quota/types.js';
import type { Request } from '../request.js';
import { type MaybePromise, pass, refuse, type StageResult } from '../stage.js';
import type { Identity, QuotaOutcome } from './outcomes.js';
import { Plans, type QuotaPlan, type WindowAt } from './quota-plan.js';

const NONE: QuotaOutcome = Object.freeze({ headers: [], note: '' });

export interface QuotaEvents {
  charged(partner: string, specs: readonly LimitSpec[], result: ChargeResult): void;
  storeFailed(behaviour: 'fail_closed' | 'fail_open', error: unknown): void;
  /** A Check we refused after charging it (a 5xx of ours) was refunded, or its refund failed (the charge stays). */
  refunded?(ok: boolean, error?: unknown): void;
}

export interface QuotaDeps {
  /** The shared store (Redis, behind its circuit breaker), or the in-memory one without Redis. */
  readonly store: Pick<QuotaStore, 'charge' | 'refund'>;
  /** fail_open: the same limits in this process, divided by the replica count. null = none. */
  readonly fallback: Pick<QuotaStore, 'charge' | 'refund'> | null;
  /** Request ids this replica allowed (for free retries); absent = always ask the store. */
  readonly charged?: ChargedIds;
  readonly windowAt: WindowAt;
  readonly overLimit: OverLimitCache;
  readonly clock: Clock;
  readonly events: QuotaEvents;
}

export function createQuotaStage(deps: QuotaDeps) {
  const plans = new Plans();
  // Synchronous when no limit applies: a route without quotas costs no promise.
  return function quota(
    request: Request,
    _catalog: Catalog,
    route: RoutePolicy,
    identity: Identity,
  ): MaybePromise<StageResult<QuotaOutcome>> {
    const plan = plans.of(route, identity.partner, request.method);
    if (plan === null) return pass(NONE);
    return chargeLimits(request, route, identity.partner, plan);
  };

  /** Charges the plan's limits (at least one). */
  async function chargeLimits(
    request: Request,
    route: RoutePolicy,
    partner: Partner | null,
    plan: QuotaPlan,
  ): Promise<StageResult<QuotaOutcome>> {
    const now = deps.clock.now();
    const specs = plan.specsFor(request, now, deps.windowAt);
    const { owner, scope } = plan;
    // Anonymous callers get no idempotency: anyone can send any x-request-id, and a replayed id
    // would pass a per-source or per-route limit uncharged. (Their Envoy retries are charged again.)
    const requestId = partner ? request.requestId : '';

    // A retry of a request this replica allowed: free, whatever the cache or the circuit says.
    const idKey = requestId && deps.charged ? chargedIdKey(owner, scope, requestId) : '';
    const known = idKey ? deps.charged?.get(idKey, now) : undefined;
    if (known) {
      return pass({
        headers: quotaHeaders(specs, known.limits, route.quota.headers),
        note: 'retry of an allowed request id: not charged again',
      });
    }

    // Only the partner's own counters are cached locally: a route's shared or per-address counter
    // says nothing about this caller alone.
    const blocked = plan.enforced.length > 0 ? deps.overLimit.blocked(owner, plan.enforced, now) : null;
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
      return refuse(refusal(route, plan.policies, [spec], [state], 'known over the limit (local cache)'));
    }

    let result: ChargeResult;
    let note = '';
    let fromFallback = false;
    const charge: ChargeRequest = { partner: owner, requestId, scope, limits: specs, nowMs: now };
    try {
      result = await deps.store.charge(charge);
    } catch (error: unknown) {
      // The store refusing our own arguments is a bug of ours (internal_error), not Redis being down.
      if (error instanceof RangeError) throw error;
      const behaviour = plan.onStoreError;
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
    deps.events.charged(plan.label, specs, result);

    const states = result.limits;
    const shadowRefusals = shadowRefusing(states);
    if (shadowRefusals !== '') {
      const shadow = `shadow limits would refuse: ${shadowRefusals}`;
      note = note === '' ? shadow : `${note}; ${shadow}`;
    }
    if (!result.allowed) {
      for (let i = 0; i < states.length; i++) {
        // Cached only for unit-cost requests (a costlier request's wait says nothing about a cheaper
        // one's) and only from the shared store: a fallback refusal must not outlive the outage.
        const s = states[i] as LimitState;
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
      return refuse(refusal(route, plan.policies, specs, states, note));
    }
    const store = fromFallback && deps.fallback ? deps.fallback : deps.store;
    const charged = result;
    const settle = (verdict: 'keep' | 'refund') => {
      if (verdict === 'keep') {
        if (idKey) deps.charged?.remember(idKey, { atMs: now, limits: charged.limits });
      } else if (!charged.duplicate) {
        store.refund(charge, charged).then(
          () => deps.events.refunded?.(true),
          (error: unknown) => deps.events.refunded?.(false, error),
        );
      }
    };
    return pass({ headers: quotaHeaders(specs, states, route.quota.headers), note, settle });
  }
}

/** The ids of the shadow limits that would have refused, `a, b`; '' when none. */
function shadowRefusing(states: readonly LimitState[]): string {
  let ids = '';
  for (const s of states) if (s.exceeded && s.shadow) ids = ids === '' ? s.id : `${ids}, ${s.id}`;
  return ids;
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
