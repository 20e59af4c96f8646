// The Check RPC handler: wire bytes in, wire bytes out, and in between one call to the pipeline.
// It never throws and never leaves a call unanswered: whatever goes wrong becomes a decision.
import { randomUUID } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
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
import { CHECK_PATH, checkCodec, type WireCheckRequest } from './codec.js';
import { normalize } from './normalize.js';
import { toCheckResponse } from './respond.js';

/** What the deserializer hands the handler when the bytes are not a CheckRequest. */
interface Unreadable {
  readonly unreadable: string;
}

export interface CheckHandlerDeps {
  /** The catalog and its pipeline: read once per Check, so a reload never mixes versions. */
  readonly runtime: () => { readonly catalog: Catalog; readonly pipeline: Pipeline };
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** null = tracing off: nothing is recorded, nothing is paid. */
  readonly tracing: Tracing | null;
}

const codec = checkCodec();

/** The service definition, with protobufjs codecs instead of proto-loader's object conversions. */
export const authorizationService: grpc.ServiceDefinition = {
  Check: {
    path: CHECK_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: (value: Uint8Array) => Buffer.from(value),
    requestDeserialize: (bytes: Buffer): WireCheckRequest | Unreadable => {
      try {
        return codec.decodeRequest(bytes);
      } catch (err: unknown) {
        return { unreadable: err instanceof Error ? err.message : String(err) };
      }
    },
    responseSerialize: (value: Uint8Array) => Buffer.from(value.buffer, value.byteOffset, value.byteLength),
    responseDeserialize: (bytes: Buffer) => bytes,
  },
};

export function checkHandler(
  deps: CheckHandlerDeps,
): grpc.handleUnaryCall<WireCheckRequest | Unreadable, Uint8Array> {
  return (call, callback) => {
    const started = performance.now();
    const { catalog, pipeline } = deps.runtime();
    const deadline = call.getDeadline();
    const ctx: CheckContext = {
      catalog,
      decisionId: randomUUID(),
      deadline: deadline instanceof Date ? deadline.getTime() : deadline,
    };
    decide(pipeline, ctx, call.request).then(
      ({ outcome, request }) => callback(null, answer(deps, ctx, outcome, request, started)),
      // decide() catches everything itself; this is the last line of defence.
      (err: unknown) => {
        const decision = failureDecision(null, ctx, undefined, '', 'internal_error', String(err));
        callback(null, answer(deps, ctx, { decision, timings: [], error: err }, null, started));
      },
    );
  };
}

async function decide(
  pipeline: Pipeline,
  ctx: CheckContext,
  wire: WireCheckRequest | Unreadable,
): Promise<{ outcome: Outcome; request: Request | null }> {
  if ('unreadable' in wire) {
    const denial = {
      code: 'request_malformed' as const,
      reason: `undecodable CheckRequest: ${wire.unreadable}`,
    };
    return { outcome: { decision: rejectUnreadable(ctx, '', denial), timings: [] }, request: null };
  }
  const normalized = normalize(wire, { maxHeaderValueBytes: ctx.catalog.settings.maxHeaderValueBytes });
  if (!normalized.ok) {
    return {
      outcome: { decision: rejectUnreadable(ctx, normalized.requestId, normalized.denial), timings: [] },
      request: null,
    };
  }
  const outcome = await pipeline.check(normalized.request, ctx);
  return { outcome, request: normalized.request };
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
    bytes = codec.encodeResponse(toCheckResponse(decision, ctx.catalog.settings.problemBaseUrl));
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
    bytes = codec.encodeResponse(toCheckResponse(decision, ctx.catalog.settings.problemBaseUrl));
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
