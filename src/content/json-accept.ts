// The fast way through a JSON body: one pass over its bytes that checks the grammar, the pre-scan's
// limits, duplicate keys and a JSON Schema together, without decoding the text or building the
// document. It only ever ACCEPTS: on anything it does not judge with certainty (an escape in a string,
// a duplicate key, a limit crossed, a schema violation, a number it cannot read exactly, malformed
// JSON) it answers null, and the full path (parseJson: pre-scan, JSON.parse, ajv) judges the body and
// words the refusal. So a refusal is always the full path's, and this pass must be sound: whatever it
// accepts, the full path accepts with the same JsonStats (test/unit/json-accept.test.ts checks both
// on generated and mutated documents).
//
// Why: for a 4 KiB order, pre-scan + UTF-8 decode + JSON.parse + ajv cost ~26 µs on a quiet core and
// leave ~10 KB of garbage (the text and the document); this pass costs about a third of that and
// allocates almost nothing.
//
// Schemas: compileAcceptor understands a subset of JSON Schema whose meaning is plain on bytes —
// type, properties, required, additionalProperties, items (one schema), min/maxItems,
// min/maxLength, pattern, enum and const of scalars, minimum, maximum, exclusiveMinimum,
// exclusiveMaximum (numbers), min/maxProperties, uniqueItems: false, and annotations. A schema using
// anything else (format, $ref, combinators, …) gets no acceptor: its bodies all take the full path.
import { Buffer, isUtf8 } from 'node:buffer';
import { compileLinear, type LinearRegExp } from './linear-regex.js';
import type { AcceptLimits, JsonAcceptor, JsonStats } from './types.js';

// Value classes, as bits: a schema node's `types` is the set it accepts.
const T_NULL = 1;
const T_BOOL = 2;
/** A number with an integral value (ajv's "integer": `!(x % 1)`), e.g. 3 and 3.0. */
const T_INT = 4;
/** A number with a fractional part. */
const T_FRAC = 8;
const T_STR = 16;
const T_ARR = 32;
const T_OBJ = 64;
const T_ALL = 127;

const TYPE_BITS: Readonly<Record<string, number>> = {
  null: T_NULL,
  boolean: T_BOOL,
  integer: T_INT,
  number: T_INT | T_FRAC,
  string: T_STR,
  array: T_ARR,
  object: T_OBJ,
};

type Scalar = string | number | boolean | null;

/** One compiled (sub)schema. Keywords apply only to values of their type, as in JSON Schema. */
class Node {
  types = T_ALL;
  minLength = 0;
  maxLength = Number.POSITIVE_INFINITY;
  pattern: LinearRegExp | null = null;
  minimum = Number.NEGATIVE_INFINITY;
  maximum = Number.POSITIVE_INFINITY;
  exclusiveMinimum = Number.NEGATIVE_INFINITY;
  exclusiveMaximum = Number.POSITIVE_INFINITY;
  enumValues: readonly Scalar[] | null = null;
  minItems = 0;
  maxItems = Number.POSITIVE_INFINITY;
  items: Node | null = null;
  /** Declared properties: their names as UTF-8, their schemas, their slots in the seen-stamps. */
  names: Uint8Array[] = [];
  children: Node[] = [];
  slots: number[] = [];
  /** Indexes into `names` of the required properties. */
  required: number[] = [];
  /** The schema of undeclared members; null: none allowed (additionalProperties: false). */
  additional: Node | null = null;
  minProperties = 0;
  maxProperties = Number.POSITIVE_INFINITY;
  /** A number's exact value matters (bounds, enum, or integer vs fraction). */
  numberValue = false;
  /** A string's text matters (pattern, enum). */
  stringValue = false;
}

/** The schema `true`: anything. Shared: it has no state. */
const ANY = new Node();
ANY.items = ANY;
ANY.additional = ANY;

class Unsupported extends Error {}

// Keywords that only annotate: they never change whether a document is valid.
const ANNOTATIONS = new Set([
  'title',
  'description',
  '$comment',
  'examples',
  'default',
  'deprecated',
  'readOnly',
  'writeOnly',
]);

