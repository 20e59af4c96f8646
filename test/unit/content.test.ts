// Content inspection without a scanner: methods, size, truncation, media types and magic bytes, JSON
// limits and schemas, digests, forms and file names. Table-driven where the cases share a shape; each
// case names what it shows. The malware half runs against a real clamd in test/integration/clamd.test.ts.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { BodyHashes, parseDictionary, sha256Hex, verifyDigests } from '../../src/content/digest.js';
import { type ContentRequest, type Inspected, inspectCheap } from '../../src/content/inspect.js';
import {
  compileSchema,
  firstInvalidUtf8,
  jsonStrings,
  parseJson,
  prescanJson,
} from '../../src/content/json.js';
import { compileLinear } from '../../src/content/linear-regex.js';
import {
  checkDeclaredType,
  detectText,
  detectType,
  hasBinaryControls,
  matchesRange,
  parseMediaRange,
  parseMediaType,
  parseMediaTypeCached,
} from '../../src/content/media.js';
import { checkFilename } from '../../src/content/multipart.js';
import type {
  ContentFailure,
  ContentFailureCode,
  ContentPolicy,
  JsonPolicy,
  MultipartPolicy,
  ScanPolicy,
} from '../../src/content/types.js';

// --- fixtures -----------------------------------------------------------------------------------------

const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==',
  'base64',
);
const JPEG = Buffer.concat([
  Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10]),
  Buffer.from('JFIF\0\x01\x01\0\0\x01\0\x01\0\0', 'latin1'),
  Buffer.alloc(64, 0),
]);
const GIF = Buffer.concat([
  Buffer.from('GIF89a', 'latin1'),
  Buffer.from([1, 0, 1, 0, 0x80, 0, 0]),
  Buffer.alloc(32),
]);
/** An x86-64 ELF header followed by zeros: enough for any magic-number reader. */
const ELF = Buffer.concat([
  Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x01, 0x00]),
  Buffer.alloc(8),
  Buffer.from([0x02, 0x00, 0x3e, 0x00, 0x01, 0x00, 0x00, 0x00]),
  Buffer.alloc(104),
]);
/** A DOS/PE stub: "MZ", e_lfanew at 0x3c pointing to "PE\0\0". */
const PE = (() => {
  const b = Buffer.alloc(256);
  b.write('MZ', 0, 'latin1');
  b.writeUInt32LE(0x80, 0x3c);
  b.write('PE\0\0', 0x80, 'latin1');
  return b;
})();
const PDF = Buffer.from(
  '%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<<>>\n%%EOF\n',
  'latin1',
);
const GZIP = gzipSync(Buffer.from('hello, gzip'));

/** CRC-32 (IEEE), bit by bit: node:zlib's crc32 needs Node 20.15. */
function crc32(data: Buffer): number {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/** A stored (uncompressed) ZIP archive holding one file. */
function storedZip(name: string, data: Buffer): Buffer {
  const n = Buffer.from(name, 'utf8');
  const crc = crc32(data);
  const local = Buffer.alloc(30);
  local.writeUInt32LE(0x04034b50, 0);
  local.writeUInt16LE(20, 4);
  local.writeUInt32LE(crc, 14);
  local.writeUInt32LE(data.length, 18);
  local.writeUInt32LE(data.length, 22);
  local.writeUInt16LE(n.length, 26);
  const central = Buffer.alloc(46);
  central.writeUInt32LE(0x02014b50, 0);
  central.writeUInt16LE(20, 4);
  central.writeUInt16LE(20, 6);
  central.writeUInt32LE(crc, 16);
  central.writeUInt32LE(data.length, 20);
  central.writeUInt32LE(data.length, 24);
  central.writeUInt16LE(n.length, 28);
  const centralOffset = local.length + n.length + data.length;
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(1, 8);
  end.writeUInt16LE(1, 10);
  end.writeUInt32LE(central.length + n.length, 12);
  end.writeUInt32LE(centralOffset, 16);
  return Buffer.concat([local, n, data, central, n, end]);
}
const ZIP = storedZip('hello.txt', Buffer.from('hello, zip'));

const JSON_LIMITS: JsonPolicy = {
  maxDepth: 32,
  maxKeys: 1000,
  maxStringLength: 64 * 1024,
  maxBytes: 1024 * 1024,
  duplicateKeys: 'deny',
};

const FORM: MultipartPolicy = {
  maxParts: 20,
  maxPartBytes: 64 * 1024,
  allowedTypes: [],
  maxFilenameBytes: 255,
};

const range = parseMediaRange;

function policy(over: Partial<ContentPolicy> = {}): ContentPolicy {
  return {
    maxBodyBytes: 1024 * 1024,
    allowedTypes: [],
    bodyRequiredMethods: new Set(['POST', 'PUT', 'PATCH']),
    bodyForbiddenMethods: new Set(['GET', 'HEAD', 'DELETE']),
    onTruncated: 'deny',
    magic: true,
    contentEncodings: [],
    json: null,
    digest: null,
    multipart: null,
    scan: null,
    ...over,
  };
}

interface RequestSpec {
  readonly method?: string;
  readonly type?: string;
  readonly headers?: Record<string, string>;
  readonly body?: string | Uint8Array;
  readonly truncated?: boolean;
}

function request(spec: RequestSpec): ContentRequest {
  const headers = new Map(Object.entries(spec.headers ?? {}));
  if (spec.type !== undefined) headers.set('content-type', spec.type);
  const body =
    typeof spec.body === 'string' ? Buffer.from(spec.body, 'utf8') : (spec.body ?? new Uint8Array(0));
  return { method: spec.method ?? 'POST', headers, body, bodyTruncated: spec.truncated ?? false };
}

interface Part {
  readonly name: string;
  readonly filename?: string;
  readonly type?: string;
  readonly body: string | Buffer;
  /** Replaces the generated part headers. */
  readonly rawHeaders?: string;
}

const BOUNDARY = '----portcullis-b0undary';
const MULTIPART = `multipart/form-data; boundary=${BOUNDARY}`;

function multipart(parts: readonly Part[], close = true): Buffer {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    const headers =
      p.rawHeaders ??
      [
        `Content-Disposition: form-data; name="${p.name}"${p.filename !== undefined ? `; filename="${p.filename}"` : ''}`,
        ...(p.type ? [`Content-Type: ${p.type}`] : []),
      ].join('\r\n');
    chunks.push(Buffer.from(`--${BOUNDARY}\r\n${headers}\r\n\r\n`, 'utf8'));
    chunks.push(typeof p.body === 'string' ? Buffer.from(p.body, 'utf8') : p.body);
    chunks.push(Buffer.from('\r\n'));
  }
  if (close) chunks.push(Buffer.from(`--${BOUNDARY}--\r\n`));
  return Buffer.concat(chunks);
}

const b64 = (alg: string, body: string | Buffer) => createHash(alg).update(body).digest('base64');
const hex = (alg: string, body: string | Buffer) => createHash(alg).update(body).digest('hex');

interface Case {
  readonly name: string;
  readonly request: RequestSpec;
  readonly policy?: Partial<ContentPolicy>;
  /** The failure code, or 'ok'. */
  readonly expect: ContentFailureCode | 'ok';
  /** Further checks on the failure or on the result. */
  readonly failure?: (f: ContentFailure) => void;
  readonly result?: (r: Inspected) => void;
}

async function run(c: Case): Promise<void> {
  const result = await inspectCheap(request(c.request), policy(c.policy));
  if (c.expect === 'ok') {
    assert.ok(result.ok, `expected ok, got ${JSON.stringify(!result.ok && result.failure)}`);
    c.result?.(result.value);
  } else {
    assert.ok(!result.ok, `expected ${c.expect}, got ok`);
    assert.equal(result.failure.code, c.expect, result.failure.reason);
    assert.ok(result.failure.detail.length > 0);
    c.failure?.(result.failure);
  }
}

function table(title: string, cases: readonly Case[]): void {
  describe(title, () => {
    for (const c of cases) test(c.name, () => run(c));
  });
}

// --- methods, size, truncation ------------------------------------------------------------------------

