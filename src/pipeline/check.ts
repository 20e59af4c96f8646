// The orchestrator: one request through the stages in order, the first denial ends it.
// It always returns a Decision: exceptions and a missed deadline become the route's `on_error`.
//
//   1. edge in      (src/envoy/normalize.ts, before this)
//   2. route        which catalog route governs the request
//      admission    at most N Checks work at once past this point (src/admission/); the excess
//                   waits fairly or is shed with the route's on_overload, before any other work
//   3. identify     which partner is calling
//   4. authorize    may it use this route from this address
//   5. inspect      size, type, schema, checksum            (content issue)
//   6. quota        charge every applicable limit at once, in one store call
//   7. scan         malware                                   (content issue)
//   8. edge out     (src/envoy/respond.ts, after this)
import { callerKey, claimedPartner } from '../admission/caller.js';
import type { AdmissionGate } from '../admission/gate.js';
import type { Clock } from '../clock.js';
import type { Allow, Decision, Denial, Deny, Header } from '../decision.js';
import { DENY_CODES } from '../errors.js';
import type { Catalog, RoutePolicy } from '../policy/catalog.js';
import type { Request } from '../request.js';
import { DependencyUnavailable } from '../stage.js';
import { Deadlines } from './deadlines.js';
import { credentialCarriers } from './identify.js';
import { ANONYMOUS, type Identity, type QuotaOutcome } from './outcomes.js';
import type { Stages } from './types.js';
import { mustBeScanned } from './unscanned.js';

export const STAGE_NAMES = ['route', 'identify', 'authorize', 'inspect', 'quota', 'scan'] as const;
export type StageName = (typeof STAGE_NAMES)[number];

/**
 * How long before Envoy's deadline we answer anyway, so our answer (the route's on_error) decides
 * rather than Envoy's timeout: 10 % of the time left, at least 5 ms (timer lateness, encoding,
 * the trip back), at most 25 ms.
 */
export function deadlineMargin(remainingMs: number): number {
  return Math.min(25, Math.max(5, remainingMs * 0.1));
}

/** Time for a scan verdict to travel back through the pipeline before the pipeline's own timer fires. */
export const SCAN_VERDICT_MS = 5;

export const HEADER_PREFIX = 'x-portcullis-';
export const DECISION_ID_HEADER = 'x-portcullis-decision-id';
export const ON_ERROR_HEADER = 'x-portcullis-on-error';
export const DRY_RUN_HEADER = 'x-portcullis-dry-run';

export interface CheckContext {
  readonly catalog: Catalog;
  readonly decisionId: string;
  /** Epoch ms by which Envoy needs the answer (from grpc-timeout); Infinity when none. */
  readonly deadline: number;
}

export interface Outcome {
  readonly decision: Decision;
  /** Milliseconds spent in each stage that ran. */
  readonly timings: ReadonlyArray<readonly [StageName, number]>;
  /** The failure behind an `on_error` decision, for the log. */
  readonly error?: unknown;
}

/** Mutable progress of one Check, so a timeout can still answer with the route's `on_error`. */
interface Progress {
  route: RoutePolicy | undefined;
  /** True while presented credentials are being checked: a failure then is a denial, never on_error. */
  identifying: boolean;
  identity: Identity | undefined;
  /** The scan stage has answered (then a failure cannot leave the body unscanned). */
  scanned: boolean;
  readonly timings: Array<readonly [StageName, number]>;
  /** Set once the Check was answered without its pipeline (the deadline): admitted late, it stops. */
  answered: boolean;
  /** The quota charge's settlement, until the Check is answered. */
  settle: ((verdict: Verdict) => void) | undefined;
  /** Set once the Check is answered: what its charge deserves (a charge made later is settled so). */
  verdict: Verdict | undefined;
}

type Verdict = 'keep' | 'refund';

