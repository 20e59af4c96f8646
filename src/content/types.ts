// Content inspection: the compiled per-route content policy and the failures the inspection returns.
// Everything here is data. The catalog loader builds a ContentPolicy once (defaults applied, schema
// compiled, frozen); src/content/inspect.ts applies it to one request.

import type { Header } from '../decision.js';
import type { LinearRegExp } from './linear-regex.js';

/**
 * An allowed media type: `type/subtype` (lower-case; `*` as subtype, or `*\/*`, matches any) and the
 * parameters a request MUST carry with these values (names lower-case; `charset` compared
 * case-insensitively, other values exactly). Build one with `parseMediaRange` (src/content/media.ts).
 */
export interface MediaRange {
  readonly type: string;
  readonly subtype: string;
  readonly params: ReadonlyMap<string, string>;
}

/** One failed JSON Schema check, for the partner: an RFC 6901 pointer into the body and a message. */
export interface SchemaError {
  /** `/items/3/price`; `/` for the document itself. */
  readonly pointer: string;
  readonly message: string;
}

/** At most this many schema errors are reported, whatever the number found. */
export const MAX_SCHEMA_ERRORS = 20;

/** A JSON Schema compiled once at load time (see `compileSchema` in src/content/json.ts). */
export interface CompiledSchema {
  /** The name the catalog gave it (file name or id), for messages and the audit log. */
  readonly name: string;
  /** null when the value is valid; else the first MAX_SCHEMA_ERRORS errors and how many there were. */
  validate(value: unknown): { readonly errors: readonly SchemaError[]; readonly total: number } | null;
  /**
   * The fast pass for this schema (src/content/json-accept.ts): accepts a body without parsing it, or
   * leaves it to the full path. null when the schema uses a keyword the pass does not judge.
   */
  readonly accept: JsonAcceptor | null;
}

/** What the pre-scan measured. */
export interface JsonStats {
  readonly bytes: number;
  readonly depth: number;
  readonly keys: number;
  /** Longest string or key, in bytes as sent. */
  readonly longestString: number;
  /**
   * A key is `__proto__` or `constructor` as sent, or has an escape (and could unescape to one): only
   * then can the parsed document hold a poisoning key, and only then is it walked for one.
   */
  readonly suspectKeys: boolean;
}

/** The limits of JsonPolicy that the fast pass enforces. */
export type AcceptLimits = Pick<JsonPolicy, 'maxDepth' | 'maxKeys' | 'maxStringLength'>;

/**
 * A JSON body's fast pass (src/content/json-accept.ts): JsonStats when the body is certainly accepted
 * by parseJson and the schema, else null (the full path judges it).
 */
export type JsonAcceptor = (bytes: Uint8Array, limits: AcceptLimits) => JsonStats | null;

export interface JsonPolicy {
  /** Nesting depth: `{}` and `[]` are 1, `{"a":[1]}` is 2. */
  readonly maxDepth: number;
  /** Object members in the whole document. */
  readonly maxKeys: number;
  /** Longest string (key or value), in bytes as sent (escapes count as written). */
  readonly maxStringLength: number;
  /** Size of the JSON body in bytes (may be below the route's maxBodyBytes). */
  readonly maxBytes: number;
  /** 'deny': a key repeated in one object is refused (RFC 8259 leaves its meaning undefined). */
  readonly duplicateKeys: 'deny' | 'allow';
  readonly schema?: CompiledSchema;
}

export type LegacyDigest = 'content-md5' | 'x-checksum-sha256';

export interface DigestPolicy {
  /** A request without a usable digest (Content-Digest sha-256/sha-512, or an accepted legacy one) is refused. */
  readonly require: boolean;
  /** Legacy headers verified (and, with `require`, accepted) besides Content-Digest. */
  readonly legacy: readonly LegacyDigest[];
}

export interface MultipartPolicy {
  /** Parts (fields and files) of a multipart/form-data body, or fields of a urlencoded one. */
  readonly maxParts: number;
  /** Size of one part's value or file content. */
  readonly maxPartBytes: number;
  /** Declared types file parts may have; empty = any. Each file part is also checked by magic bytes. */
  readonly allowedTypes: readonly MediaRange[];
  /** A file name must also match this (after the built-in rules); RE2, linear time. */
  readonly filenamePattern?: LinearRegExp;
  /** Longest file name, in UTF-8 bytes. */
  readonly maxFilenameBytes: number;
}

