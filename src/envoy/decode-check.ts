// Edge in, first half: Envoy's CheckRequest bytes → the few fields normalize() reads, and nothing
// else. protobufjs' generated decoder builds every field of every message (the destination peer, the
// request time, a dictionary-mode object per header map) and decodes every string, among them the
// client certificate (~1.3 KB URL-encoded) that only mTLS routes ever read. Here:
//   - fields we do not read are skipped, unread;
//   - the certificate, `raw_body` and `body` are views into the request's bytes (no copy, no
//     decode): the certificate is decoded when an mTLS route reads it; `body` (Envoy's string
//     field when pack_as_bytes is off) is taken as the bytes Envoy sent, as `raw_body` is;
//   - map entries (headers, context extensions) arrive as a flat [key, value, key, value…] list.
// Field numbers: protos/envoy/service/auth/v3/attribute_context.proto, config/core/v3/address.proto
// and base.proto. As protobufjs does, a repeated singular field keeps its last value, and a map's
// repeated key too. A known field with the wrong wire type is refused (a precise error, not a
// misread); an unknown field is skipped. test/contract/decode-check.test.ts holds this to the
// official protos.
import protobuf from 'protobufjs';

/**
 * What we read of a CheckRequest (keepCase names). Absent messages are null, absent
 * strings ''. Map fields are flat [key, value, key, value…] lists; bytes are views into the request.
 */
export interface WireHeaderValue {
  readonly key: string;
  readonly value: string;
  readonly raw_value: Uint8Array;
}
export interface WireHttpRequest {
  readonly method: string;
  readonly headers: readonly string[];
  readonly header_map: { readonly headers: readonly WireHeaderValue[] } | null;
  readonly path: string;
  readonly host: string;
  readonly scheme: string;
  readonly protocol: string;
  /** The string field `body`, as the bytes Envoy sent (not decoded). */
  readonly body: Uint8Array;
  readonly raw_body: Uint8Array;
}
/** A Peer, its socket address flattened ('' and 0 without one). */
export interface WirePeer {
  readonly address: string;
  readonly port: number;
  readonly principal: string;
  /** The URL-encoded PEM's bytes, not decoded: only mTLS routes read it. */
  readonly certificate: Uint8Array;
}
export interface WireCheckRequest {
  readonly attributes: {
    readonly source: WirePeer | null;
    readonly request: { readonly http: WireHttpRequest | null } | null;
    readonly context_extensions: readonly string[];
    readonly tls_session: { readonly sni: string } | null;
  } | null;
}

type Reader = protobuf.Reader;

const LEN = 2;
const VARINT = 0;
const EMPTY: Uint8Array = new Uint8Array(0);

/** Decodes a serialized CheckRequest (without its gRPC frame prefix). Throws on malformed bytes. */
export function decodeCheckRequest(bytes: Uint8Array): WireCheckRequest {
  const r = protobuf.Reader.create(bytes);
  let attributes: WireCheckRequest['attributes'] = null;
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (tag >>> 3 === 1) attributes = attributeContext(r, end(r, tag, 'CheckRequest.attributes'));
    else r.skipType(tag & 7);
  }
  return { attributes };
}

/** Refuses a known field sent with another wire type than its own: it would be misread. */
function expect(tag: number, wireType: number, field: string): void {
  if ((tag & 7) !== wireType) throw new Error(`${field}: wire type ${tag & 7}, expected ${wireType}`);
}

/** The end of the length-delimited field just tagged `tag` (its wire type checked). */
function end(r: Reader, tag: number, field: string): number {
  expect(tag, LEN, field);
  const length = r.uint32();
  const to = r.pos + length;
  if (to > r.len) throw new RangeError(`${field}: length ${length} runs past the end of the message`);
  return to;
}

/** `value`, once the message that ends at `to` was read to its exact end (no field ran past it). */
function closed<T>(r: Reader, to: number, field: string, value: T): T {
  if (r.pos !== to) throw new RangeError(`${field}: a field runs past the end of the message`);
  return value;
}

/**
 * A string field. Most of a Check's strings are the same from one request to the next (header names,
 * `:method`, `:scheme`, `accept`, the host…): a short ASCII one is looked up by its bytes among the
 * strings decoded before and, when found, reused, with no decode and no new string. Others, and a
 * miss, are decoded by protobufjs as before (a miss then takes the slot).
 */
