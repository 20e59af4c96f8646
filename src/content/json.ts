// JSON bodies, parsed with limits and validated against a JSON Schema.
//
// Order, cheapest refusal first: size → UTF-8 → a linear pre-scan of the decoded text (depth, member count,
// string length, duplicate keys, keys that could poison a prototype) → JSON.parse → prototype-poisoning
// scan (only when the pre-scan saw such a key) → schema. The pre-scan is a loop with an explicit stack
// of container kinds (no recursion), so a 10^5-level nesting bomb is refused at level maxDepth + 1 after
// reading that many bytes, and JSON.parse, the poisoning scan and ajv only ever see documents within the
// limits. It does not check the grammar: JSON.parse does that next (on a document JSON.parse accepts,
// the strings the pre-scan took for keys are exactly the keys).
import { Buffer, isUtf8 } from 'node:buffer';
import { Ajv, type AnySchema, type ErrorObject, type Options, type ValidateFunction } from 'ajv';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import sjson from 'secure-json-parse';
import { compileAcceptor } from './json-accept.js';
import { ajvRegExp } from './linear-regex.js';
import {
  type CompiledSchema,
  type ContentFailure,
  fail,
  type JsonAcceptor,
  type JsonPolicy,
  type JsonStats,
  MAX_SCHEMA_ERRORS,
  type Outcome,
  ok,
  type SchemaError,
} from './types.js';

// ajv-formats is CommonJS with `exports.default`: under NodeNext its default import is the module object.
const addFormats = addFormatsModule.default;

export interface ParsedJson {
  /**
   * The document; undefined when the fast pass accepted the body (json-accept.ts builds none, and
   * never accepts a body with an escape, the only case a scan needs the document's strings).
   */
  readonly value: unknown;
  readonly stats: JsonStats;
}

type Limits = Omit<JsonPolicy, 'schema'>;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OBJECT = 1;
const ARRAY = 2;

// The pre-scan's scratch arrays, reused from call to call (it runs to the end in one go, so one call
// at a time): allocating them per body was ~1 KB per Check. Past SCRATCH_KEPT entries (a document
// with thousands of keys open at once, or nesting as deep), they are dropped after the call.
const SCRATCH_KEPT = 4096;
/** The kind (OBJECT or ARRAY) of each open container, by depth. */
const KINDS: number[] = [];

const limitsExceeded = (detail: string, reason: string): ContentFailure => ({
  code: 'json_limits_exceeded',
  detail,
  reason,
});
const malformed = (detail: string, reason: string): ContentFailure => ({
  code: 'json_malformed',
  detail,
  reason,
});

/** prescanText over bytes already known to be UTF-8 (tests and tools; parseJson decodes once itself). */
export function prescanJson(bytes: Uint8Array, limits: Limits): Outcome<JsonStats> {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  return prescanText(text, bytes.byteLength, limits);
}

/**
 * One linear pass over the decoded text of a UTF-8 body of `byteLength` bytes, outside and across
 * strings: nesting depth, object members, string lengths and — when `duplicateKeys` is 'deny' — a key
 * repeated within one object (keys compared after unescaping, so `"a"` and `"\u0061"` are the same key).
 * Refuses as soon as a limit is crossed. It walks the string, not the bytes: String.prototype.indexOf
 * finds a string's end without leaving V8, where Buffer.indexOf crossed into C++ for every string and
 * made the pass cost as much as JSON.parse. Lengths and offsets are still in bytes as sent: equal to
 * the text's for ASCII, measured with Buffer.byteLength otherwise.
 */
export function prescanText(text: string, byteLength: number, limits: Limits): Outcome<JsonStats> {
  const objectKeys = limits.duplicateKeys === 'deny' ? OBJECT_KEYS.reset(text) : null;
  try {
    return scanText(text, byteLength, limits, objectKeys);
  } finally {
    objectKeys?.release();
    if (KINDS.length > SCRATCH_KEPT) KINDS.length = 0;
  }
}

/** Where the character at `i` starts, in bytes of the UTF-8 text (failures only). */
function byteOffset(text: string, ascii: boolean, i: number): number {
  return ascii ? i : Buffer.byteLength(text.slice(0, i));
}

