// The JSON fast pass (src/content/json-accept.ts) may only ever accept what the full path accepts,
// with the same stats: checked here against parseJson + ajv on generated documents and on their
// mutations, and on named cases an attacker or an odd client would send.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { compileSchema, inspectJson, parseJson } from '../../src/content/json.js';
import { compileAcceptor } from '../../src/content/json-accept.js';
import type { CompiledSchema, JsonPolicy, JsonStats } from '../../src/content/types.js';
import { seeded } from '../support/seeded.js';

const LIMITS = {
  maxDepth: 8,
  maxKeys: 60,
  maxStringLength: 40,
  maxBytes: 64 * 1024,
  duplicateKeys: 'deny',
} as const satisfies Omit<JsonPolicy, 'schema'>;

const ORDER = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  type: 'object',
  required: ['order_id', 'lines'],
  properties: {
    order_id: { type: 'string', pattern: '^ORD-[0-9]{8}$' },
    currency: { enum: ['EUR', 'USD', 'GBP'] },
    lines: {
      type: 'array',
      maxItems: 5,
      items: {
        type: 'object',
        required: ['sku', 'quantity', 'price'],
        properties: {
          sku: { type: 'string', maxLength: 8 },
          quantity: { type: 'integer', minimum: 1 },
          price: { type: 'number', minimum: 0 },
          note: { type: 'string', maxLength: 20 },
        },
        additionalProperties: false,
      },
    },
  },
  additionalProperties: false,
};

/** One schema per group of keywords the pass judges (draft-07 unless it says otherwise). */
const SCHEMAS: Record<string, unknown> = {
  order: ORDER,
  anything: true,
  scalars: {
    type: 'object',
    properties: {
      i: { type: 'integer', minimum: -3, maximum: 3 },
      x: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 0.5 },
      f: { type: ['number', 'null'], minimum: 0.1, maximum: 100.25 },
      e: { enum: ['a', 'é', 1, 2.5, true, null] },
      c: { const: 0 },
      s: { type: 'string', minLength: 2, maxLength: 3 },
      b: { type: 'boolean' },
    },
    minProperties: 1,
    maxProperties: 5,
  },
  open: {
    type: 'object',
    required: ['id'],
    properties: { id: { type: 'string' }, tags: { type: 'array', minItems: 1, items: { type: 'string' } } },
    additionalProperties: { type: ['string', 'number', 'object'] },
  },
  nested: {
    type: 'array',
    items: { type: 'object', properties: { a: { type: 'array', items: false } }, additionalProperties: true },
  },
};

/** Draws from a seeded generator: the same documents on every run. */
function rng(seed: number) {
  const next = seeded(seed);
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    pick: <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)] as T,
  };
}
type Rng = ReturnType<typeof rng>;

// Number texts around every bound above, in every form JSON allows.
const NUMBERS = [
  '0',
  '-0',
  '1',
  '-1',
  '3',
  '4',
  '-3',
  '-4',
  '1.0',
  '1.5',
  '0.5',
  '0.49999999999999999',
  '0.5000000000000001',
  '0.1',
  '0.09999999999999999999',
  '0.1000000000000000000001',
  '100.25',
  '100.2500000000001',
  '100.2500000000000000001',
  '2.5',
  '1e0',
  '1E2',
  '1e-1',
  '25e-1',
  '1e400',
  '-1e400',
  '1e-400',
  '123456789012345678',
  '12345678901234567890.5',
  '0.000001',
  '1e22',
  '1e23',
  '9007199254740993',
  '-0.0',
  '5',
  '0.30000000000000004',
  '99.99999999999999999',
];
const STRINGS = [
  '',
  'a',
  'é',
  'ab',
  'abc',
  'abcd',
  'EUR',
  'USD',
  'ORD-20261128',
  'ORD-2026112',
  'SKU-1',
  'x😀',
  '😀😀😀',
  'deliver',
];
const KEYS = [
  'order_id',
  'currency',
  'lines',
  'sku',
  'quantity',
  'price',
  'note',
  'i',
  'x',
  'f',
  'e',
  'c',
  's',
  'b',
  'id',
  'tags',
  'a',
  'z',
  'é',
];

function anyValue(r: Rng, depth: number): string {
  const k = r.int(depth > 3 ? 5 : 7);
  if (k === 0) return r.pick(NUMBERS);
  if (k === 1) return JSON.stringify(r.pick(STRINGS));
  if (k === 2) return r.pick(['true', 'false', 'null']);
  if (k <= 4) return JSON.stringify(r.pick([...STRINGS, ...KEYS]));
  if (k === 5) return `[${Array.from({ length: r.int(4) }, () => anyValue(r, depth + 1)).join(',')}]`;
  return anyObject(r, depth, null);
}