function string(r: Reader, tag: number, field: string): string {
  expect(tag, LEN, field);
  const at = r.pos;
  const length = r.uint32();
  const start = r.pos;
  const end = start + length;
  if (length <= INTERNED_MAX_BYTES && end <= r.len) {
    const buf = r.buf;
    let hash = 0x811c9dc5 ^ length;
    let k = start;
    for (; k < end; k++) {
      const c = buf[k] as number;
      if (c >= 0x80) break;
      hash = Math.imul(hash ^ c, 0x01000193);
    }
    if (k === end) {
      const slot = (hash ^ (hash >>> 15)) & (INTERNED_SLOTS - 1);
      const known = interned[slot] as string;
      if (known.length === length && sameText(known, buf, start)) {
        r.pos = end;
        return known;
      }
      r.pos = at;
      const text = r.string();
      interned[slot] = text;
      return text;
    }
  }
  r.pos = at;
  return r.string();
}

const INTERNED_MAX_BYTES = 32;
const INTERNED_SLOTS = 1024;
/** Direct-mapped by a hash of the bytes; a collision only costs a decode. */
const interned: string[] = new Array<string>(INTERNED_SLOTS).fill('');

/** `text` (ASCII) has the bytes of buf from `start` on. */
function sameText(text: string, buf: Uint8Array, start: number): boolean {
  for (let k = 0; k < text.length; k++) if (text.charCodeAt(k) !== buf[start + k]) return false;
  return true;
}

function bytes(r: Reader, tag: number, field: string): Uint8Array {
  expect(tag, LEN, field);
  return r.bytes();
}

type Attributes = NonNullable<WireCheckRequest['attributes']>;

function attributeContext(r: Reader, to: number): Attributes {
  let source: WirePeer | null = null;
  let request: Attributes['request'] = null;
  let sni: string | null = null;
  const extensions: string[] = [];
  while (r.pos < to) {
    const tag = r.uint32();
    switch (tag >>> 3) {
      case 1:
        source = peer(r, end(r, tag, 'AttributeContext.source'));
        break;
      case 4:
        request = { http: requestHttp(r, end(r, tag, 'AttributeContext.request')) };
        break;
      case 10:
        entry(r, end(r, tag, 'AttributeContext.context_extensions'), extensions);
        break;
      case 12:
        sni = tlsSession(r, end(r, tag, 'AttributeContext.tls_session'));
        break;
      default:
        r.skipType(tag & 7);
    }
  }
  return closed(r, to, 'CheckRequest.attributes', {
    source,
    request,
    context_extensions: extensions,
    tls_session: sni === null ? null : { sni },
  });
}

/** AttributeContext.Request: only its `http` (field 2). */
function requestHttp(r: Reader, to: number): WireHttpRequest | null {
  let http: WireHttpRequest | null = null;
  while (r.pos < to) {
    const tag = r.uint32();
    if (tag >>> 3 === 2) http = httpRequest(r, end(r, tag, 'Request.http'));
    else r.skipType(tag & 7);
  }
  return closed(r, to, 'AttributeContext.request', http);
}

function httpRequest(r: Reader, to: number): WireHttpRequest {
  let method = '';
  let path = '';
  let host = '';
  let scheme = '';
  let protocol = '';
  let body: Uint8Array = EMPTY;
  let rawBody: Uint8Array = EMPTY;
  const headers: string[] = [];
  let headerMap: WireHeaderValue[] | null = null;
  while (r.pos < to) {
    const tag = r.uint32();
    switch (tag >>> 3) {
      case 2:
        method = string(r, tag, 'HttpRequest.method');
        break;
      case 3:
        entry(r, end(r, tag, 'HttpRequest.headers'), headers);
        break;
      case 4:
        path = string(r, tag, 'HttpRequest.path');
        break;
      case 5:
        host = string(r, tag, 'HttpRequest.host');
        break;
      case 6:
        scheme = string(r, tag, 'HttpRequest.scheme');
        break;
      case 10:
        protocol = string(r, tag, 'HttpRequest.protocol');
        break;
      case 11:
        body = bytes(r, tag, 'HttpRequest.body');
        break;
      case 12:
        rawBody = bytes(r, tag, 'HttpRequest.raw_body');
        break;
      case 13:
        headerMap = headerValues(r, end(r, tag, 'HttpRequest.header_map'));
        break;
      default:
        r.skipType(tag & 7);
    }
  }
  return closed(r, to, 'Request.http', {
    method,
    headers,
    header_map: headerMap === null ? null : { headers: headerMap },
    path,
    host,
    scheme,
    protocol,
    body,
    raw_body: rawBody,
  });
}