table('methods, size and truncation', [
  {
    name: 'a body within the limit passes',
    request: { body: 'x'.repeat(1024) },
    policy: { maxBodyBytes: 1024 },
    expect: 'ok',
  },
  {
    name: 'oversize: one byte over maxBodyBytes',
    request: { body: 'x'.repeat(1025) },
    policy: { maxBodyBytes: 1024 },
    expect: 'body_too_large',
    failure: (f) => assert.match(f.detail, /1024 bytes/),
  },
  {
    name: 'oversize: a declared Content-Length over the limit, even when Envoy sent only part',
    request: { body: 'x'.repeat(100), headers: { 'content-length': '5000000' }, truncated: true },
    policy: { maxBodyBytes: 1024 },
    expect: 'body_too_large',
  },
  {
    name: 'truncated (onTruncated deny): refused with its own code',
    request: { body: 'x'.repeat(100), headers: { 'content-length': '200' }, truncated: true },
    expect: 'body_truncated',
  },
  {
    name: 'truncated (onTruncated skip): passes with the deep checks skipped',
    request: { type: 'application/json', body: '{"a": [1, 2', truncated: true },
    policy: { onTruncated: 'skip', json: JSON_LIMITS, allowedTypes: [range('application/json')] },
    expect: 'ok',
    result: (r) => {
      assert.equal(r.deep, 'skipped_truncated');
      assert.equal(r.json, null);
      assert.equal(r.sha256, hex('sha256', '{"a": [1, 2'));
    },
  },
  {
    name: 'truncated (skip) still checks the declared type, which needs only the header',
    request: { type: 'text/plain', body: 'abc', truncated: true },
    policy: { onTruncated: 'skip', allowedTypes: [range('application/json')] },
    expect: 'media_type_not_allowed',
  },
  { name: 'body required: POST without a body', request: { method: 'POST' }, expect: 'body_required' },
  {
    name: 'body required: PUT with an empty body',
    request: { method: 'PUT', body: '' },
    expect: 'body_required',
  },
  {
    name: 'body forbidden: GET with a body',
    request: { method: 'GET', type: 'text/plain', body: 'x' },
    expect: 'body_not_allowed',
  },
  {
    name: 'body forbidden: DELETE announcing one by Content-Length',
    request: { method: 'DELETE', headers: { 'content-length': '12' } },
    expect: 'body_not_allowed',
  },
  {
    name: 'GET without a body passes',
    request: { method: 'GET' },
    expect: 'ok',
    result: (r) => assert.equal(r.deep, 'empty'),
  },
  {
    name: 'methods compare upper-case',
    request: { method: 'get', type: 'text/plain', body: 'x' },
    expect: 'body_not_allowed',
  },
]);

// --- media types ---------------------------------------------------------------------------------------

describe('parseMediaType (RFC 9110 §8.3)', () => {
  const good: [string, string, Record<string, string>][] = [
    ['application/json', 'application/json', {}],
    ['Application/JSON; Charset="UTF-8"', 'application/json', { charset: 'UTF-8' }],
    ['text/plain ; charset=utf-8 ;format=flowed', 'text/plain', { charset: 'utf-8', format: 'flowed' }],
    ['multipart/form-data; boundary="a b;c"', 'multipart/form-data', { boundary: 'a b;c' }],
    ['text/plain; x="a\\"b"', 'text/plain', { x: 'a"b' }],
    ['text/plain;;', 'text/plain', {}],
  ];
  for (const [input, essence, params] of good) {
    test(`parses ${JSON.stringify(input)}`, () => {
      const r = parseMediaType(input);
      assert.ok(r.ok, !r.ok ? r.reason : '');
      assert.equal(r.value.essence, essence);
      assert.deepEqual(Object.fromEntries(r.value.params), params);
    });
  }
  const bad: [string, RegExp][] = [
    ['', /no media type/],
    ['json', /expected "\/"/],
    ['application/', /no subtype/],
    ['application / json', /expected "\/"/],
    ['application/json, text/plain', /unexpected ","/],
    ['application/json; charset', /no "=value"/],
    ['application/json; charset = utf-8', /no "=value"/],
    ['application/json; charset="utf-8', /unterminated/],
    ['application/json; charset=utf-8; charset=latin1', /given twice/],
    ['text/plain; x="a\u0001"', /control character/],
    [`text/plain; x=${'a'.repeat(2000)}`, /longer than/],
  ];
  for (const [input, reason] of bad) {
    test(`refuses ${JSON.stringify(input.slice(0, 60))}`, () => {
      const r = parseMediaType(input);
      assert.ok(!r.ok);
      assert.match(r.reason, reason);
    });
  }
  test('ranges: wildcard subtype, required parameters, charset case-insensitive', () => {
    const mt = (s: string) => {
      const r = parseMediaType(s);
      assert.ok(r.ok);
      return r.value;
    };
    assert.ok(matchesRange(mt('image/png'), range('image/*')));
    assert.ok(!matchesRange(mt('text/png'), range('image/*')));
    assert.ok(matchesRange(mt('anything/at-all'), range('*/*')));
    assert.ok(matchesRange(mt('application/json; charset=UTF-8'), range('application/json; charset=utf-8')));
    assert.ok(!matchesRange(mt('application/json'), range('application/json; charset=utf-8')));
    assert.ok(!matchesRange(mt('text/plain; format=Flowed'), range('text/plain; format=flowed')));
    assert.throws(() => range('*/json'), /invalid media type "\*\/json"/);
    assert.throws(() => range('image/p*'), /wildcard inside a subtype/);
  });
});

const JSON_ONLY = [range('application/json')];

table('declared type, charset and content encoding', [
  {
    name: 'wrong type: text/plain on a JSON-only route',
    request: { type: 'text/plain', body: '{}' },
    policy: { allowedTypes: JSON_ONLY },
    expect: 'media_type_not_allowed',
    failure: (f) => assert.match(f.detail, /accepts application\/json/),
  },
  {
    name: 'no Content-Type on a route with allowed types',
    request: { body: '{}' },
    policy: { allowedTypes: JSON_ONLY },
    expect: 'media_type_not_allowed',
    failure: (f) => assert.match(f.detail, /needs a Content-Type/),
  },
  {
    name: 'a malformed Content-Type is its own code',
    request: { type: 'application/json; charset', body: '{}' },
    policy: { allowedTypes: JSON_ONLY },
    expect: 'media_type_invalid',
  },
  {
    name: 'two Content-Type headers (joined by Envoy with ",") are malformed',
    request: { type: 'application/json,text/plain', body: '{}' },
    expect: 'media_type_invalid',
  },
  {
    name: 'type and subtype compare case-insensitively',
    request: { type: 'Application/JSON', body: '{}' },
    policy: { allowedTypes: JSON_ONLY },
    expect: 'ok',
  },
  {
    name: 'wildcard subtype: image/* accepts image/png',
    request: { type: 'image/png', body: PNG },
    policy: { allowedTypes: [range('image/*')] },
    expect: 'ok',
  },
  {
    name: 'charset required by the route: missing → refused',
    request: { type: 'application/json', body: '{}' },
    policy: { allowedTypes: [range('application/json; charset=utf-8')] },
    expect: 'media_type_not_allowed',
  },
  {
    name: 'charset required by the route: "UTF-8", quoted and upper-case, matches utf-8',
    request: { type: 'application/json; charset="UTF-8"', body: '{}' },
    policy: { allowedTypes: [range('application/json; charset=utf-8')] },
    expect: 'ok',
  },
  {
    name: 'charset required by the route: latin1 → refused',
    request: { type: 'application/json; charset=latin1', body: '{}' },
    policy: { allowedTypes: [range('application/json; charset=utf-8')] },
    expect: 'media_type_not_allowed',
  },
  {
    name: 'JSON in another charset than UTF-8 is refused even when the route names no charset',
    request: { type: 'application/json; charset=iso-8859-1', body: '{}' },
    policy: { allowedTypes: JSON_ONLY },
    expect: 'media_type_not_allowed',
    failure: (f) => assert.match(f.detail, /must be UTF-8/),
  },
  {
    name: 'text in a declared single-byte charset may hold non-UTF-8 bytes',
    request: { type: 'text/plain; charset=iso-8859-1', body: Buffer.from('caf\xe9', 'latin1') },
    expect: 'ok',
  },
  {
    name: 'text without a charset must be UTF-8',
    request: { type: 'text/plain', body: Buffer.from('caf\xe9', 'latin1') },
    expect: 'media_type_mismatch',
  },
  {
    name: 'Content-Encoding the route does not accept',
    request: { type: 'application/json', body: GZIP, headers: { 'content-encoding': 'gzip' } },
    expect: 'content_encoding_not_allowed',
  },
  {
    name: 'Content-Encoding the route accepts: size and digest checked, parsing skipped',
    request: {
      type: 'application/json',
      body: GZIP,
      headers: { 'content-encoding': 'gzip', 'content-digest': `sha-256=:${b64('sha256', GZIP)}:` },
    },
    policy: { contentEncodings: ['gzip'], json: JSON_LIMITS, digest: { require: true, legacy: [] } },
    expect: 'ok',
    result: (r) => {
      assert.equal(r.deep, 'skipped_encoded');
      assert.deepEqual(r.digests, ['sha-256']);
    },
  },
  {
    name: 'Content-Encoding: identity is no encoding',
    request: { type: 'application/json', body: '{}', headers: { 'content-encoding': 'identity' } },
    policy: { json: JSON_LIMITS },
    expect: 'ok',
    result: (r) => assert.equal(r.deep, 'checked'),
  },
]);