/** A partner never pays for our refusal: a Check denied with a 5xx gets its charge back. */
function verdictOf(decision: Decision): Verdict {
  return decision.kind === 'deny' && DENY_CODES[decision.code].http >= 500 ? 'refund' : 'keep';
}

/** Every Pipeline's Check deadlines, on one timer. */
const DEADLINES = new Deadlines();

export class Pipeline {
  constructor(
    private readonly stages: Stages,
    private readonly clock: Clock,
    /** Admission control; absent = every Check is admitted (tests, `policy test`). */
    private readonly admission?: { readonly gate: AdmissionGate; readonly maxQueueWaitMs: number },
  ) {}

  async check(request: Request, ctx: CheckContext): Promise<Outcome> {
    const progress: Progress = {
      route: undefined,
      identifying: false,
      identity: undefined,
      scanned: false,
      timings: [],
      answered: false,
      settle: undefined,
      verdict: undefined,
    };
    const outcome = await this.decide(request, ctx, progress);
    // The Check is answered: settle its charge, now or (if the charge is still in flight) when it lands.
    progress.verdict = verdictOf(outcome.decision);
    const settle = progress.settle;
    progress.settle = undefined;
    settle?.(progress.verdict);
    return outcome;
  }

  private async decide(request: Request, ctx: CheckContext, progress: Progress): Promise<Outcome> {
    const now = this.clock.now();
    const remaining = ctx.deadline - now;
    const budget = remaining - deadlineMargin(remaining);
    if (budget <= 0)
      return this.failure(request, ctx, progress, 'deadline_exceeded', 'deadline already passed');
    // One instant, on one clock, for the pipeline's timer and the scan's: the scan must give its own
    // answer (scan.on_error) before this timer turns a slow clamd into the route's on_error.
    const answerBy = now + budget;
    try {
      const decision = Number.isFinite(budget)
        ? await this.race(request, ctx, progress, budget, answerBy)
        : await this.run(request, ctx, progress, answerBy);
      // Re-check after the pipeline: a late allow is a failure (the route's on_error). A late refusal
      // stays a refusal: lateness must never turn a deny into an on_error allow.
      if (decision === undefined || (decision.kind === 'allow' && this.clock.now() > ctx.deadline)) {
        progress.answered = true;
        return this.failure(
          request,
          ctx,
          progress,
          'deadline_exceeded',
          `no decision within ${Math.round(budget)} ms`,
        );
      }
      return { decision, timings: progress.timings };
    } catch (error: unknown) {
      const code = error instanceof DependencyUnavailable ? 'dependency_unavailable' : 'internal_error';
      return this.failure(request, ctx, progress, code, errorText(error), error);
    }
  }

  /** The pipeline's decision, or undefined when `budget` ms pass first (one shared timer, see deadlines.ts). */
  private race(
    request: Request,
    ctx: CheckContext,
    p: Progress,
    budget: number,
    answerBy: number,
  ): Promise<Decision | undefined> {
    return new Promise((resolve, reject) => {
      const entry = DEADLINES.after(budget, () => resolve(undefined));
      this.run(request, ctx, p, answerBy).then(
        (decision) => {
          DEADLINES.cancel(entry);
          resolve(decision);
        },
        (error: unknown) => {
          DEADLINES.cancel(entry);
          reject(error);
        },
      );
    });
  }

