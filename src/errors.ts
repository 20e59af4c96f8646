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
  RESOURCE_EXHAUSTED: 8,
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
  request_path_invalid: {
    grpc: GrpcCode.INVALID_ARGUMENT,
    http: 400,
    title: 'Invalid request path',
    detail: 'The request path contains ";" (path parameters), which this gateway does not accept.',
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
  credentials_ambiguous: {
    grpc: GrpcCode.INVALID_ARGUMENT,
    http: 400,
    title: 'Ambiguous credentials',
    detail:
      'The request carries more than one credential of a kind (e.g. two Authorization headers); send one.',
  },
  token_in_query: {
    grpc: GrpcCode.INVALID_ARGUMENT,
    http: 400,
    title: 'Token in the URL',
    detail:
      'Access tokens are not accepted in the query string on this route; send an Authorization: Bearer header.',
  },
  token_malformed: {
    grpc: GrpcCode.UNAUTHENTICATED,
    http: 401,
    title: 'Malformed token',
    detail: 'The access token is not a well-formed signed JWT.',
  },
  token_signature_invalid: {
    grpc: GrpcCode.UNAUTHENTICATED,
    http: 401,
    title: 'Invalid token signature',
    detail: 'The access token signature does not verify.',
  },
  token_key_unknown: {
    grpc: GrpcCode.UNAUTHENTICATED,
    http: 401,
    title: 'Unknown signing key',
    detail: 'The access token names a signing key (kid) the issuer does not publish.',
  },
  token_algorithm_not_allowed: {
    grpc: GrpcCode.UNAUTHENTICATED,
    http: 401,
    title: 'Signature algorithm not allowed',
    detail: 'The access token is signed with an algorithm this issuer is not configured for.',
  },
  token_expired: {
    grpc: GrpcCode.UNAUTHENTICATED,
    http: 401,
    title: 'Token expired',
    detail: 'The access token has expired; obtain a new one.',
  },
  token_not_yet_valid: {
    grpc: GrpcCode.UNAUTHENTICATED,
    http: 401,
    title: 'Token not yet valid',
    detail: 'The access token is not valid yet (nbf); check your clock.',
  },
  token_lifetime_invalid: {
    grpc: GrpcCode.UNAUTHENTICATED,
    http: 401,
    title: 'Token lifetime invalid',
    detail: 'The access token was issued in the future or lives longer than this issuer allows.',
  },
  token_issuer_invalid: {
    grpc: GrpcCode.UNAUTHENTICATED,
    http: 401,
    title: 'Untrusted token issuer',
    detail: 'The access token comes from an issuer this route does not trust.',
  },
  token_audience_invalid: {
    grpc: GrpcCode.UNAUTHENTICATED,
    http: 401,
    title: 'Wrong token audience',
    detail: 'The access token is not issued for this API (aud).',
  },
  token_claims_invalid: {
    grpc: GrpcCode.UNAUTHENTICATED,
    http: 401,
    title: 'Invalid token claims',
    detail: 'The access token lacks a required claim or carries an invalid one.',
  },
  token_revoked: {
    grpc: GrpcCode.UNAUTHENTICATED,
    http: 401,
    title: 'Token revoked',
    detail: 'The access token, or the application it was issued to, has been revoked.',
  },
  certificate_mismatch: {
    grpc: GrpcCode.UNAUTHENTICATED,
    http: 401,
    title: 'Token not bound to this certificate',
    detail: 'The access token is bound to a client certificate (RFC 8705) other than the one presented.',
  },
  token_keys_unavailable: {
    grpc: GrpcCode.UNAVAILABLE,
    http: 503,
    title: 'Token keys unavailable',
    detail: "The gateway cannot get the token issuer's signing keys right now; retry later.",
  },
  identity_unavailable: {
    grpc: GrpcCode.UNAVAILABLE,
    http: 503,
    title: 'Identity check unavailable',
    detail: 'The gateway could not finish checking the presented credentials in time; retry later.',
  },
  insufficient_scope: {
    grpc: GrpcCode.PERMISSION_DENIED,
    http: 403,
    title: 'Insufficient scope',
    detail: 'The access token lacks a scope this route requires.',
  },
  step_up_required: {
    grpc: GrpcCode.UNAUTHENTICATED,
    http: 401,
    title: 'Stronger authentication required',
    detail: 'This route requires a more recent or stronger user authentication; re-authenticate and retry.',
  },
  api_key_invalid: {
    grpc: GrpcCode.UNAUTHENTICATED,
    http: 401,
    title: 'Invalid API key',
    detail: 'The API key is not valid.',
  },
  api_key_expired: {
    grpc: GrpcCode.UNAUTHENTICATED,
    http: 401,
    title: 'API key expired',
    detail: 'The API key has expired; ask for a new one.',
  },
  api_key_revoked: {
    grpc: GrpcCode.UNAUTHENTICATED,
    http: 401,
    title: 'API key revoked',
    detail: 'The API key has been revoked.',
  },
  partner_unknown: {
    grpc: GrpcCode.PERMISSION_DENIED,
    http: 403,
    title: 'Unknown partner',
    detail: 'The presented credentials are valid but belong to no registered partner.',
  },
  partner_mismatch: {
    grpc: GrpcCode.PERMISSION_DENIED,
    http: 403,
    title: 'Credentials of different partners',
    detail: 'The credentials presented belong to different partners.',
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
  rule_denied: {
    grpc: GrpcCode.PERMISSION_DENIED,
    http: 403,
    title: 'Refused by policy',
    detail: 'A policy rule refused this request.',
  },
  source_ip_denied: {
    grpc: GrpcCode.PERMISSION_DENIED,
    http: 403,
    title: 'Source address denied',
    detail: 'Requests from this network address are not accepted on this route.',
  },
  body_too_large: {
    grpc: GrpcCode.INVALID_ARGUMENT,
    http: 413,
    title: 'Body too large',
    detail: 'The body is larger than this route accepts.',
  },
  body_truncated: {
    grpc: GrpcCode.INVALID_ARGUMENT,
    http: 413,
    title: 'Body incomplete',
    detail:
      'The gateway received only part of the body, and this route checks whole bodies; send a smaller body.',
  },
  body_required: {
    grpc: GrpcCode.INVALID_ARGUMENT,
    http: 400,
    title: 'Body required',
    detail: 'A request with this method must carry a body on this route.',
  },
  body_not_allowed: {
    grpc: GrpcCode.INVALID_ARGUMENT,
    http: 400,
    title: 'Body not allowed',
    detail: 'A request with this method must not carry a body on this route.',
  },
  media_type_invalid: {
    grpc: GrpcCode.INVALID_ARGUMENT,
    http: 400,
    title: 'Invalid Content-Type',
    detail: 'The Content-Type header is not a valid media type.',
  },
  media_type_not_allowed: {
    grpc: GrpcCode.INVALID_ARGUMENT,
    http: 415,
    title: 'Unsupported media type',
    detail: 'This route does not accept this content type (or charset).',
  },
  media_type_mismatch: {
    grpc: GrpcCode.INVALID_ARGUMENT,
    http: 415,
    title: 'Content does not match its type',
    detail: 'The content is not what its Content-Type declares.',
  },
  content_encoding_not_allowed: {
    grpc: GrpcCode.INVALID_ARGUMENT,
    http: 415,
    title: 'Content encoding not accepted',
    detail: 'This route does not accept this Content-Encoding.',
  },
  json_malformed: {
    grpc: GrpcCode.INVALID_ARGUMENT,
    http: 400,
    title: 'Malformed JSON',
    detail: 'The body is not valid JSON (or not UTF-8).',
  },
  json_limits_exceeded: {
    grpc: GrpcCode.INVALID_ARGUMENT,
    http: 422,
    title: 'JSON exceeds limits',
    detail: 'The JSON body is too deep, has too many members, a string too long, or is too large.',
  },
  json_duplicate_key: {
    grpc: GrpcCode.INVALID_ARGUMENT,
    http: 400,
    title: 'Duplicate JSON key',
    detail: 'The JSON body repeats a key in one object; send each key once.',
  },
  json_forbidden_key: {
    grpc: GrpcCode.INVALID_ARGUMENT,
    http: 400,
    title: 'Forbidden JSON key',
    detail: 'The JSON body uses a forbidden key ("__proto__", or "constructor" holding "prototype").',
  },
  schema_violation: {
    grpc: GrpcCode.INVALID_ARGUMENT,
    http: 422,
    title: 'Body does not match the schema',
    detail: "The body does not match this route's schema; errors lists the failing JSON pointers.",
  },
  digest_invalid: {
    grpc: GrpcCode.INVALID_ARGUMENT,
    http: 400,
    title: 'Malformed digest header',
    detail: 'A digest header (Content-Digest, Content-MD5, X-Checksum-SHA256) is malformed.',
  },
  digest_missing: {
    grpc: GrpcCode.INVALID_ARGUMENT,
    http: 400,
    title: 'Digest required',
    detail: 'This route requires Content-Digest with sha-256 or sha-512 (RFC 9530).',
  },
  digest_mismatch: {
    grpc: GrpcCode.INVALID_ARGUMENT,
    http: 400,
    title: 'Digest mismatch',
    detail: 'The digest does not match the body received.',
  },
  multipart_invalid: {
    grpc: GrpcCode.INVALID_ARGUMENT,
    http: 400,
    title: 'Malformed form body',
    detail: 'The multipart or urlencoded body cannot be read.',
  },
  multipart_limits_exceeded: {
    grpc: GrpcCode.INVALID_ARGUMENT,
    http: 413,
    title: 'Form body exceeds limits',
    detail: 'The form has too many parts or a part that is too large.',
  },
  filename_invalid: {
    grpc: GrpcCode.INVALID_ARGUMENT,
    http: 400,
    title: 'Invalid file name',
    detail: 'A file name is not accepted (path, "..", control characters, length); send a plain file name.',
  },
  malware_detected: {
    grpc: GrpcCode.PERMISSION_DENIED,
    http: 422,
    title: 'Malware detected',
    detail: 'The content was refused by the malware scan.',
  },
  scan_unavailable: {
    grpc: GrpcCode.UNAVAILABLE,
    http: 503,
    title: 'Malware scan unavailable',
    detail: 'The gateway cannot scan the content for malware right now; retry later.',
  },
  scan_too_large: {
    grpc: GrpcCode.INVALID_ARGUMENT,
    http: 413,
    title: 'Too large to scan',
    detail: 'The content is larger than the gateway can scan for malware; send a smaller file.',
  },
  quota_exceeded: {
    grpc: GrpcCode.RESOURCE_EXHAUSTED,
    http: 429,
    title: 'Quota exceeded',
    detail: 'A quota of this partner is exhausted; retry after the time in Retry-After.',
  },
  quota_unavailable: {
    grpc: GrpcCode.UNAVAILABLE,
    http: 503,
    title: 'Quota service unavailable',
    detail: 'The gateway cannot check quotas right now; retry later.',
  },
  internal_error: {
    grpc: GrpcCode.UNAVAILABLE,
    http: 503,
    title: 'Authorization unavailable',
    detail: 'The gateway could not complete its checks; retry later.',
  },
  dependency_unavailable: {
    grpc: GrpcCode.UNAVAILABLE,
    http: 503,
    title: 'Authorization unavailable',
    detail: 'A service the gateway depends on is unavailable; retry later.',
  },
  overloaded: {
    grpc: GrpcCode.UNAVAILABLE,
    http: 503,
    title: 'Gateway overloaded',
    detail:
      'The gateway is handling more requests than it can right now; retry after the time in Retry-After.',
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
