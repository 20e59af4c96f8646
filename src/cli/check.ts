// `portcullis check`: one Envoy-shaped Check against a running server, from curl-like flags.
import { randomUUID, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { CHECK_PATH, checkCodec, type WireCheckResponse } from '../envoy/codec.js';
import { plainRpcError } from '../plain-errors.js';

export interface CheckFlags {
  readonly target: string;
  readonly method?: string;
  readonly headers: readonly string[];
  readonly data?: string;
  readonly principal?: string;
  readonly cert?: string;
  readonly route?: string;
  readonly source: string;
  readonly server: string;
  readonly timeoutMs: number;
}

export class UsageError extends Error {}

const codec = checkCodec();

/** Builds the CheckRequest Envoy would send for this request (as a plain object for our codec). */
export function buildCheckRequest(flags: CheckFlags): object {
  const url = toUrl(flags.target, flags.headers);
  const headers: Record<string, string> = {};
  for (const line of flags.headers) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw new UsageError(`-H expects "name: value", got "${line}"`);
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    // Envoy joins repeated headers with a bare comma.
    headers[name] = headers[name] === undefined ? value : `${headers[name]},${value}`;
  }
  const body = readData(flags.data);
  const method = (flags.method ?? (body ? 'POST' : 'GET')).toUpperCase();
  const authority = headers.host ?? url.host;
  delete headers.host; // Envoy turns Host into :authority.
  const path = `${url.pathname}${url.search}`;
  Object.assign(headers, {
    ':authority': authority,
    ':method': method,
    ':path': path,
    ':scheme': url.protocol.replace(':', ''),
  });
  headers['x-request-id'] ??= randomUUID();
  if (body) {
    headers['content-length'] ??= String(body.length);
    headers['x-envoy-auth-partial-body'] = 'false';
  }
  let principal = flags.principal ?? '';
  let certificate = '';
  if (flags.cert) {
    const pem = readFileSync(flags.cert, 'utf8');
    certificate = encodeURIComponent(pem);
    if (!principal) principal = principalOf(new X509Certificate(pem));
  }
  return {
    attributes: {
      source: {
        address: { socket_address: { address: flags.source, port_value: 50000 } },
        principal,
        certificate,
      },
      destination: { address: { socket_address: { address: '127.0.0.1', port_value: 8443 } } },
      request: {
        time: { seconds: Math.floor(Date.now() / 1000), nanos: 0 },
        http: {
          id: String(Math.floor(Math.random() * 1e9)),
          method,
          headers,
          path,
          host: authority,
          scheme: url.protocol.replace(':', ''),
          size: body?.length ?? 0,
          protocol: 'HTTP/2',
          raw_body: body ?? Buffer.alloc(0),
        },
      },
      context_extensions: flags.route ? { route: flags.route } : {},
      tls_session: { sni: url.hostname },
    },
  };
}

/** As Envoy computes `source.principal`: first URI SAN, else first DNS SAN, else the subject. */
export function principalOf(cert: X509Certificate): string {
  const sans = (cert.subjectAltName ?? '').split(', ');
  const uri = sans.find((s) => s.startsWith('URI:'));
  if (uri) return uri.slice(4);
  const dns = sans.find((s) => s.startsWith('DNS:'));
  if (dns) return dns.slice(4);
  return cert.subject.split('\n').reverse().join(',');
}

function toUrl(target: string, headers: readonly string[]): URL {
  if (/^https?:\/\//.test(target)) return new URL(target);
  if (!target.startsWith('/'))
    throw new UsageError(`expected a URL or a path starting with "/", got "${target}"`);
  const host =
    headers
      .find((h) => h.toLowerCase().startsWith('host:'))
      ?.slice(5)
      .trim() ?? 'localhost';
  return new URL(`https://${host}${target}`);
}

function readData(data: string | undefined): Buffer | undefined {
  if (data === undefined) return undefined;
  return data.startsWith('@') ? readFileSync(data.slice(1)) : Buffer.from(data);
}

export async function sendCheck(
  server: string,
  request: object,
  timeoutMs: number,
): Promise<WireCheckResponse> {
  const client = new grpc.Client(server, grpc.credentials.createInsecure());
  try {
    const bytes = await new Promise<Buffer>((resolve, reject) => {
      client.makeUnaryRequest(
        CHECK_PATH,
        (value: Uint8Array) => Buffer.from(value),
        (value: Buffer) => value,
        codec.encodeRequest(request),
        { deadline: Date.now() + timeoutMs },
        (err, value) =>
          err || !value
            ? reject(new Error(err ? plainRpcError(err, server) : `${server} sent an empty response`))
            : resolve(value),
      );
    });
    return codec.decodeResponse(bytes);
  } finally {
    client.close();
  }
}

/** Human-readable rendering of a CheckResponse. */
export function renderResponse(response: WireCheckResponse): string {
  const lines: string[] = [];
  const meta = Object.fromEntries(
    Object.entries(response.dynamic_metadata?.fields ?? {}).map(([k, v]) => [k, v.stringValue]),
  );
  const who = `route=${meta.route || '-'} partner=${meta.partner || '-'} decision_id=${meta.decision_id}`;
  if (response.ok_response) {
    const ok = response.ok_response;
    lines.push(`ALLOW  ${meta.code}  ${who}`);
    if (ok.headers.length)
      lines.push('upstream headers set:', ...ok.headers.map((h) => `  ${h.header.key}: ${h.header.value}`));
    if (ok.headers_to_remove.length)
      lines.push(`upstream headers removed: ${ok.headers_to_remove.join(', ')}`);
    if (ok.response_headers_to_add.length) {
      lines.push(
        'response headers set:',
        ...ok.response_headers_to_add.map((h) => `  ${h.header.key}: ${h.header.value}`),
      );
    }
  } else {
    const denied = response.denied_response;
    lines.push(`DENY   ${denied?.status?.code ?? 403} ${meta.code}  ${who}`);
    for (const h of denied?.headers ?? []) lines.push(`  ${h.header.key}: ${h.header.value}`);
    if (denied?.body) lines.push(prettyJson(denied.body));
  }
  return lines.join('\n');
}

function prettyJson(text: string): string {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}
