// Contract: the hand-written CheckRequest decoder (src/envoy/decode-check.ts) reads exactly what
// Envoy's official protos say a CheckRequest holds: each request below is encoded with the official
// CheckRequest type, and our decode must equal the official decode, mapped to our shape. Unknown and
// unread fields (destination, metadata, time, query…) must be skipped without changing a thing,
// and malformed bytes must be refused with an Error, never misread.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeCheckRequest } from '../../src/envoy/decode-check.js';
import { envoyRequest } from '../support/envoy-request.js';
import { seeded } from '../support/seeded.js';
import { loadOfficialRoot } from './official-protos.js';

const official = loadOfficialRoot().lookupType('envoy.service.auth.v3.CheckRequest');

function encode(message: object): Uint8Array {
  return official.encode(official.fromObject(message)).finish();
}

type Plain = Record<string, unknown> | undefined;

/** What our decoder must return for `bytes`, derived from the OFFICIAL decode alone. */
function expected(bytes: Uint8Array): unknown {
  const o = official.toObject(official.decode(bytes), { defaults: false, bytes: Buffer }) as Plain;
  const a = o?.attributes as Plain;
  if (!a) return { attributes: null };
  const pairs = (map: unknown) => Object.entries((map ?? {}) as Record<string, string>).flat();
  const src = a.source as Plain;
  const socket = ((src?.address as Plain)?.socket_address ?? null) as Plain | null;
  const http = ((a.request as Plain)?.http ?? null) as Plain | null;
  const bytesOf = (value: unknown) => Buffer.from((value as Uint8Array | undefined) ?? []);
  return {
    attributes: {
      source: src
        ? {
            address: (socket?.address as string | undefined) ?? '',
            port: (socket?.port_value as number | undefined) ?? 0,
            principal: (src.principal as string | undefined) ?? '',
            certificate: bytesOf(Buffer.from((src.certificate as string | undefined) ?? '')),
          }
        : null,
      request: a.request
        ? {
            http: http
              ? {
                  method: http.method ?? '',
                  headers: pairs(http.headers),
                  header_map: http.header_map
                    ? {
                        headers: (((http.header_map as Plain)?.headers ?? []) as Plain[]).map((h) => ({
                          key: h?.key ?? '',
                          value: h?.value ?? '',
                          raw_value: bytesOf(h?.raw_value),
                        })),
                      }
                    : null,
                  path: http.path ?? '',
                  host: http.host ?? '',
                  scheme: http.scheme ?? '',
                  protocol: http.protocol ?? '',
                  body: Buffer.from((http.body as string | undefined) ?? ''),
                  raw_body: bytesOf(http.raw_body),
                }
              : null,
          }
        : null,
      context_extensions: pairs(a.context_extensions),
      tls_session: a.tls_session ? { sni: (a.tls_session as Plain)?.sni ?? '' } : null,
    },
  };
}

/** A deep copy in which every byte view is a Buffer of its own, so that deepEqual compares contents. */
function plain(value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value);
  if (Array.isArray(value)) return value.map(plain);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  }
  return value;
}

function sameAsOfficial(message: object): void {
  const bytes = encode(message);
  assert.deepEqual(plain(decodeCheckRequest(Buffer.from(bytes))), plain(expected(bytes)));
}

const CERT = encodeURIComponent('-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');