export interface ScanPolicy {
  /** Media types scanned (the declared or the detected type of the body or of a file part); empty = all. */
  readonly types: readonly MediaRange[];
  /** What a scanner failure (unreachable, timeout, protocol error) means: refuse (default) or let through. */
  readonly onError: 'deny' | 'allow';
  /** Per-scan timeout; the remaining Check deadline bounds it further. */
  readonly timeoutMs: number;
  /** Largest object scanned (clamd's StreamMaxLength); anything larger is refused as scan_too_large. */
  readonly maxBytes: number;
}

/** The compiled content policy of one route (and partner). Frozen by the loader. */
export interface ContentPolicy {
  /** Largest body accepted, in bytes (also checked against a declared Content-Length). */
  readonly maxBodyBytes: number;
  /** Allowed Content-Type values for a non-empty body; empty = any (a Content-Type is still parsed). */
  readonly allowedTypes: readonly MediaRange[];
  /** Upper-case methods that must carry a body. */
  readonly bodyRequiredMethods: ReadonlySet<string>;
  /** Upper-case methods that must not carry one. */
  readonly bodyForbiddenMethods: ReadonlySet<string>;
  /** Envoy sent part of the body: refuse (413 body_truncated) or skip the checks that need all of it. */
  readonly onTruncated: 'deny' | 'skip';
  /** Compare the declared type with the magic bytes / text heuristics of the content. */
  readonly magic: boolean;
  /**
   * Content-Encoding values accepted besides identity. An encoded body is size-checked, digest-checked
   * and scanned as sent, but not parsed (no magic, JSON or form checks). Empty = only identity.
   */
  readonly contentEncodings: readonly string[];
  /** JSON checks for bodies declared application/json or `+json`; null = none. */
  readonly json: JsonPolicy | null;
  /** Digest checks; null = digest headers are ignored. */
  readonly digest: DigestPolicy | null;
  /** Form parsing for multipart/form-data and application/x-www-form-urlencoded; null = not parsed. */
  readonly multipart: MultipartPolicy | null;
  /** Malware scanning; null = none. */
  readonly scan: ScanPolicy | null;
}

/** Every code content inspection can return: stable snake_case, public (docs/errors.md). */
export const CONTENT_FAILURE_CODES = [
  'body_too_large',
  'body_truncated',
  'body_required',
  'body_not_allowed',
  'media_type_invalid',
  'media_type_not_allowed',
  'media_type_mismatch',
  'content_encoding_not_allowed',
  'json_malformed',
  'json_limits_exceeded',
  'json_duplicate_key',
  'json_forbidden_key',
  'schema_violation',
  'digest_invalid',
  'digest_missing',
  'digest_mismatch',
  'multipart_invalid',
  'multipart_limits_exceeded',
  'filename_invalid',
  'malware_detected',
  'scan_unavailable',
  'scan_too_large',
] as const;
export type ContentFailureCode = (typeof CONTENT_FAILURE_CODES)[number];

interface FailureBase {
  /** For the partner: what is wrong and what to do. Never internals (no signature names, no stack). */
  readonly detail: string;
  /** For the audit log only. */
  readonly reason: string;
  /** Response headers for the partner (e.g. Want-Content-Digest). */
  readonly headers?: readonly Header[];
}

/** Why content inspection refused a request. */
export type ContentFailure =
  | (FailureBase & { readonly code: Exclude<ContentFailureCode, 'schema_violation'> })
  | (FailureBase & {
      readonly code: 'schema_violation';
      /** At most MAX_SCHEMA_ERRORS, in the validator's order. */
      readonly errors: readonly SchemaError[];
      /** How many errors the validator found (≥ errors.length). */
      readonly totalErrors: number;
    });

export type Outcome<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly failure: ContentFailure };

export const ok = <T>(value: T): Outcome<T> => ({ ok: true, value });
export const fail = (failure: ContentFailure): Outcome<never> => ({ ok: false, failure });
