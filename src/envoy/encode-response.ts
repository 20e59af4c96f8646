// Decision → CheckResponse bytes by hand, the hot path of every Check: one exactly-sized Buffer
// and no intermediate object tree (toCheckResponse() + protobufjs cost ~5 KB of garbage a Check,
// most of it the dynamic_metadata Struct). Two passes over the decision: measure (validating every
// header and recording each string's UTF-8 length), then write. Field numbers are Envoy's
// (protos/envoy/service/auth/v3/external_auth.proto); toCheckResponse() stays the readable
// reference, and test/contract/encode-response.test.ts proves both decode to the same message with
// Envoy's official protos.
import type { Decision, Deny, Header } from '../decision.js';
import { DENY_CODES, GrpcCode } from '../errors.js';
import { checkHeader, problemBody, withRetryAfter } from './respond.js';

// Tags (field number << 3 | wire type): 0 = varint, 2 = length-delimited. Every one fits a byte.
const T_STATUS = 0x0a; // CheckResponse.status = 1
const T_DENIED = 0x12; // CheckResponse.denied_response = 2
const T_OK = 0x1a; // CheckResponse.ok_response = 3
const T_METADATA = 0x22; // CheckResponse.dynamic_metadata = 4
const T_CODE = 0x08; // google.rpc.Status.code = 1, type.v3.HttpStatus.code = 1
const T_MESSAGE = 0x12; // google.rpc.Status.message = 2
const T_HTTP_STATUS = 0x0a; // DeniedHttpResponse.status = 1
const T_DENIED_HEADERS = 0x12; // DeniedHttpResponse.headers = 2
const T_BODY = 0x1a; // DeniedHttpResponse.body = 3
const T_OK_HEADERS = 0x12; // OkHttpResponse.headers = 2
const T_REMOVE = 0x2a; // OkHttpResponse.headers_to_remove = 5
const T_RESPONSE_HEADERS = 0x32; // OkHttpResponse.response_headers_to_add = 6
const T_QUERY_REMOVE = 0x42; // OkHttpResponse.query_parameters_to_remove = 8
const T_OPTION_HEADER = 0x0a; // HeaderValueOption.header = 1
const T_FIELDS = 0x0a; // Struct.fields = 1 (a map: one FieldsEntry message per key)
const T_KEY = 0x0a; // HeaderValue.key = 1, Struct.FieldsEntry.key = 1
const T_VALUE = 0x12; // HeaderValue.value = 2, Struct.FieldsEntry.value = 2
const T_STRING_VALUE = 0x1a; // google.protobuf.Value.string_value = 3

/** `status {code: 0}`, as protobufjs writes it (an explicitly set zero is written). */
const STATUS_OK = Buffer.from([T_STATUS, 2, T_CODE, GrpcCode.OK]);
/** `append {value: false}` (HeaderValueOption.append = 2, BoolValue.value = 1): always overwrite. */
const APPEND_FALSE = Buffer.from([0x12, 2, 0x08, 0]);
const PROBLEM_JSON: Header = { name: 'content-type', value: 'application/problem+json' };

/** The Struct's entries in toCheckResponse's order, each key pre-encoded as `key: "…"`. */
const METADATA_KEYS = ['decision_id', 'decision', 'code', 'partner', 'route', 'policy_version'].map((key) =>
  Buffer.concat([Buffer.from([T_KEY, key.length]), Buffer.from(key)]),
);

/**
 * UTF-8 lengths of the strings being encoded, in write order: measured once, then read back by the
 * write pass. Shared across calls, which is safe because an encode runs synchronously to its end.
 */
let lengths = new Int32Array(128);
let measured = 0;
let consumed = 0;

