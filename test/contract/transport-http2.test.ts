// The node:http2 gRPC transport on the wire: what a gRPC client (raw HTTP/2 frames, and grpc-js)
// sees for deadlines, message limits, compression, trailers, unknown methods, health and drain.
// The Check handler here is a plain function recording what it was given: the transport alone is
// under test (the whole pipeline runs on this transport in the integration tier).
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { CHECK_PATH, protoRoot } from '../../src/envoy/codec.js';
import type { Listener } from '../../src/envoy/listener.js';
import {
  encodeGrpcMessage,
  GrpcStatus,
  HEALTH_CHECK_PATH,
  HEALTH_WATCH_PATH,
  parseGrpcTimeout,
  startHttp2Listener,
} from '../../src/envoy/transport-http2.js';
import { healthClient } from '../support/official-client.js';

const MAX = 64 * 1024;
const ANSWER = Buffer.from('answer-bytes');

interface Started {
  readonly listener: Listener;
  readonly address: string;
  readonly calls: { message: Buffer; deadline: number }[];
  /** Resolves the handler's pending answers (when started with `hold`). */
  release(): void;
}

async function start(t: import('node:test').TestContext, options: { hold?: boolean } = {}): Promise<Started> {
  const calls: { message: Buffer; deadline: number }[] = [];
  const waiting: (() => void)[] = [];
  const listener = await startHttp2Listener({
    address: '127.0.0.1:0',
    maxMessageBytes: MAX,
    check: async (message, deadline) => {
      calls.push({ message: Buffer.from(message), deadline });
      if (options.hold) await new Promise<void>((r) => waiting.push(r));
      return ANSWER;
    },
  });
  listener.setServing(true);
  t.after(() => listener.shutdown(100, () => {}));
  return {
    listener,
    address: `127.0.0.1:${listener.port}`,
    calls,
    release: () => {
      for (const r of waiting.splice(0)) r();
    },
  };
}

function framed(message: Buffer, flag = 0): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out[0] = flag;
  out.writeUInt32BE(message.length, 1);
  message.copy(out, 5);
  return out;
}

interface RawAnswer {
  readonly headers: http2.IncomingHttpHeaders;
  readonly trailers: http2.IncomingHttpHeaders;
  readonly body: Buffer;
  /** grpc-status / grpc-message: from the trailers, or the headers of a trailers-only answer. */
  readonly status: number;
  readonly message: string;
}

/** One call with a raw HTTP/2 client: exactly the frames we choose. */
function rawCall(
  address: string,
  path: string,
  body: Buffer | Buffer[],
  headers: http2.OutgoingHttpHeaders = {},
  session?: http2.ClientHttp2Session,
): Promise<RawAnswer> {
  const own = session ?? http2.connect(`http://${address}`);
  return new Promise<RawAnswer>((resolve, reject) => {
    if (!session) own.once('error', reject);
    const req = own.request({
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
      ...headers,
    });
    let responseHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    req.on('response', (h) => {
      responseHeaders = h;
    });
    req.on('trailers', (h) => {
      trailers = h;
    });
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', reject);
    req.on('close', () => {
      const statusOf = trailers['grpc-status'] ?? responseHeaders['grpc-status'];
      resolve({
        headers: responseHeaders,
        trailers,
        body: Buffer.concat(chunks),
        status: statusOf === undefined ? -1 : Number(statusOf),
        message: decodeURIComponent(
          String(trailers['grpc-message'] ?? responseHeaders['grpc-message'] ?? ''),
        ),
      });
    });
    for (const b of Array.isArray(body) ? body : [body]) req.write(b);
    req.end();
  }).finally(() => {
    if (!session) own.close();
  });
}

test('a Check: one framed answer, then grpc-status 0 in the trailers', async (t) => {
  const { address, calls } = await start(t);
  const res = await rawCall(address, CHECK_PATH, framed(Buffer.from('request-bytes')));
  assert.equal(res.headers[':status'], 200);
  assert.equal(res.headers['content-type'], 'application/grpc');
  assert.equal(res.trailers['grpc-status'], '0');
  assert.deepEqual(res.body, framed(ANSWER));
  assert.equal(calls[0]?.message.toString(), 'request-bytes');
});

