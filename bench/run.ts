// `make bench`: every case in ONE run, side by side with the transport's ceiling (a bare grpc-js
// server answering a constant OK). The server is pinned to core 0; this script, the load generator
// and Redis to core 1. Cases run in rounds (baseline, then each case, again and again): a ratio is
// taken within a round, against the baseline of that round, and the table shows medians.
//
// Per case: Check/s at saturation, CPU time per Check (from /proc), peak RSS, time from spawn to
// SERVING; for the cases with a latency profile, a FRESH server at a fixed 1,000 Check/s (open loop)
// for p50…p99.9 and its own peak RSS. h2load drives the fixed-payload cases once more, as a
// cross-check of the load generator. Output: a Markdown table on stdout, bench/results/latest.json.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { freePort } from '../test/support/processes.js';
import { startRedis } from '../test/support/redis.js';
import { frame, mintTokens } from './payloads.js';

const { values: opts } = parseArgs({
  options: {
    duration: { type: 'string', default: '6' },
    warmup: { type: 'string', default: '2' },
    repeat: { type: 'string', default: '3' },
    rate: { type: 'string', default: '1000' },
    only: { type: 'string' },
    loader: { type: 'string', default: 'auto' },
    against: { type: 'string' },
  },
});
const DURATION = Number(opts.duration);
const WARMUP = Number(opts.warmup);
const REPEAT = Number(opts.repeat);
const RATE = Number(opts.rate);
/** Seconds at the fixed rate before measuring: long enough for the JIT to have compiled the hot path. */
const RATE_WARMUP = 4;
const TMP = '.tmp/bench';
mkdirSync(TMP, { recursive: true });
mkdirSync('bench/results', { recursive: true });
const twoCores = cpus().length >= 2;
const pin = (core: number, cmd: string[]) => (twoCores ? ['taskset', '-c', String(core), ...cmd] : cmd);
// This script reads logs and spawns: keep that work off the server's core too.
if (twoCores) execFileSync('taskset', ['-a', '-p', '-c', '1', String(process.pid)], { stdio: 'ignore' });

