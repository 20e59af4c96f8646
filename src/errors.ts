// The one registry of decision codes. Every code maps to a gRPC status (what Envoy sees), an HTTP
// status (what the partner sees), a public title and a docs anchor (docs/errors.md#<code>).
// test/unit/errors.test.ts keeps this file, docs/errors.md and the metrics labels in step.
// Codes are public API: never rename or reuse one; retire it instead.

/** gRPC status codes used in CheckResponse.status (google.rpc.Code). */
export const GrpcCode = {
  OK: 0,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  PERMISSION_DENIED: 7,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;
export type GrpcCode = (typeof GrpcCode)[keyof typeof GrpcCode];

export interface DenySpec {
  readonly grpc: GrpcCode;
  readonly http: number;
  /** Short, stable, partner-facing summary (RFC 9457 `title`). */
  readonly title: string;
  /** Default partner-facing `detail`: what went wrong and what to do. Stages may say more. */
  readonly detail: string;
}

export const DENY_CODES = {
  request_malformed: {
    grpc: GrpcCode.INVALID_ARGUMENT,
    http: 400,
    title: 'Malformed request',
    detail: 'The request could not be read by the gateway.',
  },
  request_header_invalid: {
    grpc: GrpcCode.INVALID_ARGUMENT,
    http: 400,
    title: 'Invalid request header',
    detail: 'A request header is too large, is not valid UTF-8 or contains control characters.',
  },
  route_not_found: {
    grpc: GrpcCode.NOT_FOUND,
    http: 404,
    title: 'No such route',
    detail: 'No API route matches this host and path.',
  },
  method_not_allowed: {
    grpc: GrpcCode.PERMISSION_DENIED,
    http: 405,
    title: 'Method not allowed',
    detail: 'This route does not accept this method; the Allow header lists the ones it does.',
  },
  credentials_missing: {
    grpc: GrpcCode.UNAUTHENTICATED,
    http: 401,
    title: 'Credentials required',
    detail: 'This route requires partner credentials and none were presented.',
  },
  partner_unknown: {
    grpc: GrpcCode.PERMISSION_DENIED,
    http: 403,
    title: 'Unknown partner',
    detail: 'The presented credentials are valid but belong to no registered partner.',
  },
  partner_suspended: {
    grpc: GrpcCode.PERMISSION_DENIED,
    http: 403,
    title: 'Partner suspended',
    detail: 'This partner account is suspended; contact your partner manager.',
  },
  partner_denied: {
    grpc: GrpcCode.PERMISSION_DENIED,
    http: 403,
    title: 'Partner denied',
    detail: 'This partner may not use this API route.',
  },
  partner_not_allowed: {
    grpc: GrpcCode.PERMISSION_DENIED,
    http: 403,
    title: 'Partner not allowed',
    detail: 'This API route is open to a restricted set of partners, and this partner is not one of them.',
  },
  source_ip_denied: {
    grpc: GrpcCode.PERMISSION_DENIED,
    http: 403,
    title: 'Source address denied',
    detail: 'Requests from this network address are not accepted on this route.',
  },
  internal_error: {
    grpc: GrpcCode.UNAVAILABLE,
    http: 503,
    title: 'Authorization unavailable',
    detail: 'The gateway could not complete its checks; retry later.',
  },
  deadline_exceeded: {
    grpc: GrpcCode.DEADLINE_EXCEEDED,
    http: 503,
    title: 'Authorization timed out',
    detail: 'The gateway could not complete its checks in time; retry later.',
  },
} as const satisfies Record<string, DenySpec>;

export type DenyCode = keyof typeof DENY_CODES;

/** Codes of allowed decisions. `allowed_on_error` = a route with `on_error: allow` let a failure through. */
export const ALLOW_CODES = ['allowed', 'allowed_on_error'] as const;
export type AllowCode = (typeof ALLOW_CODES)[number];

export type DecisionCode = AllowCode | DenyCode;

/** Every decision code, as used for the `code` metrics label. */
export const ALL_CODES: readonly DecisionCode[] = [
  ...ALLOW_CODES,
  ...(Object.keys(DENY_CODES) as DenyCode[]),
];

export function denySpec(code: DenyCode): DenySpec {
  return DENY_CODES[code];
}
