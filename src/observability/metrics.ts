// Prometheus metrics. One registry per server instance (tests run several in one process).
// Label values come from the catalog (routes, partners) and the code registry: bounded cardinality.
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { GateSnapshot } from '../admission/gate.js';
import type { Decision } from '../decision.js';
import type { JwksCache } from '../identity/jwks.js';
import { STAGE_NAMES } from '../pipeline/check.js';
import type { Catalog } from '../policy/catalog.js';
import { usageRatio } from '../quota/reset.js';
import type { ChargeResult, LimitSpec, LimitState } from '../quota/types.js';
import type { DependencyReport } from './dependencies.js';
import type { EventLoopDelay } from './event-loop.js';
import { FastCounter, FastHistogram } from './fast-metrics.js';

const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

export class Metrics {
  readonly registry = new Registry();
  // The per-Check metrics: fast-metrics.ts (label sets resolved once, not hashed per observation).
  private readonly decisions = new FastCounter({
    name: 'portcullis_decisions_total',
    help: 'Check decisions by route, partner, decision (allow/deny) and code (docs/errors.md).',
    labelNames: ['route', 'partner', 'decision', 'code'] as const,
    registers: [this.registry],
  });
  private readonly failures = new Counter({
    name: 'portcullis_failures_total',
    help: "Internal failures and missed deadlines, answered with the route's on_error behaviour.",
    labelNames: ['route', 'cause'] as const,
    registers: [this.registry],
  });
  private readonly latency = new FastHistogram({
    name: 'portcullis_check_duration_seconds',
    help: 'Time from receiving a Check to handing back its answer.',
    labelNames: ['decision'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  private readonly stages = new FastHistogram({
    name: 'portcullis_stage_duration_seconds',
    help: 'Time spent in each pipeline stage.',
    labelNames: ['stage'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  private readonly policy = new Gauge({
    name: 'portcullis_policy_info',
    help: 'The policy catalog being served (value 1), by version hash and name.',
    labelNames: ['version', 'name'] as const,
    registers: [this.registry],
  });
  private readonly allowLatency = this.latency.labels('allow');
  private readonly denyLatency = this.latency.labels('deny');

  constructor(options: { defaultMetrics?: boolean } = {}) {
    // Series that alerts use with increase() exist from the start, at 0: a first increment is then
    // an increase, not the appearance of a new series.
    for (const result of ['success', 'failure'] as const) this.reloads.inc({ result }, 0);
    for (const behaviour of ['fail_closed', 'fail_open'] as const)
      this.quotaStoreFailures.inc({ behaviour }, 0);
    if (options.defaultMetrics !== false)
      collectDefaultMetrics({ register: this.registry, prefix: 'portcullis_' });
  }

  /** Key set freshness and fetch outcomes, read at scrape time. */
  watchKeySets(current: () => ReadonlyMap<string, JwksCache>): void {
    new Gauge({
      name: 'portcullis_jwks_age_seconds',
      help: "Seconds since the issuer's key set was last fetched successfully (+Inf: never).",
      labelNames: ['issuer'] as const,
      registers: [this.registry],
      collect() {
        // +Inf, not a sentinel: an `age > N` alert must fire for keys that never loaded.
        this.reset();
        for (const [issuer, keys] of current()) {
          this.set({ issuer }, keys.ageSeconds() ?? Number.POSITIVE_INFINITY);
        }
      },
    });
    new Counter({
      name: 'portcullis_jwks_fetches_total',
      help: 'Key set fetches since start, by issuer and result (ok, failed).',
      labelNames: ['issuer', 'result'] as const,
      registers: [this.registry],
      collect() {
        // The key sets count; mirror their totals at scrape time.
        this.reset();
        for (const [issuer, keys] of current()) {
          const stats = keys.stats();
          this.inc({ issuer, result: 'ok' }, stats.fetchesOk);
          this.inc({ issuer, result: 'failed' }, stats.fetchesFailed);
        }
      },
    });
  }

  private readonly quotaUsage = new Gauge({
    name: 'portcullis_quota_usage_ratio',
    help: 'Share of a limit used by the partner after its last charge, 0..1 (gcra: of its burst).',
    labelNames: ['partner', 'limit'] as const,
    registers: [this.registry],
    // Set at scrape time from `usage`: a gauge's set() hashes its labels (sorting their names)
    // on every call, which a charge should not pay.
    collect: () => {
      for (const [partner, limits] of this.usage) {
        for (const [limit, ratio] of limits) this.quotaUsage.set({ partner, limit }, ratio);
      }
    },
  });
  private readonly quotaRefusals = new Counter({
    name: 'portcullis_quota_refusals_total',
    help: 'Requests a limit refused (shadow="true": would have refused, let through).',
    labelNames: ['partner', 'limit', 'shadow'] as const,
    registers: [this.registry],
  });
  private readonly quotaStoreFailures = new Counter({
    name: 'portcullis_quota_store_failures_total',
    help: 'Quota store calls that failed or met an open circuit, by the behaviour applied.',
    labelNames: ['behaviour'] as const,
    registers: [this.registry],
  });

  /** The usage ratio after each limit's last charge, by partner then limit (quotaUsage). */
  private readonly usage = new Map<string, Map<string, number>>();

  quotaCharged(partner: string, specs: readonly LimitSpec[], result: ChargeResult): void {
    let limits = this.usage.get(partner);
    if (limits === undefined) {
      limits = new Map();
      this.usage.set(partner, limits);
    }
    const states = result.limits;
    for (let i = 0; i < states.length; i++) {
      const state = states[i] as LimitState;
      const spec = specs[i];
      limits.set(state.id, spec ? usageRatio(spec, state) : 0);
      if (state.exceeded) this.quotaRefusals.inc({ partner, limit: state.id, shadow: String(state.shadow) });
    }
  }

  quotaStoreFailed(behaviour: 'fail_closed' | 'fail_open'): void {
    this.quotaStoreFailures.inc({ behaviour });
  }

  private readonly quotaRefunds = new Counter({
    name: 'portcullis_quota_refunds_total',
    help: "Charges given back because the Check was not answered by the partner's limit: reason refused (a 5xx of ours after the charge) or late_reply (the charge's reply came after the store timeout); result ok or failed (the charge stays).",
    labelNames: ['reason', 'result'] as const,
    registers: [this.registry],
  });

  quotaRefund(reason: 'refused' | 'late_reply', ok: boolean): void {
    this.quotaRefunds.inc({ reason, result: ok ? 'ok' : 'failed' });
  }

  /** The circuit breaker's state at scrape time: 1 for the current one. */
  watchQuotaStore(state: () => string): void {
    new Gauge({
      name: 'portcullis_quota_store_state',
      help: 'Quota store circuit: closed (Redis in use), open, half_open, or local (no Redis configured).',
      labelNames: ['state'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        this.set({ state: state() }, 1);
      },
    });
  }

  /** portcullis_dependency_state: 1 for each dependency's current state, in plain words. */
  watchDependencies(report: () => Promise<DependencyReport>): void {
    new Gauge({
      name: 'portcullis_dependency_state',
      help: 'State of a dependency (quota_store, clamd, jwks by issuer): ok, degraded, unavailable, local, not_configured or unknown; detail in /readyz.',
      labelNames: ['dependency', 'name', 'state'] as const,
      registers: [this.registry],
      async collect() {
        const r = await report();
        this.reset();
        this.set({ dependency: 'quota_store', name: '', state: r.quota_store.state }, 1);
        this.set({ dependency: 'clamd', name: '', state: r.clamd.state }, 1);
        for (const [issuer, s] of Object.entries(r.jwks))
          this.set({ dependency: 'jwks', name: issuer, state: s.state }, 1);
      },
    });
  }

  private readonly reloads = new Counter({
    name: 'portcullis_policy_reloads_total',
    help: 'Policy catalog reloads, by result (success, failure: the last good catalog kept serving).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  private readonly scanResults = new Counter({
    name: 'portcullis_scan_results_total',
    help: 'Malware scan verdicts (clean, infected, too_large, error), and whether the clean-result cache answered.',
    labelNames: ['result', 'cached'] as const,
    registers: [this.registry],
  });
  private readonly scanLatency = new Histogram({
    name: 'portcullis_scan_duration_seconds',
    help: 'clamd round trips (cache hits excluded).',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });

  scanned(verdict: string, ms: number, cached: boolean): void {
    this.scanResults.inc({ result: verdict, cached: String(cached) });
    if (!cached && ms > 0) this.scanLatency.observe(ms / 1000);
  }

  private readonly dryRuns = new Counter({
    name: 'portcullis_dry_run_denials_total',
    help: 'Denials a dry-run rule or route would have made, by route and code (the requests passed).',
    labelNames: ['route', 'code'] as const,
    registers: [this.registry],
  });

  dryRun(route: string, code: string): void {
    this.dryRuns.inc({ route, code });
  }

  private readonly revocations = new Counter({
    name: 'portcullis_revocations_applied_total',
    help: 'Live revocations this replica applied, by kind, op (add, remove) and source (message, or reload: found without a message).',
    labelNames: ['kind', 'op', 'source'] as const,
    registers: [this.registry],
  });

  revocationApplied(kind: string, op: string, source: string): void {
    this.revocations.inc({ kind, op, source });
  }

  policyReloaded(result: 'success' | 'failure'): void {
    this.reloads.inc({ result });
  }

  private readonly reloadFailing = new Gauge({
    name: 'portcullis_policy_reload_failing',
    help: '1 while the last reload was refused (the last good catalog serves); 0 after a good reload or a revert to the served catalog.',
    registers: [this.registry],
  });

  policyReloadFailing(failing: boolean): void {
    this.reloadFailing.set(failing ? 1 : 0);
  }

  policyLoaded(catalog: Catalog): void {
    // Error-path series exist from the start, at 0, for every route: alerts and panels see them.
    for (const route of catalog.routes) {
      for (const cause of ['internal_error', 'deadline_exceeded', 'dependency_unavailable', 'overloaded']) {
        this.failures.inc({ route: route.name, cause }, 0);
      }
      this.shedChecks.inc({ route: route.name, partner: '', answer: route.onOverload }, 0);
    }
    this.policy.reset();
    this.policy.set({ version: catalog.version, name: catalog.versionName }, 1);
  }

  /** `timings[i]`: ms in stage STAGE_NAMES[i] (see Outcome). */
  observe(decision: Decision, seconds: number, timings: readonly number[]): void {
    this.decisions.labels(decision.route, decision.partner, decision.kind, decision.code).inc();
    (decision.kind === 'allow' ? this.allowLatency : this.denyLatency).observe(seconds);
    for (let i = 0; i < timings.length; i++) {
      const stage = STAGE_NAMES[i];
      const ms = timings[i];
      if (stage === undefined || ms === undefined) break;
      this.stages.labels(stage).observe(ms / 1000);
    }
  }

  failure(route: string, cause: string): void {
    this.failures.labels(route, cause).inc();
  }

  private readonly shedChecks = new Counter({
    name: 'portcullis_admission_shed_total',
    help:
      'Checks shed by admission control (this process overloaded), by route, partner (from the mTLS ' +
      'principal; empty when unverified) and the answer given (deny: 503 overloaded; allow: on_overload allow).',
    labelNames: ['route', 'partner', 'answer'] as const,
    registers: [this.registry],
  });

  shed(route: string, partner: string, answer: 'allow' | 'deny'): void {
    this.shedChecks.inc({ route, partner, answer });
  }

  /** In-flight Checks, waiting Checks and the adaptive concurrency limit, read at scrape time. */
  watchAdmission(snapshot: () => GateSnapshot, eventLoop: () => EventLoopDelay): void {
    new Gauge({
      name: 'portcullis_admission_in_flight',
      help: 'Checks admitted and still working (past the route stage).',
      registers: [this.registry],
      collect() {
        this.set(snapshot().inFlight);
      },
    });
    new Gauge({
      name: 'portcullis_admission_queued',
      help: 'Checks waiting for an admission slot.',
      registers: [this.registry],
      collect() {
        this.set(snapshot().queued);
      },
    });
    new Gauge({
      name: 'portcullis_admission_limit',
      help: 'The adaptive concurrency limit: Checks allowed to work at once in this process.',
      registers: [this.registry],
      collect() {
        this.set(snapshot().limit);
      },
    });
    new Gauge({
      name: 'portcullis_admission_baseline_seconds',
      help: 'No-load Check latency the limit compares against (NaN before the first window).',
      registers: [this.registry],
      collect() {
        this.set(snapshot().baselineMs / 1000);
      },
    });
    new Gauge({
      name: 'portcullis_event_loop_delay_seconds',
      help: 'How late the event loop ran over the last half second (quantile 0.5, 0.99, 1 = max).',
      labelNames: ['quantile'] as const,
      registers: [this.registry],
      collect() {
        const d = eventLoop();
        this.set({ quantile: '0.5' }, d.p50Ms / 1000);
        this.set({ quantile: '0.99' }, d.p99Ms / 1000);
        this.set({ quantile: '1' }, d.maxMs / 1000);
      },
    });
  }
}
