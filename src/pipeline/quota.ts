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
import type {
  ChargeRequest,
  ChargeResult,
  ChargeSink,
  LimitSpec,
  LimitState,
  QuotaStore,
} from '../quota/types.js';
import type { Request } from '../request.js';
import { type MaybePromise, pass, refuse, type StageResult } from '../stage.js';
import type { Identity, QuotaOutcome, Settlement } from './outcomes.js';
import { Plans, type QuotaPlan, type WindowAt } from './quota-plan.js';

const NONE: QuotaOutcome = Object.freeze({ headers: [], note: '' });

export interface QuotaEvents {
  charged(partner: string, specs: readonly LimitSpec[], result: ChargeResult): void;
  storeFailed(behaviour: 'fail_closed' | 'fail_open', error: unknown): void;
  /** A Check we refused after charging it (a 5xx of ours) was refunded, or its refund failed (the charge stays). */
  refunded?(ok: boolean, error?: unknown): void;
}

type ChargingStore = Pick<QuotaStore, 'chargeTo' | 'refund'>;

export interface QuotaDeps {
  /** The shared store (Redis, behind its circuit breaker), or the in-memory one without Redis. */
  readonly store: ChargingStore;
  /** fail_open: the same limits in this process, divided by the replica count. null = none. */
  readonly fallback: ChargingStore | null;
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
  function chargeLimits(
    request: Request,
    route: RoutePolicy,
    partner: Partner | null,
    plan: QuotaPlan,
  ): MaybePromise<StageResult<QuotaOutcome>> {
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

    const charge: ChargeRequest = { partner: owner, requestId, scope, limits: specs, nowMs: now };
    return new QuotaCharge(deps, route, partner, plan, charge, idKey).start();
  }
}

/**
 * One charge of the quota stage, from the store's answer to the stage's result, and then the
 * Check's settlement (Settlement). It is the store's sink (QuotaStore.chargeTo), so the way from
 * Redis' reply to the stage's result holds one promise, made only when the store answers later.
 */
class QuotaCharge implements ChargeSink, Settlement {
  private fromFallback = false;
  private note = '';
  private result: ChargeResult | null = null;
  /** The result, when the store answered before start() returned; then no promise is made. */
  private early: StageResult<QuotaOutcome> | null = null;
  private earlyError: { readonly error: unknown } | null = null;
  resolve: ((result: StageResult<QuotaOutcome>) => void) | null = null;
  reject: ((error: unknown) => void) | null = null;

  constructor(
    private readonly deps: QuotaDeps,
    private readonly route: RoutePolicy,
    private readonly partner: Partner | null,
    private readonly plan: QuotaPlan,
    private readonly request: ChargeRequest,
    /** The ChargedIds key of the request id; '' = none. */
    private readonly idKey: string,
  ) {}

  start(): MaybePromise<StageResult<QuotaOutcome>> {
    this.deps.store.chargeTo(this.request, this);
    if (this.early !== null) return this.early;
    if (this.earlyError !== null) throw this.earlyError.error;
    capturing = this;
    return new Promise(captureResolvers);
  }

  charged(result: ChargeResult): void {
    let outcome: StageResult<QuotaOutcome>;
    try {
      outcome = this.judge(result);
    } catch (error: unknown) {
      this.fail(error);
      return;
    }
    this.finish(outcome);
  }

  failed(error: unknown): void {
    // The store refusing our own arguments is a bug of ours (internal_error), not Redis being down;
    // so is the fallback failing.
    if (error instanceof RangeError || this.fromFallback) {
      this.fail(error);
      return;
    }
    const { deps, plan, partner } = this;
    const behaviour = plan.onStoreError;
    deps.events.storeFailed(behaviour, error);
    if (behaviour === 'fail_closed' || !deps.fallback) {
      this.finish(
        refuse({
          code: 'quota_unavailable',
          ...(partner ? { partner: partner.id } : {}),
          reason: `quota store: ${describe(error)}`,
        }),
      );
      return;
    }
    this.fromFallback = true;
    this.note = `quota store failed (${describe(error)}): charged this replica's share`;
    deps.fallback.chargeTo(this.request, this);
  }

  /** The stage's result: kept for start() when it comes before start() returns, else resolved. */
  private finish(outcome: StageResult<QuotaOutcome>): void {
    if (this.resolve === null) this.early = outcome;
    else this.resolve(outcome);
  }

  private fail(error: unknown): void {
    if (this.reject === null) this.earlyError = { error };
    else this.reject(error);
  }

  /** The stage's result for the store's answer. */
  private judge(result: ChargeResult): StageResult<QuotaOutcome> {
    const { deps, plan, route } = this;
    const specs = this.request.limits;
    const now = this.request.nowMs;
    deps.events.charged(plan.label, specs, result);
    let note = this.note;
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
          !this.fromFallback &&
          s.exceeded &&
          !s.shadow &&
          s.retryAfterMs > 0 &&
          spec?.cost === 1 &&
          !spec.scope
        ) {
          deps.overLimit.remember(plan.owner, s.id, now + s.retryAfterMs);
        }
      }
      return refuse(refusal(route, plan.policies, specs, states, note));
    }
    this.result = result;
    return pass({ headers: quotaHeaders(specs, states, route.quota.headers), note, settlement: this });
  }

  /** Settlement: what the Check's final answer means for the charge. */
  settle(verdict: 'keep' | 'refund'): void {
    const charged = this.result;
    if (charged === null) return;
    const { deps } = this;
    if (verdict === 'keep') {
      if (this.idKey)
        deps.charged?.remember(this.idKey, { atMs: this.request.nowMs, limits: charged.limits });
    } else if (!charged.duplicate) {
      const store = this.fromFallback && deps.fallback ? deps.fallback : deps.store;
      store.refund(this.request, charged).then(
        () => deps.events.refunded?.(true),
        (error: unknown) => deps.events.refunded?.(false, error),
      );
    }
  }
}

// The promise executor as a plain function (no closure per charge): `new Promise` runs it at once,
// so it hands the resolvers to the QuotaCharge that set `capturing` just before.
let capturing: QuotaCharge | null = null;

function captureResolvers(
  resolve: (result: StageResult<QuotaOutcome>) => void,
  reject: (error: unknown) => void,
): void {
  const charge = capturing as QuotaCharge;
  capturing = null;
  charge.resolve = resolve;
  charge.reject = reject;
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
