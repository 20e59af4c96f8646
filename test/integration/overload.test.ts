// Overload, against real `portcullis serve` processes and a real redis-server (issue 13, must-show
// 4, 5 and 6). Overload is forced by a low configured ceiling (settings.admission, floor = ceiling),
// never by the machine's speed: the counts below hold on a loaded host. Durations are reported
// (t.diagnostic), never asserted.
//   4. a burst beyond the concurrency limit: the excess answered `overloaded` (or let through on an
//      `on_overload: allow` route), the admitted Checks answered normally, and the units charged in
//      Redis equal the allows;
//   5. fairness: a partner sending 10× the others' rate while overloaded gets about its share of
//      the slots; the others are never shed;
//   6. `serve` started while Redis is unreachable keeps running, answers as the routes declare,
//      and serves normally once Redis starts.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { generateApiKey, hashApiKey } from '../../src/identity/apikeys.js';
import { envoyRequest } from '../support/envoy-request.js';
import { OfficialCheckClient, type OfficialCheckResponse } from '../support/official-client.js';
import { startRedis } from '../support/redis.js';

const CLI = ['--import', 'tsx', 'src/cli/main.ts'];
const PEPPER = 'overload-test-pepper-0123456789abcdef-0123';
const principal = (partner: string) => `spiffe://partners.example.com/${partner}`;

interface Serve {
  readonly address: string;
  readonly adminPort: number;
  readonly child: ChildProcess;
  /** The last lines it logged, for failure messages. */
  tail(): string;
  /** Its first warnings and errors (at most 20). */
  warnings(): string;
  exited(): boolean;
}

/** `portcullis serve` on free ports; resolves once it logs "serving". Killed after the test. */
async function startServe(t: TestContext, catalog: string, redisUrl: string): Promise<Serve> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-overload-'));
  const file = join(dir, 'catalog.yaml');
  writeFileSync(file, catalog);
  const child = spawn(
    process.execPath,
    [
      ...CLI,
      'serve',
      '--config',
      file,
      '--grpc-address',
      '127.0.0.1:0',
      '--admin-address',
      '127.0.0.1:0',
      '--redis-url',
      redisUrl,
      '--drain-delay-ms',
      '0',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PORTCULLIS_API_KEY_PEPPER: PEPPER } },
  );
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  t.after(async () => {
    if (!exited) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await once(child, 'exit').catch(() => {});
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  });
  const lines: string[] = [];
  const warnings: string[] = [];
  const tail = () => lines.slice(-20).join('\n');
  child.stderr?.on('data', (chunk: Buffer) => lines.push(chunk.toString()));
  const serving = new Promise<Record<string, unknown>>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    rl.on('line', (line) => {
      lines.push(line);
      if (lines.length > 200) lines.splice(0, 100);
      try {
        const entry = JSON.parse(line) as Record<string, unknown>;
        if (entry.msg === 'serving') resolve(entry);
        if ((entry.level === 'warn' || entry.level === 'error') && warnings.length < 20) warnings.push(line);
      } catch {
        // not JSON: kept in the tail
      }
    });
    child.once('exit', (code) => reject(new Error(`serve exited (${code}) before serving:\n${tail()}`)));
  });
  const timeout = sleep(30_000).then(() => {
    throw new Error(`serve did not log "serving" within 30 s:\n${tail()}`);
  });
  const entry = await Promise.race([serving, timeout]);
  return {
    address: `127.0.0.1:${entry.grpc_port}`,
    adminPort: Number(entry.admin_port),
    child,
    tail,
    warnings: () => warnings.join('\n'),
    exited: () => exited,
  };
}

const codeOf = (res: OfficialCheckResponse) => res.dynamic_metadata?.fields?.code?.stringValue ?? '?';
const headers = (res: OfficialCheckResponse) =>
  Object.fromEntries(
    (res.denied_response?.headers ?? res.ok_response?.headers ?? []).map((h) => [
      h.header.key,
      h.header.value,
    ]),
  );