/** The serialized CheckResponse for `decision`. Throws InvalidHeaderError like toCheckResponse(). */
export function encodeCheckResponse(decision: Decision, problemBaseUrl: string): Buffer {
  measured = 0;
  consumed = 0;
  if (decision.kind === 'allow') {
    const ok =
      headersSize(decision.upstreamHeaders) +
      stringsSize(decision.removeHeaders) +
      headersSize(decision.responseHeaders) +
      stringsSize(decision.removeQueryParams);
    const meta = metadataSize(decision);
    const out = Buffer.allocUnsafe(STATUS_OK.length + delimited(ok) + delimited(meta));
    let pos = copy(out, 0, STATUS_OK);
    pos = head(out, pos, T_OK, ok);
    pos = writeHeaders(out, pos, T_OK_HEADERS, decision.upstreamHeaders);
    pos = writeStrings(out, pos, T_REMOVE, decision.removeHeaders);
    pos = writeHeaders(out, pos, T_RESPONSE_HEADERS, decision.responseHeaders);
    pos = writeStrings(out, pos, T_QUERY_REMOVE, decision.removeQueryParams);
    return finish(out, writeMetadata(out, pos, decision, meta));
  }
  return encodeDeny(decision, problemBaseUrl);
}

/** Deny: the code's gRPC status, then the HTTP status, problem+json first, the problem body. */
function encodeDeny(decision: Deny, problemBaseUrl: string): Buffer {
  const spec = DENY_CODES[decision.code];
  const headers = withRetryAfter(decision);
  const status = 1 + varintSize(spec.grpc) + delimited(measure(decision.code));
  const httpStatus = 1 + varintSize(spec.http);
  let denied = delimited(httpStatus) + headerSize(PROBLEM_JSON) + headersSize(headers);
  // After the headers, as toCheckResponse(): an invalid header is refused before the body is built.
  const body = problemBody({ ...decision, headers }, problemBaseUrl);
  denied += delimited(measure(body));
  const meta = metadataSize(decision);
  const out = Buffer.allocUnsafe(delimited(status) + delimited(denied) + delimited(meta));
  let pos = head(out, 0, T_STATUS, status);
  out[pos++] = T_CODE;
  pos = varint(out, pos, spec.grpc);
  pos = writeString(out, pos, T_MESSAGE, decision.code);
  pos = head(out, pos, T_DENIED, denied);
  pos = head(out, pos, T_HTTP_STATUS, httpStatus);
  out[pos++] = T_CODE;
  pos = varint(out, pos, spec.http);
  pos = writeHeader(out, pos, T_DENIED_HEADERS, PROBLEM_JSON);
  pos = writeHeaders(out, pos, T_DENIED_HEADERS, headers);
  pos = writeString(out, pos, T_BODY, body);
  return finish(out, writeMetadata(out, pos, decision, meta));
}

/** Every byte written, none left over: a pooled allocUnsafe buffer must never carry stale memory. */
function finish(out: Buffer, pos: number): Buffer {
  if (pos !== out.length || consumed !== measured) {
    throw new Error(`CheckResponse encoder wrote ${pos} of ${out.length} bytes`);
  }
  return out;
}

// Measure pass: sizes of message bodies; every string's length is recorded in `lengths`.

function measure(s: string): number {
  const n = Buffer.byteLength(s);
  if (measured === lengths.length) {
    const grown = new Int32Array(measured * 2);
    grown.set(lengths);
    lengths = grown;
  }
  lengths[measured++] = n;
  return n;
}

function varintSize(n: number): number {
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5;
}

/** A length-delimited field with a one-byte tag and a body of `n` bytes. */
function delimited(n: number): number {
  return 1 + varintSize(n) + n;
}

/** HeaderValue {key, value}. */
function headerValueSize(keyBytes: number, valueBytes: number): number {
  return delimited(keyBytes) + delimited(valueBytes);
}

/** One repeated HeaderValueOption entry, validated first. */
function headerSize(header: Header): number {
  checkHeader(header);
  const option = delimited(headerValueSize(measure(header.name), measure(header.value)));
  return delimited(option + APPEND_FALSE.length);
}

