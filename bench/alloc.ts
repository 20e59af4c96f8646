// Bytes allocated per Check, in process, noise-free: CPU contention changes how fast a Check runs,
// not what it allocates. One process runs the bare http2 transport (bench/baseline-server.ts'
// `http2`: decode + constant OK) and portcullis (startApp, --transport http2, bench/catalog.yaml,
// Redis for the quota routes), and one raw node:http2 client sends N Checks to each; the young
// generation is made large enough that no collection runs during a window, so the growth of the
// heap over it is what the window allocated. Ours = portcullis − bare (the client's share, the
// same for both, cancels out).
//
//   node --expose-gc --min-semi-space-size=128 --max-semi-space-size=128 --import tsx bench/alloc.ts
//        [--checks 1000] [--concurrency 16] [--pace-ms 0] [--profile CASE]
//   (bench/run.ts starts it so twice: at the default concurrency, and at 1 with --pace-ms 1 and
//   --checks 500; prints one JSON line)
// --profile: the sampling heap profiler over that case (collected objects included): the
// functions that allocate the most, to know what to remove next.
import http2 from 'node:http2';
import { Session } from 'node:inspector/promises';
import { PerformanceObserver } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import v8 from 'node:v8';
import pino from 'pino';
import { startApp } from '../src/app.js';
import { checkCodec } from '../src/envoy/codec.js';
import { startHttp2Listener } from '../src/envoy/transport-http2.js';
import { createLogger } from '../src/observability/audit.js';
import { loadCatalogFile } from '../src/policy/load.js';
import { createRedisClient, RedisQuotaStore } from '../src/quota/redis-store.js';
import { startRedis } from '../test/support/redis.js';
import { frame, mintTokens, order4k } from './payloads.js';

const { values } = parseArgs({
  options: {
    checks: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '16' },
    'pace-ms': { type: 'string', default: '0' },
    profile: { type: 'string' },
  },
});
const N = Number(values.checks);
// 16 Checks in flight share event-loop turns (a turn's write to Redis, its timers, its audit flush);
// 1 pays them all per Check, as a lightly loaded sidecar does (the bench's 1,000 Check/s).
const CONCURRENCY = Number(values.concurrency);
// --pace-ms: a pause between a worker's Checks, so timers and idle turns come between them as at a
// fixed rate (with --concurrency 1: one Check per turn, a timer turn after each).
const PACE = Number(values['pace-ms']);
const gc = globalThis.gc;
if (!gc) throw new Error('run with --expose-gc (see the header)');

let collections = 0;
new PerformanceObserver((list) => {
  collections += list.getEntries().length;
}).observe({ entryTypes: ['gc'] });