function tally(codes: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const code of codes) out[code] = (out[code] ?? 0) + 1;
  return out;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

async function adminJson(port: number, path: string): Promise<unknown> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return res.json();
}

async function metricsText(port: number): Promise<string> {
  return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
}

/** Sum of a counter's samples whose labels contain every `label="value"` given. */
function counter(text: string, name: string, labels: Record<string, string>): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) {
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return sum;
}

// -------------------------------------------------------------------------------------------
// 4. A burst beyond the limit

const BURST_CATALOG = `
settings:
  admission: { min_limit: 4, max_limit: 4, initial_limit: 4, max_queue: 0 }
partners:
  - id: acme
    name: Acme
    identities: { principals: ["${principal('acme')}"] }
    limits:
      - { name: per-hour, algorithm: sliding_window, limit: 1000000, period: 1h, routes: [orders] }
routes:
  - name: orders
    match: { path: { prefix: /v1/orders } }
    identity: { any_of: [mtls] }
  - name: status
    match: { path: { prefix: /v1/status } }
    identity: { any_of: [mtls] }
    on_overload: allow
`;

test('4. a burst beyond the concurrency limit: the excess is shed at once, the admitted are charged and allowed', async (t) => {
  const redis = await startRedis(t);
  const serve = await startServe(t, BURST_CATALOG, redis.url);
  const clients = Array.from({ length: 4 }, () => new OfficialCheckClient(serve.address));
  t.after(() => {
    for (const c of clients) c.close();
  });
  // Connected first, as Envoy's long-lived connections are.
  await Promise.all(
    clients.map((c) => c.check(envoyRequest({ principal: principal('acme'), path: '/v1/status' }), 10_000)),
  );

  const BURST = 400;
  const results = await Promise.all(
    Array.from({ length: BURST }, async (_, i) => {
      const path = i % 4 === 3 ? '/v1/status' : '/v1/orders';
      const started = performance.now();
      const res = await (clients[i % clients.length] as OfficialCheckClient).check(
        envoyRequest({ principal: principal('acme'), path }),
        20_000,
      );
      return { route: path.slice(4), res, ms: performance.now() - started };
    }),
  );
  const orders = results.filter((r) => r.route === 'orders');
  const status = results.filter((r) => r.route === 'status');
  const orderCodes = tally(orders.map((r) => codeOf(r.res)));
  const statusCodes = tally(status.map((r) => codeOf(r.res)));
  t.diagnostic(`orders: ${JSON.stringify(orderCodes)}; status: ${JSON.stringify(statusCodes)}`);

  // Every Check answered, with one of the declared answers only.
  assert.deepEqual(
    Object.keys(orderCodes).filter((c) => c !== 'allowed' && c !== 'overloaded'),
    [],
  );
  assert.deepEqual(
    Object.keys(statusCodes).filter((c) => c !== 'allowed' && c !== 'allowed_on_error'),
    [],
  );
  const allowed = orderCodes.allowed ?? 0;
  const shed = orderCodes.overloaded ?? 0;
  assert.equal(allowed + shed, orders.length);
  assert.ok(shed > 0, 'a burst 100× the limit sheds');
  assert.ok(allowed >= 1, 'the admitted Checks are answered normally');
  assert.ok((statusCodes.allowed_on_error ?? 0) > 0, 'on_overload: allow lets shed Checks through');

  // The shed answer: 503 overloaded with Retry-After; the on_overload: allow answer is marked.
  const shedOne = orders.find((r) => codeOf(r.res) === 'overloaded')?.res as OfficialCheckResponse;
  assert.equal(shedOne.denied_response?.status.code, 'ServiceUnavailable');
  assert.equal(shedOne.status.code, 14);
  assert.equal(headers(shedOne)['retry-after'], '1');
  const letThrough = status.find((r) => codeOf(r.res) === 'allowed_on_error')?.res as OfficialCheckResponse;
  assert.equal(headers(letThrough)['x-portcullis-on-error'], 'overloaded');
  assert.equal(headers(letThrough)['x-portcullis-partner'], undefined, 'unchecked: no identity upstream');

  // Nothing shed was charged: the units in Redis are the allows of the charged route.
  const quota = (await adminJson(serve.adminPort, '/v1/partners/acme/quota')) as {
    limits: { name: string; used: number }[];
  };
  const used = quota.limits.find((l) => l.name === 'per-hour')?.used;
  t.diagnostic(`charged in Redis: ${used}; allowed: ${allowed}`);
  assert.equal(used, allowed);

  // Backpressure is visible.
  const metrics = await metricsText(serve.adminPort);
  assert.equal(
    counter(metrics, 'portcullis_admission_shed_total', { route: 'orders', answer: 'deny' }),
    shed,
  );
  assert.equal(
    counter(metrics, 'portcullis_admission_shed_total', { route: 'orders', partner: 'acme' }),
    shed,
    'shed Checks are counted by the partner of their mTLS principal',
  );
  assert.match(metrics, /^portcullis_admission_limit 4$/m);
  assert.match(metrics, /^portcullis_admission_in_flight 0$/m);
  assert.match(metrics, /^portcullis_event_loop_delay_seconds\{quantile="0.99"\} /m);

  t.diagnostic(
    `median latency: overloaded ${median(orders.filter((r) => codeOf(r.res) === 'overloaded').map((r) => r.ms)).toFixed(1)} ms, ` +
      `allowed ${median(orders.filter((r) => codeOf(r.res) === 'allowed').map((r) => r.ms)).toFixed(1)} ms`,
  );
});