describe('decodeCheckRequest reads what the official CheckRequest holds', () => {
  it('an Envoy-shaped request: peer, certificate, headers, raw body, SNI, context extensions', () => {
    sameAsOfficial(
      envoyRequest({
        method: 'POST',
        principal: 'spiffe://partners.example.com/acme',
        certificate: CERT,
        body: Buffer.from('{"a":1}'),
        route: 'orders',
        headers: { 'x-api-key': 'k-1', 'X-Mixed-Case': 'kept as sent' },
      }),
    );
  });

  it('every field we do not read (destination, time, metadata, id, query, size…) is skipped', () => {
    const message = envoyRequest({ certificate: CERT });
    const attributes = message.attributes as Record<string, Record<string, unknown>>;
    attributes.destination = {
      address: { socket_address: { address: '10.0.0.5', port_value: 8443 } },
      service: 'orders',
      labels: { app: 'orders', tier: 'api' },
      principal: 'spiffe://mesh/orders',
      certificate: 'x',
    };
    (attributes.source as Record<string, unknown>).service = 'edge';
    (attributes.source as Record<string, unknown>).labels = { zone: 'a' };
    attributes.metadata_context = {
      filter_metadata: { 'envoy.filters.http.jwt_authn': { fields: { sub: { string_value: 'x' } } } },
    };
    attributes.route_metadata_context = { filter_metadata: { r: { fields: {} } } };
    const http = (attributes.request as { http: Record<string, unknown> }).http;
    Object.assign(http, { query: 'a=1', fragment: 'f', size: '123456789012' });
    sameAsOfficial(message);
  });

  it('encode_raw_headers: header_map with duplicates, raw values and empty ones, in order', () => {
    const message = envoyRequest();
    const http = (message.attributes as { request: { http: Record<string, unknown> } }).request.http;
    http.headers = {};
    http.header_map = {
      headers: [
        { key: ':method', raw_value: Buffer.from('GET') },
        { key: 'x-tag', raw_value: Buffer.from('one') },
        { key: 'x-tag', raw_value: Buffer.from('two') },
        { key: 'x-empty' },
        { key: 'x-bin', raw_value: Buffer.from([0xff, 0xfe, 0x00]) },
        { key: 'x-old', value: 'as a string' },
      ],
    };
    sameAsOfficial(message);
  });

  it('the string body (pack_as_bytes off), with characters beyond ASCII, as the bytes sent', () => {
    const message = envoyRequest({ method: 'POST' });
    const http = (message.attributes as { request: { http: Record<string, unknown> } }).request.http;
    http.raw_body = Buffer.alloc(0);
    http.body = 'naïve — ünïcödé ✓ 𝄞';
    sameAsOfficial(message);
  });

  it('absent parts: no attributes; no request; no http; no source; a pipe peer; empty SNI', () => {
    sameAsOfficial({});
    sameAsOfficial({ attributes: {} });
    sameAsOfficial({ attributes: { request: {} } });
    sameAsOfficial({ attributes: { request: { http: {} }, tls_session: {} } });
    sameAsOfficial({ attributes: { source: { address: { pipe: { path: '/run/envoy.sock' } } } } });
    sameAsOfficial({ attributes: { source: { principal: 'p' }, context_extensions: { '': '' } } });
  });

  it('200 generated requests: random headers (any Unicode), extensions and peers', () => {
    const next = seeded(0x2545f491);
    const alphabet = ['a', 'Z', '-', ':', ' ', 'é', '中', '😀', '\u0000', ',', '%', '0'];
    const text = (max: number) =>
      Array.from({ length: Math.floor(next() * max) }, () => alphabet[Math.floor(next() * 12)]).join('');
    for (let i = 0; i < 200; i++) {
      const headers: Record<string, string> = {};
      for (let h = Math.floor(next() * 12); h > 0; h--) headers[`x-${text(8)}`] = text(40);
      const message = envoyRequest({
        method: next() < 0.5 ? 'GET' : 'POST',
        path: `/${text(20)}`,
        headers,
        certificate: next() < 0.5 ? CERT : '',
        principal: text(10),
        sourceAddress: next() < 0.5 ? '2001:db8::1' : '192.0.2.7',
        ...(next() < 0.5 ? { body: Buffer.from(text(100)) } : {}),
        ...(next() < 0.5 ? { route: text(6) } : {}),
      });
      sameAsOfficial(message);
    }
  });
});

