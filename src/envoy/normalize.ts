// Edge in: Envoy's CheckRequest → our immutable Request, or a precise denial when it cannot be read.
import type { Denial } from '../decision.js';
import { HeaderList } from '../header-list.js';
import type { Peer, Request } from '../request.js';
import type { WireCheckRequest, WireHttpRequest, WirePeer } from './codec.js';

export type Normalized =
  | { readonly ok: true; readonly request: Request }
  | { readonly ok: false; readonly requestId: string; readonly denial: Denial };

export interface NormalizeLimits {
  readonly maxHeaderValueBytes: number;
}

const EMPTY_QUERY: ReadonlyMap<string, readonly string[]> = new Map();
const EMPTY_EXTENSIONS: ReadonlyMap<string, string> = new Map();
const NO_PEER: Peer = Object.freeze({ address: '', port: 0, principal: '', certificatePem: '' });
// Envoy sanitises header values, but with encode_raw_headers they arrive as raw bytes: refuse
// what would let a value smuggle a second header line or a NUL upstream.
const FORBIDDEN_IN_VALUE = /[\r\n\0]/;
const UTF8 = new TextDecoder('utf-8', { fatal: true });
const LENIENT_UTF8 = new TextDecoder('utf-8');

class Malformed extends Error {
  constructor(readonly denial: Denial) {
    super(denial.reason);
  }
}

export function normalize(wire: WireCheckRequest, limits: NormalizeLimits): Normalized {
  const attributes = wire.attributes;
  const http = attributes?.request?.http;
  let headers: ReadonlyMap<string, string> | undefined;
  try {
    if (!attributes || !http) {
      throw new Malformed({
        code: 'request_malformed',
        reason: 'CheckRequest has no attributes.request.http',
      });
    }
    headers = readHeaders(http, limits);
    const method = http.method || headers.get(':method') || '';
    const target = http.path || headers.get(':path') || '';
    if (method === '' || !target.startsWith('/')) {
      throw new Malformed({
        code: 'request_malformed',
        reason: `missing or invalid method/path: method=${JSON.stringify(method)} path=${JSON.stringify(target.slice(0, 64))}`,
      });
    }
    const queryAt = target.indexOf('?');
    const hashAt = target.indexOf('#');
    const pathEnd = queryAt !== -1 ? queryAt : hashAt !== -1 ? hashAt : target.length;
    const path = target.slice(0, pathEnd);
    if (path.includes(';')) {
      // Path parameters: many upstreams drop `;x=1` from a segment, so `/v1/admin;x=1/users` would be
      // served as `/v1/admin/users` while matching no route for it. Refused (docs/errors.md).
      throw new Malformed({
        code: 'request_path_invalid',
        reason: `path with ";": ${JSON.stringify(path.slice(0, 128))}`,
      });
    }
    const body = http.raw_body.length > 0 ? http.raw_body : http.body;
    const queryText = queryAt === -1 ? '' : target.slice(queryAt + 1, hashAt > queryAt ? hashAt : undefined);
    const request: Request = {
      requestId: headers.get('x-request-id') ?? '',
      method,
      path,
      query: queryAt === -1 ? EMPTY_QUERY : parseQuery(queryText),
      host: canonicalHost(http.host || headers.get(':authority') || ''),
      scheme: http.scheme || headers.get(':scheme') || '',
      headers,
      body,
      bodyTruncated: isTruncated(headers, body.length),
      source: readPeer(attributes.source),
      sni: attributes.tls_session?.sni ?? '',
      contextExtensions: readExtensions(attributes.context_extensions),
      protocol: http.protocol,
    };
    // Rare (a percent-encoded parameter name): a second object then, rather than a spread in every one.
    const encoded = queryText !== '' && ENCODED_NAME.test(queryText);
    return {
      ok: true,
      request: Object.freeze(encoded ? { ...request, encodedQueryNames: encodedNames(queryText) } : request),
    };
  } catch (err: unknown) {
    if (!(err instanceof Malformed)) throw err;
    return { ok: false, requestId: headers?.get('x-request-id') ?? '', denial: err.denial };
  }
}