  private async run(request: Request, ctx: CheckContext, p: Progress, answerBy: number): Promise<Decision> {
    const { catalog } = ctx;
    let started = performance.now();
    const lap = (stage: StageName) => {
      const now = performance.now();
      p.timings.push([stage, now - started]);
      started = now;
    };

    const route = await this.stages.route(request, catalog);
    lap('route');
    if (!route.ok) return deny(request, ctx, undefined, null, route.denial);
    p.route = route.value;

    const admission = this.admission;
    if (!admission) return this.admitted(request, ctx, p, route.value, lap, answerBy);
    const now = this.clock.now();
    const remaining = ctx.deadline - now;
    const { gate } = admission;
    const startBy = Math.min(
      ctx.deadline - deadlineMargin(remaining) - gate.serviceMs,
      now + admission.maxQueueWaitMs,
    );
    let ticket = gate.enter(callerKey(request, route.value), startBy);
    if (ticket instanceof Promise) ticket = await ticket;
    if (ticket === null) return overloadDecision(request, ctx, route.value);
    if (p.answered) {
      gate.leave(ticket, false);
      return overloadDecision(request, ctx, route.value);
    }
    started = performance.now();
    try {
      return await this.admitted(request, ctx, p, route.value, lap, answerBy);
    } finally {
      gate.leave(ticket);
    }
  }

  /** The stages after admission. */
  private async admitted(
    request: Request,
    ctx: CheckContext,
    p: Progress,
    routePolicy: RoutePolicy,
    lap: (stage: StageName) => void,
    answerBy: number,
  ): Promise<Decision> {
    const { catalog } = ctx;
    const route = { value: routePolicy };

    // On a dry-run route a denial is only recorded: the request goes on, marked upstream.
    const refused = (who: Identity | null, denial: Denial) =>
      route.value.dryRun
        ? allow(request, ctx, route.value, who ?? ANONYMOUS, NO_QUOTA, denial)
        : deny(request, ctx, route.value, who, denial);

    p.identifying = true;
    const identity = await this.stages.identify(request, catalog, route.value);
    p.identifying = false;
    lap('identify');
    if (!identity.ok) return refused(null, identity.denial);
    p.identity = identity.value;

    const access = await this.stages.authorize(request, catalog, route.value, identity.value);
    lap('authorize');
    if (!access.ok) return refused(identity.value, access.denial);

    const inspected = await this.stages.inspect(request, route.value, identity.value);
    lap('inspect');
    if (!inspected.ok) return refused(identity.value, inspected.denial);
    const findings = inspected.value;

    const quota = await this.stages.quota(request, catalog, route.value, identity.value);
    lap('quota');
    if (!quota.ok) return refused(identity.value, quota.denial);
    const settle = quota.value.settle;
    if (settle && p.verdict)
      settle(p.verdict); // answered already (the deadline): settle at once
    else p.settle = settle;

    // The scan ends SCAN_VERDICT_MS before the pipeline's own timer fires (both set from answerBy), so
    // a slow scanner is always answered by the scan's declared behaviour, never by the route's on_error.
    const scanned = await this.stages.scan(findings, answerBy - SCAN_VERDICT_MS);
    lap('scan');
    p.scanned = true;
    const content = findings
      ? { sha256: findings.inspected.sha256, scan: scanned.ok ? scanned.value : 'refused' }
      : undefined;
    if (!scanned.ok) return withContent(refused(identity.value, scanned.denial), content);

    return withContent(
      allow(request, ctx, route.value, identity.value, quota.value, access.value.dryRun),
      content,
    );
  }

  private failure(
    request: Request,
    ctx: CheckContext,
    p: Progress,
    code: FailureCode,
    reason: string,
    error?: unknown,
  ): Outcome {
    // Who the caller is was not established: whatever on_error says, that is a denial.
    // A body that must be scanned and was not: the scan's declared answer, whatever on_error says.
    const decision = p.identifying
      ? identityUnavailable(request, ctx, p.route, `${code}: ${reason}`)
      : p.route && !p.scanned && mustBeScanned(request, p.route, p.identity)
        ? deny(request, ctx, p.route, p.identity ?? null, {
            code: 'scan_unavailable',
            reason: `${code}: ${reason}; the body was not scanned`,
          })
        : failureDecision(request, ctx, p.route, p.identity?.partner?.id ?? '', code, reason);
    return error === undefined ? { decision, timings: p.timings } : { decision, timings: p.timings, error };
  }
}

export type FailureCode = 'internal_error' | 'deadline_exceeded' | 'dependency_unavailable';

