// `make bench`: every case in ONE run, side by side with the transport's ceiling (a bare grpc-js
// server answering a constant OK). The server is pinned to core 0, the load generator to core 1.
// Per case: Check/s at saturation (h2load, or bench/load.ts where payloads must vary), CPU time
// per Check (from /proc), latency percentiles at a fixed 1,000 Check/s (bench/load.ts), peak RSS,
// time from spawn to SERVING, and the ratio to the baseline measured by the same tool.
// Output: a Markdown table on stdout and bench/results/latest.json.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus } from 'node:os';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { startRedis } from '../test/support/redis.js';
import { frame, mintTokens } from './payloads.js';

const { values: opts } = parseArgs({
  options: {
    duration: { type: 'string', default: '8' },
    warmup: { type: 'string', default: '2' },
    only: { type: 'string' },
  },
});
const DURATION = Number(opts.duration);
const WARMUP = Number(opts.warmup);
const TMP = '.tmp/bench';
mkdirSync(TMP, { recursive: true });
mkdirSync('bench/results', { recursive: true });
const twoCores = cpus().length >= 2;
const pin = (core: number, cmd: string[]) => (twoCores ? ['taskset', '-c', String(core), ...cmd] : cmd);

interface Case {
  readonly name: string;
  readonly what: string;
  /** 'baseline' = the bare grpc-js server. */
  readonly server: 'baseline' | 'portcullis';
  readonly redis?: boolean;
  readonly payloads: () => Buffer[];
  /** h2load needs one fixed payload; varying ones go through bench/load.ts. */
  readonly tool: 'h2load' | 'node';
  /** Offered load for the latency profile; 0 = skip. */
  readonly rate: number;
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const cachedToken = () => mintTokens('RS256', 1, 'acme-orders-app')[0] as string;

const CASES: Case[] = [
  {
    name: 'baseline',
    what: 'bare grpc-js, constant OK',
    server: 'baseline',
    payloads: () => [frame({ path: '/open' })],
    tool: 'h2load',
    rate: 1000,
  },
  {
    name: 'baseline (node load)',
    what: 'the same, driven by bench/load.ts',
    server: 'baseline',
    payloads: () => [frame({ path: '/open' })],
    tool: 'node',
    rate: 0,
  },
  {
    name: 'allow-all',
    what: 'portcullis, anonymous route (pipeline overhead)',
    server: 'portcullis',
    payloads: () => [frame({ path: '/open' })],
    tool: 'h2load',
    rate: 1000,
  },
  {
    name: 'jwt-cached',
    what: '+ JWT RS256, same token (verified-token cache)',
    server: 'portcullis',
    payloads: () => [frame({ path: '/jwt', headers: bearer(cachedToken()) })],
    tool: 'h2load',
    rate: 1000,
  },
  {
    name: 'jwt-cached (node load)',
    what: 'jwt-cached driven by bench/load.ts: what jwt+quota compares with',
    server: 'portcullis',
    payloads: () => [frame({ path: '/jwt', headers: bearer(cachedToken()) })],
    tool: 'node',
    rate: 0,
  },
  {
    name: 'jwt-rs256-uncached',
    what: '+ JWT RS256, a different token per request',
    server: 'portcullis',
    payloads: () =>
      mintTokens('RS256', 20_000, 'acme-orders-app').map((t) => frame({ path: '/jwt', headers: bearer(t) })),
    tool: 'node',
    rate: 0,
  },
  {
    name: 'jwt-es256-uncached',
    what: '+ JWT ES256, a different token per request',
    server: 'portcullis',
    payloads: () =>
      mintTokens('ES256', 20_000, 'acme-orders-app').map((t) => frame({ path: '/jwt', headers: bearer(t) })),
    tool: 'node',
    rate: 0,
  },
  {
    name: 'jwt+quota',
    what: '+ two stacked quotas in a real redis-server (token cached; a new x-request-id per Check)',
    server: 'portcullis',
    redis: true,
    payloads: () => {
      const token = mintTokens('RS256', 1, 'quota-app')[0] as string;
      // Distinct request ids: a repeated one is an Envoy retry, answered without charging.
      return Array.from({ length: 20_000 }, () => frame({ path: '/quota', headers: bearer(token) }));
    },
    tool: 'node',
    rate: 1000,
  },
  {
    name: 'full (jwt+quota+schema)',
    what: '+ a 4 KiB JSON order validated against a JSON Schema: the full pipeline',
    server: 'portcullis',
    redis: true,
    payloads: () => {
      const token = mintTokens('RS256', 1, 'quota-app')[0] as string;
      const body = Buffer.from(JSON.stringify(order4k()));
      return Array.from({ length: 20_000 }, () =>
        frame({
          path: '/content',
          method: 'POST',
          body,
          headers: { ...bearer(token), 'content-type': 'application/json' },
        }),
      );
    },
    tool: 'node',
    rate: 1000,
  },
];

/** A realistic order of about 4 KiB. */
function order4k() {
  const lines = Array.from({ length: 40 }, (_, i) => ({
    sku: `SKU-${String(i).padStart(6, '0')}`,
    quantity: (i % 7) + 1,
    price: 19.99 + i,
    note: 'deliver to the loading dock, gate 4',
  }));
  return { order_id: 'ORD-20261128', currency: 'EUR', lines };
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

interface Running {
  readonly child: ChildProcess;
  readonly port: number;
  readonly startupMs: number;
}

async function startServer(c: Case, redisUrl: string | undefined): Promise<Running> {
  const port = await freePort();
  const admin = await freePort();
  const args =
    c.server === 'baseline'
      ? ['node', '--import', 'tsx', 'bench/baseline-server.ts', `127.0.0.1:${port}`]
      : [
          'node',
          'dist/cli/main.js',
          'serve',
          '--config',
          'bench/catalog.yaml',
          '--grpc-address',
          `127.0.0.1:${port}`,
          '--admin-address',
          `127.0.0.1:${admin}`,
          ...(redisUrl ? ['--redis-url', redisUrl] : []),
        ];
  const cmd = pin(0, args);
  const started = performance.now();
  const child = spawn(cmd[0] as string, cmd.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  let startupMs = 0;
  await new Promise<void>((resolve, reject) => {
    lines.on('line', (line) => {
      if (startupMs === 0 && line.includes('"serving"')) {
        startupMs = performance.now() - started;
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`${c.name}: server exited with ${code}`)));
  });
  // The audit log keeps flowing: drain it so the pipe never blocks the server.
  lines.removeAllListeners('line');
  child.stdout?.resume();
  return { child, port, startupMs };
}

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  const ticks = Number(fields[11]) + Number(fields[12]); // utime + stime
  return ticks / 100;
}

function peakRssMb(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('VmHWM:'));
  return Number(line?.replace(/\D+/g, '') ?? 0) / 1024;
}

function h2load(port: number, payload: string): { rps: number; done: number } {
  const out = execFileSync(
    pin(1, ['h2load'])[0] as string,
    [
      ...pin(1, ['h2load']).slice(1),
      '-D',
      String(DURATION),
      '--warm-up-time',
      String(WARMUP),
      '-c',
      '4',
      '-m',
      '32',
      '-d',
      payload,
      '-H',
      'content-type: application/grpc',
      '-H',
      'te: trailers',
      `http://127.0.0.1:${port}/envoy.service.auth.v3.Authorization/Check`,
    ],
    { encoding: 'utf8' },
  );
  const rps = Number(/finished in [\d.]+s, ([\d.]+) req\/s/.exec(out)?.[1] ?? 0);
  const done = Number(/(\d+) succeeded/.exec(out)?.[1] ?? 0);
  return { rps, done };
}

interface LoadResult {
  rps: number;
  ok: number;
  failed: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
}

function nodeLoad(port: number, payloadFile: string, extra: string[]): LoadResult {
  const cmd = pin(1, ['node', '--import', 'tsx', 'bench/load.ts']);
  const out = execFileSync(
    cmd[0] as string,
    [...cmd.slice(1), '--target', `127.0.0.1:${port}`, '--payloads', payloadFile, ...extra],
    { encoding: 'utf8' },
  );
  return JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as LoadResult;
}

interface Row {
  case: string;
  what: string;
  tool: string;
  rps: number;
  ratio: number | null;
  cpuUsPerCheck: number;
  p50ms: number | null;
  p90ms: number | null;
  p99ms: number | null;
  p999ms: number | null;
  failedAt1k: number | null;
  peakRssMb: number;
  startupMs: number;
}

const redis = CASES.some((c) => c.redis) ? await startRedis(undefined) : undefined;
if (redis && twoCores) {
  // Redis works for the load side: keep it off the server's core.
  const info = await redis.client().info('server');
  const pid = /process_id:(\d+)/.exec(info)?.[1];
  if (pid) execFileSync('taskset', ['-a', '-p', '-c', '1', pid]);
}
const rows: Row[] = [];
const baselineRps: Record<string, number> = {};
try {
  for (const c of CASES) {
    if (opts.only && !opts.only.split(',').includes(c.name) && c.server !== 'baseline') continue;
    const payloads = c.payloads();
    const fixedFile = `${TMP}/${c.name}.bin`;
    const listFile = `${TMP}/${c.name}.json`;
    writeFileSync(fixedFile, payloads[0] as Buffer);
    writeFileSync(listFile, JSON.stringify(payloads.map((p) => p.toString('base64'))));
    const server = await startServer(c, c.redis ? redis?.url : undefined);
    const pid = server.child.pid as number;
    try {
      const cpu0 = cpuSeconds(pid);
      let rps: number;
      let checks: number;
      if (c.tool === 'h2load') {
        const r = h2load(server.port, fixedFile);
        rps = r.rps;
        checks = r.done;
      } else {
        const r = nodeLoad(server.port, listFile, [
          '--duration',
          String(DURATION),
          '--warmup',
          String(WARMUP),
        ]);
        rps = r.rps;
        checks = r.ok + r.failed;
      }
      // Warm-up requests burn CPU too: count them in, at the measured rate.
      const cpuUs = ((cpuSeconds(pid) - cpu0) * 1e6) / Math.max(1, checks * ((DURATION + WARMUP) / DURATION));
      let latency: LoadResult | null = null;
      if (c.rate > 0) {
        latency = nodeLoad(server.port, listFile, [
          '--rate',
          String(c.rate),
          '--duration',
          '5',
          '--warmup',
          '1',
        ]);
      }
      if (c.server === 'baseline') baselineRps[c.tool] = rps;
      const base = baselineRps[c.tool];
      rows.push({
        case: c.name,
        what: c.what,
        tool: c.tool === 'h2load' ? 'h2load' : 'bench/load.ts',
        rps,
        ratio: base ? rps / base : null,
        cpuUsPerCheck: cpuUs,
        p50ms: latency?.p50 ?? null,
        p90ms: latency?.p90 ?? null,
        p99ms: latency?.p99 ?? null,
        p999ms: latency?.p999 ?? null,
        failedAt1k: latency?.failed ?? null,
        peakRssMb: peakRssMb(pid),
        startupMs: server.startupMs,
      });
      process.stderr.write(`${c.name}: ${rps.toFixed(0)} Check/s\n`);
    } finally {
      server.child.kill('SIGTERM');
      await new Promise((r) => server.child.once('exit', r));
    }
  }
} finally {
  await redis?.close();
}

const f = (n: number | null, digits = 0) => (n === null ? '—' : n.toFixed(digits));
const table = [
  '| case | Check/s | × baseline | CPU µs/Check | p50 ms @1k/s | p90 | p99 | p99.9 | peak RSS MB | start→SERVING ms | load |',
  '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
  ...rows.map(
    (r) =>
      `| ${r.case} | ${f(r.rps)} | ${f(r.ratio, 2)} | ${f(r.cpuUsPerCheck)} | ${f(r.p50ms, 2)} | ${f(r.p90ms, 2)} | ${f(r.p99ms, 2)} | ${f(r.p999ms, 2)} | ${f(r.peakRssMb)} | ${f(r.startupMs)} | ${r.tool} |`,
  ),
].join('\n');
process.stdout.write(
  `\n${table}\n\nEach case: ${WARMUP} s warm-up, ${DURATION} s measured; server on core 0, load on core 1${twoCores ? '' : ' (one core only: NOT pinned)'}.\n`,
);
writeFileSync(
  'bench/results/latest.json',
  `${JSON.stringify({ date: new Date().toISOString(), node: process.version, cpus: cpus().length, durationS: DURATION, warmupS: WARMUP, rows }, null, 2)}\n`,
);
