// Edge out: Decision → CheckResponse. Allow = status OK + ok_response; deny = the code's gRPC
// status + denied_response with an RFC 9457 problem body. Every header is validated first.
import type { Decision, Deny, Header } from '../decision.js';
import { DENY_CODES, GrpcCode } from '../errors.js';
import { nextStep, retryAfter503 } from '../partner-errors.js';
import { HEADER_NAME, HEADER_VALUE } from '../policy/schema.js';
import type { WireCheckResponse, WireHeaderOption } from './codec.js';

/** Envoy's HeaderValue limit (key and value each). */
const MAX_HEADER_BYTES = 16384;

export class InvalidHeaderError extends Error {
  constructor(header: Header, why: string) {
    super(`refusing to send header ${JSON.stringify(header.name.slice(0, 64))}: ${why}`);
    this.name = 'InvalidHeaderError';
  }
}

export function toCheckResponse(decision: Decision, problemBaseUrl: string): WireCheckResponse {
  const dynamic_metadata = metadata(decision);
  if (decision.kind === 'allow') {
    return {
      status: { code: GrpcCode.OK },
      ok_response: {
        headers: decision.upstreamHeaders.map(option),
        headers_to_remove: decision.removeHeaders.slice(),
        response_headers_to_add: decision.responseHeaders.map(option),
        query_parameters_to_remove: decision.removeQueryParams.slice(),
      },
      dynamic_metadata,
    };
  }
  const spec = DENY_CODES[decision.code];
  const headers = withRetryAfter(decision);
  return {
    status: { code: spec.grpc, message: decision.code },
    denied_response: {
      status: { code: spec.http },
      headers: [{ name: 'content-type', value: 'application/problem+json' }, ...headers].map(option),
      body: problemBody({ ...decision, headers }, problemBaseUrl),
    },
    dynamic_metadata,
  };
}

/**
 * Every 503 carries Retry-After: the stage's own figure when it set one (e.g. a breaker's pause),
 * else the code's default (partner-errors.ts). A property of the registry's HTTP status, so a new
 * 503 code gets it without touching its stage.
 */
export function withRetryAfter(decision: Deny): readonly Header[] {
  if (DENY_CODES[decision.code].http !== 503) return decision.headers;
  if (decision.headers.some((h) => h.name === 'retry-after')) return decision.headers;
  return [...decision.headers, { name: 'retry-after', value: String(retryAfter503(decision.code)) }];
}

/**
 * RFC 9457 problem details: what the partner can act on, never our internals (`reason`).
 * `request_id` is the x-request-id (the id the partner's client and Envoy's access log know),
 * `decision_id` the id of our audit line; operators find the decision by either. `retry_after`
 * repeats the Retry-After header's seconds (the same figure as the refusing limit's RateLimit `t`).
 */
export function problemBody(decision: Deny, problemBaseUrl: string): string {
  const spec = DENY_CODES[decision.code];
  const retry = decision.headers.find((h) => h.name === 'retry-after');
  return JSON.stringify({
    type: `${problemBaseUrl}#${decision.code}`,
    title: spec.title,
    status: spec.http,
    code: decision.code,
    detail: decision.detail,
    next_step: nextStep(decision.code),
    ...(retry ? { retry_after: Number(retry.value) } : {}),
    request_id: decision.requestId,
    decision_id: decision.decisionId,
    ...decision.problem,
  });
}

/**
 * Throws InvalidHeaderError unless Envoy can send the header as is: an RFC 7230 token name, no
 * control characters (header injection), key and value within Envoy's limit. Both encoders call it.
 */
export function checkHeader(header: Header): void {
  if (!HEADER_NAME.test(header.name) || header.name.length > MAX_HEADER_BYTES) {
    throw new InvalidHeaderError(header, 'name is not an RFC 7230 token');
  }
  if (!HEADER_VALUE.test(header.value))
    throw new InvalidHeaderError(header, 'value contains control characters');
  if (header.value.length * 3 > MAX_HEADER_BYTES && Buffer.byteLength(header.value) > MAX_HEADER_BYTES) {
    throw new InvalidHeaderError(header, `value is over ${MAX_HEADER_BYTES} bytes`);
  }
}

/** Always `append: {value: false}`: overwrite, the one meaning every Envoy version agrees on. */
function option(header: Header): WireHeaderOption {
  checkHeader(header);
  return { header: { key: header.name, value: header.value }, append: { value: false } };
}

/** For Envoy's access log, under the namespace envoy.filters.http.ext_authz. */
function metadata(decision: Decision): WireCheckResponse['dynamic_metadata'] {
  return {
    fields: {
      decision_id: { stringValue: decision.decisionId },
      decision: { stringValue: decision.kind },
      code: { stringValue: decision.code },
      partner: { stringValue: decision.partner },
      route: { stringValue: decision.route },
      policy_version: { stringValue: decision.policyVersion },
    },
  };
}