/**
 * A Check shed by admission control: the route's `on_overload`. Answered before any other work,
 * so nothing was verified or charged: deny 503 `overloaded` with Retry-After, or let it through
 * unchecked, marked like an `on_error: allow` (no identity headers).
 */
export function overloadDecision(request: Request, ctx: CheckContext, route: RoutePolicy): Decision {
  const base = {
    decisionId: ctx.decisionId,
    requestId: request.requestId || ctx.decisionId,
    route: route.name,
    partner: claimedPartner(request, ctx.catalog),
    policyVersion: ctx.catalog.version,
    reason: 'overloaded: shed by admission control',
    failure: 'overloaded' as const,
  };
  if (route.onOverload !== 'allow') {
    return {
      ...base,
      kind: 'deny',
      code: 'overloaded',
      detail: DENY_CODES.overloaded.detail,
      headers: [], // Retry-After: added to every 503 by the respond layer (partner-errors.ts)
    };
  }
  return {
    ...base,
    kind: 'allow',
    code: 'allowed_on_error',
    upstreamHeaders: [
      { name: DECISION_ID_HEADER, value: ctx.decisionId },
      { name: ON_ERROR_HEADER, value: 'overloaded' },
    ],
    removeHeaders: spoofedHeaders(request, [DECISION_ID_HEADER, ON_ERROR_HEADER], ctx.catalog),
    removeQueryParams: [],
    responseHeaders: [],
  };
}

/** An internal failure or a missed deadline: the route's `on_error`, or deny before a route is known. */
export function failureDecision(
  request: Request | null,
  ctx: CheckContext,
  route: RoutePolicy | undefined,
  partner: string,
  code: FailureCode,
  reason: string,
): Decision {
  const base = {
    decisionId: ctx.decisionId,
    requestId: request?.requestId || ctx.decisionId,
    route: route?.name ?? '',
    partner,
    policyVersion: ctx.catalog.version,
    reason: `${code}: ${reason}`,
    failure: code,
  };
  if (route?.onError !== 'allow') {
    return { ...base, kind: 'deny', code, detail: DENY_CODES[code].detail, headers: [] };
  }
  const carriers = credentialCarriers(route.identity);
  return {
    ...base,
    kind: 'allow',
    code: 'allowed_on_error',
    // Only the markers: a route's own headers may depend on checks that never finished.
    upstreamHeaders: [
      { name: DECISION_ID_HEADER, value: ctx.decisionId },
      { name: ON_ERROR_HEADER, value: code },
    ],
    // Credentials go no further than on any allow, whatever was presented (forged ones too).
    removeHeaders: [
      ...carriers.headers,
      ...(request ? spoofedHeaders(request, [DECISION_ID_HEADER, ON_ERROR_HEADER], ctx.catalog) : []),
    ],
    removeQueryParams: carriers.queryParams,
    responseHeaders: [],
  };
}

/** A failure while presented credentials were checked (deadline, exception): always a 503 denial. */
function identityUnavailable(
  request: Request,
  ctx: CheckContext,
  route: RoutePolicy | undefined,
  reason: string,
): Deny {
  return deny(request, ctx, route, null, { code: 'identity_unavailable', reason });
}

function deny(
  request: Request,
  ctx: CheckContext,
  route: RoutePolicy | undefined,
  identity: Identity | null,
  denial: Denial,
): Deny {
  return {
    kind: 'deny',
    code: denial.code,
    detail: denial.detail ?? DENY_CODES[denial.code].detail,
    headers: denial.headers ?? [],
    ...(denial.problem ? { problem: denial.problem } : {}),
    decisionId: ctx.decisionId,
    requestId: request.requestId || ctx.decisionId,
    route: route?.name ?? '',
    partner: denial.partner ?? identity?.partner?.id ?? '',
    policyVersion: ctx.catalog.version,
    reason: denial.reason ?? '',
  };
}

