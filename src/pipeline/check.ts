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
import type { AdmissionGate, Ticket } from '../admission/gate.js';
import type { Clock } from '../clock.js';
import type { Allow, Decision, Denial, Deny, Header } from '../decision.js';
import { DENY_CODES } from '../errors.js';
import { HeaderList } from '../header-list.js';
import type { Catalog, RoutePolicy } from '../policy/catalog.js';
import type { Request } from '../request.js';
import { DependencyUnavailable, type StageResult } from '../stage.js';
import { type DeadlineEntry, Deadlines } from './deadlines.js';
import { credentialCarriers } from './identify.js';
import {
  ANONYMOUS,
  type AuthorizeOutcome,
  type ContentFindings,
  type Identity,
  type QuotaOutcome,
  type Settlement,
} from './outcomes.js';
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
  /**
   * Milliseconds spent in each stage that ran: `timings[i]` is stage STAGE_NAMES[i]. The stages run
   * in that order and the first denial ends the run, so the stages that ran are always a prefix.
   */
  readonly timings: readonly number[];
  /** The failure behind an `on_error` decision, for the log. */
  readonly error?: unknown;
}

type Verdict = 'keep' | 'refund';

/** A partner never pays for our refusal: a Check denied with a 5xx gets its charge back. */
function verdictOf(decision: Decision): Verdict {
  return decision.kind === 'deny' && DENY_CODES[decision.code].http >= 500 ? 'refund' : 'keep';
}

const NO_QUOTA: QuotaOutcome = Object.freeze({ headers: [], note: '' });

/** Every Pipeline's Check deadlines, on one timer. */
const DEADLINES = new Deadlines();

type Admission = { readonly gate: AdmissionGate; readonly maxQueueWaitMs: number };

export class Pipeline {
  constructor(
    private readonly stages: Stages,
    private readonly clock: Clock,
    /** Admission control; absent = every Check is admitted (tests, `policy test`). */
    private readonly admission?: Admission,
  ) {}

  /**
   * The Check's outcome: a value when every stage answered synchronously (allow-all, cached
   * credentials, an in-process quota), a promise only once a stage had to wait. Never rejects.
   */
  check(request: Request, ctx: CheckContext): Outcome | Promise<Outcome> {
    const run = new CheckRun(this.stages, this.admission, this.clock, request, ctx);
    const outcome = decide(run);
    // The asynchronous path is settled inside its own single `then` (decidedLater).
    return outcome instanceof Promise ? outcome : settled(run, outcome);
  }
}

/** The Check is answered: settle its charge, now or (if the charge is still in flight) when it lands. */
function settled(run: CheckRun, outcome: Outcome): Outcome {
  run.verdict = verdictOf(outcome.decision);
  const settlement = run.settlement;
  run.settlement = undefined;
  settlement?.settle(run.verdict);
  return outcome;
}

function decide(run: CheckRun): Outcome | Promise<Outcome> {
  const now = run.clock.now();
  const remaining = run.ctx.deadline - now;
  const budget = remaining - deadlineMargin(remaining);
  if (budget <= 0) return failure(run, 'deadline_exceeded', 'deadline already passed');
  // One instant, on one clock, for the pipeline's timer and the scan's: the scan must give its own
  // answer (scan.on_error) before this timer turns a slow clamd into the route's on_error.
  run.answerBy = now + budget;
  let decision: Decision | Promise<Decision>;
  try {
    decision = run.start();
  } catch (error: unknown) {
    return thrown(run, error);
  }
  return decision instanceof Promise ? decidedLater(run, decision, budget) : decided(run, decision, budget);
}

function decidedLater(run: CheckRun, decision: Promise<Decision>, budget: number): Promise<Outcome> {
  // One `then` for the outcome and its settlement (a promise and a closure less per Check).
  // The admission slot, if the run holds one, is given back here too: no `then` of its own.
  if (!Number.isFinite(budget)) {
    return decision.then(
      (d) => {
        run.release();
        return settled(run, decided(run, d, budget));
      },
      (error: unknown) => {
        run.release();
        return settled(run, thrown(run, error));
      },
    );
  }
  // A stage is waiting: only now can the deadline pass before the decision (the synchronous part
  // could not be interrupted), so only now is there something to race.
  return new Promise((resolve, reject) => {
    const late = DEADLINES.add(new LateDecision(run, budget, resolve, reject));
    decision.then(
      (d) => {
        run.release();
        late.answer(d);
      },
      (error: unknown) => {
        run.release();
        late.fail(error);
      },
    );
  });
}

