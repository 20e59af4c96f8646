// The Check listener on node:http2 (`serve --transport http2`, the default): gRPC's unary framing
// done by hand (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md), with no per-call
// objects beyond what node:http2 makes anyway. It serves exactly three methods:
//   Authorization/Check       → the shared Check handler (server.ts)
//   grpc.health.v1.Health/Check and /Watch
// and answers anything else UNIMPLEMENTED. What it does on the wire:
//   - grpc-timeout → the Check's deadline (a malformed one: INVALID_ARGUMENT);
//   - a request message over the limit → RESOURCE_EXHAUSTED, refused as soon as its length
//     prefix arrives (nothing more is buffered);
//   - a compressed message (grpc-encoding other than identity, or the compressed flag) →
//     UNIMPLEMENTED with grpc-accept-encoding: identity: Envoy never compresses Check calls;
//   - zero or several messages on a unary call, a truncated one → INTERNAL;
//   - every answer ends with grpc-status (and a percent-encoded grpc-message) trailers; errors
//     are trailers-only responses;
//   - shutdown: health NOT_SERVING first (by the caller), then GOAWAY on every connection: calls
//     in flight finish, new ones go to another replica; after the grace period the rest are cut.
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { splitHostPort } from '../config.js';
import { CHECK_PATH, protoRoot } from './codec.js';
import { HEALTH_SERVICES, type Listener, type ListenerOptions } from './transport.js';

export const HEALTH_CHECK_PATH = '/grpc.health.v1.Health/Check';
export const HEALTH_WATCH_PATH = '/grpc.health.v1.Health/Watch';

/** The gRPC status codes this transport answers with. */
export const GrpcStatus = {
  OK: 0,
  INVALID_ARGUMENT: 3,
  NOT_FOUND: 5,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;

/** grpc.health.v1.HealthCheckResponse.ServingStatus */
const SERVING = 1;
const NOT_SERVING = 2;
const SERVICE_UNKNOWN = 3;

/**
 * HTTP/2 settings for Envoy's way of calling: a few long-lived connections, each with many
 * concurrent streams, some of them carrying a buffered body of several MiB.
 */
export function http2Settings(maxMessageBytes: number): {
  readonly settings: http2.Settings;
  readonly connectionWindow: number;
  readonly maxSessionMemoryMb: number;
} {
  return {
    settings: {
      // Bounded, far above what one Envoy keeps in flight on one connection (overload is shed
      // by admission control, not by refusing streams).
      maxConcurrentStreams: 4096,
      // A stream's body arrives in one flight up to 1 MiB instead of 64 KiB round trips.
      initialWindowSize: 1024 * 1024,
      maxHeaderListSize: 64 * 1024,
    },
    // The whole connection: room for several large bodies at once.
    connectionWindow: 16 * 1024 * 1024,
    // node:http2 closes a session whose buffered data passes this (ENHANCE_YOUR_CALM).
    maxSessionMemoryMb: Math.max(32, Math.ceil((4 * maxMessageBytes) / (1024 * 1024))),
  };
}

const RESPONSE_HEADERS = {
  ':status': 200,
  'content-type': 'application/grpc',
  'grpc-accept-encoding': 'identity',
};
const OK_TRAILERS = { 'grpc-status': '0' };
const EMPTY = Buffer.alloc(0);

/** Percent-encodes what grpc-message may not carry raw: '%' and anything outside 0x20–0x7E. */
export function encodeGrpcMessage(text: string): string {
  return text.replace(/[^\x20-\x24\x26-\x7E]/gu, (c) => encodeURIComponent(c));
}

/** grpc-timeout → milliseconds; undefined = none (Infinity), NaN = malformed. */
export function parseGrpcTimeout(value: string | undefined): number {
  if (value === undefined) return Number.POSITIVE_INFINITY;
  const m = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (!m) return Number.NaN;
  const unitMs = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 }[m[2] as 'H'];
  return Number(m[1]) * unitMs;
}

/** A trailers-only answer: the status in the response headers, and the stream ends. */
function refuse(
  stream: http2.ServerHttp2Stream,
  code: number,
  message: string,
  extra: http2.OutgoingHttpHeaders = {},
): void {
  if (stream.destroyed || stream.closed) return;
  if (stream.headersSent) {
    stream.end();
    return;
  }
  stream.respond(
    {
      ...RESPONSE_HEADERS,
      'grpc-status': String(code),
      'grpc-message': encodeGrpcMessage(message),
      ...extra,
    },
    { endStream: true },
  );
}