describe('decodeCheckRequest reuses the short strings it decoded before, exactly', () => {
  it('3,000 requests over a few ASCII letters (strings repeat, collide in its table, cross 32 bytes) and some non-ASCII', () => {
    const next = seeded(0x1badf00d);
    const alphabet = ['a', 'b', 'c', '-', '1', 'é'];
    const text = (min: number, max: number) =>
      Array.from({ length: min + Math.floor(next() * (max - min)) }, () =>
        next() < 0.02 ? 'é' : (alphabet[Math.floor(next() * 5)] as string),
      ).join('');
    for (let i = 0; i < 3000; i++) {
      const headers: Record<string, string> = {};
      for (let h = 1 + Math.floor(next() * 8); h > 0; h--) headers[`x-${text(1, 4)}`] = text(0, 36);
      const message = envoyRequest({
        method: next() < 0.5 ? 'GET' : 'POST',
        path: `/${text(0, 34)}`,
        headers,
        principal: text(28, 36),
      });
      const bytes = encode(message);
      // A Buffer (as the transports hand it) and a plain Uint8Array (protobufjs' other reader).
      const copy = i % 2 === 0 ? Buffer.from(bytes) : new Uint8Array(bytes);
      assert.deepEqual(plain(decodeCheckRequest(copy)), plain(expected(bytes)));
    }
  });
});

describe('decodeCheckRequest refuses malformed bytes with an Error', () => {
  const valid = Buffer.from(encode(envoyRequest({ certificate: CERT, body: Buffer.from('{"a":1}') })));

  it('a request cut at any byte: refused exactly when the official decoder refuses it too', () => {
    for (let cut = 0; cut < valid.length; cut++) {
      const bytes = valid.subarray(0, cut);
      let theirs = 'ok';
      try {
        official.decode(bytes);
      } catch {
        theirs = 'refused';
      }
      let mine = 'ok';
      try {
        decodeCheckRequest(bytes);
      } catch (error: unknown) {
        assert.ok(error instanceof Error, `cut at ${cut}: threw a non-Error`);
        mine = 'refused';
      }
      assert.equal(mine, theirs, `cut at ${cut} of ${valid.length}`);
    }
  });

  it('a known field with the wrong wire type: refused, naming the field', () => {
    // attributes (field 1) sent as a varint.
    assert.throws(
      () => decodeCheckRequest(Buffer.from([0x08, 0x01])),
      /CheckRequest\.attributes: wire type 0/,
    );
    // attributes { request (4) { http (2) { method (2) as a varint } } }.
    const bytes = Buffer.from([0x0a, 0x06, 0x22, 0x04, 0x12, 0x02, 0x10, 0x01]);
    assert.throws(() => decodeCheckRequest(bytes), /HttpRequest\.method: wire type 0/);
  });

  it('a nested field that runs past the end of its message: refused', () => {
    // attributes (len 4) { tls_session (12, len 3) … } : the inner length overruns the outer one.
    const bytes = Buffer.from([0x0a, 0x04, 0x62, 0x03, 0x0a, 0x01, 0x61, 0x00]);
    assert.throws(() => decodeCheckRequest(bytes), /runs past the end/);
  });

  it('invalid UTF-8 in a string field reads with U+FFFD, as a proto string does in Node', () => {
    const message = envoyRequest({ headers: { 'x-a': 'AB' } });
    const bytes = Buffer.from(encode(message));
    const at = bytes.indexOf(Buffer.from('AB'));
    bytes[at] = 0xff;
    const http = decodeCheckRequest(bytes).attributes?.request?.http;
    const pairs = http?.headers ?? [];
    assert.equal(pairs[pairs.indexOf('x-a') + 1], '\ufffdB');
  });

  it('1,000 random byte flips of a valid request: an Error or a decode, never anything else', () => {
    let seed = 7;
    const next = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    let refused = 0;
    for (let i = 0; i < 1000; i++) {
      const bytes = Buffer.from(valid);
      for (let k = 0; k < 3; k++) bytes[next() % bytes.length] = next() & 0xff;
      try {
        decodeCheckRequest(bytes);
      } catch (error: unknown) {
        assert.ok(error instanceof Error);
        refused++;
      }
    }
    assert.ok(refused > 0, 'some flips must break the framing');
  });
});
