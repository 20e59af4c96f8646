// Edge in: CheckRequest (decoded by our codec from bytes, as on the wire) → Request.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkCodec } from '../../src/envoy/codec.js';
import { normalize } from '../../src/envoy/normalize.js';
import { HeaderList, MAX_LISTED_HEADERS } from '../../src/header-list.js';
import { envoyRequest, type RequestSpec } from '../support/envoy-request.js';

const codec = checkCodec();
const LIMITS = { maxHeaderValueBytes: 16384 };
const wire = (message: object) => codec.decodeRequest(codec.encodeRequest(message));
const read = (spec: RequestSpec) => {
  const result = normalize(wire(envoyRequest(spec)), LIMITS);
  assert.ok(result.ok, JSON.stringify(result));
  return result.request;
};

test('method, path, parsed query, host without port, scheme, request id from x-request-id', () => {
  const r = read({
    method: 'POST',
    path: '/v1/orders/7?b=2&a=1&a=%20x+y#frag',
    host: 'API.Example.com:8443',
    requestId: 'rid-1',
  });
  assert.equal(r.method, 'POST');
  assert.equal(r.path, '/v1/orders/7');
  assert.deepEqual(
    [...r.query],
    [
      ['b', ['2']],
      ['a', ['1', ' x y']],
    ],
  );
  assert.equal(r.host, 'api.example.com');
  assert.equal(r.scheme, 'https');
  assert.equal(r.requestId, 'rid-1', 'x-request-id, not http.id (13249879826382)');
  assert.equal(r.headers.get(':path'), '/v1/orders/7?b=2&a=1&a=%20x+y#frag');
  assert.ok(Object.isFrozen(r));
});

test('IPv6 authority keeps its brackets and loses its port', () => {
  assert.equal(read({ host: '[2001:db8::1]:443' }).host, '[2001:db8::1]');
});

test('body from raw_body, else from the UTF-8 body string', () => {
  assert.deepEqual(
    Buffer.from(read({ body: Buffer.from([0xff, 0x00, 0x41]) }).body),
    Buffer.from([0xff, 0x00, 0x41]),
  );
  const message = envoyRequest({});
  const http = (message.attributes as { request: { http: Record<string, unknown> } }).request.http;
  http.raw_body = Buffer.alloc(0);
  http.body = '{"a":1}';
  const result = normalize(wire(message), LIMITS);
  assert.ok(result.ok);
  assert.equal(Buffer.from(result.request.body).toString(), '{"a":1}');
});

test('truncation: Envoy partial-body flag, or content-length above the bytes received', () => {
  assert.equal(read({ body: Buffer.from('abc') }).bodyTruncated, false);
  assert.equal(
    read({ body: Buffer.from('abc'), headers: { 'x-envoy-auth-partial-body': 'true' } }).bodyTruncated,
    true,
  );
  assert.equal(read({ body: Buffer.from('abc'), headers: { 'content-length': '10' } }).bodyTruncated, true);
  assert.equal(read({ headers: { 'content-length': '0' } }).bodyTruncated, false);
});

test('peer: address, principal and URL-decoded certificate; SNI; context extensions', () => {
  const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
  const r = read({
    principal: 'spiffe://p/acme',
    certificate: encodeURIComponent(pem),
    sourceAddress: '2001:db8::7',
    route: 'orders',
  });
  assert.equal(r.source.address, '2001:db8::7');
  assert.equal(r.source.port, 53211);
  assert.equal(r.source.principal, 'spiffe://p/acme');
  assert.equal(r.source.certificatePem, pem);
  assert.equal(r.sni, 'api.example.com');
  assert.equal(r.contextExtensions.get('route'), 'orders');
});

test('raw header_map (encode_raw_headers): duplicates joined with a comma, invalid UTF-8 refused', () => {
  const message = envoyRequest({});
  const http = (message.attributes as { request: { http: Record<string, unknown> } }).request.http;
  http.headers = {};
  http.header_map = {
    headers: [
      { key: ':method', raw_value: Buffer.from('GET') },
      { key: ':path', raw_value: Buffer.from('/v1/orders') },
      { key: 'X-Tag', raw_value: Buffer.from('one') },
      { key: 'x-tag', raw_value: Buffer.from('two') },
    ],
  };
  const ok = normalize(wire(message), LIMITS);
  assert.ok(ok.ok);
  assert.equal(ok.request.headers.get('x-tag'), 'one,two');
  (http.header_map as { headers: object[] }).headers.push({
    key: 'x-bin',
    raw_value: Buffer.from([0xc3, 0x28]),
  });
  const bad = normalize(wire(message), LIMITS);
  assert.ok(!bad.ok);
  assert.equal(bad.denial.code, 'request_header_invalid');
  assert.match(bad.denial.reason ?? '', /x-bin is not valid UTF-8/);
});