/**
 * A waiting Check racing its budget (counted from the start of the run): the pipeline's decision,
 * or the route's on_error once the budget passes first. It is its own entry in the shared deadline
 * heap (deadlines.ts), so the race costs no promise, closure or entry of its own.
 */
class LateDecision implements DeadlineEntry {
  readonly at: number;
  index = -1;
  fire: ((this: DeadlineEntry) => void) | null = expireLate;
  private done = false;

  constructor(
    private readonly run: CheckRun,
    private readonly budget: number,
    private readonly resolve: (outcome: Outcome) => void,
    private readonly reject: (error: unknown) => void,
  ) {
    this.at = run.began + budget;
  }

  answer(decision: Decision | undefined): void {
    if (this.done) return;
    this.done = true;
    if (decision !== undefined) DEADLINES.cancel(this);
    try {
      this.resolve(settled(this.run, decided(this.run, decision, this.budget)));
    } catch (error: unknown) {
      this.reject(error);
    }
  }

  fail(error: unknown): void {
    if (this.done) return;
    this.done = true;
    DEADLINES.cancel(this);
    try {
      this.resolve(settled(this.run, thrown(this.run, error)));
    } catch (failure: unknown) {
      this.reject(failure);
    }
  }
}

function expireLate(this: DeadlineEntry): void {
  (this as LateDecision).answer(undefined);
}

/** The pipeline's decision as the Check's outcome; undefined = the deadline passed first. */
function decided(run: CheckRun, decision: Decision | undefined, budget: number): Outcome {
  // Re-check after the pipeline: a late allow is a failure (the route's on_error). A late refusal
  // stays a refusal: lateness must never turn a deny into an on_error allow.
  if (decision === undefined || (decision.kind === 'allow' && run.clock.now() > run.ctx.deadline)) {
    run.answered = true;
    return failure(run, 'deadline_exceeded', `no decision within ${Math.round(budget)} ms`);
  }
  return { decision, timings: run.timings };
}

function thrown(run: CheckRun, error: unknown): Outcome {
  const code = error instanceof DependencyUnavailable ? 'dependency_unavailable' : 'internal_error';
  return failure(run, code, errorText(error), error);
}

/**
 * `step(value)` now when `result` is a value; when it is a promise, once it settles. Stages may
 * answer synchronously: then the run goes on without a promise, a closure or a microtask.
 */
function next<T>(
  run: CheckRun,
  result: T | Promise<T>,
  step: (this: CheckRun, value: T) => Decision | Promise<Decision>,
): Decision | Promise<Decision> {
  return result instanceof Promise ? later(run, result, step) : step.call(run, result);
}

// Apart from next(): a closure's context is allocated whenever the function that could create it
// runs, even on the path that does not, so the closures of the asynchronous paths live apart.
function later<T>(
  run: CheckRun,
  result: Promise<T>,
  step: (this: CheckRun, value: T) => Decision | Promise<Decision>,
): Promise<Decision> {
  return result.then((value) => step.call(run, value));
}

/**
 * One Check through the stages: each step calls a stage and hands its result to the next step
 * (see next()). Its fields are the Check's progress, so a timeout can still answer with the
 * route's `on_error`, and what the later steps need from the earlier ones.
 */
class CheckRun {
  route: RoutePolicy | undefined = undefined;
  /** True while presented credentials are being checked: a failure then is a denial, never on_error. */
  identifying = false;
  identity: Identity | undefined = undefined;
  /** The scan stage has answered (then a failure cannot leave the body unscanned). */
  scanned = false;
  /** Milliseconds per stage that ran, in STAGE_NAMES order (see Outcome). */
  readonly timings: number[] = [];
  /** Set once the Check was answered without its pipeline (the deadline): admitted late, it stops. */
  answered = false;
  /** The quota charge's settlement, until the Check is answered. */
  settlement: Settlement | undefined = undefined;
  /** Set once the Check is answered: what its charge deserves (a charge made later is settled so). */
  verdict: Verdict | undefined = undefined;
  /** Epoch ms (the pipeline's clock) by which the pipeline answers anyway. */
  answerBy = 0;
  /** The admission slot held while the decision is still to come (release()). */
  private ticket: Ticket | null = null;
  /** performance.now() when the run began, and when the current stage began. */
  began = 0;
  private started = 0;
  /** What the stages found, for the steps after them. */
  private dryRun: Denial | null = null;
  private findings: ContentFindings | null = null;
  private charge: QuotaOutcome = NO_QUOTA;