/**
 * The acceptor of a schema ajv already compiled (so it is valid for its draft), or null when it uses
 * a keyword this pass does not judge. `true` (or no schema) accepts any JSON within the limits.
 */
export function compileAcceptor(schema: unknown): JsonAcceptor | null {
  const counter = { slots: 0 };
  let root: Node;
  try {
    root = compileNode(schema, true, counter);
  } catch (error: unknown) {
    if (error instanceof Unsupported) return null;
    throw error;
  }
  const seen: Seen = { stamps: new Int32Array(Math.max(counter.slots, 1)), next: 0 };
  return (bytes, limits) => accept(bytes, limits, root, seen);
}

/**
 * Which declared properties each open object has: a property's slot holds the stamp of the last
 * object it was seen in, and every object opened gets a new stamp (so nothing is cleared per object).
 * One per acceptor: a stamp from another schema's objects must never match.
 */
interface Seen {
  readonly stamps: Int32Array;
  next: number;
}

function compileNode(schema: unknown, root: boolean, counter: { slots: number }): Node {
  if (schema === true) return ANY;
  if (schema === false) {
    const never = new Node();
    never.types = 0;
    return never;
  }
  if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) throw new Unsupported();
  const s = schema as Record<string, unknown>;
  const node = new Node();
  node.items = ANY;
  node.additional = ANY;
  for (const [keyword, value] of Object.entries(s)) {
    if (ANNOTATIONS.has(keyword)) continue;
    switch (keyword) {
      case '$schema':
      case '$id':
        if (!root) throw new Unsupported();
        break;
      case 'type': {
        const names = Array.isArray(value) ? value : [value];
        let bits = 0;
        for (const name of names) {
          const bit = typeof name === 'string' ? TYPE_BITS[name] : undefined;
          if (bit === undefined) throw new Unsupported();
          bits |= bit;
        }
        node.types = bits;
        break;
      }
      case 'properties': {
        if (typeof value !== 'object' || value === null) throw new Unsupported();
        for (const [name, sub] of Object.entries(value as Record<string, unknown>)) {
          node.names.push(new Uint8Array(Buffer.from(name, 'utf8')));
          node.children.push(compileNode(sub, false, counter));
          node.slots.push(counter.slots++);
        }
        break;
      }
      case 'required':
        break; // resolved below, once `properties` is known
      case 'additionalProperties':
        node.additional = value === false ? null : compileNode(value, false, counter);
        break;
      case 'items':
        // An array of schemas is a tuple (draft-07, 2019-09): not judged here.
        if (Array.isArray(value)) throw new Unsupported();
        node.items = compileNode(value, false, counter);
        break;
      case 'uniqueItems':
        if (value !== false) throw new Unsupported();
        break;
      // Node's fields are named after these keywords.
      case 'minLength':
      case 'maxLength':
      case 'minItems':
      case 'maxItems':
      case 'minProperties':
      case 'maxProperties':
        node[keyword] = count(value);
        break;
      case 'minimum':
      case 'maximum':
      case 'exclusiveMinimum':
      case 'exclusiveMaximum':
        node[keyword] = finite(value);
        node.numberValue = true;
        break;
      case 'pattern':
        if (typeof value !== 'string') throw new Unsupported();
        // The same engine and pattern as ajv's (linear-regex.ts: ajvRegExp).
        node.pattern = compileLinear(value);
        node.stringValue = true;
        break;
      case 'enum':
        if (!Array.isArray(value)) throw new Unsupported();
        node.enumValues = value.map(scalar);
        node.numberValue = true;
        node.stringValue = true;
        break;
      case 'const':
        node.enumValues = [scalar(value)];
        node.numberValue = true;
        node.stringValue = true;
        break;
      default:
        throw new Unsupported();
    }
  }
  if ('required' in s) {
    const required = s.required;
    if (!Array.isArray(required)) throw new Unsupported();
    for (const name of required) {
      // A required member the schema does not declare: judged by the full path.
      const index = typeof name === 'string' ? indexOfName(node.names, name) : -1;
      if (index === -1) throw new Unsupported();
      if (!node.required.includes(index)) node.required.push(index);
    }
  }
  // "integer" without "number": whether a number is integral matters.
  if ((node.types & (T_INT | T_FRAC)) === T_INT) node.numberValue = true;
  return node;
}