test('a Check from grpc-js: the answer bytes and status OK', async (t) => {
  const { address } = await start(t);
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  t.after(() => client.close());
  const bytes = await new Promise<Buffer>((resolve, reject) =>
    client.makeUnaryRequest(
      CHECK_PATH,
      (v: Buffer) => v,
      (v: Buffer) => v,
      Buffer.from('x'),
      (err, v) => (err || !v ? reject(err) : resolve(v)),
    ),
  );
  assert.deepEqual(bytes, ANSWER);
});

test('grpc-timeout becomes the Check deadline; none means Infinity; a malformed one is INVALID_ARGUMENT', async (t) => {
  const { address, calls } = await start(t);
  const before = Date.now();
  await rawCall(address, CHECK_PATH, framed(Buffer.from('a')), { 'grpc-timeout': '200m' });
  const after = Date.now();
  const deadline = calls[0]?.deadline ?? 0;
  assert.ok(deadline >= before + 200 && deadline <= after + 200, `deadline ${deadline - before} ms`);
  await rawCall(address, CHECK_PATH, framed(Buffer.from('b')));
  assert.equal(calls[1]?.deadline, Number.POSITIVE_INFINITY);
  const bad = await rawCall(address, CHECK_PATH, framed(Buffer.from('c')), { 'grpc-timeout': '5 seconds' });
  assert.equal(bad.status, GrpcStatus.INVALID_ARGUMENT);
  assert.match(bad.message, /invalid grpc-timeout/);
  assert.equal(calls.length, 2, 'the malformed call never reached the handler');
});

test('parseGrpcTimeout: every unit, and what is not a timeout', () => {
  const cases: [string | undefined, number][] = [
    ['1H', 3_600_000],
    ['2M', 120_000],
    ['3S', 3000],
    ['200m', 200],
    ['1500u', 1.5],
    ['2000000n', 2],
    [undefined, Number.POSITIVE_INFINITY],
  ];
  for (const [value, ms] of cases) assert.equal(parseGrpcTimeout(value), ms, String(value));
  for (const bad of ['', '1', 'S', '123456789S', '1s', '-1S', '1.5S']) {
    assert.ok(Number.isNaN(parseGrpcTimeout(bad)), bad);
  }
});

test('a message over the limit: RESOURCE_EXHAUSTED, refused from its length prefix alone', async (t) => {
  const { address, calls } = await start(t);
  const head = Buffer.alloc(5);
  head.writeUInt32BE(MAX + 1, 1);
  // Only the prefix and a little of the body: the refusal must not wait for the rest.
  const res = await rawCall(address, CHECK_PATH, [head, Buffer.alloc(100)]);
  assert.equal(res.status, GrpcStatus.RESOURCE_EXHAUSTED);
  assert.match(res.message, /larger than max \(65537 vs\. 65536\)/);
  assert.equal(calls.length, 0);
  // Exactly at the limit is accepted.
  const ok = await rawCall(address, CHECK_PATH, framed(Buffer.alloc(MAX)));
  assert.equal(ok.status, GrpcStatus.OK);
});

test('a message over the limit from grpc-js: RESOURCE_EXHAUSTED', async (t) => {
  const { address } = await start(t);
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  t.after(() => client.close());
  const err = await new Promise<grpc.ServiceError | null>((resolve) =>
    client.makeUnaryRequest(
      CHECK_PATH,
      (v: Buffer) => v,
      (v: Buffer) => v,
      Buffer.alloc(MAX + 10),
      (e) => resolve(e),
    ),
  );
  assert.equal(err?.code, grpc.status.RESOURCE_EXHAUSTED);
});

test('compression: the compressed flag or a grpc-encoding is refused UNIMPLEMENTED, identity offered', async (t) => {
  const { address, calls } = await start(t);
  const flagged = await rawCall(address, CHECK_PATH, framed(Buffer.from('gz'), 1), {
    'grpc-encoding': 'identity',
  });
  assert.equal(flagged.status, GrpcStatus.UNIMPLEMENTED);
  assert.match(flagged.message, /compressed messages are not supported/);
  assert.equal(flagged.headers['grpc-accept-encoding'], 'identity');
  const gzip = await rawCall(address, CHECK_PATH, framed(Buffer.from('gz'), 1), { 'grpc-encoding': 'gzip' });
  assert.equal(gzip.status, GrpcStatus.UNIMPLEMENTED);
  assert.match(gzip.message, /grpc-encoding gzip is not supported/);
  assert.equal(gzip.headers['grpc-accept-encoding'], 'identity');
  assert.equal(calls.length, 0);
});