/** Sends `payloads` (cycled) on one connection, `concurrency` at a time. */
async function drive(
  port: number,
  payloads: Buffer[],
  count: number,
  concurrency = CONCURRENCY,
): Promise<void> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  const headers = {
    ':method': 'POST',
    ':path': '/envoy.service.auth.v3.Authorization/Check',
    'content-type': 'application/grpc',
    te: 'trailers',
    'grpc-timeout': '1S',
  };
  let next = 0;
  let failed = 0;
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const req = session.request(headers);
      req.on('trailers', (t) => {
        if (t['grpc-status'] !== '0') failed++;
      });
      req.on('data', () => {});
      req.on('close', resolve);
      req.end(payloads[next++ % payloads.length]);
    });
  const worker = async () => {
    while (next < count) {
      await one();
      if (PACE > 0) await new Promise((r) => setTimeout(r, PACE));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  session.close();
  if (failed > 0) throw new Error(`${failed} of ${count} Checks did not answer OK`);
}

/** Heap bytes allocated per Check over N Checks with no collection in between; null when one ran. */
async function bytesPerCheck(port: number, payloads: Buffer[]): Promise<number | null> {
  await drive(port, payloads, 2000); // warm: JIT, caches, connections
  for (let attempt = 0; attempt < 3; attempt++) {
    gc?.();
    // The observer hears of that collection a little later: let it, before counting.
    await new Promise((r) => setTimeout(r, 50));
    const before = v8.getHeapStatistics().used_heap_size;
    const seen = collections;
    await drive(port, payloads, N);
    const after = v8.getHeapStatistics().used_heap_size;
    if (collections === seen) return (after - before) / N;
    process.stderr.write(`alloc: ${collections - seen} collections during the window, again\n`);
  }
  return null;
}

const redis = await startRedis(undefined);
const catalog = await loadCatalogFile('bench/catalog.yaml');
const store = new RedisQuotaStore(createRedisClient(redis.url), {
  idempotencyMs: catalog.settings.quotas.idempotencySeconds * 1000,
});
const app = await startApp({
  catalog,
  grpcAddress: '127.0.0.1:0',
  adminAddress: '',
  transport: 'http2',
  maxMessageBytes: 8 * 1024 * 1024,
  drainDelayMs: 0,
  shutdownGraceMs: 1000,
  // The audit lines are built and written as in production, to a file nobody reads.
  logger: createLogger('info', pino.destination({ dest: '/dev/null', sync: false })),
  apiKeyPepper: null,
  quotaStore: store,
});
const codec = checkCodec();
const ok = codec.encodeResponse({ status: { code: 0 }, dynamic_metadata: { fields: {} } });
const bare = await startHttp2Listener({
  address: '127.0.0.1:0',
  maxMessageBytes: 8 * 1024 * 1024,
  check: async (message) => {
    codec.decodeRequest(message);
    return ok;
  },
});

const distinct = (n: number, make: () => Buffer) => Array.from({ length: n }, make);
const token = mintTokens('RS256', 1, 'quota-app')[0] as string;
const open = [frame({ path: '/open' })];
const ORDER = Buffer.from(JSON.stringify(order4k()));
const cases: Record<string, { port: number; payloads: Buffer[] }> = {
  'bare-http2': { port: bare.port, payloads: open },
  'allow-all': { port: app.grpcPort, payloads: open },
  'jwt-cached': {
    port: app.grpcPort,
    payloads: [
      frame({
        path: '/jwt',
        headers: { authorization: `Bearer ${mintTokens('RS256', 1, 'acme-orders-app')[0]}` },
      }),
    ],
  },
  'quota-only': {
    port: app.grpcPort,
    payloads: distinct(5000, () =>
      frame({ path: '/mq', principal: 'spiffe://partners.example.com/mtls-co' }),
    ),
  },
  'jwt+quota': {
    port: app.grpcPort,
    payloads: distinct(5000, () => frame({ path: '/quota', headers: { authorization: `Bearer ${token}` } })),
  },
  // bench/run.ts' full case: jwt+quota and a ~4 KiB JSON order checked against bench/schemas/order.json.
  content: {
    port: app.grpcPort,
    payloads: distinct(5000, () =>
      frame({
        path: '/content',
        method: 'POST',
        body: ORDER,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      }),
    ),
  },
};

try {
  if (values.profile) {
    const c = cases[values.profile];
    if (!c) throw new Error(`no case ${values.profile}`);
    await drive(c.port, c.payloads, 2000);
    const session = new Session();
    session.connect();
    await session.post('HeapProfiler.startSampling', {
      samplingInterval: 256,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    });
    await drive(c.port, c.payloads, N);
    const { profile } = (await session.post('HeapProfiler.stopSampling')) as {
      profile: { head: ProfileNode };
    };
    const byFunction = new Map<string, number>();
    const name = (n: ProfileNode) =>
      `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/^.*\/(src|node_modules)\//, '$1/')}:${n.callFrame.lineNumber + 1}`;
    const stacks = new Map<string, number>();
    const walk = (node: ProfileNode, path: string[] = []) => {
      const f = node.callFrame;
      const here = [...path, name(node)];
      if (
        node.selfSize > 0 &&
        process.env.ALLOC_STACKS &&
        here.at(-1)?.startsWith(process.env.ALLOC_STACKS)
      ) {
        const k = here.slice(-6).join(' < ');
        stacks.set(k, (stacks.get(k) ?? 0) + node.selfSize);
      }
      const key = `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/(src|node_modules)\//, '$1/')}:${f.lineNumber + 1}`;
      const self = node.selfSize;
      if (self > 0) byFunction.set(key, (byFunction.get(key) ?? 0) + self);
      for (const child of node.children) walk(child, here);
    };
    walk(profile.head);
    for (const [k, v] of [...stacks].sort((a, b) => b[1] - a[1]).slice(0, 8))
      process.stdout.write(`${(v / N).toFixed(0)} B/Check  ${k}\n`);
    const top = [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.ALLOC_TOP ?? 30));
    for (const [fn, bytes] of top)
      process.stdout.write(`${(bytes / N).toFixed(0).padStart(7)} B/Check  ${fn}\n`);
  } else {
    const result: Record<string, number | null> = {};
    for (const [name, c] of Object.entries(cases)) result[name] = await bytesPerCheck(c.port, c.payloads);
    process.stdout.write(`${JSON.stringify({ checks: N, bytesPerCheck: result })}\n`);
  }
} finally {
  await bare.shutdown(500, () => {});
  await app.stop();
  await redis.close();
  process.exit(0);
}

interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: ProfileNode[];
}