function count(value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) throw new Unsupported();
  return value;
}

function finite(value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new Unsupported();
  return value;
}

function scalar(value: unknown): Scalar {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  throw new Unsupported();
}

function indexOfName(names: readonly Uint8Array[], name: string): number {
  const bytes = Buffer.from(name, 'utf8');
  return names.findIndex((n) => n.length === bytes.length && bytes.equals(n));
}

// ---------------------------------------------------------------------------------------------------
// The pass

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const COMMA = 0x2c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;

/** Undeclared members one object may have before the pass leaves the body to the full path. */
const MAX_UNDECLARED = 32;

// Per open container, by depth: reused from call to call (the pass runs to the end in one go).
const frameNode: Node[] = [];
const frameIsObject: boolean[] = [];
const frameCount: number[] = [];
const frameStamp: number[] = [];
const frameUndeclared: number[] = [];
/** [start, end) byte ranges of the undeclared keys of the open objects, innermost last. */
const undeclared: number[] = [];

// Where a number or string ends, set by readNumber/readString (no object per value).
let numberEnd = 0;
let stringEnd = 0;
let stringBytes = 0;
let stringChars = 0;
/** Whether the body being read is UTF-8: asked once, at its first string with a byte ≥ 0x80. */
let bodyIsUtf8 = 0;
const UNKNOWN = 0;
const YES = 1;
const NO = 2;

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function accept(bytes: Uint8Array, limits: AcceptLimits, root: Node, seen: Seen): JsonStats | null {
  const stamps = seen.stamps;
  // Stamps only grow (at most one per byte); before they could overflow, every slot is cleared.
  if (seen.next > 0x3fffffff - bytes.length) {
    stamps.fill(0);
    seen.next = 0;
  }
  const n = bytes.length;
  bodyIsUtf8 = UNKNOWN;
  let i = 0;
  let depth = 0;
  let maxDepth = 0;
  let keys = 0;
  let longest = 0;
  let top = 0;
  let node = root;
  // 0: a value is next; 1: a key (or the end of an empty object) is next; 2: a value just ended.
  let state = 0;
  let emptyOk = false;
  for (;;) {
    let c = bytes[i] as number;
    while (isSpace(c)) c = bytes[++i] as number;
    if (i >= n) return null;
    if (state === 0) {
      if (c === QUOTE) {
        if (!readString(bytes, i + 1)) return null;
        if (stringBytes > longest) longest = stringBytes;
        if (stringBytes > limits.maxStringLength) return null;
        if (!(node.types & T_STR) || !stringFits(bytes, i + 1, node)) return null;
        i = stringEnd + 1;
        state = 2;
      } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
        const object = c === OPEN_OBJECT;
        // An enum or const here lists scalars only (compileNode): no container equals one.
        if (!(node.types & (object ? T_OBJ : T_ARR)) || node.enumValues !== null) return null;
        if (++depth > limits.maxDepth) return null;
        if (depth > maxDepth) maxDepth = depth;
        frameNode[depth] = node;
        frameIsObject[depth] = object;
        frameCount[depth] = 0;
        i++;
        if (object) {
          frameStamp[depth] = ++seen.next;
          frameUndeclared[depth] = top;
          state = 1;
          emptyOk = true;
        } else {
          c = bytes[i] as number;
          while (isSpace(c)) c = bytes[++i] as number;
          if (c === CLOSE_ARRAY) {
            if (node.minItems > 0) return null;
            i++;
            depth--;
            state = 2;
            if (depth === 0) return finish(bytes, i, maxDepth, keys, longest);
          } else {
            node = node.items as Node;
          }
        }
        continue;
      } else if (c === MINUS || (c >= ZERO && c <= NINE)) {
        if (!readNumber(bytes, i, node)) return null;
        i = numberEnd;
        state = 2;
      } else if (matches(bytes, i, 'true')) {
        if (!literalFits(node, T_BOOL, true)) return null;
        i += 4;
        state = 2;
      } else if (matches(bytes, i, 'false')) {
        if (!literalFits(node, T_BOOL, false)) return null;
        i += 5;
        state = 2;
      } else if (matches(bytes, i, 'null')) {
        if (!literalFits(node, T_NULL, null)) return null;
        i += 4;
        state = 2;
      } else {
        return null;
      }
      if (depth === 0) return finish(bytes, i, maxDepth, keys, longest);
      continue;
    }
    if (state === 1) {
      if (c === CLOSE_OBJECT && emptyOk) {
        if (!closeObject(depth, stamps)) return null;
        top = frameUndeclared[depth] as number;
        i++;
        depth--;
        state = 2;
        if (depth === 0) return finish(bytes, i, maxDepth, keys, longest);
        continue;
      }
      if (c !== QUOTE) return null;
      const start = i + 1;
      if (!readString(bytes, start)) return null;
      const end = stringEnd;
      if (stringBytes > longest) longest = stringBytes;
      if (stringBytes > limits.maxStringLength || ++keys > limits.maxKeys) return null;
      if (isPoisonKey(bytes, start, end)) return null;
      const parent = frameNode[depth] as Node;
      const index = propertyIndex(parent.names, bytes, start, end);
      if (index !== -1) {
        const slot = parent.slots[index] as number;
        if (stamps[slot] === frameStamp[depth]) return null; // a repeated key
        stamps[slot] = frameStamp[depth] as number;
        node = parent.children[index] as Node;
      } else {
        if (parent.additional === null) return null;
        const base = frameUndeclared[depth] as number;
        if (top - base >= 2 * MAX_UNDECLARED) return null;
        for (let r = base; r < top; r += 2) {
          if (sameBytes(bytes, undeclared[r] as number, undeclared[r + 1] as number, start, end)) return null;
        }
        undeclared[top] = start;
        undeclared[top + 1] = end;
        top += 2;
        node = parent.additional;
      }
      frameCount[depth] = (frameCount[depth] as number) + 1;
      i = end + 1;
      c = bytes[i] as number;
      while (isSpace(c)) c = bytes[++i] as number;
      if (c !== COLON) return null;
      i++;
      state = 0;
      continue;
    }
    // state 2: after a value inside the container at `depth`.
    const object = frameIsObject[depth] as boolean;
    if (c === COMMA) {
      i++;
      if (object) {
        state = 1;
        emptyOk = false;
      } else {
        frameCount[depth] = (frameCount[depth] as number) + 1;
        node = (frameNode[depth] as Node).items as Node;
        state = 0;
      }
      continue;
    }
    if (object ? c !== CLOSE_OBJECT : c !== CLOSE_ARRAY) return null;
    if (object) {
      if (!closeObject(depth, stamps)) return null;
      top = frameUndeclared[depth] as number;
    } else {
      const items = (frameCount[depth] as number) + 1;
      const parent = frameNode[depth] as Node;
      if (items < parent.minItems || items > parent.maxItems) return null;
    }
    i++;
    depth--;
    if (depth === 0) return finish(bytes, i, maxDepth, keys, longest);
  }
}