test('framing errors: no message, a truncated one, two messages, bad flags → INTERNAL', async (t) => {
  const { address, calls } = await start(t);
  const cases: [string, Buffer[], RegExp][] = [
    ['no message', [], /no request message/],
    ['a partial prefix', [Buffer.from([0, 0, 0])], /truncated message frame/],
    ['a truncated body', [framed(Buffer.from('abcdef')).subarray(0, 8)], /truncated message: 3 of 6 bytes/],
    ['two messages', [framed(Buffer.from('a')), framed(Buffer.from('b'))], /more than one request message/],
    ['flags 2', [framed(Buffer.from('a'), 2)], /invalid message flags 2/],
  ];
  for (const [name, body, message] of cases) {
    const res = await rawCall(address, CHECK_PATH, body);
    assert.equal(res.status, GrpcStatus.INTERNAL, name);
    assert.match(res.message, message, name);
  }
  assert.equal(calls.length, 0);
});

test('unknown methods are UNIMPLEMENTED; grpc-js sees the same code', async (t) => {
  const { address } = await start(t);
  const res = await rawCall(address, '/envoy.service.auth.v2.Authorization/Check', framed(Buffer.from('a')));
  assert.equal(res.status, GrpcStatus.UNIMPLEMENTED);
  assert.equal(res.message, 'unknown method /envoy.service.auth.v2.Authorization/Check');
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  t.after(() => client.close());
  const err = await new Promise<grpc.ServiceError | null>((resolve) =>
    client.makeUnaryRequest(
      '/no.Such/Method',
      (v: Buffer) => v,
      (v: Buffer) => v,
      Buffer.from('x'),
      (e) => resolve(e),
    ),
  );
  assert.equal(err?.code, grpc.status.UNIMPLEMENTED);
});

test('not gRPC: GET is 405, another content-type 415', async (t) => {
  const { address } = await start(t);
  const session = http2.connect(`http://${address}`);
  t.after(() => session.close());
  const status = (headers: http2.OutgoingHttpHeaders) =>
    new Promise<number>((resolve, reject) => {
      const req = session.request(headers);
      req.on('response', (h) => resolve(Number(h[':status'])));
      req.on('error', reject);
      req.end();
    });
  assert.equal(await status({ ':method': 'GET', ':path': CHECK_PATH }), 405);
  assert.equal(
    await status({ ':method': 'POST', ':path': CHECK_PATH, 'content-type': 'application/json' }),
    415,
  );
});

test('grpc-message is percent-encoded: %, controls and non-ASCII; printable ASCII stays', () => {
  assert.equal(encodeGrpcMessage('plain text: ok (1/2)'), 'plain text: ok (1/2)');
  assert.equal(encodeGrpcMessage('100% sure'), '100%25 sure');
  assert.equal(encodeGrpcMessage('line\nbreak'), 'line%0Abreak');
  assert.equal(encodeGrpcMessage('café ✓'), 'caf%C3%A9 %E2%9C%93');
});

test('health Check: SERVING, NOT_SERVING after setServing(false), NOT_FOUND for others (grpc-js client)', async (t) => {
  const { listener, address } = await start(t);
  const client = healthClient(address);
  t.after(() => client.close());
  const check = (service: string) =>
    new Promise<string>((resolve, reject) =>
      (
        client.Check as (r: object, cb: (e: grpc.ServiceError | null, r: { status: string }) => void) => void
      ).call(client, { service }, (e, r) => (e ? reject(e) : resolve(r.status))),
    );
  assert.equal(await check(''), 'SERVING');
  assert.equal(await check('envoy.service.auth.v3.Authorization'), 'SERVING');
  listener.setServing(false);
  assert.equal(await check(''), 'NOT_SERVING');
  await assert.rejects(check('no.such.Service'), (err: grpc.ServiceError) => {
    assert.equal(err.code, grpc.status.NOT_FOUND);
    return true;
  });
});