/** One map<string, string> entry, appended to `into` as key then value (absent = ''). */
function entry(r: Reader, to: number, into: string[]): void {
  let key = '';
  let value = '';
  while (r.pos < to) {
    const tag = r.uint32();
    if (tag >>> 3 === 1) key = string(r, tag, 'map entry key');
    else if (tag >>> 3 === 2) value = string(r, tag, 'map entry value');
    else r.skipType(tag & 7);
  }
  closed(r, to, 'map entry', null);
  into.push(key, value);
}

/** config.core.v3.HeaderMap: its repeated HeaderValue (field 1). */
function headerValues(r: Reader, to: number): WireHeaderValue[] {
  const values: WireHeaderValue[] = [];
  while (r.pos < to) {
    const tag = r.uint32();
    if (tag >>> 3 === 1) values.push(headerValue(r, end(r, tag, 'HeaderMap.headers')));
    else r.skipType(tag & 7);
  }
  return closed(r, to, 'HttpRequest.header_map', values);
}

function headerValue(r: Reader, to: number): WireHeaderValue {
  let key = '';
  let value = '';
  let raw: Uint8Array = EMPTY;
  while (r.pos < to) {
    const tag = r.uint32();
    switch (tag >>> 3) {
      case 1:
        key = string(r, tag, 'HeaderValue.key');
        break;
      case 2:
        value = string(r, tag, 'HeaderValue.value');
        break;
      case 3:
        raw = bytes(r, tag, 'HeaderValue.raw_value');
        break;
      default:
        r.skipType(tag & 7);
    }
  }
  return closed(r, to, 'HeaderMap.headers', { key, value, raw_value: raw });
}

function peer(r: Reader, to: number): WirePeer {
  let address = '';
  let port = 0;
  let principal = '';
  let certificate: Uint8Array = EMPTY;
  while (r.pos < to) {
    const tag = r.uint32();
    switch (tag >>> 3) {
      case 1: {
        const socket = socketAddress(r, end(r, tag, 'Peer.address'));
        address = socket?.address ?? '';
        port = socket?.port ?? 0;
        break;
      }
      case 4:
        principal = string(r, tag, 'Peer.principal');
        break;
      case 5:
        certificate = bytes(r, tag, 'Peer.certificate');
        break;
      default:
        r.skipType(tag & 7);
    }
  }
  return closed(r, to, 'AttributeContext.source', { address, port, principal, certificate });
}

/** config.core.v3.Address → its socket_address (field 1), or null when it has none (a pipe…). */
function socketAddress(r: Reader, to: number): { address: string; port: number } | null {
  let found: { address: string; port: number } | null = null;
  while (r.pos < to) {
    const tag = r.uint32();
    if (tag >>> 3 !== 1) {
      r.skipType(tag & 7);
      continue;
    }
    const stop = end(r, tag, 'Address.socket_address');
    let address = '';
    let port = 0;
    while (r.pos < stop) {
      const inner = r.uint32();
      if (inner >>> 3 === 2) address = string(r, inner, 'SocketAddress.address');
      else if (inner >>> 3 === 3) {
        expect(inner, VARINT, 'SocketAddress.port_value');
        port = r.uint32();
      } else r.skipType(inner & 7);
    }
    found = closed(r, stop, 'Address.socket_address', { address, port });
  }
  return closed(r, to, 'Peer.address', found);
}

function tlsSession(r: Reader, to: number): string {
  let sni = '';
  while (r.pos < to) {
    const tag = r.uint32();
    if (tag >>> 3 === 1) sni = string(r, tag, 'TLSSession.sni');
    else r.skipType(tag & 7);
  }
  return closed(r, to, 'AttributeContext.tls_session', sni);
}