// --- magic bytes ---------------------------------------------------------------------------------------

table('declared type vs magic bytes', [
  {
    name: 'a PNG declared as application/json',
    request: { type: 'application/json', body: PNG },
    policy: { json: JSON_LIMITS },
    expect: 'media_type_mismatch',
    failure: (f) => assert.match(f.detail, /declared as application\/json but its content is image\/png/),
  },
  {
    name: 'an ELF executable declared as image/png',
    request: { type: 'image/png', body: ELF },
    expect: 'media_type_mismatch',
    failure: (f) => assert.match(f.reason, /executable \(application\/x-elf\)/),
  },
  {
    name: 'a PE (MZ) executable declared as application/pdf',
    request: { type: 'application/pdf', body: PE },
    expect: 'media_type_mismatch',
  },
  {
    name: 'an executable declared as application/octet-stream is refused too',
    request: { type: 'application/octet-stream', body: ELF },
    expect: 'media_type_mismatch',
  },
  {
    name: 'an executable declared as an executable passes',
    request: { type: 'application/x-elf', body: ELF },
    expect: 'ok',
  },
  {
    name: 'a PDF declared as application/pdf',
    request: { type: 'application/pdf', body: PDF },
    expect: 'ok',
  },
  { name: 'a PNG declared as image/png', request: { type: 'image/png', body: PNG }, expect: 'ok' },
  { name: 'a JPEG declared as image/jpg (alias)', request: { type: 'image/jpg', body: JPEG }, expect: 'ok' },
  { name: 'a GIF declared as image/gif', request: { type: 'image/gif', body: GIF }, expect: 'ok' },
  {
    name: 'a JPEG declared as image/png',
    request: { type: 'image/png', body: JPEG },
    expect: 'media_type_mismatch',
  },
  {
    name: 'text declared as image/png (no PNG signature)',
    request: { type: 'image/png', body: 'not a picture' },
    expect: 'media_type_mismatch',
    failure: (f) => assert.match(f.reason, /no image\/png signature/),
  },
  {
    name: 'a ZIP declared as application/zip',
    request: { type: 'application/zip', body: ZIP },
    expect: 'ok',
  },
  {
    name: 'a ZIP declared as application/x-zip-compressed (alias)',
    request: { type: 'application/x-zip-compressed', body: ZIP },
    expect: 'ok',
  },
  {
    name: 'a ZIP declared as application/pdf',
    request: { type: 'application/pdf', body: ZIP },
    expect: 'media_type_mismatch',
  },
  {
    name: 'gzip declared as application/x-gzip (alias)',
    request: { type: 'application/x-gzip', body: GZIP },
    expect: 'ok',
  },
  {
    name: 'binary declared as text/plain',
    request: { type: 'text/plain', body: Buffer.from([0x68, 0x00, 0x69, 0x01]) },
    expect: 'media_type_mismatch',
  },
  {
    name: 'an unverifiable declared type (application/octet-stream) with any non-executable content',
    request: { type: 'application/octet-stream', body: PNG },
    expect: 'ok',
  },
  {
    name: 'magic check off: a PNG declared as text/plain passes',
    request: { type: 'text/plain', body: PNG },
    policy: { magic: false },
    expect: 'ok',
  },
]);

test('detectType: magic formats and text heuristics', async () => {
  const cases: [string, Uint8Array, string][] = [
    ['PDF', PDF, 'application/pdf'],
    ['PNG', PNG, 'image/png'],
    ['JPEG', JPEG, 'image/jpeg'],
    ['GIF', GIF, 'image/gif'],
    ['ZIP', ZIP, 'application/zip'],
    ['gzip', GZIP, 'application/gzip'],
    ['ELF', ELF, 'application/x-elf'],
    ['PE', PE, 'application/x-msdownload'],
    ['JSON text', Buffer.from(' {"a":1}'), 'application/json'],
    ['plain text', Buffer.from('hello\nworld\n'), 'text/plain'],
    ['binary', Buffer.from([0, 1, 2, 3, 250]), 'application/octet-stream'],
    ['nothing', new Uint8Array(0), 'application/x-empty'],
  ];
  for (const [what, bytes, mime] of cases) assert.equal((await detectType(bytes)).mime, mime, what);
  const declared = parseMediaType('image/png');
  assert.ok(declared.ok);
  assert.equal(checkDeclaredType(declared.value, await detectType(PNG)), null);
});

test('hasBinaryControls: the word-at-a-time test agrees with a byte loop at every offset and byte', () => {
  const naive = (b: Uint8Array) =>
    b.some((x) => (x < 0x20 ? x !== 0x09 && x !== 0x0a && x !== 0x0c && x !== 0x0d : x === 0x7f));
  const backing = Buffer.alloc(32, 0x61);
  for (let offset = 0; offset < 4; offset++) {
    for (let length = 0; length <= 13; length++) {
      for (let at = 0; at < length; at++) {
        for (let byte = 0; byte < 256; byte++) {
          const view = backing.subarray(offset, offset + length);
          view.fill(0xe9);
          view[at] = byte;
          assert.equal(
            hasBinaryControls(view),
            naive(view),
            `offset ${offset} length ${length} byte ${byte}@${at}`,
          );
        }
      }
    }
  }
  assert.equal(hasBinaryControls(Buffer.from('a\tb\r\nc\fd')), false, 'TAB, CR, LF, FF are text');
});

test('detectText answers without file-type only when it may; detectType agrees with it', async () => {
  for (const bytes of [
    Buffer.from('{"a":1}'),
    Buffer.from('héllo'),
    Buffer.from([0x61, 0xff]),
    new Uint8Array(0),
  ])
    assert.deepEqual(detectText(bytes, true), await detectType(bytes, true));
  assert.equal(detectText(Buffer.from('{"a":1}'), false), null, 'text not expected: file-type is asked');
  assert.equal(detectText(PNG, true), null, 'binary where text is expected: file-type names it');
  assert.equal((await detectType(PNG, true)).mime, 'image/png');
});

test('parseMediaTypeCached: the same answers as parseMediaType, shared, and a bounded cache', () => {
  for (const value of ['application/json', 'Application/JSON; Charset="UTF-8"', 'text/plain; a=1; a=2', '']) {
    assert.deepEqual(parseMediaTypeCached(value), parseMediaType(value));
    assert.equal(parseMediaTypeCached(value), parseMediaTypeCached(value), 'the cached answer');
  }
  const first = parseMediaTypeCached('application/json');
  assert.ok(first.ok && Object.isFrozen(first.value), 'a shared answer cannot be changed');
  for (let i = 0; i < 1000; i++) assert.ok(parseMediaTypeCached(`application/x-${i}+json`).ok);
  assert.deepEqual(
    parseMediaTypeCached('application/json'),
    first,
    'still right after the cache started over',
  );
});

// --- JSON ----------------------------------------------------------------------------------------------

const deep = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
const manyKeys = (n: number) => `{${Array.from({ length: n }, (_, i) => `"k${i}":${i}`).join(',')}}`;
const BIG = 16 * 1024 * 1024;

