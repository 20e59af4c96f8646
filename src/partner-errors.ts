// What a partner should do next after each denial, and how long to wait after a 503. Partner-facing:
// these sentences go into the problem body (`next_step`) and docs/partner-errors.md, which is the
// page `settings.problem_base_url` points at. test/unit/partner-errors.test.ts renders every code's
// body and fails when a code has no next step or the page and this table disagree.
//
// Kept beside errors.ts rather than in it so that adding a code stays a two-line change there; a code
// without an entry here fails that test, not the build.
import { DENY_CODES, type DenyCode } from './errors.js';

/** The partner's next step, per deny code: one imperative sentence, no internals. */
export const NEXT_STEPS: Readonly<Record<string, string>> = {
  request_malformed:
    'Check that your HTTP client sends a well-formed request; if it does, contact support with the request_id.',
  request_header_invalid:
    'Remove control characters and non-UTF-8 bytes from your headers, keep each header under 16 KiB, and send again.',
  request_path_invalid:
    'Remove path parameters (";") from the URL path and send the path exactly as the API reference spells it.',
  route_not_found:
    'Check the host and path against the API reference; the URL you called is not part of the API.',
  method_not_allowed: 'Use one of the methods listed in the Allow header.',
  credentials_missing:
    'Send your credentials (an Authorization: Bearer token, your API key header or your client certificate) and retry.',
  credentials_ambiguous:
    'Send exactly one credential of each kind (one Authorization header, one API key) and retry.',
  token_in_query: 'Move the access token from the URL to an Authorization: Bearer header.',
  token_malformed:
    'Send the access token exactly as your token endpoint issued it (three base64url parts, signed).',
  token_signature_invalid:
    'Obtain a new access token from your token endpoint; do not modify tokens after issue.',
  token_key_unknown:
    'Obtain a new access token; if this persists, your issuer signs with a key it does not publish: contact support.',
  token_keys_unavailable:
    "Retry after the number of seconds in Retry-After: your token issuer's keys could not be checked just now.",
  identity_unavailable:
    'Retry after the number of seconds in Retry-After: your credentials could not be checked in time.',
  token_algorithm_not_allowed:
    'Ask for a token signed with an algorithm this API accepts (see your onboarding documents), then retry.',
  token_expired: 'Obtain a new access token from your token endpoint and retry.',
  token_not_yet_valid: "Synchronise your token issuer's clock (NTP), obtain a new token and retry.",
  token_lifetime_invalid:
    "Obtain a token with a shorter lifetime, and check that the issuer's clock is right.",
  token_issuer_invalid:
    'Obtain the token from the issuer this API trusts for this route (see your onboarding documents).',
  token_audience_invalid:
    "Request a token for this API's audience (see your onboarding documents) and retry.",
  token_claims_invalid:
    'Request a token with the claims this API requires (see your onboarding documents); contact support if unsure which.',
  token_revoked: 'Obtain a new token; if your application was revoked, contact your partner manager.',
  certificate_mismatch:
    'Present the client certificate the token was bound to, or obtain a token bound to your current certificate.',
  insufficient_scope: 'Request a token with the scope this route requires (see the API reference) and retry.',
  step_up_required:
    'Have the user sign in again (or with a stronger method) to obtain a fresh token, then retry.',
  api_key_invalid: 'Check that you send the full API key, unmodified, in the documented header.',
  api_key_expired: 'Ask your partner manager for a new API key and replace the expired one.',
  api_key_revoked:
    'Stop using this API key; ask your partner manager for a new one (quote the request_id if you did not expect this).',
  partner_unknown: 'Ask your partner manager to register these credentials (quote the request_id).',
  partner_mismatch: 'Send credentials of a single partner account on each request.',
  partner_suspended: 'Contact your partner manager to reactivate your account.',
  partner_denied:
    'Do not retry: this route is closed to your account. Contact your partner manager (quote the request_id) if you need access.',
  partner_not_allowed:
    'Do not retry: ask your partner manager for access to this route (quote the request_id).',
  rule_denied:
    'Read the detail for the rule that refused the request, change the request accordingly, and retry.',
  source_ip_denied:
    'Call from an address your account has registered, or ask your partner manager to add this one (quote the request_id).',
  body_too_large: 'Send a smaller body (see the route limits in the API reference), or split the upload.',
  body_truncated: 'Send a smaller body: the gateway checks whole bodies on this route.',
  body_required: 'Send a body with this request.',
  body_not_allowed: 'Send this request without a body.',
  media_type_invalid: 'Send a valid Content-Type header, e.g. "application/json".',
  media_type_not_allowed:
    'Send the body in one of the media types this route accepts (see the API reference).',
  media_type_mismatch:
    'Set Content-Type to the actual format of the body, or send content of the declared type.',
  content_encoding_not_allowed:
    'Send the body without this Content-Encoding (or with one the route accepts).',
  json_malformed: 'Send a valid UTF-8 JSON body.',
  json_limits_exceeded: 'Reduce the nesting, the number of members or the string lengths of the JSON body.',
  json_duplicate_key: 'Send each key once per JSON object.',
  json_forbidden_key: 'Rename or remove the "__proto__" / "constructor" keys in the JSON body.',
  schema_violation:
    'Fix the fields listed in errors (JSON pointers) to match the schema in the API reference.',
  digest_invalid: 'Send the digest header in its documented syntax (e.g. Content-Digest: sha-256=:base64:).',
  digest_missing: 'Add a Content-Digest header with the sha-256 or sha-512 of the body (RFC 9530).',
  digest_mismatch: 'Compute the digest over the exact bytes you send, and resend.',
  multipart_invalid:
    'Send a well-formed multipart/form-data or urlencoded body with the boundary declared in Content-Type.',
  multipart_limits_exceeded: 'Send fewer or smaller parts (see the route limits in the API reference).',
  filename_invalid: 'Use a plain file name without path separators, "..", or control characters.',
  malware_detected: 'Do not retry with this content: scan it on your side and send a clean file.',
  scan_unavailable: 'Retry after the number of seconds in Retry-After.',
  scan_too_large: 'Send a smaller file (see the route limits in the API reference).',
  quota_exceeded:
    'Wait the number of seconds in Retry-After (also in retry_after) before retrying; the RateLimit headers show what is left.',
  quota_unavailable: 'Retry after the number of seconds in Retry-After.',
  internal_error:
    'Retry after the number of seconds in Retry-After; if it persists, contact support with the request_id.',
  dependency_unavailable: 'Retry after the number of seconds in Retry-After.',
  deadline_exceeded: 'Retry after the number of seconds in Retry-After.',
  overloaded: 'Retry after the number of seconds in Retry-After, with backoff and jitter.',
};