function frame(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

function sendUnary(stream: http2.ServerHttp2Stream, message: Uint8Array): void {
  // The caller may have gone (cancelled, deadline): nothing to answer.
  if (stream.destroyed || stream.closed) return;
  stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
  stream.once('wantTrailers', () => stream.sendTrailers(OK_TRAILERS));
  stream.end(frame(message));
}

const ignore = () => {};

/**
 * Reads the one request message of a unary call and hands it to `onMessage`, or refuses the call
 * with the precise status. A message whose declared length is over the limit is refused at once.
 */
function readUnary(
  stream: http2.ServerHttp2Stream,
  maxMessageBytes: number,
  onMessage: (message: Uint8Array) => void,
): void {
  let first: Buffer | undefined;
  let chunks: Buffer[] | undefined;
  let total = 0;
  let refused = false;
  const tooLarge = (length: number) => {
    refused = true;
    refuse(
      stream,
      GrpcStatus.RESOURCE_EXHAUSTED,
      `Received message larger than max (${length} vs. ${maxMessageBytes})`,
    );
  };
  stream.on('data', (chunk: Buffer) => {
    if (refused) return; // drained, not kept: the flow-control window keeps moving
    total += chunk.length;
    if (first === undefined) first = chunk;
    else if (chunks) chunks.push(chunk);
    else chunks = [first, chunk];
    if (total >= 5 && (first.length >= 5 || chunks)) {
      const head = first.length >= 5 ? first : Buffer.concat(chunks ?? [first], 5);
      const declared = head.readUInt32BE(1);
      if (declared > maxMessageBytes) tooLarge(declared);
      else if (total > declared + 5 && total - 5 > maxMessageBytes) tooLarge(total - 5);
    }
  });
  stream.once('end', () => {
    if (refused) return;
    const data = chunks ? Buffer.concat(chunks, total) : (first ?? EMPTY);
    if (data.length < 5) {
      refuse(
        stream,
        GrpcStatus.INTERNAL,
        data.length === 0 ? 'no request message on a unary call' : 'truncated message frame',
      );
      return;
    }
    const flag = data[0] as number;
    const length = data.readUInt32BE(1);
    if (flag === 1) {
      refuse(
        stream,
        GrpcStatus.UNIMPLEMENTED,
        'compressed messages are not supported: send them uncompressed',
        {
          'grpc-accept-encoding': 'identity',
        },
      );
      return;
    }
    if (flag !== 0) {
      refuse(stream, GrpcStatus.INTERNAL, `invalid message flags ${flag}`);
      return;
    }
    if (length + 5 > data.length) {
      refuse(stream, GrpcStatus.INTERNAL, `truncated message: ${data.length - 5} of ${length} bytes`);
      return;
    }
    if (length + 5 < data.length) {
      refuse(stream, GrpcStatus.INTERNAL, 'more than one request message on a unary call');
      return;
    }
    onMessage(data.subarray(5));
  });
}

class Health {
  private readonly statuses = new Map<string, number>(HEALTH_SERVICES.map((s) => [s, NOT_SERVING]));
  readonly watches = new Map<http2.ServerHttp2Stream, string>();
  private readonly request = protoRoot().lookupType('grpc.health.v1.HealthCheckRequest');
  private readonly response = protoRoot().lookupType('grpc.health.v1.HealthCheckResponse');

  set(serving: boolean): void {
    for (const s of this.statuses.keys()) this.statuses.set(s, serving ? SERVING : NOT_SERVING);
    for (const [stream, service] of this.watches) this.write(stream, service);
  }

  /** The service named in a HealthCheckRequest, or null when it cannot be decoded. */
  service(message: Uint8Array): string | null {
    try {
      return (this.request.decode(message) as unknown as { service: string }).service;
    } catch {
      return null;
    }
  }

  check(stream: http2.ServerHttp2Stream, message: Uint8Array): void {
    const service = this.service(message);
    const status = service === null ? undefined : this.statuses.get(service);
    if (service === null) refuse(stream, GrpcStatus.INTERNAL, 'undecodable HealthCheckRequest');
    else if (status === undefined)
      refuse(stream, GrpcStatus.NOT_FOUND, `Health status unknown for service ${service}`);
    else sendUnary(stream, this.encode(status));
  }

  watch(stream: http2.ServerHttp2Stream, message: Uint8Array): void {
    const service = this.service(message);
    if (service === null) {
      refuse(stream, GrpcStatus.INTERNAL, 'undecodable HealthCheckRequest');
      return;
    }
    if (stream.destroyed || stream.closed) return;
    stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
    this.watches.set(stream, service);
    stream.once('close', () => this.watches.delete(stream));
    this.write(stream, service);
  }

  /** Ends every Watch stream with `code`: a draining server must not be held open by them. */
  endWatches(code: number, message: string): void {
    for (const stream of this.watches.keys()) {
      if (stream.destroyed || stream.closed) continue;
      stream.once('wantTrailers', () =>
        stream.sendTrailers({ 'grpc-status': String(code), 'grpc-message': encodeGrpcMessage(message) }),
      );
      stream.end();
    }
    this.watches.clear();
  }

  private write(stream: http2.ServerHttp2Stream, service: string): void {
    if (stream.destroyed || stream.closed || !stream.writable) return;
    stream.write(frame(this.encode(this.statuses.get(service) ?? SERVICE_UNKNOWN)));
  }

  private encode(status: number): Uint8Array {
    return this.response.encode({ status }).finish();
  }
}

export async function startHttp2Listener(options: ListenerOptions): Promise<Listener> {
  const { maxMessageBytes, check } = options;
  const tuning = http2Settings(maxMessageBytes);
  const health = new Health();
  const sessions = new Set<http2.ServerHttp2Session>();
  const server = http2.createServer({
    settings: tuning.settings,
    maxSessionMemory: tuning.maxSessionMemoryMb,
  });
  // Envoy's connections live for hours: no idle timeout on them.
  server.setTimeout(0);
  server.on('session', (session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    session.on('error', ignore);
    session.setLocalWindowSize(tuning.connectionWindow);
  });
  server.on('sessionError', ignore);

  server.on('stream', (stream, headers) => {
    stream.on('error', ignore);
    const path = headers[':path'];
    if (headers[':method'] !== 'POST') {
      stream.respond({ ':status': 405, allow: 'POST' }, { endStream: true });
      return;
    }
    if (!String(headers['content-type'] ?? '').startsWith('application/grpc')) {
      stream.respond({ ':status': 415 }, { endStream: true });
      return;
    }
    const encoding = headers['grpc-encoding'];
    if (encoding !== undefined && encoding !== 'identity') {
      refuse(stream, GrpcStatus.UNIMPLEMENTED, `grpc-encoding ${String(encoding)} is not supported`, {
        'grpc-accept-encoding': 'identity',
      });
      return;
    }
    switch (path) {
      case CHECK_PATH: {
        const timeout = parseGrpcTimeout(headers['grpc-timeout'] as string | undefined);
        if (Number.isNaN(timeout)) {
          refuse(
            stream,
            GrpcStatus.INVALID_ARGUMENT,
            `invalid grpc-timeout ${String(headers['grpc-timeout'])}`,
          );
          return;
        }
        const deadline = Date.now() + timeout;
        readUnary(stream, maxMessageBytes, (message) => {
          const answer = check(message, deadline);
          if (answer instanceof Promise) answer.then((bytes) => sendUnary(stream, bytes));
          else sendUnary(stream, answer);
        });
        return;
      }
      case HEALTH_CHECK_PATH:
        readUnary(stream, maxMessageBytes, (message) => health.check(stream, message));
        return;
      case HEALTH_WATCH_PATH:
        readUnary(stream, maxMessageBytes, (message) => health.watch(stream, message));
        return;
      default:
        refuse(stream, GrpcStatus.UNIMPLEMENTED, `unknown method ${String(path)}`);
    }
  });

  const { host, port } = splitHostPort(options.address);
  const bound = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });

  let closing: Promise<void> | undefined;
  return {
    port: bound,
    setServing: (serving) => health.set(serving),
    shutdown(graceMs, onForce) {
      closing ??= new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          onForce();
          for (const session of sessions) session.destroy();
        }, graceMs);
        // Resolves once every connection has closed.
        server.close(() => {
          clearTimeout(force);
          resolve();
        });
        health.endWatches(GrpcStatus.UNAVAILABLE, 'server is shutting down');
        // GOAWAY: no new streams on these connections; the ones in flight finish, then it closes.
        for (const session of sessions) session.close();
      });
      return closing;
    },
  };
}