function anyObject(r: Rng, depth: number, schema: Record<string, unknown> | null): string {
  const props = (schema?.properties ?? {}) as Record<string, unknown>;
  const required = (schema?.required ?? []) as string[];
  const closed = schema?.additionalProperties === false;
  const members: string[] = [];
  for (const [name, sub] of Object.entries(props)) {
    if (r.next() < (required.includes(name) ? 0.97 : 0.6))
      members.push(`${JSON.stringify(name)}:${valueFor(sub, r, depth + 1)}`);
  }
  if (r.next() < (closed ? 0.03 : 0.3) || schema === null) {
    for (let k = r.int(3); k > 0; k--)
      members.push(`${JSON.stringify(r.pick(KEYS))}:${anyValue(r, depth + 1)}`);
  }
  return `{${members.join(r.pick([',', ', ', ' ,\n']))}}`;
}

/** The candidates `schema` accepts, by ajv: picked most of the time, so that many documents are valid. */
const fitting = new WeakMap<object, { numbers: string[]; strings: string[] }>();
function candidates(schema: Record<string, unknown>) {
  let found = fitting.get(schema);
  if (!found) {
    const compiled = compileSchema(schema, 'candidate');
    const ok = (text: string) => compiled.validate(JSON.parse(text)) === null;
    found = {
      numbers: NUMBERS.filter((n) => Number.isFinite(Number(n)) && ok(n)),
      strings: STRINGS.map((t) => JSON.stringify(t)).filter(ok),
    };
    fitting.set(schema, found);
  }
  return found;
}

/** A document shaped by `schema`: mostly valid, with values picked near every bound. */
function valueFor(schema: unknown, r: Rng, depth: number): string {
  if (schema === true || schema === false || typeof schema !== 'object' || schema === null || r.next() < 0.03)
    return anyValue(r, depth);
  const s = schema as Record<string, unknown>;
  const types = Array.isArray(s.type) ? s.type : s.type === undefined ? [] : [s.type];
  if (Array.isArray(s.enum) && r.next() < 0.8) return JSON.stringify(r.pick(s.enum));
  const type = types.length > 0 ? r.pick(types) : 'any';
  const fit = candidates(s);
  switch (type) {
    case 'object':
      return anyObject(r, depth, s);
    case 'array': {
      const min = (s.minItems as number | undefined) ?? 0;
      const max = Math.min((s.maxItems as number | undefined) ?? 6, 6);
      const n = r.next() < 0.9 ? min + r.int(max - min + 1) : r.int(8);
      return `[${Array.from({ length: n }, () => valueFor(s.items ?? true, r, depth + 1)).join(',')}]`;
    }
    case 'string':
      return r.next() < 0.85 && fit.strings.length > 0
        ? r.pick(fit.strings)
        : JSON.stringify(r.pick(STRINGS));
    case 'integer':
    case 'number':
      return r.next() < 0.85 && fit.numbers.length > 0 ? r.pick(fit.numbers) : r.pick(NUMBERS);
    case 'boolean':
      return r.pick(['true', 'false']);
    case 'null':
      return 'null';
    default:
      return anyValue(r, depth);
  }
}

const EDITS = [
  '"',
  '\\',
  ',',
  '{',
  '}',
  '[',
  ']',
  ':',
  ' ',
  '\n',
  '\t',
  'é',
  '\u0000',
  '\u001f',
  '0',
  '-',
  'e',
  '.',
  '\\u0061',
  '"a":1,',
  'ÿ',
];

/** One to three random edits of a document's text, or of its bytes (broken UTF-8 included). */
function mutate(text: string, r: Rng): Buffer {
  let t = text;
  for (let k = 1 + r.int(3); k > 0; k--) {
    const at = r.int(t.length + 1);
    const op = r.int(4);
    if (op === 0) t = t.slice(0, at) + t.slice(at + 1);
    else if (op === 1) t = t.slice(0, at) + r.pick(EDITS) + t.slice(at);
    else if (op === 2) t = t.slice(0, at) + r.pick(EDITS) + t.slice(at + 1);
    else {
      const from = r.int(t.length + 1);
      t = t.slice(0, at) + t.slice(from, from + r.int(12)) + t.slice(at);
    }
  }
  const bytes = Buffer.from(t, 'utf8');
  if (r.next() < 0.05 && bytes.length > 0) bytes[r.int(bytes.length)] = 0x80 + r.int(0x80);
  return bytes;
}

/** The full path's verdict: the stats when parseJson and the schema accept the body, else null. */
function fullPath(bytes: Uint8Array, schema: CompiledSchema | null) {
  const parsed = parseJson(bytes, LIMITS);
  if (!parsed.ok) return null;
  if (schema && schema.validate(parsed.value.value) !== null) return null;
  return parsed.value.stats;
}