table('JSON parsing with limits', [
  {
    name: 'valid JSON within the limits',
    request: { type: 'application/json', body: '{"a":[1,{"b":"c"}],"d":null}' },
    policy: { json: JSON_LIMITS },
    expect: 'ok',
    result: (r) => {
      const parsed = parseJson(Buffer.from('{"a":[1,{"b":"c"}],"d":null}'), JSON_LIMITS);
      assert.ok(parsed.ok);
      assert.deepEqual(parsed.value.value, { a: [1, { b: 'c' }], d: null });
      assert.deepEqual(r.json, {
        bytes: 28,
        depth: 3,
        keys: 3,
        longestString: 1,
        suspectKeys: false,
      });
    },
  },
  {
    name: '+json types are JSON too',
    request: { type: 'application/problem+json', body: '{"a":' },
    policy: { json: JSON_LIMITS },
    expect: 'json_malformed',
  },
  {
    name: 'invalid JSON: a missing value',
    request: { type: 'application/json', body: '{"a":}' },
    policy: { json: JSON_LIMITS },
    expect: 'json_malformed',
    failure: (f) => assert.equal(f.detail, "The body is not valid JSON: unexpected character '}'."),
  },
  {
    name: 'invalid JSON: cut short',
    request: { type: 'application/json', body: '{"a":[1,2' },
    policy: { json: JSON_LIMITS },
    expect: 'json_malformed',
  },
  {
    name: 'invalid JSON: an unterminated string',
    request: { type: 'application/json', body: '{"a":"b}' },
    policy: { json: JSON_LIMITS },
    expect: 'json_malformed',
  },
  {
    name: 'invalid UTF-8 in a JSON string (a lone 0xff byte)',
    request: {
      type: 'application/json',
      body: Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]),
    },
    policy: { json: JSON_LIMITS },
    expect: 'json_malformed',
    failure: (f) => assert.match(f.detail, /not valid UTF-8 \(first bad byte at offset 6\)/),
  },
  {
    name: 'invalid UTF-8: an overlong encoding of "/"',
    request: { type: 'application/json', body: Buffer.from([0x22, 0xc0, 0xaf, 0x22]) },
    policy: { json: JSON_LIMITS },
    expect: 'json_malformed',
  },
  {
    name: 'a byte order mark is ignored (RFC 8259 §8.1)',
    request: { type: 'application/json', body: Buffer.from('\ufeff{"a":1}', 'utf8') },
    policy: { json: JSON_LIMITS },
    expect: 'ok',
  },
  {
    name: 'a nesting bomb of 10^5 levels is refused by the pre-scan (no RangeError)',
    request: { type: 'application/json', body: deep(100_000) },
    policy: { json: JSON_LIMITS },
    expect: 'json_limits_exceeded',
    failure: (f) => assert.match(f.detail, /deeper than 32 levels/),
  },
  {
    name: 'a nesting bomb of 10^5 objects ({"a":{"a":…}})',
    request: { type: 'application/json', body: `${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}` },
    policy: { json: JSON_LIMITS },
    expect: 'json_limits_exceeded',
  },
  {
    name: 'nesting exactly at maxDepth passes',
    request: { type: 'application/json', body: deep(32) },
    policy: { json: JSON_LIMITS },
    expect: 'ok',
  },
  {
    name: '10^5 keys in one object',
    request: { type: 'application/json', body: manyKeys(100_000) },
    policy: { json: { ...JSON_LIMITS, maxBytes: BIG }, maxBodyBytes: BIG },
    expect: 'json_limits_exceeded',
    failure: (f) => assert.match(f.detail, /more than 1000 object members/),
  },
  {
    name: 'brackets and colons inside strings do not count',
    request: { type: 'application/json', body: JSON.stringify({ a: '[[[[{{{{::,,"\\' }) },
    policy: { json: { ...JSON_LIMITS, maxDepth: 1, maxKeys: 1 } },
    expect: 'ok',
  },
  {
    name: 'a 10 MB string',
    request: { type: 'application/json', body: `{"a":"${'x'.repeat(10_000_000)}"}` },
    policy: { json: { ...JSON_LIMITS, maxBytes: BIG }, maxBodyBytes: BIG },
    expect: 'json_limits_exceeded',
    failure: (f) => assert.match(f.detail, /string longer than 65536 bytes/),
  },
  {
    name: 'a JSON body over json.maxBytes (below maxBodyBytes)',
    request: { type: 'application/json', body: `[${'1,'.repeat(1000)}1]` },
    policy: { json: { ...JSON_LIMITS, maxBytes: 1000 } },
    expect: 'json_limits_exceeded',
  },
  {
    name: 'duplicate keys (deny)',
    request: { type: 'application/json', body: '{"amount":1,"to":"x","amount":1000}' },
    policy: { json: JSON_LIMITS },
    expect: 'json_duplicate_key',
    failure: (f) => assert.match(f.detail, /"amount"/),
  },
  {
    name: 'duplicate keys, one of them escaped ("a" and "\\u0061")',
    request: { type: 'application/json', body: '{"a":1,"\\u0061":2}' },
    policy: { json: JSON_LIMITS },
    expect: 'json_duplicate_key',
  },
  {
    name: 'duplicate keys in a nested object',
    request: { type: 'application/json', body: '{"o":{"x":1,"y":2,"x":3}}' },
    policy: { json: JSON_LIMITS },
    expect: 'json_duplicate_key',
  },
  {
    name: 'duplicate keys in a big object (past 16 keys the check uses a set)',
    request: {
      type: 'application/json',
      body: `{${Array.from({ length: 40 }, (_, i) => `"key${i}":${i}`).join(',')},"key3":0}`,
    },
    policy: { json: JSON_LIMITS },
    expect: 'json_duplicate_key',
    failure: (f) => assert.match(f.detail, /"key3"/),
  },
  {
    name: '40 distinct keys, some escaped, some non-ASCII: no duplicate',
    request: {
      type: 'application/json',
      body: `{${Array.from({ length: 40 }, (_, i) => `"k\u00e9${i}":${i},"ké${i}x":${i}`).join(',')}}`,
    },
    policy: { json: JSON_LIMITS },
    expect: 'ok',
  },
  {
    name: 'a raw non-ASCII key and the same key escaped ("é" and "\u00e9")',
    request: { type: 'application/json', body: '{"é":1,"b":2,"\u00e9":3}' },
    policy: { json: JSON_LIMITS },
    expect: 'json_duplicate_key',
    failure: (f) => assert.match(f.detail, /"é"/),
  },
  {
    name: 'keys of equal length and different bytes are no duplicates',
    request: { type: 'application/json', body: '{"sku":1,"qty":2,"ab":3,"ba":4}' },
    policy: { json: JSON_LIMITS },
    expect: 'ok',
  },
  {
    name: 'the same key in sibling objects is no duplicate',
    request: { type: 'application/json', body: '[{"a":1},{"a":2}]' },
    policy: { json: JSON_LIMITS },
    expect: 'ok',
  },
  {
    name: 'the same key in parent and child is no duplicate',
    request: { type: 'application/json', body: '{"a":{"a":1},"b":2}' },
    policy: { json: JSON_LIMITS },
    expect: 'ok',
  },
  {
    name: 'a string value equal to a key is no duplicate',
    request: { type: 'application/json', body: '{"a":"b","b":"a"}' },
    policy: { json: JSON_LIMITS },
    expect: 'ok',
  },
  {
    name: 'duplicate keys (allow): the last one wins, as in JSON.parse',
    request: { type: 'application/json', body: '{"a":1,"a":2}' },
    policy: { json: { ...JSON_LIMITS, duplicateKeys: 'allow' } },
    expect: 'ok',
    result: (r) => {
      assert.equal(r.json?.keys, 2);
      const parsed = parseJson(Buffer.from('{"a":1,"a":2}'), { ...JSON_LIMITS, duplicateKeys: 'allow' });
      assert.ok(parsed.ok);
      assert.deepEqual(parsed.value.value, { a: 2 });
    },
  },
  {
    name: '__proto__ poisoning',
    request: { type: 'application/json', body: '{"a":1,"__proto__":{"isAdmin":true}}' },
    policy: { json: JSON_LIMITS },
    expect: 'json_forbidden_key',
  },
  {
    name: '__proto__ poisoning, escaped as \\u005f_proto__',
    request: { type: 'application/json', body: '{"\\u005f_proto__":{"isAdmin":true}}' },
    policy: { json: JSON_LIMITS },
    expect: 'json_forbidden_key',
  },
  {
    name: 'constructor.prototype poisoning, nested',
    request: { type: 'application/json', body: '{"a":[{"constructor":{"prototype":{"isAdmin":true}}}]}' },
    policy: { json: JSON_LIMITS },
    expect: 'json_forbidden_key',
  },
  {
    name: 'a plain "constructor" string value is fine',
    request: { type: 'application/json', body: '{"constructor":"Acme Builders"}' },
    policy: { json: JSON_LIMITS },
    expect: 'ok',
  },
  {
    name: 'constructor.prototype poisoning, the key escaped as \\u0063onstructor',
    request: { type: 'application/json', body: '{"\\u0063onstructor":{"prototype":{"isAdmin":true}}}' },
    policy: { json: JSON_LIMITS },
    expect: 'json_forbidden_key',
  },
  {
    name: '__proto__ after a nested object closed, keys allowed to repeat',
    request: { type: 'application/json', body: '{"a":{"b":[1,{"c":2}]},"__proto__":{"isAdmin":true}}' },
    policy: { json: { ...JSON_LIMITS, duplicateKeys: 'allow' } },
    expect: 'json_forbidden_key',
  },
  {
    name: '"__proto__" and "constructor" as string values are fine',
    request: { type: 'application/json', body: '{"a":"__proto__","b":["constructor",{"c":"__proto__"}]}' },
    policy: { json: JSON_LIMITS },
    expect: 'ok',
    result: (r) => assert.equal(r.json?.suspectKeys, false, 'values are no keys: no poisoning walk'),
  },
  {
    name: 'a key repeated after a nested object closed',
    request: { type: 'application/json', body: '{"a":{"b":1,"c":{"d":2}},"e":[{"a":3}],"a":4}' },
    policy: { json: JSON_LIMITS },
    expect: 'json_duplicate_key',
    failure: (f) => assert.match(f.detail, /"a"/),
  },
  {
    name: "a child's keys are not its parent's, before or after it closes",
    request: { type: 'application/json', body: '{"a":{"b":1,"c":2},"b":{"a":1,"c":[{"b":1}]},"c":3}' },
    policy: { json: JSON_LIMITS },
    expect: 'ok',
  },
  {
    name: 'a key repeated in a big object (a set) around nested small objects',
    request: {
      type: 'application/json',
      body: `{"k0":{"x":1,"y":{"z":2}},${Array.from({ length: 20 }, (_, i) => `"k${i + 1}":{"x":${i}}`).join(',')},"k0":1}`,
    },
    policy: { json: JSON_LIMITS },
    expect: 'json_duplicate_key',
    failure: (f) => assert.match(f.detail, /"k0"/),
  },
]);