function headersSize(headers: readonly Header[]): number {
  let n = 0;
  // Indexed loops here and below: an interpreted for-of allocates an iterator result per element.
  for (let i = 0; i < headers.length; i++) n += headerSize(headers[i] as Header);
  return n;
}

function stringsSize(strings: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < strings.length; i++) n += delimited(measure(strings[i] as string));
  return n;
}

/** One Struct entry per key: `{key, value: {string_value}}`. */
function metadataSize(decision: Decision): number {
  let n = 0;
  for (let i = 0; i < METADATA_KEYS.length; i++) {
    const value = delimited(measure(metadataValue(decision, i)));
    n += delimited((METADATA_KEYS[i] as Buffer).length + delimited(value));
  }
  return n;
}

/** The Struct's values, in METADATA_KEYS order (for Envoy's access log). */
function metadataValue(d: Decision, i: number): string {
  switch (i) {
    case 0:
      return d.decisionId;
    case 1:
      return d.kind;
    case 2:
      return d.code;
    case 3:
      return d.partner;
    case 4:
      return d.route;
    default:
      return d.policyVersion;
  }
}

// Write pass: the same walk, reading the lengths back in the same order.

function next(): number {
  return lengths[consumed++] as number;
}

function varint(out: Buffer, pos: number, n: number): number {
  while (n > 0x7f) {
    out[pos++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  out[pos++] = n;
  return pos;
}

/** A tag and a length: the head of a length-delimited field. */
function head(out: Buffer, pos: number, tag: number, n: number): number {
  out[pos++] = tag;
  return varint(out, pos, n);
}

/** The pre-encoded constants are a few bytes: a loop beats TypedArray#set's call overhead. */
function copy(out: Buffer, pos: number, bytes: Buffer): number {
  for (let i = 0; i < bytes.length; i++) out[pos + i] = bytes[i] as number;
  return pos + bytes.length;
}

/** A string field; short ASCII (length = bytes) is copied by hand, cheaper than a native call. */
function writeString(out: Buffer, pos: number, tag: number, s: string): number {
  const n = next();
  pos = head(out, pos, tag, n);
  if (n === s.length && n < 64) {
    for (let i = 0; i < n; i++) out[pos + i] = s.charCodeAt(i);
    return pos + n;
  }
  return pos + out.write(s, pos, n, 'utf8');
}

function writeHeader(out: Buffer, pos: number, tag: number, header: Header): number {
  const keyBytes = lengths[consumed] as number;
  const valueBytes = lengths[consumed + 1] as number;
  const value = headerValueSize(keyBytes, valueBytes);
  pos = head(out, pos, tag, delimited(value) + APPEND_FALSE.length);
  pos = head(out, pos, T_OPTION_HEADER, value);
  pos = writeString(out, pos, T_KEY, header.name);
  pos = writeString(out, pos, T_VALUE, header.value);
  return copy(out, pos, APPEND_FALSE);
}

function writeHeaders(out: Buffer, pos: number, tag: number, headers: readonly Header[]): number {
  for (let i = 0; i < headers.length; i++) pos = writeHeader(out, pos, tag, headers[i] as Header);
  return pos;
}

function writeStrings(out: Buffer, pos: number, tag: number, strings: readonly string[]): number {
  for (let i = 0; i < strings.length; i++) pos = writeString(out, pos, tag, strings[i] as string);
  return pos;
}

function writeMetadata(out: Buffer, pos: number, decision: Decision, size: number): number {
  pos = head(out, pos, T_METADATA, size);
  for (let i = 0; i < METADATA_KEYS.length; i++) {
    const key = METADATA_KEYS[i] as Buffer;
    const value = delimited(lengths[consumed] as number);
    pos = head(out, pos, T_FIELDS, key.length + delimited(value));
    pos = copy(out, pos, key);
    pos = head(out, pos, T_VALUE, value);
    pos = writeString(out, pos, T_STRING_VALUE, metadataValue(decision, i));
  }
  return pos;
}