function finish(
  bytes: Uint8Array,
  from: number,
  depth: number,
  keys: number,
  longest: number,
): JsonStats | null {
  let i = from;
  while (isSpace(bytes[i] as number)) i++;
  if (i !== bytes.length) return null;
  return { bytes: bytes.length, depth, keys, longestString: longest, suspectKeys: false };
}

/** The object at `depth` has every required member and a member count within bounds. */
function closeObject(depth: number, stamps: Int32Array): boolean {
  const node = frameNode[depth] as Node;
  const members = frameCount[depth] as number;
  if (members < node.minProperties || members > node.maxProperties) return false;
  const stamp = frameStamp[depth] as number;
  const required = node.required;
  for (let k = 0; k < required.length; k++) {
    if (stamps[node.slots[required[k] as number] as number] !== stamp) return false;
  }
  return true;
}

/**
 * The string whose text starts at `from`: sets stringEnd (its closing quote), stringBytes and
 * stringChars (code points). False when it cannot be judged here: an escape, a control character,
 * no end, or a byte ≥ 0x80 in a body that is not UTF-8.
 */
function readString(bytes: Uint8Array, from: number): boolean {
  const n = bytes.length;
  let ascii = true;
  let continuation = 0;
  let i = from;
  for (;;) {
    const c = bytes[i] as number;
    // Most of a string is above the backslash (lower-case letters): one comparison for them.
    if (c > BACKSLASH) {
      if (c >= 0x80) {
        ascii = false;
        if (c < 0xc0) continuation++;
      }
      i++;
      continue;
    }
    if (c === QUOTE) break;
    // Past the end (no byte), an escape, or a control character.
    if (i >= n || c === BACKSLASH || c < 0x20) return false;
    i++;
  }
  stringEnd = i;
  stringBytes = i - from;
  stringChars = stringBytes - continuation;
  if (ascii) return true;
  if (bodyIsUtf8 === UNKNOWN) bodyIsUtf8 = isUtf8(bytes) ? YES : NO;
  return bodyIsUtf8 === YES;
}