// -------------------------------------------------------------------------------------------
// 5. Fairness

const PARTNERS = ['heavy', 'light-a', 'light-b', 'light-c'];
const FAIR_CATALOG = `
settings:
  admission: { min_limit: 4, max_limit: 4, initial_limit: 4, max_queue: 64, max_queue_wait_ms: 10000 }
partners:
${PARTNERS.map(
  (p) => `  - id: ${p}
    name: ${p}
    identities: { principals: ["${principal(p)}"] }
    limits:
      - { name: per-hour, algorithm: sliding_window, limit: 1000000, period: 1h }`,
).join('\n')}
routes:
  - name: orders
    match: { path: { prefix: /v1/orders } }
    identity: { any_of: [mtls] }
`;

/** The relay of `slowLink`, run as its own process: the test's busy client loop must not delay it. */
const RELAY = `
const net = require('node:net');
const [port, delay] = process.argv.slice(1).map(Number);
const relay = net.createServer((down) => {
  const up = net.connect({ host: '127.0.0.1', port });
  down.on('data', (chunk) => up.write(chunk));
  up.on('data', (chunk) => setTimeout(() => down.writable && down.write(chunk), delay));
  const close = () => { down.destroy(); up.destroy(); };
  for (const s of [down, up]) { s.on('error', close); s.on('close', close); }
});
relay.listen(0, '127.0.0.1', () => console.log(relay.address().port));
`;

/**
 * A TCP relay to Redis that holds every reply for `delayMs`: Redis behind a slower link. Admitted
 * Checks then hold their slot for that long, so the slots (not the test's client) are what the
 * partners compete for.
 */
