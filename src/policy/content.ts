// A route's `content` section → the compiled ContentPolicy src/content/inspect.ts applies. Defaults
// live here: JSON limits and form limits apply to every inspected route, scanning and digests only
// where the route asks. Schemas are read and compiled once, here.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { compileSchema } from '../content/json.js';
import { compileLinear, type LinearRegExp } from '../content/linear-regex.js';
import { parseMediaRange } from '../content/media.js';
import type { CompiledSchema, ContentPolicy, MediaRange } from '../content/types.js';
import type { ContentDocument } from './schema.js';

export type ContentFields = Omit<ContentDocument, 'partners'>;

/** A content key that cannot be compiled: `at` is its path inside the route's `content` section. */
export class ContentKeyError extends Error {
  constructor(
    readonly at: readonly string[],
    cause: unknown,
  ) {
    super(`${at.join('.')}: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = 'ContentKeyError';
  }
}

export const CONTENT_DEFAULTS = {
  maxBodyBytes: 1024 * 1024,
  json: { maxDepth: 64, maxKeys: 10_000, maxStringLength: 1024 * 1024 },
  multipart: { maxParts: 100, maxFilenameBytes: 255 },
  scan: { timeoutMs: 2000, maxBytes: 25 * 1024 * 1024 },
} as const;

/** Merges a partner's override over the route's, key by key (nested sections too). */
export function mergeContent(base: ContentFields, over: ContentFields): ContentFields {
  const merged: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const prior = merged[key];
    merged[key] =
      value && typeof value === 'object' && !Array.isArray(value) && prior && typeof prior === 'object'
        ? { ...prior, ...value }
        : value;
  }
  return merged as ContentFields;
}

/** Compiles one content policy; throws an Error whose message names the offending key. */
export function compileContent(
  c: ContentFields,
  dir: string,
  files: { read(file: string): string } = { read: (file) => readFileSync(file, 'utf8') },
): ContentPolicy {
  const maxBodyBytes = c.max_body_bytes ?? CONTENT_DEFAULTS.maxBodyBytes;
  if (c.on_truncated === 'skip' && c.scan) {
    // Skipping would pass a truncated body unscanned, silently: a scanning route refuses it instead.
    throw new ContentKeyError(
      ['on_truncated'],
      new Error(
        'must not be "skip" on a route that scans: a truncated body cannot be scanned, and would pass unscanned (use deny, the default)',
      ),
    );
  }
  const ranges = (list: readonly string[] | undefined, key: string): MediaRange[] =>
    (list ?? []).map((text) => {
      try {
        return parseMediaRange(text);
      } catch (err: unknown) {
        throw new Error(`${key}: ${err instanceof Error ? err.message : String(err)}`);
      }
    });
  let schema: CompiledSchema | undefined;
  if (c.json?.schema) {
    const file = resolve(dir, c.json.schema);
    let parsed: unknown;
    try {
      parsed = JSON.parse(files.read(file));
    } catch (err: unknown) {
      throw new Error(
        `json.schema: cannot read ${c.json.schema}: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    try {
      schema = compileSchema(parsed, c.json.schema);
    } catch (err: unknown) {
      throw new ContentKeyError(['json', 'schema'], err);
    }
  }
  let filenamePattern: LinearRegExp | undefined;
  if (c.multipart?.filename_pattern !== undefined) {
    try {
      filenamePattern = compileLinear(c.multipart.filename_pattern);
    } catch (err: unknown) {
      throw new ContentKeyError(['multipart', 'filename_pattern'], err);
    }
  }
  return {
    maxBodyBytes,
    allowedTypes: ranges(c.types, 'types'),
    bodyRequiredMethods: new Set(c.body?.required_for ?? []),
    bodyForbiddenMethods: new Set(c.body?.forbidden_for ?? []),
    onTruncated: c.on_truncated ?? 'deny',
    magic: c.magic ?? true,
    contentEncodings: [...(c.encodings ?? [])],
    json: {
      maxDepth: c.json?.max_depth ?? CONTENT_DEFAULTS.json.maxDepth,
      maxKeys: c.json?.max_keys ?? CONTENT_DEFAULTS.json.maxKeys,
      maxStringLength: c.json?.max_string_length ?? CONTENT_DEFAULTS.json.maxStringLength,
      maxBytes: c.json?.max_bytes ?? maxBodyBytes,
      duplicateKeys: c.json?.duplicate_keys ?? 'deny',
      ...(schema ? { schema } : {}),
    },
    digest: c.digest ? { require: c.digest.require ?? false, legacy: [...(c.digest.legacy ?? [])] } : null,
    multipart: {
      maxParts: c.multipart?.max_parts ?? CONTENT_DEFAULTS.multipart.maxParts,
      maxPartBytes: c.multipart?.max_part_bytes ?? maxBodyBytes,
      allowedTypes: ranges(c.multipart?.types, 'multipart.types'),
      ...(filenamePattern ? { filenamePattern } : {}),
      maxFilenameBytes: CONTENT_DEFAULTS.multipart.maxFilenameBytes,
    },
    scan: c.scan
      ? {
          types: ranges(c.scan.types, 'scan.types'),
          onError: c.scan.on_error ?? 'deny',
          timeoutMs: c.scan.timeout_ms ?? CONTENT_DEFAULTS.scan.timeoutMs,
          maxBytes: c.scan.max_bytes ?? CONTENT_DEFAULTS.scan.maxBytes,
        }
      : null,
  };
}