test('health Watch: the current status, every change, SERVICE_UNKNOWN for others, ended UNAVAILABLE on shutdown', async (t) => {
  const { listener, address } = await start(t);
  const request = protoRoot().lookupType('grpc.health.v1.HealthCheckRequest');
  const response = protoRoot().lookupType('grpc.health.v1.HealthCheckResponse');
  const session = http2.connect(`http://${address}`);
  t.after(() => session.destroy());
  const watch = (service: string) => {
    const statuses: number[] = [];
    const req = session.request({
      ':method': 'POST',
      ':path': HEALTH_WATCH_PATH,
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    let pending = Buffer.alloc(0);
    req.on('data', (c: Buffer) => {
      pending = Buffer.concat([pending, c]);
      while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
        const len = pending.readUInt32BE(1);
        statuses.push(
          (response.decode(pending.subarray(5, 5 + len)) as unknown as { status: number }).status,
        );
        pending = pending.subarray(5 + len);
      }
    });
    const ended = new Promise<http2.IncomingHttpHeaders>((resolve) => req.on('trailers', resolve));
    req.end(framed(Buffer.from(request.encode({ service }).finish())));
    return { statuses, ended };
  };
  const until = async (cond: () => boolean) => {
    for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(cond());
  };
  const all = watch('');
  const unknown = watch('no.such.Service');
  await until(() => all.statuses.length === 1 && unknown.statuses.length === 1);
  assert.deepEqual(all.statuses, [1]); // SERVING
  assert.deepEqual(unknown.statuses, [3]); // SERVICE_UNKNOWN
  listener.setServing(false);
  await until(() => all.statuses.length === 2);
  assert.deepEqual(all.statuses, [1, 2]); // NOT_SERVING
  const stopped = listener.shutdown(2000, () => assert.fail('no force needed'));
  const trailers = await all.ended;
  assert.equal(trailers['grpc-status'], String(GrpcStatus.UNAVAILABLE));
  await stopped;
});

test('health Check over raw HTTP/2: a framed HealthCheckResponse then status 0', async (t) => {
  const { address } = await start(t);
  const request = protoRoot().lookupType('grpc.health.v1.HealthCheckRequest');
  const res = await rawCall(
    address,
    HEALTH_CHECK_PATH,
    framed(Buffer.from(request.encode({ service: '' }).finish())),
  );
  assert.equal(res.status, 0);
  assert.deepEqual(res.body, framed(Buffer.from([0x08, 0x01]))); // status: SERVING
});

test('drain: GOAWAY to the connection, the call in flight finishes with its answer, a new one is refused', async (t) => {
  const { listener, address, calls, release } = await start(t, { hold: true });
  const session = http2.connect(`http://${address}`);
  t.after(() => session.destroy());
  const goaway = new Promise<void>((resolve) => session.once('goaway', () => resolve()));
  const inFlight = rawCall(address, CHECK_PATH, framed(Buffer.from('slow')), {}, session);
  for (let i = 0; i < 200 && calls.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(calls.length, 1);
  let forced = false;
  const stopped = listener.shutdown(5000, () => {
    forced = true;
  });
  await goaway;
  await assert.rejects(rawCall(address, CHECK_PATH, framed(Buffer.from('new'))), /ECONNREFUSED/);
  release();
  const answer = await inFlight;
  assert.equal(answer.status, 0);
  assert.deepEqual(answer.body, framed(ANSWER));
  await stopped;
  assert.equal(forced, false);
});

test('drain: calls still running after the grace period are cut, and shutdown says so', async (t) => {
  const { listener, address, calls } = await start(t, { hold: true });
  const inFlight = rawCall(address, CHECK_PATH, framed(Buffer.from('stuck'))).catch((e: unknown) => e);
  for (let i = 0; i < 200 && calls.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  let forced = false;
  await listener.shutdown(100, () => {
    forced = true;
  });
  assert.equal(forced, true);
  const outcome = await inFlight;
  assert.ok(outcome instanceof Error || (outcome as RawAnswer).status !== 0, 'the stuck call got no OK');
});

test('HTTP/2 settings for a few long-lived connections: many streams, large windows', async (t) => {
  const { address } = await start(t);
  const session = http2.connect(`http://${address}`);
  t.after(() => session.close());
  await new Promise<void>((resolve) => session.once('remoteSettings', () => resolve()));
  assert.equal(session.remoteSettings.maxConcurrentStreams, 4096);
  assert.equal(session.remoteSettings.initialWindowSize, 1024 * 1024);
  // 300 concurrent Checks on the one connection, all answered.
  const answers = await Promise.all(
    Array.from({ length: 300 }, (_, i) =>
      rawCall(address, CHECK_PATH, framed(Buffer.from(`r${i}`)), {}, session),
    ),
  );
  assert.ok(answers.every((a) => a.status === 0));
});