function scanText(
  text: string,
  byteLength: number,
  limits: Limits,
  objectKeys: ObjectKeys | null,
): Outcome<JsonStats> {
  const n = text.length;
  const ascii = n === byteLength;
  const kinds = KINDS;
  let depth = 0;
  let maxDepth = 0;
  let keys = 0;
  let longest = 0;
  let suspectKeys = false;
  let expectKey = false;
  // Where the next backslash is, found once and reused until passed: keeps key decoding linear.
  let nextBackslash = -2;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const start = i + 1;
      const end = closingQuote(text, start);
      if (end === -1)
        return fail(
          malformed(
            'The body is not valid JSON: unterminated string.',
            `unterminated string at ${byteOffset(text, ascii, i)}`,
          ),
        );
      let length = end - start;
      // A UTF-16 unit is 1 to 3 bytes: only a string that could be the longest is measured. One that
      // is not has at most 3 × length ≤ longest ≤ maxStringLength bytes, so the check below holds.
      if (!ascii && 3 * length > longest) length = Buffer.byteLength(text.slice(start, end));
      if (length > longest) longest = length;
      if (length > limits.maxStringLength) {
        return fail(
          limitsExceeded(
            `The JSON body has a string longer than ${limits.maxStringLength} bytes.`,
            `string of ${length} bytes at byte ${byteOffset(text, ascii, i)} (limit ${limits.maxStringLength})`,
          ),
        );
      }
      if (expectKey && depth > 0 && kinds[depth - 1] === OBJECT) {
        keys++;
        if (keys > limits.maxKeys) {
          return fail(
            limitsExceeded(
              `The JSON body has more than ${limits.maxKeys} object members.`,
              `more than ${limits.maxKeys} keys (at byte ${byteOffset(text, ascii, i)})`,
            ),
          );
        }
        if (nextBackslash !== -1 && nextBackslash < start) nextBackslash = text.indexOf('\\', start);
        const escaped = nextBackslash !== -1 && nextBackslash < end;
        if (!suspectKeys && (escaped || isPoisonKey(text, start, end - start))) suspectKeys = true;
        if (objectKeys) {
          const added = objectKeys.add(depth - 1, start, end, escaped);
          if (added === BAD_ESCAPE)
            return fail(
              malformed(
                'The body is not valid JSON: bad escape in a key.',
                `bad escape at ${byteOffset(text, ascii, i)}`,
              ),
            );
          if (added !== NEW_KEY) {
            return fail({
              code: 'json_duplicate_key',
              detail: `The JSON body repeats the key ${JSON.stringify(truncate(added, 64))} in one object; send each key once.`,
              reason: `duplicate key at byte ${byteOffset(text, ascii, i)}`,
            });
          }
        }
        expectKey = false;
      }
      i = end + 1;
      continue;
    }
    switch (c) {
      case 0x7b: // {
      case 0x5b: // [
        depth++;
        if (depth > limits.maxDepth) {
          return fail(
            limitsExceeded(
              `The JSON body nests deeper than ${limits.maxDepth} levels.`,
              `depth over ${limits.maxDepth} at byte ${byteOffset(text, ascii, i)}`,
            ),
          );
        }
        if (depth > maxDepth) maxDepth = depth;
        kinds[depth - 1] = c === 0x7b ? OBJECT : ARRAY;
        if (c === 0x7b) objectKeys?.open(depth - 1);
        expectKey = c === 0x7b;
        break;
      case 0x7d: // }
      case 0x5d: // ]
        if (depth === 0)
          return fail(
            malformed(
              'The body is not valid JSON: unbalanced brackets.',
              `unbalanced at ${byteOffset(text, ascii, i)}`,
            ),
          );
        depth--;
        if (kinds[depth] === OBJECT) objectKeys?.close(depth);
        expectKey = false;
        break;
      case 0x2c: // ,
        expectKey = depth > 0 && kinds[depth - 1] === OBJECT;
        break;
      case 0x3a: // :
        expectKey = false;
        break;
      default:
        break;
    }
    i++;
  }
  return ok({ bytes: byteLength, depth: maxDepth, keys, longestString: longest, suspectKeys });
}