const refusals: [string, object, string, RegExp][] = [
  ['no attributes', {}, 'request_malformed', /no attributes.request.http/],
  ['no http', { attributes: { request: {} } }, 'request_malformed', /no attributes.request.http/],
  ['empty method', envoyRequest({ method: '' }), 'request_malformed', /method=""/],
  ['relative path', envoyRequest({ path: 'v1/orders' }), 'request_malformed', /path="v1\/orders"/],
  [
    'CR LF in a value',
    envoyRequest({ headers: { 'x-a': 'b\r\nc' } }),
    'request_header_invalid',
    /x-a contains CR, LF or NUL/,
  ],
  [
    'NUL in a value',
    envoyRequest({ headers: { 'x-a': 'b\u0000c' } }),
    'request_header_invalid',
    /x-a contains/,
  ],
  [
    'value over the limit',
    envoyRequest({ headers: { 'x-a': 'é'.repeat(8193) } }),
    'request_header_invalid',
    /x-a has 16386 bytes/,
  ],
];
for (const [name, message, code, reason] of refusals) {
  test(`refused: ${name}`, () => {
    const result = normalize(wire(message), LIMITS);
    assert.ok(!result.ok);
    assert.equal(result.denial.code, code);
    assert.match(result.denial.reason ?? '', reason);
  });
}

test('a certificate that is not URL-encoded reads as no certificate', () => {
  assert.equal(read({ certificate: '%E0%A4%A' }).source.certificatePem, '');
});

test('a value exactly at the limit passes', () => {
  assert.equal(read({ headers: { 'x-a': 'a'.repeat(16384) } }).headers.get('x-a')?.length, 16384);
});

test('headers read as a map: names lower-cased, every name and value readable, iteration as a Map', () => {
  const spec = {
    requestId: 'rid-h',
    headers: { 'X-Mixed-Case': 'v0', 'content-type': 'v1', 'x-api-key': 'v2', Authorization: 'v3' },
  };
  const r = read(spec);
  // What a Map of the decoded list, names lower-cased, holds.
  const pairs = wire(envoyRequest(spec)).attributes?.request?.http?.headers ?? [];
  const expected = new Map<string, string>();
  for (let i = 0; i < pairs.length; i += 2)
    expected.set((pairs[i] as string).toLowerCase(), pairs[i + 1] as string);
  assert.equal(r.headers.get('x-mixed-case'), 'v0');
  assert.equal(r.headers.get('authorization'), 'v3');
  assert.equal(r.headers.get('X-Mixed-Case'), undefined, 'names are lower-case');
  assert.equal(r.headers.has('x-api-key'), true);
  assert.equal(r.headers.has('absent'), false);
  assert.equal(r.headers.size, expected.size);
  assert.deepEqual([...r.headers.keys()].sort(), [...expected.keys()].sort());
  assert.deepEqual(new Map(r.headers), expected);
  assert.deepEqual(new Map([...r.headers.keys()].map((k, i) => [k, [...r.headers.values()][i]])), expected);
  const seen = new Map<string, string>();
  r.headers.forEach((value, name) => {
    seen.set(name, value);
  });
  assert.deepEqual(seen, expected);
});

test('a header name repeated in the map (or repeated once lower-cased): the last value wins, as in a proto map', () => {
  const decoded = wire(envoyRequest({ headers: { 'x-dup': 'first' } }));
  const http = decoded.attributes?.request?.http;
  assert.ok(http);
  const withRepeats = {
    ...decoded,
    attributes: {
      ...decoded.attributes,
      request: {
        ...decoded.attributes?.request,
        http: { ...http, headers: [...http.headers, 'x-dup', 'second', 'X-Dup', 'third'] },
      },
    },
  } as typeof decoded;
  const result = normalize(withRepeats, LIMITS);
  assert.ok(result.ok);
  assert.equal(result.request.headers.get('x-dup'), 'third');
  assert.equal([...result.request.headers.keys()].filter((k) => k === 'x-dup').length, 1);
  assert.deepEqual(http.headers.includes('X-Dup'), false, "the decoder's list is not changed");
});

test('a request with more headers than a list is scanned for (MAX_LISTED_HEADERS): every one still read', () => {
  const many = Object.fromEntries(
    Array.from({ length: MAX_LISTED_HEADERS + 10 }, (_, i) => [`x-h-${i}`, `${i}`]),
  );
  const r = read({ headers: many });
  for (let i = 0; i < MAX_LISTED_HEADERS + 10; i++) assert.equal(r.headers.get(`x-h-${i}`), `${i}`);
  assert.ok(r.headers.size > MAX_LISTED_HEADERS);
});

test('HeaderList.fromPairs refuses a repeated name and an over-long list (the caller uses a Map then)', () => {
  assert.equal(HeaderList.fromPairs(['a', '1', 'b', '2', 'a', '3']), null);
  assert.equal(
    HeaderList.fromPairs(Array.from({ length: 2 * MAX_LISTED_HEADERS + 2 }, (_, i) => `h${i}`)),
    null,
  );
  const list = HeaderList.fromPairs(['a', '1', 'b', '2']);
  assert.equal(list?.get('b'), '2');
});