test('the pre-scan finds where strings end, escapes included, and which keys are escaped', () => {
  // Escaped quotes and backslashes at the start, middle and end of short and long strings.
  for (const length of [0, 1, 62, 63, 64, 65, 66, 127, 128, 129, 1000]) {
    for (const at of [0, length >> 1, Math.max(0, length - 1), length]) {
      for (const inserted of ['"', '\\', '\\"', '\\\\', '\n']) {
        const text = `${'x'.repeat(at)}${inserted}${'y'.repeat(Math.max(0, length - at))}`;
        const body = JSON.stringify({ [text]: text, k: [text] });
        const r = prescanJson(Buffer.from(body), { ...JSON_LIMITS, maxStringLength: 1_000_000 });
        assert.ok(r.ok, body);
        assert.equal(r.value.keys, 2, body);
        assert.equal(r.value.longestString, JSON.stringify(text).length - 2, body);
        assert.equal(r.value.suspectKeys, JSON.stringify(text).includes('\\'), body);
        const cut = Buffer.from(body.slice(0, body.indexOf(':') - 1));
        assert.equal(prescanJson(cut, JSON_LIMITS).ok, false, `unterminated: ${cut}`);
      }
    }
  }
  // A long escaped key repeated, and one that only looks the same.
  const long = `${'k'.repeat(100)}\\u0041`;
  const dup = prescanJson(Buffer.from(`{"${long}":1,"${'k'.repeat(100)}A":2}`), JSON_LIMITS);
  assert.ok(!dup.ok && dup.failure.code === 'json_duplicate_key');
  const other = prescanJson(Buffer.from(`{"${long}":1,"${'k'.repeat(100)}B":2}`), JSON_LIMITS);
  assert.ok(other.ok);
});

test('the pre-scan walks the decoded text but counts lengths and offsets in bytes as sent', () => {
  // é is 2 bytes, € 3, 😀 4 (two UTF-16 units): the string after `{"é":` starts at byte 6.
  for (const [char, size] of [
    ['é', 2],
    ['€', 3],
    ['😀', 4],
  ] as const) {
    const value = char.repeat(40);
    const body = Buffer.from(`{"é":"${value}"}`);
    const fits = prescanJson(body, { ...JSON_LIMITS, maxStringLength: 40 * size });
    assert.ok(fits.ok, char);
    assert.equal(fits.value.longestString, 40 * size, char);
    assert.equal(fits.value.bytes, body.length, char);
    const over = prescanJson(body, { ...JSON_LIMITS, maxStringLength: 40 * size - 1 });
    assert.ok(!over.ok, char);
    assert.equal(over.failure.reason, `string of ${40 * size} bytes at byte 6 (limit ${40 * size - 1})`);
  }
  // A byte order mark is 3 bytes before the first bracket.
  const bom = prescanJson(Buffer.from('\ufeff[[1]]'), { ...JSON_LIMITS, maxDepth: 1 });
  assert.ok(!bom.ok);
  assert.equal(bom.failure.reason, 'depth over 1 at byte 4');
  // A duplicate non-ASCII key is found, and named as sent.
  const dup = prescanJson(Buffer.from('{"ключ":1,"€":2,"ключ":3}'), JSON_LIMITS);
  assert.ok(!dup.ok && dup.failure.code === 'json_duplicate_key');
  assert.match(dup.failure.detail, /"ключ"/);
  assert.equal(dup.failure.reason, `duplicate key at byte ${Buffer.byteLength('{"ключ":1,"€":2,')}`);
});

test('the pre-scan reuses its scratch state: each body starts afresh, after a refusal midway too', () => {
  const keys = (n: number) => Array.from({ length: n }, (_, i) => `"k${i}":${i}`).join(',');
  const scan = (body: string) => prescanJson(Buffer.from(body), JSON_LIMITS);
  const sequence: [string, string | null][] = [
    // Refused deep inside, with a set of keys open at two levels and a big array open.
    [`{${keys(20)},"o":{${keys(20)},"k5":0}}`, 'json_duplicate_key'],
    [`{"k5":1,"o":{"k5":2}}`, null],
    [`{${keys(20)},"k7":{"x":1}}`, 'json_duplicate_key'],
    ['{"k7":1}', null],
    [`[${'['.repeat(30)}{"a":1,"a":2}${']'.repeat(30)}]`, 'json_duplicate_key'],
    ['[[{"a":1}],{"a":2}]', null],
    [`{${keys(900)}}`, null],
    ['{"k1":1,"k1":2}', 'json_duplicate_key'],
  ];
  for (const [body, code] of sequence) {
    const r = scan(body);
    assert.equal(r.ok ? null : r.failure.code, code, body.slice(0, 80));
  }
});

test('the pre-scan flags the keys that could poison a prototype, and only keys', () => {
  const suspect = (body: string) => {
    const r = prescanJson(Buffer.from(body), JSON_LIMITS);
    assert.ok(r.ok, body);
    return r.value.suspectKeys;
  };
  for (const body of [
    '{"__proto__":1}',
    '{"constructor":1}',
    '[1,{"a":{"constructor":{}}}]',
    '{"a\\u0062":1}',
    '{"\\n":1}',
  ])
    assert.equal(suspect(body), true, body);
  for (const body of [
    '{"__proto":1,"constructorX":2,"_proto__":3}',
    '["__proto__","constructor"]',
    '{"a":"__proto__","b":"\\u0063onstructor"}',
    '"constructor"',
  ])
    assert.equal(suspect(body), false, body);
});

test('the pre-scan is linear and iterative: 10^6 levels with a limit of 10^7 does not throw', () => {
  const bytes = Buffer.from(deep(1_000_000));
  const r = prescanJson(bytes, { ...JSON_LIMITS, maxDepth: 10_000_000 });
  assert.ok(r.ok);
  assert.equal(r.value.depth, 1_000_000);
  // And the whole parse (V8's JSON.parse is iterative too) answers instead of throwing RangeError.
  const parsed = parseJson(bytes, { ...JSON_LIMITS, maxDepth: 10_000_000, maxBytes: BIG });
  assert.ok(parsed.ok);
});