/** The quote that closes the string starting at `from`: the first not escaped by a backslash; -1 when none. */
function closingQuote(text: string, from: number): number {
  let end = text.indexOf('"', from);
  while (end !== -1) {
    let k = end - 1;
    while (k >= from && text.charCodeAt(k) === BACKSLASH) k--;
    if ((end - 1 - k) % 2 === 0) return end;
    end = text.indexOf('"', end + 1);
  }
  return -1;
}

/** The key is exactly `__proto__` or `constructor` as sent (the keys prototype poisoning uses). */
function isPoisonKey(text: string, start: number, length: number): boolean {
  if (length === 9) return text.startsWith('__proto__', start);
  return length === 11 && text.startsWith('constructor', start);
}

const NEW_KEY = 0;
const BAD_ESCAPE = 1;

/** Objects with up to this many keys compare keys as ranges of the text, in place; bigger ones use a Set. */
const SMALL_OBJECT = 16;

/**
 * The keys of the objects open at each depth. A small object keeps its keys as ranges of the text and
 * compares a new key with each (no string made; equal UTF-16 units are equal UTF-8 bytes); past
 * SMALL_OBJECT keys, or at the first escaped key, it switches to a Set of the keys' unescaped text.
 * The ranges of all open objects share one array, innermost last: an object's keys are contiguous, since
 * its parent adds none while it is open, and closing it drops them (`close`).
 */
class ObjectKeys {
  #text = '';
  /** [start, end) pairs; the open objects' keys, outermost first. */
  #ranges: number[] = [];
  #top = 0;
  /** Where each open object's ranges begin, by depth. */
  #bases: number[] = [];
  #sets: (Set<string> | undefined)[] = [];

  /** Ready for a new text (the scratch instance is reused: see SCRATCH_KEPT). */
  reset(text: string): this {
    this.#text = text;
    this.#top = 0;
    return this;
  }

