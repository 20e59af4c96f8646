// A gRPC load generator on bare node:http2, for one reason h2load and ghz lack together: it cycles
// through a list of pre-encoded requests (a different token per request) AND reports latency
// percentiles, at full speed or at a fixed offered rate. Envoy-like: a few connections, many
// concurrent streams each.
//
//   node bench/load.ts --target 127.0.0.1:9001 --payloads FILE --connections 4 --streams 32 \
//        --duration 10 --warmup 2 [--rate 1000]
// FILE: JSON array of base64 gRPC-framed CheckRequests. Prints one JSON line of results.
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    target: { type: 'string', default: '127.0.0.1:9001' },
    payloads: { type: 'string' },
    connections: { type: 'string', default: '4' },
    streams: { type: 'string', default: '32' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    rate: { type: 'string', default: '0' },
  },
});
if (!values.payloads) throw new Error('--payloads FILE is required');
const payloads = (JSON.parse(readFileSync(values.payloads, 'utf8')) as string[]).map((b) =>
  Buffer.from(b, 'base64'),
);
const connections = Number(values.connections);
const streamsPer = Number(values.streams);
const durationMs = Number(values.duration) * 1000;
const warmupMs = Number(values.warmup) * 1000;
const rate = Number(values.rate);
const PATH = '/envoy.service.auth.v3.Authorization/Check';

const sessions = Array.from({ length: connections }, () => http2.connect(`http://${values.target}`));
let next = 0;
let measuring = false;
let stopped = false;
const latencies: number[] = [];
let ok = 0;
let failed = 0;

function one(session: http2.ClientHttp2Session): Promise<void> {
  const payload = payloads[next++ % payloads.length] as Buffer;
  const started = process.hrtime.bigint();
  return new Promise((resolve) => {
    const stream = session.request({
      ':method': 'POST',
      ':path': PATH,
      'content-type': 'application/grpc',
      te: 'trailers',
      'grpc-timeout': '1S',
    });
    let status = '';
    stream.on('trailers', (trailers) => {
      status = String(trailers['grpc-status'] ?? '');
    });
    stream.on('response', (headers) => {
      if (headers['grpc-status'] !== undefined) status = String(headers['grpc-status']);
    });
    stream.on('data', () => {});
    stream.on('close', () => {
      if (measuring) {
        if (status === '0') {
          ok++;
          latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
        } else failed++;
      }
      resolve();
    });
    stream.on('error', () => {});
    stream.end(payload);
  });
}

async function closedLoop(session: http2.ClientHttp2Session): Promise<void> {
  while (!stopped) await one(session);
}

async function openLoop(): Promise<void> {
  // Fixed offered load: start requests on a schedule, whatever the answers do.
  const intervalMs = 1000 / rate;
  const start = performance.now();
  let sent = 0;
  const inflight = new Set<Promise<void>>();
  while (!stopped) {
    const due = Math.floor((performance.now() - start) / intervalMs);
    while (sent < due) {
      const p = one(sessions[sent % connections] as http2.ClientHttp2Session);
      inflight.add(p);
      void p.then(() => inflight.delete(p));
      sent++;
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  await Promise.all(inflight);
}

await Promise.all(sessions.map((s) => new Promise((r) => s.once('connect', r))));
const loops: Promise<void>[] = [];
if (rate > 0) loops.push(openLoop());
else for (const s of sessions) for (let i = 0; i < streamsPer; i++) loops.push(closedLoop(s));
await new Promise((r) => setTimeout(r, warmupMs));
measuring = true;
const t0 = performance.now();
await new Promise((r) => setTimeout(r, durationMs));
measuring = false;
const elapsed = (performance.now() - t0) / 1000;
stopped = true;
await Promise.all(loops);
for (const s of sessions) s.close();

latencies.sort((a, b) => a - b);
const pct = (p: number) =>
  latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? 0;
process.stdout.write(
  `${JSON.stringify({
    rps: ok / elapsed,
    ok,
    failed,
    p50: pct(50),
    p90: pct(90),
    p99: pct(99),
    p999: pct(99.9),
  })}\n`,
);