test('firstInvalidUtf8 points at the first bad byte', () => {
  assert.equal(firstInvalidUtf8(Buffer.from('héllo')), -1);
  assert.equal(firstInvalidUtf8(Buffer.from([0x61, 0xe2, 0x82])), 1, 'truncated sequence');
  assert.equal(firstInvalidUtf8(Buffer.from([0x61, 0xed, 0xa0, 0x80])), 1, 'a UTF-16 surrogate');
  assert.equal(firstInvalidUtf8(Buffer.from([0x61, 0x62, 0xf5, 0x80, 0x80, 0x80])), 2, 'above U+10FFFF');
});

// --- JSON Schema ---------------------------------------------------------------------------------------

const ORDER_SCHEMA = {
  type: 'object',
  required: ['id', 'items'],
  additionalProperties: false,
  properties: {
    id: { type: 'string', format: 'uuid' },
    email: { type: 'string', format: 'email' },
    items: {
      type: 'array',
      items: {
        type: 'object',
        required: ['price'],
        properties: { price: { type: 'number', minimum: 0 }, 'a/b~c': { type: 'string' } },
      },
    },
  },
};
const orders = compileSchema(ORDER_SCHEMA, 'orders.json');

table('JSON Schema', [
  {
    name: 'a valid order',
    request: {
      type: 'application/json',
      body: JSON.stringify({ id: '0b0f3c2e-8d1a-4c5e-9f6b-1a2b3c4d5e6f', items: [{ price: 3 }] }),
    },
    policy: { json: { ...JSON_LIMITS, schema: orders } },
    expect: 'ok',
  },
  {
    name: 'schema violations: every failing pointer is listed, with its message',
    request: {
      type: 'application/json',
      body: JSON.stringify({ id: 'nope', email: 'x', extra: 1, items: [{ price: -1, 'a/b~c': 5 }, {}] }),
    },
    policy: { json: { ...JSON_LIMITS, schema: orders } },
    expect: 'schema_violation',
    failure: (f) => {
      assert.equal(f.code, 'schema_violation');
      if (f.code !== 'schema_violation') return;
      const got = new Set(f.errors.map((e) => `${e.pointer} ${e.message}`));
      assert.deepEqual(
        got,
        new Set([
          '/extra is not allowed',
          '/id must match format "uuid"',
          '/email must match format "email"',
          '/items/0/price must be >= 0',
          '/items/0/a~1b~0c must be string',
          '/items/1/price is required',
        ]),
      );
      assert.equal(f.totalErrors, 6);
      for (const p of ['/extra', '/id', '/items/0/price', '/items/1/price'])
        assert.ok(f.detail.includes(p), p);
    },
  },
  {
    name: 'a missing required property at the top points at it',
    request: { type: 'application/json', body: '{"items":[]}' },
    policy: { json: { ...JSON_LIMITS, schema: orders } },
    expect: 'schema_violation',
    failure: (f) => {
      if (f.code !== 'schema_violation') return assert.fail(f.code);
      assert.deepEqual(f.errors, [{ pointer: '/id', message: 'is required' }]);
    },
  },
  {
    name: 'a wrong type of the whole document points at "/"',
    request: { type: 'application/json', body: '[]' },
    policy: { json: { ...JSON_LIMITS, schema: orders } },
    expect: 'schema_violation',
    failure: (f) => {
      if (f.code !== 'schema_violation') return assert.fail(f.code);
      assert.deepEqual(f.errors, [{ pointer: '/', message: 'must be object' }]);
    },
  },
  {
    name: '1000 errors: 20 reported, the total counted, the detail says how many more',
    request: { type: 'application/json', body: JSON.stringify(Array.from({ length: 1000 }, (_, i) => i)) },
    policy: {
      json: {
        ...JSON_LIMITS,
        schema: compileSchema({ type: 'array', items: { type: 'string' } }, 'strings'),
      },
    },
    expect: 'schema_violation',
    failure: (f) => {
      if (f.code !== 'schema_violation') return assert.fail(f.code);
      assert.equal(f.errors.length, 20);
      assert.equal(f.totalErrors, 1000);
      assert.deepEqual(f.errors[19], { pointer: '/19', message: 'must be string' });
      assert.match(f.detail, /\(and 980 more\)\.$/);
    },
  },
]);

