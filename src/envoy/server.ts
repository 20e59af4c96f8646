// The Check handling every transport shares: wire bytes in, wire bytes out, and in between one
// call to the pipeline (decode → normalize → pipeline → encode, audit, metrics, trace). It never
// throws and never leaves a call unanswered: whatever goes wrong becomes a decision. The
// transports (transport-http2.ts, transport-grpc-js.ts) only move bytes and gRPC status.
import type { Logger } from 'pino';
import type { Decision } from '../decision.js';
import { audit } from '../observability/audit.js';
import type { Metrics } from '../observability/metrics.js';
import type { Tracing } from '../observability/tracing.js';
import {
  type CheckContext,
  failureDecision,
  type Outcome,
  type Pipeline,
  rejectUnreadable,
} from '../pipeline/check.js';
import type { Catalog } from '../policy/catalog.js';
import type { Request } from '../request.js';
import { checkCodec, type WireCheckRequest } from './codec.js';
import { decisionId } from './decision-id.js';
import { encodeCheckResponse } from './encode-response.js';
import { normalize } from './normalize.js';

export interface CheckHandlerDeps {
  /** The catalog and its pipeline: read once per Check, so a reload never mixes versions. */
  readonly runtime: () => { readonly catalog: Catalog; readonly pipeline: Pipeline };
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** null = tracing off: nothing is recorded, nothing is paid. */
  readonly tracing: Tracing | null;
}

/**
 * One Check: the serialized CheckRequest (without the gRPC frame prefix) and the epoch ms by which
 * the caller needs the answer (Infinity = no grpc-timeout), to the serialized CheckResponse: the
 * bytes themselves when every stage answered synchronously (no promise, no microtask), else a
 * promise of them. It never throws and the promise never rejects.
 */
export type CheckHandler = (message: Uint8Array, deadline: number) => Uint8Array | Promise<Uint8Array>;

const codec = checkCodec();
/** No stage ran. */
const NO_TIMINGS: readonly number[] = Object.freeze([]);

export function createCheckHandler(deps: CheckHandlerDeps): CheckHandler {
  return (message, deadline) => {
    const started = performance.now();
    const { catalog, pipeline } = deps.runtime();
    const ctx: CheckContext = { catalog, decisionId: decisionId(), deadline };
    let outcome: Outcome;
    let request: Request | null = null;
    try {
      let wire: WireCheckRequest | undefined;
      let unreadable = '';
      try {
        wire = codec.decodeRequest(message);
      } catch (err: unknown) {
        unreadable = err instanceof Error ? err.message : String(err);
      }
      if (wire === undefined) {
        const denial = {
          code: 'request_malformed' as const,
          reason: `undecodable CheckRequest: ${unreadable}`,
        };
        outcome = { decision: rejectUnreadable(ctx, '', denial), timings: NO_TIMINGS };
      } else {
        const normalized = normalize(wire, catalog.settings);
        if (normalized.ok) {
          request = normalized.request;
          const checked = pipeline.check(request, ctx);
          if (checked instanceof Promise) return answerLater(deps, ctx, checked, request, started);
          outcome = checked;
        } else {
          outcome = {
            decision: rejectUnreadable(ctx, normalized.requestId, normalized.denial),
            timings: NO_TIMINGS,
          };
        }
      }
    } catch (err: unknown) {
      outcome = lastDefence(ctx, err);
      request = null;
    }
    return answer(deps, ctx, outcome, request, started);
  };
}

/** A Check whose pipeline had to wait: answered once it has decided (one `then`). */
function answerLater(
  deps: CheckHandlerDeps,
  ctx: CheckContext,
  checked: Promise<Outcome>,
  request: Request,
  started: number,
): Promise<Uint8Array> {
  return checked.then(
    (outcome) => answer(deps, ctx, outcome, request, started),
    (err: unknown) => answer(deps, ctx, lastDefence(ctx, err), null, started),
  );
}

/** The pipeline catches everything itself; this is the last line of defence. */
function lastDefence(ctx: CheckContext, err: unknown): Outcome {
  const decision = failureDecision(null, ctx, undefined, '', 'internal_error', String(err));
  return { decision, timings: NO_TIMINGS, error: err };
}

/** Encodes, audits and meters one decision. An unencodable decision becomes the route's on_error. */
function answer(
  deps: CheckHandlerDeps,
  ctx: CheckContext,
  outcome: Outcome,
  request: Request | null,
  started: number,
): Uint8Array {
  let { decision, error } = outcome;
  let bytes: Uint8Array;
  try {
    bytes = encodeCheckResponse(decision, ctx.catalog.settings.problemBaseUrl);
  } catch (err: unknown) {
    error = err;
    decision = failureDecision(
      request,
      ctx,
      ctx.catalog.routesByName.get(decision.route),
      decision.partner,
      'internal_error',
      err instanceof Error ? err.message : String(err),
    );
    bytes = encodeCheckResponse(decision, ctx.catalog.settings.problemBaseUrl);
  }
  const latencyMs = performance.now() - started;
  record(deps, ctx.catalog, decision, request, latencyMs, outcome, error);
  deps.tracing?.record(request, decision, outcome.timings, performance.timeOrigin + started, latencyMs);
  return bytes;
}

function record(
  deps: CheckHandlerDeps,
  catalog: Catalog,
  decision: Decision,
  request: Request | null,
  latencyMs: number,
  outcome: Outcome,
  error: unknown,
): void {
  deps.metrics.observe(decision, latencyMs / 1000, outcome.timings);
  if (decision.failure) deps.metrics.failure(decision.route, decision.failure);
  if (decision.failure === 'overloaded') deps.metrics.shed(decision.route, decision.partner, decision.kind);
  if (decision.kind === 'allow' && decision.dryRun) deps.metrics.dryRun(decision.route, decision.dryRun);
  audit(deps.logger, {
    decision,
    request,
    latencyMs,
    policyName: catalog.versionName,
    includeHeaders: catalog.settings.auditHeaders,
    error,
  });
}