  constructor(
    private readonly stages: Stages,
    private readonly admission: Admission | undefined,
    readonly clock: Clock,
    readonly request: Request,
    readonly ctx: CheckContext,
  ) {}

  start(): Decision | Promise<Decision> {
    this.began = performance.now();
    this.started = this.began;
    return next(this, this.stages.route(this.request, this.ctx.catalog), this.routed);
  }

  private lap(): void {
    const now = performance.now();
    this.timings.push(now - this.started);
    this.started = now;
  }

  private routed(route: StageResult<RoutePolicy>): Decision | Promise<Decision> {
    this.lap();
    if (!route.ok) return deny(this.request, this.ctx, undefined, null, route.denial);
    this.route = route.value;
    const admission = this.admission;
    if (!admission) return this.identify();
    const { ctx } = this;
    const now = this.clock.now();
    const remaining = ctx.deadline - now;
    const { gate } = admission;
    const startBy = Math.min(
      ctx.deadline - deadlineMargin(remaining) - gate.serviceMs,
      now + admission.maxQueueWaitMs,
    );
    return next(this, gate.enter(callerKey(this.request, route.value), startBy), this.entered);
  }

  private entered(ticket: Ticket | null): Decision | Promise<Decision> {
    const route = this.policy();
    const gate = this.admission?.gate;
    if (gate === undefined) throw new Error('pipeline: admitted without admission control');
    if (ticket === null) return overloadDecision(this.request, this.ctx, route);
    if (this.answered) {
      gate.leave(ticket, false);
      return overloadDecision(this.request, this.ctx, route);
    }
    this.started = performance.now();
    let decision: Decision | Promise<Decision>;
    try {
      decision = this.identify();
    } catch (error: unknown) {
      gate.leave(ticket);
      throw error;
    }
    // A decision still to come: the slot is given back once it has come (decidedLater, release()).
    if (decision instanceof Promise) this.ticket = ticket;
    else gate.leave(ticket);
    return decision;
  }

  /** Gives back the admission slot of a run whose decision had to wait, once it has come. */
  release(): void {
    const ticket = this.ticket;
    if (ticket === null) return;
    this.ticket = null;
    this.admission?.gate.leave(ticket);
  }

  // The stages after admission.

  private identify(): Decision | Promise<Decision> {
    this.identifying = true;
    return next(this, this.stages.identify(this.request, this.ctx.catalog, this.policy()), this.identified);
  }

  private identified(identity: StageResult<Identity>): Decision | Promise<Decision> {
    this.identifying = false;
    this.lap();
    if (!identity.ok) return this.refused(null, identity.denial);
    this.identity = identity.value;
    const { request, ctx } = this;
    return next(
      this,
      this.stages.authorize(request, ctx.catalog, this.policy(), identity.value),
      this.authorized,
    );
  }

  private authorized(access: StageResult<AuthorizeOutcome>): Decision | Promise<Decision> {
    this.lap();
    const identity = this.caller();
    if (!access.ok) return this.refused(identity, access.denial);
    this.dryRun = access.value.dryRun;
    return next(this, this.stages.inspect(this.request, this.policy(), identity), this.inspected);
  }

  private inspected(inspected: StageResult<ContentFindings | null>): Decision | Promise<Decision> {
    this.lap();
    const identity = this.caller();
    if (!inspected.ok) return this.refused(identity, inspected.denial);
    this.findings = inspected.value;
    const { request, ctx } = this;
    return next(this, this.stages.quota(request, ctx.catalog, this.policy(), identity), this.charged);
  }