interface Case {
  readonly name: string;
  readonly what: string;
  /** 'baseline' = the bare grpc-js server. */
  readonly server: 'baseline' | 'portcullis';
  readonly redis?: boolean;
  readonly payloads: () => Buffer[];
  /** Measure the latency profile at the fixed rate, on a fresh server. */
  readonly latency: boolean;
  /** The payload is one fixed request: h2load can drive it too (cross-check). */
  readonly fixed: boolean;
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const cachedToken = () => mintTokens('RS256', 1, 'acme-orders-app')[0] as string;
/** Distinct request ids: a repeated one is an Envoy retry, answered without charging. */
const distinct = (n: number, make: () => Buffer) => Array.from({ length: n }, make);

const CASES: Case[] = [
  {
    name: 'baseline',
    what: 'bare grpc-js, constant OK',
    server: 'baseline',
    payloads: () => [frame({ path: '/open' })],
    latency: true,
    fixed: true,
  },
  {
    name: 'allow-all',
    what: 'portcullis, anonymous route (pipeline overhead)',
    server: 'portcullis',
    payloads: () => [frame({ path: '/open' })],
    latency: true,
    fixed: true,
  },
  {
    name: 'jwt-cached',
    what: '+ JWT RS256, same token (verified-token cache)',
    server: 'portcullis',
    payloads: () => [frame({ path: '/jwt', headers: bearer(cachedToken()) })],
    latency: true,
    fixed: true,
  },
  {
    name: 'jwt-rs256-uncached',
    what: '+ JWT RS256, a different token per request',
    server: 'portcullis',
    payloads: () =>
      mintTokens('RS256', 20_000, 'acme-orders-app').map((t) => frame({ path: '/jwt', headers: bearer(t) })),
    latency: false,
    fixed: false,
  },
  {
    name: 'jwt-es256-uncached',
    what: '+ JWT ES256, a different token per request',
    server: 'portcullis',
    payloads: () =>
      mintTokens('ES256', 20_000, 'acme-orders-app').map((t) => frame({ path: '/jwt', headers: bearer(t) })),
    latency: false,
    fixed: false,
  },
  {
    name: 'jwt+quota',
    what: '+ two stacked quotas in a real redis-server (token cached; a new x-request-id per Check)',
    server: 'portcullis',
    redis: true,
    payloads: () => {
      const token = mintTokens('RS256', 1, 'quota-app')[0] as string;
      return distinct(20_000, () => frame({ path: '/quota', headers: bearer(token) }));
    },
    latency: true,
    fixed: false,
  },
  {
    name: 'full (jwt+quota+schema)',
    what: '+ a 4 KiB JSON order validated against a JSON Schema: the full pipeline',
    server: 'portcullis',
    redis: true,
    payloads: () => {
      const token = mintTokens('RS256', 1, 'quota-app')[0] as string;
      const body = Buffer.from(JSON.stringify(order4k()));
      return distinct(20_000, () =>
        frame({
          path: '/content',
          method: 'POST',
          body,
          headers: { ...bearer(token), 'content-type': 'application/json' },
        }),
      );
    },
    latency: true,
    fixed: false,
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

// --- the load generator: bench/loadgen (Go, standard library) when Go ≥ 1.24 is here, else bench/load.ts.

function buildLoadgen(): string | null {
  if (opts.loader === 'node') return null;
  const out = `${process.cwd()}/${TMP}/loadgen`;
  try {
    execFileSync('go', ['build', '-o', out, '.'], {
      cwd: 'bench/loadgen',
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    return out;
  } catch (error: unknown) {
    if (opts.loader === 'go') throw error;
    process.stderr.write('bench/loadgen could not be built (Go >= 1.24 needed): using bench/load.ts\n');
    return null;
  }
}
const LOADGEN = buildLoadgen();
const LOADER = LOADGEN ? 'bench/loadgen' : 'bench/load.ts';

interface LoadResult {
  rps: number;
  ok: number;
  failed: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
}

function load(port: number, payloadFile: string, extra: string[]): LoadResult {
  const cmd = pin(1, LOADGEN ? [LOADGEN] : ['node', '--import', 'tsx', 'bench/load.ts']);
  const out = execFileSync(
    cmd[0] as string,
    [...cmd.slice(1), '--target', `127.0.0.1:${port}`, '--payloads', payloadFile, ...extra],
    { encoding: 'utf8' },
  );
  return JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as LoadResult;
}

function h2load(port: number, payload: string): number {
  const out = execFileSync(
    pin(1, ['h2load'])[0] as string,
    [
      ...pin(1, ['h2load']).slice(1),
      ...['-D', String(DURATION), '--warm-up-time', String(WARMUP), '-c', '4', '-m', '32'],
      ...['-d', payload, '-H', 'content-type: application/grpc', '-H', 'te: trailers'],
      `http://127.0.0.1:${port}/envoy.service.auth.v3.Authorization/Check`,
    ],
    { encoding: 'utf8' },
  );
  return Number(/finished in [\d.]+s, ([\d.]+) req\/s/.exec(out)?.[1] ?? 0);
}
const hasH2load = (() => {
  try {
    execFileSync('h2load', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

// --- servers

interface Running {
  readonly child: ChildProcess;
  readonly port: number;
  readonly startupMs: number;
}

/** The server writes its log (the audit lines) to a file, as to a container's log: nobody reads it live. */
/**
 * The builds under test: this checkout, and with `--against DIR` another one (its `dist/` built),
 * run case by case in the same rounds, in alternating order: an A/B on a noisy machine.
 */
interface Build {
  readonly label: string;
  readonly main: string;
}
const revision = (dir: string) => {
  try {
    return execFileSync('git', ['-C', dir, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    return dir;
  }
};
const BUILDS: Build[] = [
  { label: '', main: 'dist/cli/main.js' },
  ...(opts.against
    ? [{ label: ` @${revision(opts.against)}`, main: `${opts.against}/dist/cli/main.js` }]
    : []),
];

async function startServer(c: Case, redisUrl: string | undefined, build: Build): Promise<Running> {
  const port = await freePort();
  const admin = await freePort();
  const args =
    c.server === 'baseline'
      ? ['node', '--import', 'tsx', 'bench/baseline-server.ts', `127.0.0.1:${port}`]
      : [
          'node',
          build.main,
          'serve',
          ...['--config', 'bench/catalog.yaml', '--grpc-address', `127.0.0.1:${port}`],
          ...['--admin-address', `127.0.0.1:${admin}`],
          ...(redisUrl ? ['--redis-url', redisUrl] : []),
        ];
  const cmd = pin(0, args);
  const logFile = `${TMP}/server.log`;
  const fd = openSync(logFile, 'w');
  const started = performance.now();
  const child = spawn(cmd[0] as string, cmd.slice(1), { stdio: ['ignore', fd, 'inherit'] });
  closeSync(fd);
  let exited: number | null = null;
  child.once('exit', (code) => {
    exited = code ?? -1;
  });
  for (;;) {
    if (exited !== null) throw new Error(`${c.name}: server exited with ${exited}`);
    if (readFileSync(logFile, 'utf8').includes('"serving"')) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  return { child, port, startupMs: performance.now() - started };
}

async function stopServer(server: Running): Promise<void> {
  server.child.kill('SIGTERM');
  if (server.child.exitCode === null) await new Promise((r) => server.child.once('exit', r));
}

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks
}

function peakRssMb(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('VmHWM:'));
  return Number(line?.replace(/\D+/g, '') ?? 0) / 1024;
}

// --- one round of one case

interface Sample {
  rps: number;
  /** Latency at saturation: mostly queueing behind 128 streams, but it shows each case's spread. */
  saturatedP50: number;
  saturatedP99: number;
  ratio: number | null;
  cpuUsPerCheck: number;
  peakRssMb: number;
  startupMs: number;
  h2loadRps: number | null;
  h2loadRatio: number | null;
  latency: (LoadResult & { peakRssMb: number }) | null;
}

async function measure(
  c: Case,
  files: { fixed: string; list: string },
  redisUrl: string | undefined,
  baseline: Sample | undefined,
  build: Build,
): Promise<Sample> {
  const server = await startServer(c, redisUrl, build);
  const pid = server.child.pid as number;
  let sample: Sample;
  try {
    const cpu0 = cpuSeconds(pid);
    const r = load(server.port, files.list, ['--duration', String(DURATION), '--warmup', String(WARMUP)]);
    const checks = r.ok + r.failed;
    // Warm-up requests burn CPU too: count them in, at the measured rate.
    const cpuUs = ((cpuSeconds(pid) - cpu0) * 1e6) / Math.max(1, checks * ((DURATION + WARMUP) / DURATION));
    const h2 = c.fixed && hasH2load ? h2load(server.port, files.fixed) : null;
    sample = {
      rps: r.rps,
      ratio: baseline ? r.rps / baseline.rps : c.server === 'baseline' ? 1 : null,
      cpuUsPerCheck: cpuUs,
      saturatedP50: r.p50,
      saturatedP99: r.p99,
      peakRssMb: peakRssMb(pid),
      startupMs: server.startupMs,
      h2loadRps: h2,
      h2loadRatio: h2 !== null && baseline?.h2loadRps ? h2 / baseline.h2loadRps : h2 !== null ? 1 : null,
      latency: null,
    };
    if (r.failed > 0) process.stderr.write(`${c.name}: ${r.failed} Checks failed at saturation\n`);
  } finally {
    await stopServer(server);
  }
  if (c.latency && RATE > 0) {
    // A fresh server: the profile and memory of a sidecar at a steady rate, not after saturation.
    const fresh = await startServer(c, redisUrl, build);
    try {
      const r = load(fresh.port, files.list, [
        '--rate',
        String(RATE),
        '--duration',
        '5',
        '--warmup',
        String(RATE_WARMUP),
      ]);
      sample.latency = { ...r, peakRssMb: peakRssMb(fresh.child.pid as number) };
    } finally {
      await stopServer(fresh);
    }
  }
  return sample;
}

// --- the run

const selected = CASES.filter(
  (c) => c.server === 'baseline' || !opts.only || opts.only.split(',').includes(c.name),
);
const redis = selected.some((c) => c.redis) ? await startRedis(undefined) : undefined;
if (redis && twoCores) {
  // Redis works for the load side: keep it off the server's core.
  const pid = /process_id:(\d+)/.exec(await redis.client().info('server'))?.[1];
  if (pid) execFileSync('taskset', ['-a', '-p', '-c', '1', pid], { stdio: 'ignore' });
}
const files = new Map<string, { fixed: string; list: string }>();
for (const [i, c] of selected.entries()) {
  const payloads = c.payloads();
  const f = { fixed: `${TMP}/case-${i}.bin`, list: `${TMP}/case-${i}.json` };
  writeFileSync(f.fixed, payloads[0] as Buffer);
  writeFileSync(f.list, JSON.stringify(payloads.map((p) => p.toString('base64'))));
  files.set(c.name, f);
}

const runs = selected.flatMap((c) =>
  (c.server === 'baseline' ? BUILDS.slice(0, 1) : BUILDS).map((build) => ({
    c,
    build,
    name: c.name + build.label,
  })),
);
const samples = new Map<string, Sample[]>(runs.map((r) => [r.name, []]));
try {
  for (let round = 1; round <= REPEAT; round++) {
    let baseline: Sample | undefined;
    for (const c of selected) {
      const builds = c.server === 'baseline' ? BUILDS.slice(0, 1) : BUILDS;
      // Alternate which build goes first, so neither always meets the machine in the same state.
      for (const build of round % 2 ? builds : [...builds].reverse()) {
        const name = c.name + build.label;
        const s = await measure(
          c,
          files.get(c.name) as { fixed: string; list: string },
          redis?.url,
          baseline,
          build,
        );
        if (c.server === 'baseline') baseline = s;
        samples.get(name)?.push(s);
        process.stderr.write(
          `round ${round}/${REPEAT} ${name}: ${s.rps.toFixed(0)} Check/s${s.ratio === null ? '' : ` (${s.ratio.toFixed(2)}×)`}, ${s.cpuUsPerCheck.toFixed(0)} µs/Check${s.latency ? `, p50/p99 @${RATE}/s ${s.latency.p50.toFixed(2)}/${s.latency.p99.toFixed(2)} ms` : ''}\n`,
        );
      }
    }
  }
} finally {
  await redis?.close();
}

// --- report

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
const med = (list: Sample[], pick: (s: Sample) => number | null | undefined): number | null => {
  const xs = list.map(pick).filter((x): x is number => typeof x === 'number');
  return xs.length ? median(xs) : null;
};
const range = (list: Sample[], pick: (s: Sample) => number | null): [number, number] | null => {
  const xs = list.map(pick).filter((x): x is number => x !== null);
  return xs.length ? [Math.min(...xs), Math.max(...xs)] : null;
};

const rows = runs.map(({ c, build, name }) => {
  const list = samples.get(name) ?? [];
  return {
    case: name,
    build: build.label === '' ? revision('.') : build.label.slice(2),
    what: c.what,
    rps: med(list, (s) => s.rps),
    ratio: med(list, (s) => s.ratio),
    ratioRange: range(list, (s) => s.ratio),
    cpuUsPerCheck: med(list, (s) => s.cpuUsPerCheck),
    p50ms: med(list, (s) => s.latency?.p50),
    p90ms: med(list, (s) => s.latency?.p90),
    p99ms: med(list, (s) => s.latency?.p99),
    p999ms: med(list, (s) => s.latency?.p999),
    failedAtRate: med(list, (s) => s.latency?.failed),
    peakRssMb: med(list, (s) => s.peakRssMb),
    rssAtRateMb: med(list, (s) => s.latency?.peakRssMb),
    startupMs: med(list, (s) => s.startupMs),
    h2loadRps: med(list, (s) => s.h2loadRps),
    h2loadRatio: med(list, (s) => s.h2loadRatio),
    h2loadRatioRange: range(list, (s) => s.h2loadRatio),
    saturatedP50ms: med(list, (s) => s.saturatedP50),
    saturatedP99ms: med(list, (s) => s.saturatedP99),
    samples: list,
  };
});

const f = (n: number | null, digits = 0) => (n === null ? '—' : n.toFixed(digits));
const spread = (r: [number, number] | null) =>
  r && REPEAT > 1 ? ` (${r[0].toFixed(2)}–${r[1].toFixed(2)})` : '';
const table = [
  `| case | Check/s | × baseline (min–max) | h2load Check/s | × baseline (min–max) | CPU µs/Check | p50 / p99 ms saturated | p50 ms @${RATE}/s | p90 | p99 | p99.9 | peak RSS MB | RSS MB @${RATE}/s | start→SERVING ms |`,
  '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ...rows.map(
    (r) =>
      `| ${r.case} | ${f(r.rps)} | ${f(r.ratio, 2)}${spread(r.ratioRange)} | ${f(r.h2loadRps)} | ${f(r.h2loadRatio, 2)}${spread(r.h2loadRatioRange)} | ${f(r.cpuUsPerCheck)} | ${f(r.saturatedP50ms, 2)} / ${f(r.saturatedP99ms, 2)} | ${f(r.p50ms, 2)} | ${f(r.p90ms, 2)} | ${f(r.p99ms, 2)} | ${f(r.p999ms, 2)} | ${f(r.peakRssMb)} | ${f(r.rssAtRateMb)} | ${f(r.startupMs)} |`,
  ),
].join('\n');

// The issue's targets, judged on the medians (never asserted in tests: machines differ).
const ours = rows.filter((r) => !r.case.includes(' @'));
const full = ours.find((r) => r.case.startsWith('full'));
const portcullis = ours.filter((r) => r.case !== 'baseline');
const verdict = (ok: boolean | null) => (ok === null ? 'not measured' : ok ? 'met' : 'MISSED');
const maxOf = (xs: (number | null)[]) => {
  const v = xs.filter((x): x is number => x !== null);
  return v.length ? Math.max(...v) : null;
};
const peak = maxOf(portcullis.map((r) => r.peakRssMb));
const peakAtRate = maxOf(portcullis.map((r) => r.rssAtRateMb));
const slowestStart = maxOf(portcullis.map((r) => r.startupMs));
const targets = [
  `- full pipeline ≥ 0.70 × baseline: ${f(full?.ratio ?? null, 2)} → ${verdict(full?.ratio == null ? null : full.ratio >= 0.7)}`,
  `- full pipeline @${RATE}/s p50 ≤ 0.5 ms: ${f(full?.p50ms ?? null, 2)} → ${verdict(full?.p50ms == null ? null : full.p50ms <= 0.5)}; p99 ≤ 2 ms: ${f(full?.p99ms ?? null, 2)} → ${verdict(full?.p99ms == null ? null : full.p99ms <= 2)}`,
  `- RSS ≤ 150 MB: at ${RATE}/s, highest case ${f(peakAtRate)} MB → ${verdict(peakAtRate === null ? null : peakAtRate <= 150)}; at saturation, highest case ${f(peak)} MB → ${verdict(peak === null ? null : peak <= 150)}`,
  `- start → SERVING ≤ 1 s: slowest case ${f(slowestStart)} ms → ${verdict(slowestStart === null ? null : slowestStart <= 1000)}`,
].join('\n');

process.stdout.write(
  `\n${table}\n\nTargets (medians of ${REPEAT} round${REPEAT > 1 ? 's' : ''}):\n${targets}\n\nEach case: ${WARMUP} s warm-up, ${DURATION} s measured, load by ${LOADER}, and by h2load where the request is fixed (both 4 connections × 32 streams; a ratio compares with the baseline measured by the same tool); latency on a fresh server at ${RATE} Check/s, ${RATE_WARMUP} s warm-up, 5 s measured; server on core 0, load and Redis on core 1${twoCores ? '' : ' (one core only: NOT pinned)'}.\n`,
);
writeFileSync(
  'bench/results/latest.json',
  `${JSON.stringify(
    {
      date: new Date().toISOString(),
      node: process.version,
      cpus: cpus().length,
      loader: LOADER,
      builds: BUILDS.map((b) => b.main),
      durationS: DURATION,
      warmupS: WARMUP,
      repeat: REPEAT,
      rate: RATE,
      rows,
    },
    null,
    2,
  )}\n`,
);