describe('the JSON fast pass accepts only what the full path accepts, with the same stats', () => {
  for (const [name, raw] of Object.entries(SCHEMAS)) {
    test(`schema "${name}": generated documents and their mutations`, (t) => {
      const schema = raw === true ? null : compileSchema(raw, name);
      const accept = schema ? schema.accept : compileAcceptor(true);
      assert.ok(accept, `the pass judges schema "${name}"`);
      const r = rng(0x5eed + name.length);
      let fast = 0;
      let valid = 0;
      for (let k = 0; k < 6000; k++) {
        const text = valueFor(raw, r, 0);
        const bytes = k % 2 === 0 ? Buffer.from(text, 'utf8') : mutate(text, r);
        const full = fullPath(bytes, schema);
        const quick: JsonStats | null = accept(bytes, LIMITS);
        if (full !== null) valid++;
        if (quick === null) continue;
        fast++;
        assert.deepEqual(full, quick, `accepted by the fast pass only: ${bytes.toString('latin1')}`);
      }
      t.diagnostic(`${valid} valid of 6000, ${fast} of them accepted by the fast pass`);
      // The pass is also useful: most valid documents never reach the full path.
      assert.ok(valid > 600, `${valid} valid documents generated`);
      assert.ok(fast > valid / 2, `${fast} of ${valid} valid documents accepted by the fast pass`);
    });
  }
});