  /** Drops what the last text left: the text itself, its sets, and oversized arrays. */
  release(): void {
    this.#text = '';
    const sets = this.#sets;
    if (sets.length > SCRATCH_KEPT) this.#sets = [];
    else sets.fill(undefined);
    if (this.#ranges.length > SCRATCH_KEPT) this.#ranges = [];
    if (this.#bases.length > SCRATCH_KEPT) this.#bases = [];
  }

  open(level: number): void {
    this.#bases[level] = this.#top;
    this.#sets[level] = undefined;
  }

  close(level: number): void {
    this.#top = this.#bases[level] as number;
    this.#sets[level] = undefined;
  }

  /** NEW_KEY, BAD_ESCAPE, or the repeated key's text. */
  add(
    level: number,
    start: number,
    end: number,
    escaped: boolean,
  ): typeof NEW_KEY | typeof BAD_ESCAPE | string {
    const text = this.#text;
    const ranges = this.#ranges;
    const base = this.#bases[level] as number;
    const top = this.#top;
    let set = this.#sets[level];
    if (!set && (escaped || top - base >= 2 * SMALL_OBJECT)) {
      set = new Set();
      for (let r = base; r < top; r += 2) set.add(text.slice(ranges[r], ranges[r + 1]));
      this.#sets[level] = set;
      this.#top = base;
    }
    if (set) {
      let key: string;
      if (escaped) {
        try {
          key = JSON.parse(`"${text.slice(start, end)}"`) as string;
        } catch {
          return BAD_ESCAPE;
        }
      } else {
        key = text.slice(start, end);
      }
      if (set.has(key)) return key;
      set.add(key);
      return NEW_KEY;
    }
    const length = end - start;
    for (let r = base; r < top; r += 2) {
      const s = ranges[r] as number;
      if ((ranges[r + 1] as number) - s !== length) continue;
      let k = 0;
      while (k < length && text.charCodeAt(s + k) === text.charCodeAt(start + k)) k++;
      if (k === length) return text.slice(start, end);
    }
    ranges[top] = start;
    ranges[top + 1] = end;
    this.#top = top + 2;
    return NEW_KEY;
  }
}

const OBJECT_KEYS = new ObjectKeys();

/**
 * Parses a JSON body within the policy's limits: valid UTF-8 (a leading byte order mark is ignored,
 * RFC 8259 §8.1), the pre-scan limits, the JSON grammar, and no `__proto__` key or
 * `constructor.prototype` object anywhere (secure-json-parse's scan).
 */
export function parseJson(bytes: Uint8Array, limits: Limits): Outcome<ParsedJson> {
  if (bytes.length > limits.maxBytes) {
    return fail(
      limitsExceeded(
        `The JSON body is larger than ${limits.maxBytes} bytes.`,
        `${bytes.length} bytes (limit ${limits.maxBytes})`,
      ),
    );
  }
  if (!isUtf8(bytes)) {
    const at = firstInvalidUtf8(bytes);
    return fail(
      malformed(
        `The JSON body is not valid UTF-8 (first bad byte at offset ${at}).`,
        `invalid UTF-8 at byte ${at}`,
      ),
    );
  }
  let text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  const scanned = prescanText(text, bytes.byteLength, limits);
  if (!scanned.ok) return scanned;
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error: unknown) {
    const message = error instanceof Error ? error.message : String(error);
    return fail(
      malformed(`The body is not valid JSON: ${describeSyntaxError(message)}.`, truncate(message, 200)),
    );
  }
  if (value !== null && typeof value === 'object' && scanned.value.suspectKeys) {
    try {
      sjson.scan(value as Record<string, unknown>, { protoAction: 'error', constructorAction: 'error' });
    } catch {
      return fail({
        code: 'json_forbidden_key',
        detail: 'The JSON body uses a forbidden key ("__proto__", or "constructor" holding a "prototype").',
        reason: 'prototype poisoning attempt',
      });
    }
  }
  return ok({ value, stats: scanned.value });
}

/** V8's message without the quoted input it sometimes carries, with the position when it gives one. */
function describeSyntaxError(message: string): string {
  const position = /at position (\d+)/.exec(message)?.[1];
  const what = message
    .replace(/, ".*" is not valid JSON$/s, '')
    .replace(/ in JSON at position \d+.*$/s, '')
    .replace(/^Unexpected token '(.)'.*$/s, "unexpected character '$1'");
  return position === undefined ? what : `${what} at character ${position}`;
}

/** Offset of the first byte that breaks UTF-8 (overlong forms and surrogates included). */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i] as number;
    if (b < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) need = 1;
    else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      if (b === 0xe0) lo = 0xa0;
      if (b === 0xed) hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      if (b === 0xf0) lo = 0x90;
      if (b === 0xf4) hi = 0x8f;
    } else return i;
    for (let k = 1; k <= need; k++) {
      const c = bytes[i + k];
      if (c === undefined) return i;
      if (k === 1 ? c < lo || c > hi : c < 0x80 || c > 0xbf) return i;
    }
    i += need + 1;
  }
  return -1;
}

/**
 * Compiles a JSON Schema once, at load time. The draft follows `$schema` (2020-12, 2019-09, else
 * draft-07); ajv runs in strict mode (unknown keywords, missing types and the like are errors; union
 * types are allowed) with ajv-formats. No network and no files: every $ref must resolve inside the
 * schema (ajv only fetches with compileAsync + loadSchema, never used here). Throws an Error naming the schema for an invalid one.
 */
export function compileSchema(schema: unknown, name: string): CompiledSchema {
  if (typeof schema !== 'boolean' && (typeof schema !== 'object' || schema === null || Array.isArray(schema)))
    throw new Error(`JSON schema "${name}" is invalid: a schema is an object or a boolean`);
  const draft =
    typeof schema === 'object' && typeof (schema as { $schema?: unknown }).$schema === 'string'
      ? ((schema as { $schema: string }).$schema as string)
      : '';
  const options: Options = {
    allErrors: true,
    strict: true,
    allowUnionTypes: true,
    // Catalog-supplied patterns run on RE2: linear time, whatever the pattern and the input.
    code: { regExp: ajvRegExp },
  };
  const ajv = draft.includes('2020-12')
    ? new Ajv2020(options)
    : draft.includes('2019-09')
      ? new Ajv2019(options)
      : new Ajv(options);
  addFormats(ajv);
  let validate: ValidateFunction;
  try {
    validate = ajv.compile(schema as AnySchema);
  } catch (error: unknown) {
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(`JSON schema "${name}" is invalid: ${message}`);
  }
  return Object.freeze({
    name,
    accept: compileAcceptor(schema),
    validate(value: unknown) {
      let valid: boolean;
      try {
        valid = validate(value) as boolean;
      } catch (error: unknown) {
        // Only a document nested deeper than the stack allows (a maxDepth set far too high) gets here.
        const message = error instanceof Error ? error.message : String(error);
        return { errors: [{ pointer: '/', message: `could not be validated: ${message}` }], total: 1 };
      }
      if (valid) return null;
      const all = validate.errors ?? [];
      return { errors: all.slice(0, MAX_SCHEMA_ERRORS).map(toSchemaError), total: Math.max(all.length, 1) };
    },
  });
}