async function slowLink(t: TestContext, port: number, delayMs: number): Promise<string> {
  const child = spawn(process.execPath, ['-e', RELAY, String(port), String(delayMs)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.after(() => {
    child.kill('SIGKILL');
  });
  const [line] = (await once(createInterface({ input: child.stdout as NodeJS.ReadableStream }), 'line')) as [
    string,
  ];
  return `redis://127.0.0.1:${Number(line)}`;
}

test('5. fairness: a partner sending 10× the others while overloaded gets about its share; the others are never shed', async (t) => {
  const redis = await startRedis(t);
  const serve = await startServe(t, FAIR_CATALOG, await slowLink(t, redis.port, 40));
  const client = new OfficialCheckClient(serve.address);
  t.after(() => client.close());
  await client.check(envoyRequest({ principal: principal('heavy') }), 10_000);

  // Closed loops: heavy keeps 100 Checks outstanding, each light partner 10 (10× fewer): enough
  // for every partner to have Checks waiting whenever a slot frees, on a loaded machine too. The run ends
  // when every light partner has had 40 allows (or heavy has sent 20,000 Checks: a bound, not a goal).
  const LIGHT_TARGET = 40;
  const HEAVY_CAP = 20_000;
  const codes = new Map<string, string[]>(PARTNERS.map((p) => [p, []]));
  /** Allows answered while every partner was still sending: the contested part of the run. */
  const contested = new Map<string, number>(PARTNERS.map((p) => [p, 0]));
  let lightsDone = 0;
  let heavySent = 0;
  const done = () => lightsDone === 3 || heavySent >= HEAVY_CAP;
  const allowedOf = (p: string) => (codes.get(p) as string[]).filter((c) => c === 'allowed').length;
  const worker = async (partner: string, target: number) => {
    const mine = codes.get(partner) as string[];
    while (!done() && allowedOf(partner) < target) {
      if (partner === 'heavy') heavySent++;
      const res = await client.check(envoyRequest({ principal: principal(partner) }), 20_000);
      mine.push(codeOf(res));
      if (lightsDone === 0 && codeOf(res) === 'allowed')
        contested.set(partner, (contested.get(partner) ?? 0) + 1);
      // A shed Check comes back at once; a client retrying in a tight loop would measure our
      // answer rate, not the slots. 20 ms keeps heavy's demand far above its share.
      if (codeOf(res) === 'overloaded') await sleep(20);
    }
  };
  const light = async (partner: string) => {
    await Promise.all(Array.from({ length: 10 }, () => worker(partner, LIGHT_TARGET)));
    lightsDone++;
  };
  await Promise.all([
    ...Array.from({ length: 100 }, () => worker('heavy', Number.POSITIVE_INFINITY)),
    light('light-a'),
    light('light-b'),
    light('light-c'),
  ]);

  const summary = Object.fromEntries([...codes].map(([p, c]) => [p, tally(c)]));
  t.diagnostic(`answers by partner: ${JSON.stringify(summary)}`);
  const count = (p: string, code: string) => summary[p]?.[code] ?? 0;
  for (const p of ['light-a', 'light-b', 'light-c']) {
    assert.equal(count(p, 'overloaded'), 0, `${p} is never shed`);
    assert.ok(count(p, 'allowed') >= LIGHT_TARGET, `${p} keeps being served`);
  }
  assert.ok(count('heavy', 'overloaded') > 0, 'the heavy partner is the one shed');
  // Over the contested part only: before the first light partner stopped (afterwards heavy's queue
  // drains alone, as it should).
  const heavyAllowed = contested.get('heavy') ?? 0;
  const allAllowed = [...contested.values()].reduce((a, b) => a + b, 0);
  t.diagnostic(
    `while all four sent: heavy ${heavyAllowed} of ${allAllowed} allows (${((100 * heavyAllowed) / allAllowed).toFixed(0)} %; ` +
      `it had 77 % of the Checks outstanding; a fair share of 4 callers is 25 %); ${JSON.stringify(Object.fromEntries(contested))}`,
  );
  // First come, first served would give heavy about its 77 % of the outstanding Checks.
  assert.ok(heavyAllowed <= allAllowed / 2, `heavy got ${heavyAllowed} of ${allAllowed} admitted Checks`);

  const metrics = await metricsText(serve.adminPort);
  assert.equal(
    counter(metrics, 'portcullis_admission_shed_total', { partner: 'heavy' }),
    count('heavy', 'overloaded'),
  );
  for (const p of ['light-a', 'light-b', 'light-c']) {
    assert.equal(counter(metrics, 'portcullis_admission_shed_total', { partner: p }), 0);
  }
});

// -------------------------------------------------------------------------------------------
// 6. Started while Redis is unreachable

const KEY = generateApiKey();
const OUTAGE_CATALOG = `
partners:
  - id: acme
    name: Acme
    identities:
      principals: ["${principal('acme')}"]
      api_keys:
        - { id: acme-key, hash: "hmac-sha256:${hashApiKey(KEY, Buffer.from(PEPPER))}" }
    limits:
      - { name: per-hour, algorithm: sliding_window, limit: 1000000, period: 1h }
routes:
  - name: strict
    match: { path: { prefix: /v1/strict } }
    identity: { any_of: [mtls] }
  - name: lenient
    match: { path: { prefix: /v1/lenient } }
    identity: { any_of: [mtls] }
    quota: { on_store_error: fail_open }
  - name: keyed
    match: { path: { prefix: /v1/keyed } }
    identity: { any_of: [api_key] }
    quota: { on_store_error: fail_open }
`;

test('6. serve started while Redis is unreachable keeps running, answers as declared, serves once Redis starts', async (t) => {
  const redis = await startRedis(t);
  await redis.kill(); // its port is now unreachable; restart() brings it back on the same port
  const serve = await startServe(t, OUTAGE_CATALOG, redis.url);
  const client = new OfficialCheckClient(serve.address);
  t.after(() => client.close());
  const ask = async () => {
    const [strict, lenient, keyed] = await Promise.all([
      client.check(envoyRequest({ principal: principal('acme'), path: '/v1/strict' }), 10_000),
      client.check(envoyRequest({ principal: principal('acme'), path: '/v1/lenient' }), 10_000),
      client.check(envoyRequest({ path: '/v1/keyed', headers: { 'x-api-key': KEY } }), 10_000),
    ]);
    return { strict: codeOf(strict), lenient: codeOf(lenient), keyed: codeOf(keyed) };
  };

  // While Redis is down, for longer than the old fatal 10 s after start: the declared answers.
  const during: string[] = [];
  const until = Date.now() + 11_000;
  let rounds = 0;
  while (Date.now() < until && rounds < 200) {
    rounds++;
    const answers = await ask();
    assert.deepEqual(
      answers,
      { strict: 'quota_unavailable', lenient: 'allowed', keyed: 'dependency_unavailable' },
      'fail_closed quota: 503; fail_open quota: the local limiter; a revocable key with revocations never loaded: on_error',
    );
    during.push(JSON.stringify(answers));
    await sleep(250);
  }
  assert.equal(serve.exited(), false, `serve keeps running:\n${serve.tail()}`);
  t.diagnostic(`during the outage: ${rounds} rounds of 3 Checks, all as declared`);

  // Redis starts: normal service again, on every route, on its own.
  await redis.restart();
  const restarted = performance.now();
  let recovered: number | undefined;
  let last: Record<string, string> = {};
  for (let i = 0; i < 400 && recovered === undefined; i++) {
    last = await ask();
    if (last.strict === 'allowed' && last.lenient === 'allowed' && last.keyed === 'allowed') {
      recovered = performance.now() - restarted;
    } else {
      await sleep(25);
    }
  }
  assert.ok(
    recovered !== undefined,
    `normal service after Redis started; last answers ${JSON.stringify(last)}`,
  );
  t.diagnostic(`normal service ${recovered.toFixed(0)} ms after Redis answered PING`);
  // And it stays normal: charged in Redis from now on.
  for (let i = 0; i < 5; i++)
    assert.deepEqual(await ask(), { strict: 'allowed', lenient: 'allowed', keyed: 'allowed' });
  assert.equal(serve.exited(), false);
});
