// OpenTelemetry traces: one span per Check, a child span per pipeline stage, joined to Envoy's trace
// through the request's `traceparent`. Off unless an OTLP endpoint is configured, and then recorded
// after the answer has gone out (from the timings the pipeline already keeps), so the hot path pays
// nothing when tracing is off and almost nothing when it is on.
import { context, SpanKind, SpanStatusCode, type TextMapGetter, trace } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { Decision } from '../decision.js';
import { STAGE_NAMES } from '../pipeline/check.js';
import type { Request } from '../request.js';

const headerGetter: TextMapGetter<ReadonlyMap<string, string>> = {
  keys: (carrier) => [...carrier.keys()],
  get: (carrier, key) => carrier.get(key),
};

export class Tracing {
  private readonly provider: BasicTracerProvider;
  private readonly propagator = new W3CTraceContextPropagator();
  private readonly tracer;

  constructor(endpoint: string, serviceName = 'portcullis') {
    this.provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ 'service.name': serviceName }),
      spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: endpoint }))],
    });
    this.tracer = this.provider.getTracer('portcullis');
  }

  /**
   * Records a finished Check. `startedAt` is epoch ms; stage timings are in pipeline order.
   * Stage spans are laid end to end from the start: the pipeline runs them one after the other.
   */
  record(
    request: Request | null,
    decision: Decision,
    timings: readonly number[],
    startedAt: number,
    durationMs: number,
  ): void {
    const parent = request
      ? this.propagator.extract(context.active(), request.headers, headerGetter)
      : context.active();
    const span = this.tracer.startSpan(
      'portcullis.check',
      {
        kind: SpanKind.SERVER,
        startTime: startedAt,
        attributes: {
          'portcullis.decision': decision.kind,
          'portcullis.code': decision.code,
          'portcullis.route': decision.route,
          'portcullis.partner': decision.partner,
          'portcullis.policy_version': decision.policyVersion,
          'portcullis.decision_id': decision.decisionId,
          'portcullis.request_id': decision.requestId,
          ...(request ? { 'http.request.method': request.method, 'url.path': request.path } : {}),
        },
      },
      parent,
    );
    if (decision.failure) span.setStatus({ code: SpanStatusCode.ERROR, message: decision.failure });
    const inner = trace.setSpan(parent, span);
    let at = startedAt;
    for (let i = 0; i < timings.length; i++) {
      const stage = STAGE_NAMES[i];
      const ms = timings[i];
      if (stage === undefined || ms === undefined) break;
      this.tracer.startSpan(`portcullis.${stage}`, { startTime: at }, inner).end(at + ms);
      at += ms;
    }
    span.end(startedAt + durationMs);
  }

  shutdown(): Promise<void> {
    return this.provider.shutdown();
  }
}