function readHeaders(http: WireHttpRequest, limits: NormalizeLimits): ReadonlyMap<string, string> {
  const raw = http.header_map?.headers;
  if (raw && raw.length > 0) {
    const headers = new Map<string, string>();
    // encode_raw_headers: exact bytes, duplicates as separate entries; join them as Envoy does.
    for (const h of raw) {
      const key = h.key.toLowerCase();
      let value: string;
      try {
        value = h.raw_value.length > 0 ? UTF8.decode(h.raw_value) : h.value;
      } catch {
        throw new Malformed({ code: 'request_header_invalid', reason: `header ${key} is not valid UTF-8` });
      }
      checkValue(key, value, limits);
      const prior = headers.get(key);
      headers.set(key, prior === undefined ? value : `${prior},${value}`);
    }
    return headers;
  }
  // Envoy sends lower-case names: the decoder's list serves as it is, copied only to lower-case one.
  let pairs = http.headers;
  for (let i = 0; i < pairs.length; i += 2) {
    const key = pairs[i] as string;
    checkValue(key, pairs[i + 1] as string, limits);
    const lower = key.toLowerCase();
    if (lower !== key) {
      if (pairs === http.headers) pairs = pairs.slice();
      (pairs as string[])[i] = lower;
    }
  }
  const list = HeaderList.fromPairs(pairs);
  if (list !== null) return list;
  // Many headers, or a name repeated (a proto map's last entry wins): a Map.
  const headers = new Map<string, string>();
  for (let i = 0; i < pairs.length; i += 2) headers.set(pairs[i] as string, pairs[i + 1] as string);
  return headers;
}

function readExtensions(pairs: readonly string[]): ReadonlyMap<string, string> {
  if (pairs.length === 0) return EMPTY_EXTENSIONS;
  const map = new Map<string, string>();
  for (let i = 0; i < pairs.length; i += 2) map.set(pairs[i] as string, pairs[i + 1] as string);
  return map;
}

function checkValue(key: string, value: string, limits: NormalizeLimits): void {
  // A UTF-16 length times 3 bounds the UTF-8 length: skip the byte count for ordinary headers.
  if (
    value.length * 3 > limits.maxHeaderValueBytes &&
    Buffer.byteLength(value) > limits.maxHeaderValueBytes
  ) {
    throw new Malformed({
      code: 'request_header_invalid',
      detail: `Header ${key} is larger than ${limits.maxHeaderValueBytes} bytes.`,
      reason: `header ${key} has ${Buffer.byteLength(value)} bytes`,
    });
  }
  if (FORBIDDEN_IN_VALUE.test(value)) {
    throw new Malformed({
      code: 'request_header_invalid',
      detail: `Header ${key} contains a control character.`,
      reason: `header ${key} contains CR, LF or NUL`,
    });
  }
}

function parseQuery(text: string): ReadonlyMap<string, readonly string[]> {
  const query = new Map<string, string[]>();
  for (const [key, value] of new URLSearchParams(text)) {
    const values = query.get(key);
    if (values) values.push(value);
    else query.set(key, [value]);
  }
  return query;
}

/** A `%` or `+` before a `=` (or alone) in some parameter: a name that decodes to something else. */
const ENCODED_NAME = /(?:^|&)[^=&]*[%+]/;

function encodedNames(text: string): ReadonlySet<string> {
  const names = new Set<string>();
  for (const pair of text.split('&')) {
    const eq = pair.indexOf('=');
    const raw = eq === -1 ? pair : pair.slice(0, eq);
    if (!/[%+]/.test(raw)) continue;
    for (const [name] of new URLSearchParams(`${raw}=`)) names.add(name);
  }
  return names;
}

function isTruncated(headers: ReadonlyMap<string, string>, received: number): boolean {
  if (headers.get('x-envoy-auth-partial-body') === 'true') return true;
  const declared = headers.get('content-length');
  return declared !== undefined && Number(declared) > received;
}

/** Lower case, without the port and without the trailing dot of a fully qualified name. */
function canonicalHost(authority: string): string {
  const host = stripPort(authority.toLowerCase());
  return host.endsWith('.') ? host.slice(0, -1) : host;
}

function stripPort(authority: string): string {
  if (authority.startsWith('[')) {
    const end = authority.indexOf(']');
    return end === -1 ? authority : authority.slice(0, end + 1);
  }
  const colon = authority.indexOf(':');
  return colon === -1 ? authority : authority.slice(0, colon);
}

function readPeer(peer: WirePeer | null): Peer {
  return peer ? Object.freeze(new WireBackedPeer(peer)) : NO_PEER;
}

/**
 * The peer, its certificate decoded and URL-decoded on first read. A class rather than an object
 * literal with a getter: no closure and no accessor per Check. The cache is a private field, which
 * a frozen object still lets its own methods write.
 */
class WireBackedPeer implements Peer {
  readonly address: string;
  readonly port: number;
  readonly principal: string;
  readonly #encoded: Uint8Array;
  #pem: string | undefined;

  constructor(peer: WirePeer) {
    this.address = peer.address;
    this.port = peer.port;
    this.principal = peer.principal;
    this.#encoded = peer.certificate;
    this.#pem = peer.certificate.length > 0 ? undefined : '';
  }

  get certificatePem(): string {
    if (this.#pem === undefined) {
      try {
        // As a proto string would have read (invalid UTF-8 → U+FFFD), then URL-decoded.
        this.#pem = decodeURIComponent(LENIENT_UTF8.decode(this.#encoded));
      } catch {
        this.#pem = ''; // Envoy always URL-encodes; anything else is treated as no certificate.
      }
    }
    return this.#pem;
  }
}