function toSchemaError(e: ErrorObject): SchemaError {
  const base = e.instancePath;
  const params = e.params as Record<string, unknown>;
  const child = (key: unknown) => `${base}/${String(key).replace(/~/g, '~0').replace(/\//g, '~1')}`;
  switch (e.keyword) {
    case 'required':
    case 'dependentRequired':
    case 'dependencies':
      return { pointer: child(params.missingProperty), message: 'is required' };
    case 'additionalProperties':
      return { pointer: child(params.additionalProperty), message: 'is not allowed' };
    case 'unevaluatedProperties':
      return { pointer: child(params.unevaluatedProperty), message: 'is not allowed' };
    default:
      return { pointer: base || '/', message: e.message ?? `fails "${e.keyword}"` };
  }
}

/** Validates a parsed document; the failure lists at most MAX_SCHEMA_ERRORS pointers. */
export function checkSchema(value: unknown, schema: CompiledSchema): ContentFailure | null {
  const result = schema.validate(value);
  if (!result) return null;
  const shown = result.errors.map((e) => `${e.pointer} ${e.message}`).join('; ');
  const more =
    result.total > result.errors.length ? ` (and ${result.total - result.errors.length} more)` : '';
  return {
    code: 'schema_violation',
    detail: `The body does not match the schema of this route: ${shown}${more}.`,
    reason: `schema "${schema.name}": ${result.total} error(s)`,
    errors: result.errors,
    totalErrors: result.total,
  };
}

/** The fast pass of a JSON policy without a schema: the grammar and the limits. */
const ACCEPT_ANY = compileAcceptor(true) as JsonAcceptor;

/**
 * parseJson, then the policy's schema when it has one. The fast pass (json-accept.ts) goes first:
 * when it accepts, the body is accepted without being decoded or parsed; anything else (every
 * refusal among them) takes the full path, which words the answer.
 */
export function inspectJson(bytes: Uint8Array, policy: JsonPolicy): Outcome<ParsedJson> {
  const accept = policy.schema ? policy.schema.accept : ACCEPT_ANY;
  if (accept !== null && bytes.length <= policy.maxBytes) {
    const stats = accept(bytes, policy);
    if (stats !== null) return ok({ value: undefined, stats });
  }
  const parsed = parseJson(bytes, policy);
  if (!parsed.ok || !policy.schema) return parsed;
  const violation = checkSchema(parsed.value.value, policy.schema);
  return violation ? fail(violation) : parsed;
}

/**
 * Every string of a parsed document (keys and values), unescaped, one per line: what a malware scanner
 * must see when a payload hides in a JSON string, where escaping (`\\`, `\u0000`, `\/`) changes its bytes.
 * Iterative; the document is already within the depth limit.
 */
export function jsonStrings(value: unknown): Uint8Array {
  const out: string[] = [];
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === 'string') out.push(v);
    else if (Array.isArray(v)) for (let k = v.length - 1; k >= 0; k--) stack.push(v[k]);
    else if (v !== null && typeof v === 'object') {
      const entries = Object.entries(v as Record<string, unknown>);
      for (let k = entries.length - 1; k >= 0; k--) {
        const [key, item] = entries[k] as [string, unknown];
        stack.push(item);
        stack.push(key);
      }
    }
  }
  return Buffer.from(out.join('\n'), 'utf8');
}

function truncate(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}