function withContent(decision: Decision, content: Decision['content']): Decision {
  return content ? { ...decision, content } : decision;
}

const NO_QUOTA: QuotaOutcome = Object.freeze({ headers: [], note: '' });

function allow(
  request: Request,
  ctx: CheckContext,
  route: RoutePolicy,
  identity: Identity,
  quota: QuotaOutcome,
  dryRun: Denial | null = null,
): Allow {
  const names = ctx.catalog.settings.identityHeaders;
  const upstreamHeaders: Header[] = [{ name: DECISION_ID_HEADER, value: ctx.decisionId }];
  const add = (name: string, value: string) => {
    if (value !== '') upstreamHeaders.push({ name, value });
  };
  const partner = identity.partner?.id ?? '';
  add(names.partner, partner);
  add(names.application, identity.application);
  add(names.subject, identity.user);
  add(names.scopes, [...identity.scopes].join(' '));
  for (const h of route.upstreamSet) upstreamHeaders.push(h);
  if (dryRun) upstreamHeaders.push({ name: DRY_RUN_HEADER, value: dryRun.code });
  const ours = upstreamHeaders.map((h) => h.name);
  const removeHeaders = [
    ...route.upstreamRemove,
    ...identity.credentialHeaders,
    ...spoofedHeaders(request, ours, ctx.catalog),
  ];
  return {
    kind: 'allow',
    code: 'allowed',
    upstreamHeaders,
    removeHeaders,
    removeQueryParams: identity.credentialQueryParams,
    responseHeaders: quota.headers.length > 0 ? [...route.responseSet, ...quota.headers] : route.responseSet,
    decisionId: ctx.decisionId,
    requestId: request.requestId || ctx.decisionId,
    route: route.name,
    partner,
    policyVersion: ctx.catalog.version,
    reason: [
      describeIdentity(identity),
      quota.note,
      dryRun ? `dry run: would deny ${dryRun.code} (${dryRun.reason ?? ''})` : '',
    ]
      .filter(Boolean)
      .join('; '),
    ...(dryRun ? { dryRun: dryRun.code } : {}),
  };
}

function describeIdentity(identity: Identity): string {
  if (identity.credentials.length === 0) return 'anonymous';
  const parts: string[] = [];
  if (identity.principal) parts.push(`mtls ${identity.principal}`);
  if (identity.credentials.includes('jwt'))
    parts.push(`jwt app=${identity.application} sub=${identity.user}`);
  if (identity.credentials.includes('api_key')) parts.push(`api_key ${identity.application}`);
  return parts.join('; ');
}

/**
 * Incoming identity headers we do not set ourselves: the upstream trusts them, so a partner must
 * never be able to send them (e.g. x-portcullis-partner on an anonymous route). That is every
 * `x-portcullis-*` header and the catalog's identity header names.
 */
function spoofedHeaders(request: Request, ours: readonly string[], catalog: Catalog): string[] {
  const names = catalog.settings.identityHeaders;
  const spoofed: string[] = [];
  for (const name of request.headers.keys()) {
    if (ours.includes(name)) continue;
    if (
      name.startsWith(HEADER_PREFIX) ||
      name === names.partner ||
      name === names.application ||
      name === names.subject ||
      name === names.scopes
    ) {
      spoofed.push(name);
    }
  }
  return spoofed;
}

function errorText(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** The decision for a CheckRequest that could not be read at all (no pipeline ran). */
export function rejectUnreadable(ctx: CheckContext, requestId: string, denial: Denial): Deny {
  return {
    kind: 'deny',
    code: denial.code,
    detail: denial.detail ?? DENY_CODES[denial.code].detail,
    headers: denial.headers ?? [],
    decisionId: ctx.decisionId,
    requestId: requestId || ctx.decisionId,
    route: '',
    partner: '',
    policyVersion: ctx.catalog.version,
    reason: denial.reason ?? '',
  };
}