  private charged(quota: StageResult<QuotaOutcome>): Decision | Promise<Decision> {
    this.lap();
    if (!quota.ok) return this.refused(this.caller(), quota.denial);
    const settlement = quota.value.settlement;
    if (settlement && this.verdict)
      settlement.settle(this.verdict); // answered already (the deadline): settle at once
    else this.settlement = settlement;
    this.charge = quota.value;
    // The scan ends SCAN_VERDICT_MS before the pipeline's own timer fires (both set from answerBy), so
    // a slow scanner is always answered by the scan's declared behaviour, never by the route's on_error.
    return next(this, this.stages.scan(this.findings, this.answerBy - SCAN_VERDICT_MS), this.scannedBy);
  }

  private scannedBy(scanned: StageResult<string>): Decision {
    this.lap();
    this.scanned = true;
    const identity = this.caller();
    const findings = this.findings;
    const content = findings
      ? { sha256: findings.inspected.sha256, scan: scanned.ok ? scanned.value : 'refused' }
      : undefined;
    if (!scanned.ok) return withContent(this.refused(identity, scanned.denial), content);
    return allow(this.request, this.ctx, this.policy(), identity, this.charge, this.dryRun, content);
  }

  /** On a dry-run route a denial is only recorded: the request goes on, marked upstream. */
  private refused(who: Identity | null, denial: Denial): Decision {
    const route = this.policy();
    return route.dryRun
      ? allow(this.request, this.ctx, route, who ?? ANONYMOUS, NO_QUOTA, denial)
      : deny(this.request, this.ctx, route, who, denial);
  }

  /** The route, once routed (every step after `routed`). */
  private policy(): RoutePolicy {
    const route = this.route;
    if (route === undefined) throw new Error('pipeline: no route before the route stage');
    return route;
  }

  /** The caller, once identified (every step after `identified`). */
  private caller(): Identity {
    const identity = this.identity;
    if (identity === undefined) throw new Error('pipeline: no identity before the identify stage');
    return identity;
  }
}