function literalFits(node: Node, type: number, value: boolean | null): boolean {
  return (node.types & type) !== 0 && (node.enumValues === null || node.enumValues.includes(value));
}

function stringFits(bytes: Uint8Array, from: number, node: Node): boolean {
  if (stringChars < node.minLength || stringChars > node.maxLength) return false;
  if (!node.stringValue) return true;
  const text = Buffer.from(bytes.buffer, bytes.byteOffset + from, stringEnd - from).toString('utf8');
  if (node.enumValues !== null && !node.enumValues.includes(text)) return false;
  return node.pattern === null || node.pattern.test(text);
}

/**
 * The number at `from` (JSON's grammar exactly) fits `node` (its type, bounds and enum) as the double
 * JSON.parse makes of it; sets numberEnd. False: not a JSON number, not finite, or it does not fit.
 *
 * The double, without making a string: its first 15 significant digits M are exact, and so is 10^p
 * for |p| ≤ 22, so one IEEE multiplication or division gives round(M × 10^p) (Clinger's fast path,
 * V8's too). With no other significant digit, that is the double. With more, the number lies between
 * M × 10^p and (M + 1) × 10^p, so its double lies between their rounded values (rounding is
 * monotonic): when the node takes any number and both ends fit its bounds (an interval, so
 * everything between fits), it fits. Anything else is read by Number(), the same string-to-double
 * conversion JSON.parse uses.
 */