/** Retry-After (seconds) sent with a 503 when the stage set none: the gateway's own guess. */
export const RETRY_AFTER_503: Readonly<Record<string, number>> = {
  scan_unavailable: 5,
  dependency_unavailable: 5,
  overloaded: 1,
};
export const DEFAULT_RETRY_AFTER_503 = 1;

/** The next step of a code (every registered code has one: the test enforces it). */
export function nextStep(code: DenyCode): string {
  return NEXT_STEPS[code] ?? 'Contact support with the request_id.';
}

/** Seconds to send in Retry-After for a 503 of this code. */
export function retryAfter503(code: DenyCode): number {
  return RETRY_AFTER_503[code] ?? DEFAULT_RETRY_AFTER_503;
}

/** Codes whose HTTP status is 503 (each always carries Retry-After). */
export function unavailableCodes(): DenyCode[] {
  return (Object.keys(DENY_CODES) as DenyCode[]).filter((c) => DENY_CODES[c].http === 503);
}

/**
 * docs/partner-errors.md, generated from the registry and NEXT_STEPS (`make docs` or
 * `node --import tsx scripts/partner-errors.ts`); the unit test fails when the file is stale.
 */
export function partnerErrorsPage(): string {
  const codes = Object.keys(DENY_CODES) as DenyCode[];
  const lines = [
    '# Errors you may receive from the API gateway',
    '',
    '<!-- Generated from src/errors.ts and src/partner-errors.ts by scripts/partner-errors.ts: do not edit. -->',
    '',
    'When the gateway refuses a request, it answers with an HTTP error status and an',
    '[RFC 9457](https://www.rfc-editor.org/rfc/rfc9457) problem body (`content-type: application/problem+json`):',
    '',
    '```json',
    '{',
    '  "type": "https://portcullis.dev/docs/partner-errors#quota_exceeded",',
    '  "title": "Quota exceeded",',
    '  "status": 429,',
    '  "code": "quota_exceeded",',
    '  "detail": "The limit \\"per-minute\\" (600 per minute) is exhausted; retry in 12 s.",',
    `  "next_step": ${JSON.stringify(NEXT_STEPS.quota_exceeded)},`,
    '  "retry_after": 12,',
    '  "request_id": "b74aa325-36bc-4bfd-975f-c575b74c0210",',
    '  "decision_id": "0b1f4f57-8d0e-4a5b-9a7c-2f1f8f7e8a11"',
    '}',
    '```',
    '',
    '- `code` is stable: build your error handling on it, not on `title` or `detail`.',
    '- `next_step` says what to do; each code below says the same.',
    '- `retry_after` (seconds) is present when the response carries `Retry-After`: every 503, and a 429',
    '  that a wait can cure. It equals the `t` of the refusing limit in the `RateLimit` header.',
    '- When you contact support, quote `request_id` (your `x-request-id`, if you sent one) and',
    "  `decision_id`: either finds the gateway's record of the decision.",
    '',
    '| code | HTTP | title |',
    '|---|---|---|',
    ...codes.map((c) => `| [\`${c}\`](#${c}) | ${DENY_CODES[c].http} | ${DENY_CODES[c].title} |`),
    '',
  ];
  for (const code of codes) {
    const spec = DENY_CODES[code];
    lines.push(`## ${code}`, '', `**${spec.http} ${spec.title}.** ${spec.detail}`, '');
    lines.push(`What to do: ${nextStep(code)}`, '');
    if (spec.http === 503)
      lines.push(`Carries \`Retry-After\` (${retryAfter503(code)} s unless the gateway knows better).`, '');
  }
  return `${lines.join('\n').trimEnd()}\n`;
}