function failure(run: CheckRun, code: FailureCode, reason: string, error?: unknown): Outcome {
  const { request, ctx } = run;
  // Who the caller is was not established: whatever on_error says, that is a denial.
  // A body that must be scanned and was not: the scan's declared answer, whatever on_error says.
  const decision = run.identifying
    ? identityUnavailable(request, ctx, run.route, `${code}: ${reason}`)
    : run.route && !run.scanned && mustBeScanned(request, run.route, run.identity)
      ? deny(request, ctx, run.route, run.identity ?? null, {
          code: 'scan_unavailable',
          reason: `${code}: ${reason}; the body was not scanned`,
        })
      : failureDecision(request, ctx, run.route, run.identity?.partner?.id ?? '', code, reason);
  return error === undefined ? { decision, timings: run.timings } : { decision, timings: run.timings, error };
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
  const upstreamHeaders = [
    { name: DECISION_ID_HEADER, value: ctx.decisionId },
    { name: ON_ERROR_HEADER, value: 'overloaded' },
  ];
  return {
    ...base,
    kind: 'allow',
    code: 'allowed_on_error',
    upstreamHeaders,
    removeHeaders: spoofedHeaders(request, upstreamHeaders, ctx.catalog),
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
  // Only the markers: a route's own headers may depend on checks that never finished.
  const upstreamHeaders = [
    { name: DECISION_ID_HEADER, value: ctx.decisionId },
    { name: ON_ERROR_HEADER, value: code },
  ];
  return {
    ...base,
    kind: 'allow',
    code: 'allowed_on_error',
    upstreamHeaders,
    // Credentials go no further than on any allow, whatever was presented (forged ones too).
    removeHeaders: [
      ...carriers.headers,
      ...(request ? spoofedHeaders(request, upstreamHeaders, ctx.catalog) : []),
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

const NO_NAMES: readonly string[] = Object.freeze([]);

function allow(
  request: Request,
  ctx: CheckContext,
  route: RoutePolicy,
  identity: Identity,
  quota: QuotaOutcome,
  dryRun: Denial | null = null,
  content?: Decision['content'],
): Allow {
  const names = ctx.catalog.settings.identityHeaders;
  const upstreamHeaders: Header[] = [{ name: DECISION_ID_HEADER, value: ctx.decisionId }];
  const partner = identity.partner?.id ?? '';
  if (partner !== '') upstreamHeaders.push({ name: names.partner, value: partner });
  if (identity.application !== '')
    upstreamHeaders.push({ name: names.application, value: identity.application });
  if (identity.user !== '') upstreamHeaders.push({ name: names.subject, value: identity.user });
  const scopes = joinScopes(identity.scopes);
  if (scopes !== '') upstreamHeaders.push({ name: names.scopes, value: scopes });
  const set = route.upstreamSet;
  for (let i = 0; i < set.length; i++) upstreamHeaders.push(set[i] as Header);
  if (dryRun) upstreamHeaders.push({ name: DRY_RUN_HEADER, value: dryRun.code });
  const spoofed = spoofedHeaders(request, upstreamHeaders, ctx.catalog);
  // The route's own list serves as is when there is nothing to add to it (the common case).
  const removeHeaders =
    identity.credentialHeaders.length === 0 && spoofed.length === 0
      ? route.upstreamRemove
      : [...route.upstreamRemove, ...identity.credentialHeaders, ...spoofed];
  let reason = describeIdentity(identity);
  if (quota.note !== '') reason = joinReason(reason, quota.note);
  if (dryRun) reason = joinReason(reason, `dry run: would deny ${dryRun.code} (${dryRun.reason ?? ''})`);
  const decision: Allow = {
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
    reason,
    // In the literal, not spread on after: V8 copies a spread object on a slow path (~1 µs here).
    content,
  };
  return dryRun ? { ...decision, dryRun: dryRun.code } : decision;
}

/** The scopes, space-separated (as `[...scopes].join(' ')`, without the array). */
function joinScopes(scopes: ReadonlySet<string>): string {
  if (scopes.size === 0) return '';
  let joined = '';
  let first = true;
  for (const scope of scopes) {
    joined = first ? scope : `${joined} ${scope}`;
    first = false;
  }
  return joined;
}

/** Parts of an audit reason, `; `-separated, the empty ones left out. */
function joinReason(reason: string, part: string): string {
  return reason === '' ? part : part === '' ? reason : `${reason}; ${part}`;
}

function describeIdentity(identity: Identity): string {
  if (identity.credentials.length === 0) return 'anonymous';
  let described = '';
  if (identity.principal) described = `mtls ${identity.principal}`;
  if (identity.credentials.includes('jwt'))
    described = joinReason(described, `jwt app=${identity.application} sub=${identity.user}`);
  if (identity.credentials.includes('api_key'))
    described = joinReason(described, `api_key ${identity.application}`);
  return described;
}

/**
 * Incoming identity headers we do not set ourselves (`ours`: what goes upstream): the upstream
 * trusts them, so a partner must never be able to send them (e.g. x-portcullis-partner on an
 * anonymous route). That is every `x-portcullis-*` header and the catalog's identity header names.
 */
function spoofedHeaders(request: Request, ours: readonly Header[], catalog: Catalog): readonly string[] {
  const names = catalog.settings.identityHeaders;
  let spoofed: string[] | undefined;
  const headers = request.headers;
  // Every Check reads every name: by index from a HeaderList (its keys() is a generator).
  if (headers instanceof HeaderList) {
    for (let i = 0; i < headers.size; i++) spoofed = addSpoofed(spoofed, headers.nameAt(i), ours, names);
  } else {
    for (const name of headers.keys()) spoofed = addSpoofed(spoofed, name, ours, names);
  }
  return spoofed ?? NO_NAMES;
}

/** `spoofed` with `name` added when we do not set it ourselves (an array made only for the first). */
function addSpoofed(
  spoofed: string[] | undefined,
  name: string,
  ours: readonly Header[],
  names: Catalog['settings']['identityHeaders'],
): string[] | undefined {
  const identity =
    name.startsWith(HEADER_PREFIX) ||
    name === names.partner ||
    name === names.application ||
    name === names.subject ||
    name === names.scopes;
  if (!identity || sets(ours, name)) return spoofed;
  if (spoofed === undefined) return [name];
  spoofed.push(name);
  return spoofed;
}

function sets(headers: readonly Header[], name: string): boolean {
  for (let i = 0; i < headers.length; i++) if ((headers[i] as Header).name === name) return true;
  return false;
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