function readNumber(bytes: Uint8Array, from: number, node: Node): boolean {
  let i = from;
  let c = bytes[i] as number;
  const negative = c === MINUS;
  if (negative) c = bytes[++i] as number;
  let mantissa = 0;
  let kept = 0;
  let power = 0;
  let inexact = false;
  if (c === ZERO) {
    c = bytes[++i] as number;
  } else if (c > ZERO && c <= NINE) {
    do {
      if (kept < 15) {
        mantissa = mantissa * 10 + (c - ZERO);
        kept++;
      } else {
        power++;
        if (c !== ZERO) inexact = true;
      }
      c = bytes[++i] as number;
    } while (c >= ZERO && c <= NINE);
  } else {
    return false;
  }
  if (c === DOT) {
    c = bytes[++i] as number;
    if (!(c >= ZERO && c <= NINE)) return false;
    do {
      if (kept < 15) {
        // Zeros before the first significant digit (0.05) take no place among the 15.
        if (kept > 0 || c !== ZERO) kept++;
        mantissa = mantissa * 10 + (c - ZERO);
        power--;
      } else if (c !== ZERO) {
        inexact = true;
      }
      c = bytes[++i] as number;
    } while (c >= ZERO && c <= NINE);
  }
  if (c === 0x65 || c === 0x45) {
    c = bytes[++i] as number;
    let sign = 1;
    if (c === PLUS || c === MINUS) {
      if (c === MINUS) sign = -1;
      c = bytes[++i] as number;
    }
    if (!(c >= ZERO && c <= NINE)) return false;
    let exponent = 0;
    do {
      if (exponent < 1e6) exponent = exponent * 10 + (c - ZERO);
      c = bytes[++i] as number;
    } while (c >= ZERO && c <= NINE);
    power += sign * exponent;
  }
  numberEnd = i;
  if (power < -22 || power > 22) return fitsExactly(bytes, from, i, node);
  const anyNumber = (node.types & (T_INT | T_FRAC)) === (T_INT | T_FRAC);
  // A plain number type and no bound or enum: any finite number fits (and |p| ≤ 22 is finite).
  if (!node.numberValue) return anyNumber;
  let value = scaled(mantissa, power);
  if (!inexact) return fits(negative ? -value : value, node);
  if (node.enumValues !== null) return fitsExactly(bytes, from, i, node);
  let other = scaled(mantissa + 1, power);
  if (negative) {
    const low = -other;
    other = -value;
    value = low;
  }
  // [value, other] holds the double. For a node that takes any number, only the bounds matter, and
  // they are an interval: both ends inside means the double is. An integer-only node needs the
  // exact double (is it integral?), as does anything near a bound.
  if (anyNumber && withinBounds(value, node) && withinBounds(other, node)) return true;
  return fitsExactly(bytes, from, i, node);
}

/** round(mantissa × 10^power), |power| ≤ 22. */
function scaled(mantissa: number, power: number): number {
  return power < 0
    ? mantissa / (POWERS_OF_TEN[-power] as number)
    : mantissa * (POWERS_OF_TEN[power] as number);
}

/** 10^0 … 10^22: every one an exact double. */
const POWERS_OF_TEN: readonly number[] = Array.from({ length: 23 }, (_, k) => 10 ** k);

/** The number in bytes [from, to), read by Number() (JSON.parse's conversion), fits `node`. */
function fitsExactly(bytes: Uint8Array, from: number, to: number, node: Node): boolean {
  const value = Number(Buffer.from(bytes.buffer, bytes.byteOffset + from, to - from).toString('latin1'));
  return Number.isFinite(value) && fits(value, node);
}

/** A finite double fits the node's type (integer or not), bounds and enum. */
function fits(value: number, node: Node): boolean {
  if (!(node.types & (value % 1 === 0 ? T_INT : T_FRAC))) return false;
  if (!withinBounds(value, node)) return false;
  return node.enumValues === null || node.enumValues.includes(value);
}

function withinBounds(value: number, node: Node): boolean {
  return (
    value >= node.minimum &&
    value <= node.maximum &&
    value > node.exclusiveMinimum &&
    value < node.exclusiveMaximum
  );
}

function propertyIndex(names: readonly Uint8Array[], bytes: Uint8Array, start: number, end: number): number {
  const length = end - start;
  for (let k = 0; k < names.length; k++) {
    const name = names[k] as Uint8Array;
    if (name.length !== length) continue;
    let j = 0;
    while (j < length && name[j] === bytes[start + j]) j++;
    if (j === length) return k;
  }
  return -1;
}

function sameBytes(bytes: Uint8Array, a: number, aEnd: number, b: number, bEnd: number): boolean {
  if (aEnd - a !== bEnd - b) return false;
  for (let k = 0; k < aEnd - a; k++) if (bytes[a + k] !== bytes[b + k]) return false;
  return true;
}

/** `__proto__` or `constructor`: left to the full path, which scans the document for poisoning. */
function isPoisonKey(bytes: Uint8Array, start: number, end: number): boolean {
  const length = end - start;
  if (length === 9) return matches(bytes, start, '__proto__');
  return length === 11 && matches(bytes, start, 'constructor');
}

/** The bytes from `start` on spell `word` (ASCII). */
function matches(bytes: Uint8Array, start: number, word: string): boolean {
  for (let k = 0; k < word.length; k++) if (bytes[start + k] !== word.charCodeAt(k)) return false;
  return true;
}