describe('compileSchema refuses invalid schemas with a clear error', () => {
  const cases: [string, unknown, RegExp][] = [
    [
      'an unknown type name',
      { type: 'object', properties: { a: { type: 'strin' } } },
      /must be equal to one of the allowed values/,
    ],
    ['an unknown keyword (strict mode)', { type: 'object', requried: ['a'] }, /unknown keyword: "requried"/],
    [
      'a keyword without its type (strict types)',
      { properties: { a: { type: 'string' } } },
      /missing type "object"/,
    ],
    ['an unknown format', { type: 'string', format: 'emial' }, /unknown format "emial"/],
    ['a reference that resolves nowhere', { $ref: '#/definitions/nope' }, /can't resolve reference/],
    [
      'a remote reference (no network)',
      { $ref: 'https://example.com/schema.json' },
      /can't resolve reference/,
    ],
    ['not an object', 'string', /a schema is an object or a boolean/],
    [
      'a draft ajv 8 does not speak',
      { $schema: 'http://json-schema.org/draft-04/schema#', type: 'object' },
      /no schema with key or ref/,
    ],
  ];
  for (const [what, schema, message] of cases) {
    test(what, () => {
      assert.throws(
        () => compileSchema(schema, 'orders.json'),
        (e: unknown) =>
          e instanceof Error &&
          e.message.startsWith('JSON schema "orders.json" is invalid: ') &&
          message.test(e.message),
      );
    });
  }
  test('draft 2020-12 is chosen by $schema', () => {
    const s = compileSchema(
      {
        $schema: 'https://json-schema.org/draft/2020-12/schema',
        type: 'array',
        prefixItems: [{ type: 'integer' }],
        minItems: 1,
        items: false,
      },
      'tuple',
    );
    assert.equal(s.validate([1]), null);
    assert.equal(s.validate(['x'])?.errors[0]?.pointer, '/0');
  });
});

// --- digests -------------------------------------------------------------------------------------------

const BODY = '{"order":42}';
const SHA256 = `sha-256=:${b64('sha256', BODY)}:`;
const SHA512 = `sha-512=:${b64('sha512', BODY)}:`;
const DIGEST = { require: false, legacy: [] } as const;
const jsonDigest = (headers: Record<string, string>): Case['request'] => ({
  type: 'application/json',
  body: BODY,
  headers,
});

table('digests', [
  {
    name: 'good digest: sha-256',
    request: jsonDigest({ 'content-digest': SHA256 }),
    policy: { digest: DIGEST },
    expect: 'ok',
    result: (r) => assert.deepEqual(r.digests, ['sha-256']),
  },
  {
    name: 'good digest: sha-512',
    request: jsonDigest({ 'content-digest': SHA512 }),
    policy: { digest: DIGEST },
    expect: 'ok',
    result: (r) => assert.deepEqual(r.digests, ['sha-512']),
  },
  {
    name: 'good digest: several members, unknown and deprecated algorithms ignored',
    request: jsonDigest({
      'content-digest': `md5=:${b64('md5', 'x')}:, ${SHA512}, unixsum=42, sha-256=:${b64('sha256', BODY)}:;p=1`,
    }),
    policy: { digest: DIGEST },
    expect: 'ok',
    result: (r) => assert.deepEqual(r.digests, ['sha-512', 'sha-256']),
  },
  {
    name: 'bad digest: sha-256 of other bytes',
    request: jsonDigest({ 'content-digest': `sha-256=:${b64('sha256', `${BODY} `)}:` }),
    policy: { digest: DIGEST },
    expect: 'digest_mismatch',
    failure: (f) => assert.match(f.detail, /Content-Digest sha-256 digest does not match/),
  },
  {
    name: 'bad digest: one known member matches, another does not',
    request: jsonDigest({ 'content-digest': `${SHA256}, sha-512=:${b64('sha512', 'other')}:` }),
    policy: { digest: DIGEST },
    expect: 'digest_mismatch',
  },
  {
    name: 'missing required digest',
    request: jsonDigest({}),
    policy: { digest: { require: true, legacy: [] } },
    expect: 'digest_missing',
    failure: (f) =>
      assert.deepEqual(f.headers, [{ name: 'want-content-digest', value: 'sha-256=10, sha-512=5' }]),
  },
  {
    name: 'required digest with only unsupported algorithms',
    request: jsonDigest({ 'content-digest': `md5=:${b64('md5', BODY)}:` }),
    policy: { digest: { require: true, legacy: [] } },
    expect: 'digest_missing',
    failure: (f) => assert.match(f.detail, /no algorithm this route accepts/),
  },
  {
    name: 'a malformed Content-Digest (not a byte sequence)',
    request: jsonDigest({ 'content-digest': `sha-256=${hex('sha256', BODY)}` }),
    policy: { digest: DIGEST },
    expect: 'digest_invalid',
  },
  {
    name: 'a Content-Digest value of the wrong length',
    request: jsonDigest({ 'content-digest': `sha-256=:${b64('md5', BODY)}:` }),
    policy: { digest: DIGEST },
    expect: 'digest_invalid',
  },
  {
    name: 'a Content-Digest naming sha-256 twice',
    request: jsonDigest({ 'content-digest': `${SHA256}, ${SHA256}` }),
    policy: { digest: DIGEST },
    expect: 'digest_invalid',
  },
  {
    name: 'a Content-Digest with a trailing comma fails as a whole (RFC 8941)',
    request: jsonDigest({ 'content-digest': `${SHA256},` }),
    policy: { digest: DIGEST },
    expect: 'digest_invalid',
  },
  {
    name: 'legacy Content-MD5, good',
    request: jsonDigest({ 'content-md5': b64('md5', BODY) }),
    policy: { digest: { require: true, legacy: ['content-md5'] } },
    expect: 'ok',
    result: (r) => assert.deepEqual(r.digests, ['content-md5']),
  },
  {
    name: 'legacy Content-MD5, bad',
    request: jsonDigest({ 'content-md5': b64('md5', 'x') }),
    policy: { digest: { require: false, legacy: ['content-md5'] } },
    expect: 'digest_mismatch',
  },
  {
    name: 'legacy Content-MD5 in hex instead of base64',
    request: jsonDigest({ 'content-md5': hex('md5', BODY) }),
    policy: { digest: { require: false, legacy: ['content-md5'] } },
    expect: 'digest_invalid',
  },
  {
    name: 'legacy X-Checksum-SHA256, good (upper-case hex)',
    request: jsonDigest({ 'x-checksum-sha256': hex('sha256', BODY).toUpperCase() }),
    policy: { digest: { require: true, legacy: ['x-checksum-sha256'] } },
    expect: 'ok',
    result: (r) => assert.deepEqual(r.digests, ['x-checksum-sha256']),
  },
  {
    name: 'legacy X-Checksum-SHA256, bad',
    request: jsonDigest({ 'x-checksum-sha256': hex('sha256', 'x') }),
    policy: { digest: { require: false, legacy: ['x-checksum-sha256'] } },
    expect: 'digest_mismatch',
  },
  {
    name: 'legacy headers the route does not list are ignored',
    request: jsonDigest({ 'content-md5': b64('md5', 'x') }),
    policy: { digest: DIGEST },
    expect: 'ok',
  },
  {
    name: 'a legacy header does not satisfy require unless the route lists it',
    request: jsonDigest({ 'content-md5': b64('md5', BODY) }),
    policy: { digest: { require: true, legacy: [] } },
    expect: 'digest_missing',
  },
  {
    name: 'no digest policy: digest headers are not looked at',
    request: jsonDigest({ 'content-digest': 'garbage' }),
    expect: 'ok',
  },
]);

test('parseDictionary: RFC 8941 members and values', () => {
  const r = parseDictionary(
    'a=1, b=?0, c="x\\"y", d=tok/en:1, e=(1 "two" :AQ==:);q=1, f, g=@1659578233, h=%"caf%c3%a9", i=1.5',
  );
  assert.ok(r.ok, !r.ok ? r.reason : '');
  assert.deepEqual([...r.value.keys()], ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i']);
  for (const bad of ['A=1', 'a=', 'a=:!!:', 'a=1,,b=2', 'a=(1', 'a="unterminated']) {
    assert.ok(!parseDictionary(bad).ok, bad);
  }
});

test('BodyHashes computes each hash once and shares the SHA-256 hex', () => {
  const h = new BodyHashes(Buffer.from(BODY));
  assert.equal(h.sha256Hex(), hex('sha256', BODY));
  assert.equal(h.digest('sha256'), h.digest('sha256'), 'the same Buffer: computed once');
  assert.deepEqual(h.digest('sha256'), createHash('sha256').update(BODY).digest());
  assert.deepEqual(
    new BodyHashes(Buffer.from(BODY)).digest('sha256'),
    createHash('sha256').update(BODY).digest(),
  );
  assert.equal(sha256Hex(new Uint8Array(0)), hex('sha256', ''));
  const r = verifyDigests(new Map([['content-digest', SHA256]]), h, DIGEST);
  assert.ok(r.ok);
});

// --- forms ---------------------------------------------------------------------------------------------

const FORM_POLICY = { multipart: FORM };

table('multipart/form-data and urlencoded forms', [
  {
    name: 'fields and a file part, parsed',
    request: {
      type: MULTIPART,
      body: multipart([
        { name: 'title', body: 'Q3 report' },
        { name: 'doc', filename: 'report.pdf', type: 'application/pdf', body: PDF },
      ]),
    },
    policy: FORM_POLICY,
    expect: 'ok',
    result: (r) => {
      assert.deepEqual(r.form?.fields, [{ name: 'title', value: 'Q3 report' }]);
      assert.equal(r.form?.files.length, 1);
      const file = r.form?.files[0];
      assert.equal(file?.filename, 'report.pdf');
      assert.equal(file?.declaredType, 'application/pdf');
      assert.deepEqual(Buffer.from(file?.bytes ?? []), PDF);
    },
  },
  {
    name: 'multipart with 10^4 parts is refused by the count limit',
    request: {
      type: MULTIPART,
      body: multipart(Array.from({ length: 10_000 }, (_, i) => ({ name: `f${i}`, body: String(i) }))),
    },
    policy: { ...FORM_POLICY, maxBodyBytes: BIG },
    expect: 'multipart_limits_exceeded',
    failure: (f) => assert.match(f.detail, /more than 20 parts/),
  },
  {
    name: 'a file part over maxPartBytes',
    request: {
      type: MULTIPART,
      body: multipart([{ name: 'f', filename: 'a.bin', body: Buffer.alloc(70_000, 1) }]),
    },
    policy: FORM_POLICY,
    expect: 'multipart_limits_exceeded',
  },
  {
    name: 'a field value over maxPartBytes',
    request: { type: MULTIPART, body: multipart([{ name: 'note', body: 'x'.repeat(70_000) }]) },
    policy: FORM_POLICY,
    expect: 'multipart_limits_exceeded',
  },
  {
    name: 'no boundary',
    request: { type: 'multipart/form-data', body: multipart([{ name: 'a', body: '1' }]) },
    policy: FORM_POLICY,
    expect: 'multipart_invalid',
    failure: (f) => assert.match(f.detail, /Boundary not found/),
  },
  {
    name: 'truncated: no closing delimiter',
    request: { type: MULTIPART, body: multipart([{ name: 'a', body: '1' }], false) },
    policy: FORM_POLICY,
    expect: 'multipart_invalid',
    failure: (f) => assert.match(f.detail, /Unexpected end of form/),
  },
  {
    name: 'not multipart at all',
    request: { type: MULTIPART, body: 'just text' },
    policy: FORM_POLICY,
    expect: 'multipart_invalid',
  },
  {
    name: 'a part without Content-Disposition (busboy would skip it silently)',
    request: {
      type: MULTIPART,
      body: multipart([
        { name: 'a', body: '1' },
        { name: '', rawHeaders: 'Content-Type: application/x-elf', body: ELF },
      ]),
    },
    policy: FORM_POLICY,
    expect: 'multipart_invalid',
  },
  {
    name: 'a base64 Content-Transfer-Encoding part',
    request: {
      type: MULTIPART,
      body: multipart([
        {
          name: 'f',
          rawHeaders:
            'Content-Disposition: form-data; name="f"; filename="a.png"\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64',
          body: PNG.toString('base64'),
        },
      ]),
    },
    policy: FORM_POLICY,
    expect: 'multipart_invalid',
  },
  {
    name: 'a file part of a type the route does not list',
    request: {
      type: MULTIPART,
      body: multipart([{ name: 'f', filename: 'a.gif', type: 'image/gif', body: GIF }]),
    },
    policy: { multipart: { ...FORM, allowedTypes: [range('image/png'), range('application/pdf')] } },
    expect: 'media_type_not_allowed',
    failure: (f) => assert.match(f.detail, /Part "f" is image\/gif/),
  },
  {
    name: 'a file part whose bytes are an executable (declared image/png)',
    request: {
      type: MULTIPART,
      body: multipart([{ name: 'f', filename: 'cat.png', type: 'image/png', body: ELF }]),
    },
    policy: FORM_POLICY,
    expect: 'media_type_mismatch',
    failure: (f) => assert.match(f.detail, /Part "f" is declared as image\/png/),
  },
  {
    name: 'urlencoded form parse',
    request: { type: 'application/x-www-form-urlencoded', body: 'a=1&b=%E2%82%AC+x&c=&a=2' },
    policy: FORM_POLICY,
    expect: 'ok',
    result: (r) => {
      assert.equal(r.form?.kind, 'urlencoded');
      assert.deepEqual(r.form?.fields, [
        { name: 'a', value: '1' },
        { name: 'b', value: '€ x' },
        { name: 'c', value: '' },
        { name: 'a', value: '2' },
      ]);
    },
  },
  {
    name: 'urlencoded with a bad percent-escape',
    request: { type: 'application/x-www-form-urlencoded', body: 'a=%ZZ' },
    policy: FORM_POLICY,
    expect: 'multipart_invalid',
  },
  {
    name: 'urlencoded with too many fields',
    request: {
      type: 'application/x-www-form-urlencoded',
      body: Array.from({ length: 50 }, (_, i) => `k${i}=v`).join('&'),
    },
    policy: FORM_POLICY,
    expect: 'multipart_limits_exceeded',
  },
]);

describe('file names', () => {
  const traversal = ['../../etc/passwd', '..\\x', '/abs', 'C:\\x', '\\\\server\\share\\x', 'a/b.txt', '..'];
  for (const name of traversal) {
    test(`path traversal in a multipart part: ${JSON.stringify(name)}`, () =>
      run({
        name,
        request: {
          type: MULTIPART,
          body: multipart([{ name: 'f', filename: name, type: 'text/plain', body: 'x' }]),
        },
        policy: FORM_POLICY,
        expect: 'filename_invalid',
        failure: (f) => assert.match(f.detail, /^The file name of part "f" is not accepted: /),
      }));
  }
  const rules: [string, string | null][] = [
    ['report.pdf', null],
    ['Rapport annuel 2025 (v2).pdf', null],
    ['résumé.txt', null],
    ['', 'it is empty'],
    ['../../etc/passwd', 'it contains a path separator'],
    ['..\\x', 'it contains a path separator'],
    ['/abs', 'it is an absolute path'],
    ['\\abs', 'it is an absolute path'],
    ['C:\\x', 'it starts with a drive letter'],
    ['c:x', 'it starts with a drive letter'],
    ['a..b', 'it contains ".."'],
    ['file.txt:stream', 'it contains ":"'],
    ['a\u0000.png', 'it contains control characters'],
    ['a\nb.png', 'it contains control characters'],
    ['invoice\u202Efdp.exe', 'it contains invisible or bidirectional-override characters'],
    ['trailing.', 'it ends with a dot or a space'],
    ['x'.repeat(256), 'it is longer than 255 bytes'],
    ['é'.repeat(128), 'it is longer than 255 bytes'],
  ];
  for (const [name, reason] of rules) {
    test(`checkFilename(${JSON.stringify(name.slice(0, 40))}) → ${reason ?? 'accepted'}`, () => {
      assert.equal(checkFilename(name, FORM), reason);
    });
  }
  test('the route pattern applies after the built-in rules (RE2, case-insensitive by (?i))', () => {
    const p = { ...FORM, filenamePattern: compileLinear('(?i)\\.(pdf|png)$') };
    assert.equal(checkFilename('a.pdf', p), null);
    assert.equal(checkFilename('b.PDF', p), null);
    assert.equal(checkFilename('a.exe', p), "it does not match this route's file name rule");
  });
});

// --- scan targets (what inspectScan will scan) ---------------------------------------------------------

const SCAN: ScanPolicy = { types: [], onError: 'deny', timeoutMs: 1000, maxBytes: 2 * 1024 * 1024 };

table('scan targets', [
  {
    name: 'no scan policy: nothing to scan',
    request: { type: 'application/pdf', body: PDF },
    expect: 'ok',
    result: (r) => assert.deepEqual(r.targets, []),
  },
  {
    name: 'the body, keyed by its SHA-256',
    request: { type: 'application/pdf', body: PDF },
    policy: { scan: SCAN },
    expect: 'ok',
    result: (r) => {
      assert.deepEqual(
        r.targets.map((t) => [t.name, t.sha256]),
        [['body', hex('sha256', PDF)]],
      );
      assert.equal(r.detectedType, 'application/pdf');
    },
  },
  {
    name: 'only the listed types: JSON not scanned when the route scans PDFs and images',
    request: { type: 'application/json', body: '{"a":1}' },
    policy: { scan: { ...SCAN, types: [range('application/pdf'), range('image/*')] } },
    expect: 'ok',
    result: (r) => assert.deepEqual(r.targets, []),
  },
  {
    name: 'the detected type counts too: a PDF declared application/octet-stream is scanned',
    request: { type: 'application/octet-stream', body: PDF },
    policy: { scan: { ...SCAN, types: [range('application/pdf')] } },
    expect: 'ok',
    result: (r) => assert.equal(r.targets.length, 1),
  },
  {
    name: 'JSON with escapes: the body and its unescaped strings',
    request: { type: 'application/json', body: JSON.stringify({ path: 'C:\\temp', n: 1 }) },
    policy: { scan: SCAN, json: JSON_LIMITS },
    expect: 'ok',
    result: (r) => {
      assert.deepEqual(
        r.targets.map((t) => t.name),
        ['body', 'body (JSON strings)'],
      );
      assert.equal(Buffer.from(r.targets[1]?.bytes ?? []).toString(), 'path\nC:\\temp\nn');
    },
  },
  {
    name: 'JSON without escapes: the body alone (every string is verbatim in it)',
    request: { type: 'application/json', body: '{"a":"b"}' },
    policy: { scan: SCAN, json: JSON_LIMITS },
    expect: 'ok',
    result: (r) => assert.equal(r.targets.length, 1),
  },
  {
    name: 'multipart: each file part, not the fields, not the raw body',
    request: {
      type: MULTIPART,
      body: multipart([
        { name: 'note', body: 'hello' },
        { name: 'a', filename: 'a.pdf', type: 'application/pdf', body: PDF },
        { name: 'b', filename: 'b.png', type: 'image/png', body: PNG },
      ]),
    },
    policy: { scan: { ...SCAN, types: [range('application/pdf')] }, multipart: FORM },
    expect: 'ok',
    result: (r) =>
      assert.deepEqual(
        r.targets.map((t) => t.name),
        ['part "a" ("a.pdf")'],
      ),
  },
]);

test('jsonStrings: keys and values, unescaped, in document order', () => {
  assert.equal(Buffer.from(jsonStrings({ a: ['x\\y', { b: 'z' }], c: 1 })).toString(), 'a\nx\\y\nb\nz\nc');
});

// --- in which turn ------------------------------------------------------------------------------------

describe('a body whose type needs no magic-byte detection is inspected in the Check’s own turn', () => {
  test('a JSON body: the result, not a promise (no microtask before the quota stage)', () => {
    const result = inspectCheap(
      request({ type: 'application/json', body: '{"a":1}' }),
      policy({ json: { ...JSON_LIMITS } }),
    );
    assert.ok(!(result instanceof Promise), 'answered in this turn');
    assert.equal(result.ok, true);
  });

  test('a refused JSON body too: json_malformed in this turn', () => {
    const result = inspectCheap(
      request({ type: 'application/json', body: '{"a":' }),
      policy({ json: { ...JSON_LIMITS } }),
    );
    assert.ok(!(result instanceof Promise));
    assert.equal(!result.ok && result.failure.code, 'json_malformed');
  });

  test('a binary body (magic bytes) and a form still answer, later', async () => {
    const png = inspectCheap(request({ type: 'image/png', body: PNG }), policy());
    assert.ok(png instanceof Promise, 'file-type answers in a promise');
    assert.equal((await png).ok, true);
    const form = inspectCheap(
      request({
        type: MULTIPART,
        body: multipart([{ name: 'f', filename: 'a.png', type: 'image/png', body: PNG }]),
      }),
      policy({ multipart: { ...FORM, allowedTypes: [range('image/png')] } }),
    );
    assert.ok(form instanceof Promise);
    assert.equal((await form).ok, true);
  });
});