describe('the fast pass leaves every doubt to the full path', () => {
  const order = compileSchema(ORDER, 'order.json');
  const accept = order.accept;
  assert.ok(accept);
  const judge = (text: string, limits = LIMITS) => accept(Buffer.from(text, 'utf8'), limits);
  const good = '{"order_id":"ORD-20261128","lines":[{"sku":"A1","quantity":2,"price":19.99}]}';

  test('a valid order is accepted, with the pre-scan stats', () => {
    assert.deepEqual(judge(good), {
      bytes: good.length,
      depth: 3,
      keys: 5,
      longestString: 12,
      suspectKeys: false,
    });
    assert.deepEqual(judge(` \n${good}\t\r\n`)?.bytes, good.length + 5);
  });

  const doubts: Record<string, string> = {
    'a repeated key': good.replace('"lines"', '"order_id":"ORD-20261128","lines"'),
    'an escape in a string': good.replace('A1', 'A\\u0031'),
    'an escaped quote': good.replace('A1', 'A\\"'),
    'a raw control character in a string': good.replace('A1', 'A\u0001'),
    'a raw newline in a string': good.replace('A1', 'A\n'),
    'a byte order mark': `\ufeff${good}`,
    'a trailing comma': good.replace(']}', '],}'),
    'a second document': `${good} {}`,
    'a leading zero': good.replace('"quantity":2', '"quantity":02'),
    'a bare minus': good.replace('"quantity":2', '"quantity":-'),
    'a fraction without digits': good.replace('19.99', '19.'),
    'an exponent without digits': good.replace('19.99', '19e'),
    'an infinite number': good.replace('19.99', '1e400'),
    'a non-integer quantity': good.replace('"quantity":2', '"quantity":2.5'),
    'a negative price': good.replace('19.99', '-0.0000000000000000001'),
    'a missing required member': good.replace('"quantity":2,', ''),
    'an undeclared member': good.replace('"sku"', '"colour":"red","sku"'),
    'a pattern violation': good.replace('ORD-20261128', 'ORD-2026112'),
    'a __proto__ key': good.replace('"lines"', '"__proto__":{},"lines"'),
    'a truncated body': good.slice(0, -1),
    'an unterminated string': '{"order_id":"ORD',
    NaN: good.replace('19.99', 'NaN'),
    'a single-quoted string': good.replace('"A1"', "'A1'"),
  };
  for (const [what, text] of Object.entries(doubts)) {
    test(`${what}: left to the full path`, () => {
      assert.equal(judge(text), null);
    });
  }

  test('the limits: within them accepted, one past them left to the full path', () => {
    const deep = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
    const any = compileAcceptor(true);
    assert.ok(any);
    assert.equal(any(Buffer.from(deep(8)), LIMITS)?.depth, 8);
    assert.equal(any(Buffer.from(deep(9)), LIMITS), null);
    assert.equal(any(Buffer.from(deep(100_000)), LIMITS), null, 'a nesting bomb stops at the limit');
    const keys = (n: number) => `{${Array.from({ length: n }, (_, k) => `"k${k}":0`).join(',')}}`;
    const open = { ...LIMITS, maxKeys: 60 };
    // 32 undeclared keys per object are compared in place; more go to the full path.
    assert.equal(any(Buffer.from(keys(32)), open)?.keys, 32);
    assert.equal(any(Buffer.from(keys(33)), open), null);
    const text = (n: number) => `"${'a'.repeat(n)}"`;
    assert.equal(any(Buffer.from(text(40)), LIMITS)?.longestString, 40);
    assert.equal(any(Buffer.from(text(41)), LIMITS), null);
  });

  test('non-ASCII text: valid UTF-8 accepted, lengths in code points for the schema and in bytes for the limits', () => {
    const schema = compileSchema({ type: 'string', maxLength: 2 }, 's');
    const stats = schema.accept?.(Buffer.from('"é😀"'), LIMITS);
    assert.deepEqual(stats, { bytes: 8, depth: 0, keys: 0, longestString: 6, suspectKeys: false });
    assert.equal(schema.accept?.(Buffer.from('"é😀a"'), LIMITS), null);
    assert.equal(schema.accept?.(Buffer.from([0x22, 0xc3, 0x28, 0x22]), LIMITS), null, 'broken UTF-8');
    assert.equal(schema.accept?.(Buffer.from([0x22, 0xed, 0xa0, 0x80, 0x22]), LIMITS), null, 'a surrogate');
  });

  test('numbers are read as JSON.parse reads them, at the edge of every bound', () => {
    const cases: [unknown, string, boolean][] = [
      [{ type: 'integer' }, '1.0', true],
      [{ type: 'integer' }, '1e2', true],
      [{ type: 'integer' }, '12345678901234567890', true],
      [{ type: 'integer' }, '1.0000000000000001', true], // the double is 1
      [{ type: 'integer' }, '1.000000000000001', false],
      [{ type: 'number', minimum: 0.1 }, '0.09999999999999999999', true], // the double is 0.1
      [{ type: 'number', minimum: 0.1 }, '0.0999999999999999', false],
      [{ type: 'number', maximum: 0.5 }, '0.5000000000000001', false], // 16 digits: the double is above 0.5
      [{ type: 'number', maximum: 0.5 }, '0.50000000000000001', true], // 17 digits: the double is 0.5
      [{ type: 'number', minimum: 0.5 }, '0.4999999999999999', false],
      [{ type: 'number', exclusiveMinimum: 0 }, '-0', false],
      [{ type: 'number', maximum: 0 }, '-0.0', true],
      [{ type: 'number', exclusiveMaximum: 1e22 }, '9999999999999999999999', false], // the double is 1e22
      [{ enum: [1] }, '1.0', true],
      [{ enum: [1] }, '1.0000000000000000000001', true],
      [{ const: 0.3 }, '0.30000000000000004', false],
    ];
    for (const [schema, text, valid] of cases) {
      const compiled = compileSchema(schema, 'n');
      const full = fullPath(Buffer.from(text), compiled);
      assert.equal(full !== null, valid, `full path: ${text} against ${JSON.stringify(schema)}`);
      const quick = compiled.accept?.(Buffer.from(text), LIMITS) ?? null;
      if (valid) assert.deepEqual(quick, full, `${text} against ${JSON.stringify(schema)}`);
      else assert.equal(quick, null, `${text} against ${JSON.stringify(schema)}`);
    }
  });

  test('a schema with a keyword the pass does not judge gets no fast pass', () => {
    const unjudged: unknown[] = [
      { type: 'string', format: 'email' },
      { $defs: { a: { type: 'string' } }, $ref: '#/$defs/a' },
      { anyOf: [{ type: 'string' }, { type: 'number' }] },
      { type: 'array', items: [{ type: 'string' }], minItems: 1, additionalItems: false },
      { type: 'array', uniqueItems: true },
      { type: 'object', properties: { a: { type: 'object', $id: 'inner' } } },
      { enum: [{ a: 1 }] },
      { type: 'object', patternProperties: { '^a': { type: 'string' } } },
    ];
    for (const schema of unjudged) {
      assert.equal(compileSchema(schema, 'x').accept, null, JSON.stringify(schema));
    }
    // ajv's strict mode refuses this one; the pass would not judge it either.
    assert.equal(compileAcceptor({ type: 'object', required: ['undeclared'] }), null);
  });

  test('inspectJson takes the fast pass when it can: no document is built', () => {
    const policy = { ...LIMITS, schema: order };
    const fast = inspectJson(Buffer.from(good), policy);
    assert.ok(fast.ok);
    assert.equal(fast.value.value, undefined, 'not parsed');
    const escaped = inspectJson(Buffer.from(good.replace('A1', 'A\\u0031')), policy);
    assert.ok(escaped.ok, 'the full path accepts it');
    assert.deepEqual(escaped.value.value, JSON.parse(good.replace('A1', 'A\\u0031')));
    const refused = inspectJson(Buffer.from(good.replace('19.99', '-1')), policy);
    assert.ok(!refused.ok);
    assert.equal(refused.failure.code, 'schema_violation', 'a refusal is worded by the full path');
  });
});
