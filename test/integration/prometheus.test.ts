// The dashboard and the rules against a REAL Prometheus (Debian package) scraping a REAL portcullis.
// portcullis runs with a catalog that exercises every panel: partners on quota plans counted in a real
// redis-server (RedisQuotaStore), a JSON-schema content route, a route scanned by a real clamd, an
// issuer whose key set comes from a real JWKS endpoint. A short, bounded, mixed load of Checks goes
// through a client built from Envoy's official protos while Prometheus scrapes the admin /metrics
// every second. Then:
// - every query of every panel of deploy/grafana/portcullis.json (Grafana variables replaced by what
//   "All" means) is valid and returns at least one series, except the panels allow-listed below;
// - every template variable's label_values() selector finds series carrying its label;
// - every recording and alerting rule of deploy/prometheus/rules.yaml is a query Prometheus accepts,
//   and Prometheus loads the file (rule_files) and evaluates every rule without error.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { createRedisClient, RedisQuotaStore, waitForReady } from '../../src/quota/redis-store.js';
import { templateQueryExpr } from '../contract/promql-names.js';
import { startTestApp } from '../support/app.js';
import { startClamd } from '../support/clamd.js';
import { envoyRequest, type RequestSpec } from '../support/envoy-request.js';
import { generateTestKey, startJwksServer } from '../support/jwks-server.js';
import { OfficialCheckClient } from '../support/official-client.js';
import { startRedis } from '../support/redis.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const DASHBOARD = join(ROOT, 'deploy', 'grafana', 'portcullis.json');
const RULES = join(ROOT, 'deploy', 'prometheus', 'rules.yaml');
const JOB = 'portcullis';

/**
 * Panels (title, or "title [refId]") that cannot have data in a healthy run, and why. Every other
 * panel query must return at least one series.
 */
const NO_DATA_EXPECTED: Readonly<Record<string, string>> = {
  // portcullis_failures_total{route,cause} is only created by an internal failure or a missed
  // deadline (it is not initialised at 0: its labels are route x cause); a healthy run has none.
  'Error path':
    'failure ratio: portcullis_failures_total only exists after an error-path decision (an outage)',
  'Error-path decisions': 'portcullis_failures_total only exists after an error-path decision (an outage)',
};

/** What Grafana puts in place of its variables when "All" is selected, and a range of a few minutes. */
const BUILTINS: Readonly<Record<string, string>> = {
  __rate_interval: '1m',
  __interval: '15s',
  __range: '5m',
  __range_s: '300',
};

// ---------------------------------------------------------------------------------------------
// The dashboard

interface Panel {
  readonly title?: string;
  readonly type?: string;
  readonly panels?: readonly Panel[];
  readonly targets?: readonly { readonly expr?: string; readonly refId?: string }[];
}
interface TemplateVar {
  readonly name: string;
  readonly type: string;
  readonly allValue?: string;
  readonly query?: string | { readonly query?: string };
}
interface Dashboard {
  readonly panels: readonly Panel[];
  readonly templating?: { readonly list: readonly TemplateVar[] };
}

interface PanelQuery {
  /** The panel title, with the refId when the panel has several queries. */
  readonly name: string;
  readonly title: string;
  readonly raw: string;
  readonly expr: string;
}

const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
const templateVars = dashboard.templating?.list ?? [];
const variableValues: Record<string, string> = { ...BUILTINS };
for (const v of templateVars) {
  if (v.type === 'query') variableValues[v.name] = v.allValue ?? '.*';
}

/** Replaces $name, ${name} and ${name:format}; fails on a variable the dashboard does not define. */
function substitute(expr: string, where: string): string {
  return expr.replace(
    /\$\{(\w+)(?::\w+)?\}|\$(\w+)/g,
    (_m, braced: string | undefined, bare: string | undefined) => {
      const name = (braced ?? bare) as string;
      const value = variableValues[name];
      assert.ok(value !== undefined, `${where}: unknown Grafana variable $${name}`);
      return value;
    },
  );
}

function panelQueries(): PanelQuery[] {
  const out: PanelQuery[] = [];
  const walk = (panels: readonly Panel[]) => {
    for (const panel of panels) {
      if (panel.panels) walk(panel.panels);
      const targets = (panel.targets ?? []).filter((t) => t.expr?.trim());
      targets.forEach((target, i) => {
        const title = panel.title ?? '(untitled)';
        const name = targets.length > 1 ? `${title} [${target.refId ?? i}]` : title;
        out.push({ name, title, raw: target.expr as string, expr: substitute(target.expr as string, name) });
      });
    }
  };
  walk(dashboard.panels);
  return out;
}

// ---------------------------------------------------------------------------------------------
// The rules

interface Rule {
  readonly record?: string;
  readonly alert?: string;
  readonly expr: string;
}
const ruleGroups = (parse(readFileSync(RULES, 'utf8')) as { groups: { name: string; rules: Rule[] }[] })
  .groups;
const rules = ruleGroups.flatMap((g) => g.rules);
const ruleName = (r: Rule) => r.record ?? r.alert ?? '?';

// ---------------------------------------------------------------------------------------------
// A real Prometheus

const NOT_FOUND =
  'prometheus is not on PATH: run `make tools` (it installs the Debian package "prometheus", which ' +
  'also provides promtool), or `apt-get install prometheus`';

function findBinary(name: string): string {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/bin', '/usr/local/bin'];
  for (const dir of dirs) {
    const candidate = join(dir || '.', name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  assert.fail(NOT_FOUND);
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.unref();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      probe.close(() => resolvePort(port));
    });
  });
}

interface ApiAnswer {
  readonly status: 'success' | 'error';
  readonly error?: string;
  readonly errorType?: string;
  readonly data?: { resultType: string; result: unknown };
}
interface Sample {
  readonly metric: Record<string, string>;
  readonly value: [number, string];
}

interface Prometheus {
  readonly url: string;
  output(): string;
  query(expr: string): Promise<ApiAnswer>;
  /** The samples of an instant vector query; fails on an error or another result type. */
  vector(expr: string): Promise<Sample[]>;
  get<T>(path: string): Promise<T>;
}

const liveChildren = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
});

async function startPrometheus(t: TestContext, target: string): Promise<Prometheus> {
  const binary = findBinary('prometheus');
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-prometheus-'));
  const config = join(dir, 'prometheus.yml');
  writeFileSync(
    config,
    JSON.stringify({
      global: { scrape_interval: '1s', scrape_timeout: '900ms', evaluation_interval: '1s' },
      rule_files: [RULES],
      scrape_configs: [{ job_name: JOB, metrics_path: '/metrics', static_configs: [{ targets: [target] }] }],
    }),
  );
  let out = '';
  let child: ChildProcess | undefined;
  let url = '';
  const stop = async () => {
    const proc = child;
    if (proc && proc.exitCode === null && proc.signalCode === null) {
      const exited = once(proc, 'exit');
      proc.kill('SIGTERM');
      const force = setTimeout(() => proc.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(force);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  // Registered before the start, so a failed start is cleaned up too.
  t.after(stop);

  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    out = '';
    const proc = spawn(
      binary,
      [
        `--config.file=${config}`,
        `--storage.tsdb.path=${join(dir, `data-${attempt}`)}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child = proc;
    liveChildren.add(proc);
    proc.once('exit', () => liveChildren.delete(proc));
    let spawnError: Error | undefined;
    proc.on('error', (err) => {
      spawnError = err;
    });
    const collect = (chunk: Buffer) => {
      if (out.length < 256 * 1024) out += chunk.toString('utf8');
    };
    proc.stdout?.on('data', collect);
    proc.stderr?.on('data', collect);

    const deadline = Date.now() + 15_000;
    let ready = false;
    while (Date.now() < deadline) {
      if (spawnError) {
        if ((spawnError as NodeJS.ErrnoException).code === 'ENOENT') assert.fail(NOT_FOUND);
        throw spawnError;
      }
      if (proc.exitCode !== null || proc.signalCode !== null) break;
      try {
        if ((await fetch(`${url}/-/ready`)).ok) {
          ready = true;
          break;
        }
      } catch {
        // not listening yet
      }
      await sleep(50);
    }
    if (ready) break;
    const inUse = /address already in use/i.test(out);
    await stop();
    if (inUse && attempt < 5) continue;
    assert.fail(`prometheus did not become ready on ${url}:\n${out.slice(-4000)}`);
  }

  const get = async <T>(path: string): Promise<T> => {
    const res = await fetch(`${url}${path}`);
    return (await res.json()) as T;
  };
  const query = async (expr: string): Promise<ApiAnswer> => {
    const res = await fetch(`${url}/api/v1/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ query: expr }),
    });
    return (await res.json()) as ApiAnswer;
  };
  return {
    url,
    output: () => out,
    query,
    get,
    async vector(expr) {
      const answer = await query(expr);
      assert.equal(answer.status, 'success', `${expr}: ${answer.errorType}: ${answer.error}`);
      assert.equal(answer.data?.resultType, 'vector', expr);
      return answer.data?.result as Sample[];
    },
  };
}

/** Number of series a query returned (a scalar or string counts as one). */
function seriesCount(answer: ApiAnswer): number {
  const data = answer.data;
  if (!data) return 0;
  if (data.resultType === 'scalar' || data.resultType === 'string') return 1;
  return (data.result as unknown[]).length;
}

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    await sleep(200);
  }
  assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

// ---------------------------------------------------------------------------------------------
// portcullis, its dependencies and the load

const ORDER_SCHEMA = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  type: 'object',
  required: ['sku', 'quantity'],
  properties: { sku: { type: 'string' }, quantity: { type: 'integer', minimum: 1 } },
  additionalProperties: false,
};

const principal = (partner: string) => `spiffe://partners.example.com/${partner}`;

function catalogText(schemaFile: string, jwksUrl: string): string {
  return JSON.stringify({
    version_name: 'prometheus-dashboard',
    issuers: [
      {
        name: 'main',
        issuer: 'https://idp.example.com',
        jwks: { url: jwksUrl, allow_http: true },
        audiences: ['partner-api'],
        algorithms: ['RS256'],
      },
    ],
    plans: [
      {
        name: 'generous',
        limits: [
          { name: 'per-minute', algorithm: 'gcra', limit: 100_000, period: '1m' },
          { name: 'daily', algorithm: 'fixed_window', limit: 1_000_000, window: 'day' },
        ],
      },
      {
        name: 'tight',
        limits: [
          { name: 'per-minute', algorithm: 'gcra', limit: 5, period: '1m' },
          { name: 'daily', algorithm: 'fixed_window', limit: 20, window: 'day', shadow: true },
        ],
      },
    ],
    partners: [
      { id: 'acme', name: 'Acme', plan: 'generous', identities: { principals: [principal('acme')] } },
      { id: 'globex', name: 'Globex', plan: 'tight', identities: { principals: [principal('globex')] } },
      {
        id: 'initech',
        name: 'Initech',
        status: 'suspended',
        identities: { principals: [principal('initech')] },
      },
    ],
    routes: [
      {
        name: 'orders',
        match: { path: { prefix: '/v1/orders' } },
        content: {
          types: ['application/json'],
          body: { required_for: ['POST'] },
          json: { schema: schemaFile, max_depth: 8 },
        },
      },
      {
        name: 'documents',
        match: { path: { prefix: '/v1/documents' } },
        content: { types: ['application/pdf'], scan: { timeout_ms: 1000 } },
      },
      { name: 'reports', match: { path: { prefix: '/v1/reports' } } },
    ],
  });
}

const PDF = Buffer.concat([Buffer.from('%PDF-1.7\n'), Buffer.alloc(1200, 0x41), Buffer.from('\n%%EOF\n')]);
const json = (value: unknown) => ({
  body: Buffer.from(JSON.stringify(value)),
  headers: { 'content-type': 'application/json' },
});

/** One round of the load: each request and the decision code it must get (undefined: not asserted). */
function round(i: number): { spec: RequestSpec; expect?: string }[] {
  return [
    { spec: { principal: principal('acme'), path: `/v1/reports/${i}` }, expect: 'allowed' },
    {
      spec: {
        principal: principal('acme'),
        method: 'POST',
        path: '/v1/orders',
        ...json({ sku: 'a', quantity: 2 }),
      },
      expect: 'allowed',
    },
    {
      spec: {
        principal: principal('acme'),
        method: 'POST',
        path: '/v1/orders',
        ...json({ sku: 7, quantity: 0 }),
      },
      expect: 'schema_violation',
    },
    {
      spec: { principal: principal('acme'), method: 'POST', path: '/v1/orders' },
      expect: 'body_required',
    },
    {
      spec: {
        principal: principal('acme'),
        method: 'PUT',
        path: `/v1/documents/${i}`,
        // A distinct body per round, so that clamd scans it (not the clean-result cache).
        body: Buffer.concat([PDF, Buffer.from(`${i}\n`)]),
        headers: { 'content-type': 'application/pdf' },
      },
      expect: 'allowed',
    },
    // The tight plan allows 5 per minute: quota_exceeded from the 6th on.
    { spec: { principal: principal('globex'), path: `/v1/reports/${i}` } },
    { spec: { path: '/v1/reports' }, expect: 'credentials_missing' },
    { spec: { principal: principal('initech'), path: '/v1/reports' }, expect: 'partner_suspended' },
    { spec: { principal: principal('acme'), path: '/nowhere' }, expect: 'route_not_found' },
  ];
}

const LOAD_MS = 4000;

// ---------------------------------------------------------------------------------------------

test('every dashboard panel and every rule works against a real Prometheus scraping portcullis under load', async (t) => {
  const started = Date.now();
  findBinary('prometheus'); // fail fast, before starting anything else

  const [redis, clamd, signer] = await Promise.all([startRedis(t), startClamd(t), generateTestKey('RS256')]);
  const jwks = await startJwksServer([signer]);
  t.after(() => jwks.close());
  const redisClient = createRedisClient(redis.url);
  redisClient.on('error', () => {}); // as `serve` does
  t.after(() => redisClient.disconnect());
  await waitForReady(redisClient);

  const dir = mkdtempSync(join(tmpdir(), 'portcullis-prom-catalog-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const schemaFile = join(dir, 'order.schema.json');
  writeFileSync(schemaFile, JSON.stringify(ORDER_SCHEMA));

  const app = await startTestApp(t, {
    catalogText: catalogText(schemaFile, jwks.url),
    quotaStore: new RedisQuotaStore(redisClient, { idempotencyMs: 600_000 }),
    clamd: { address: `${clamd.host}:${clamd.port}`, maxBytes: clamd.streamMaxBytes },
  });
  const client = new OfficialCheckClient(app.address);
  t.after(() => client.close());

  const prometheus = await startPrometheus(t, `127.0.0.1:${app.app.adminPort}`);

  // Prometheus' target discovery takes a few seconds before the first scrape: the load starts after
  // it, so that the scrapes see the counters grow (rate() and increase() above 0).
  await until('the first scrape of portcullis', 20_000, async () => {
    const [up] = await prometheus.vector(`up{job="${JOB}"}`);
    return up?.value[1] === '1' ? true : undefined;
  });

  // The bounded load: rounds of mixed Checks for LOAD_MS, every answer tallied by code.
  const tally = new Map<string, number>();
  const mismatches: string[] = [];
  let sent = 0;
  const loadEnd = Date.now() + LOAD_MS;
  for (let i = 0; Date.now() < loadEnd; i++) {
    await Promise.all(
      round(i).map(async ({ spec, expect }) => {
        sent++;
        const res = await client.check(envoyRequest(spec), 5000);
        const code = res.dynamic_metadata?.fields.code?.stringValue ?? '(none)';
        tally.set(code, (tally.get(code) ?? 0) + 1);
        if (expect && code !== expect)
          mismatches.push(`${spec.method ?? 'GET'} ${spec.path}: ${code}, not ${expect}`);
      }),
    );
    await sleep(40);
  }
  t.diagnostic(`load: ${sent} Checks in ${LOAD_MS} ms: ${JSON.stringify(Object.fromEntries(tally))}`);
  assert.deepEqual(mismatches.slice(0, 5), [], 'every request of the load got the code it was built for');
  assert.ok((tally.get('quota_exceeded') ?? 0) > 0, 'the tight plan refused some of globex requests');
  assert.ok(clamd.scansLogged() > 0, 'clamd scanned the documents');

  // Prometheus has scraped at least 5 times, always successfully, and its last scrape saw every Check.
  await until('5 successful scrapes and every Check in Prometheus', 20_000, async () => {
    const [scrapes] = await prometheus.vector(`count_over_time(up{job="${JOB}"}[5m])`);
    const [ups] = await prometheus.vector(`sum_over_time(up{job="${JOB}"}[5m])`);
    const [decisions] = await prometheus.vector(`sum(portcullis_decisions_total{job="${JOB}"})`);
    if (!scrapes || !ups || !decisions) return undefined;
    assert.equal(ups.value[1], scrapes.value[1], `every scrape succeeded:\n${prometheus.output()}`);
    return Number(scrapes.value[1]) >= 5 && Number(decisions.value[1]) === sent ? true : undefined;
  });

  const [growth] = await prometheus.vector(`sum(increase(portcullis_decisions_total{job="${JOB}"}[5m]))`);
  assert.ok(Number(growth?.value[1]) > 0, 'Prometheus saw the decisions grow during the load');

  await t.test('the template variables find their label values', async () => {
    for (const v of templateVars.filter((tv) => tv.type === 'query')) {
      const raw = typeof v.query === 'string' ? v.query : (v.query?.query ?? '');
      const m = /,\s*([A-Za-z_]\w*)\s*\)\s*$/.exec(raw);
      assert.ok(m?.[1], `$${v.name}: a label_values(selector, label) query: ${raw}`);
      const label = m[1];
      const samples = await prometheus.vector(substitute(templateQueryExpr(raw), `$${v.name}`));
      const values = new Set(samples.map((s) => s.metric[label]).filter((x) => x !== undefined));
      assert.ok(values.size > 0, `$${v.name}: no value of label ${label}`);
    }
  });

  const queries = panelQueries();
  assert.ok(queries.length > 0, 'the dashboard has panel queries');
  for (const title of Object.keys(NO_DATA_EXPECTED)) {
    assert.ok(
      queries.some((q) => q.name === title),
      `allow-listed panel "${title}" is on the dashboard`,
    );
  }
  const withData: string[] = [];
  for (const q of queries) {
    await t.test(`panel "${q.name}"`, async () => {
      const answer = await prometheus.query(q.expr);
      assert.equal(answer.status, 'success', `${q.expr}\n${answer.errorType}: ${answer.error}`);
      const n = seriesCount(answer);
      if (n > 0) withData.push(q.name);
      const allowed = NO_DATA_EXPECTED[q.name];
      if (allowed === undefined) {
        assert.ok(n > 0, `no series for ${q.expr} (dashboard: ${q.raw})`);
      }
    });
  }
  t.diagnostic(
    `panel queries with data: ${withData.length}/${queries.length}; without (allow-listed): ${queries
      .filter((q) => !withData.includes(q.name))
      .map((q) => q.name)
      .join(', ')}`,
  );

  await t.test('every rule expression is a query Prometheus accepts', async () => {
    for (const rule of rules) {
      const answer = await prometheus.query(rule.expr);
      assert.equal(answer.status, 'success', `${ruleName(rule)}: ${answer.errorType}: ${answer.error}`);
    }
  });

  await t.test('Prometheus loads rules.yaml and evaluates every rule without error', async () => {
    interface LoadedRule {
      name: string;
      health: string;
      lastError?: string;
      lastEvaluation: string;
    }
    type RulesAnswer = { status: string; data: { groups: { name: string; rules: LoadedRule[] }[] } };
    const loaded = await until('every rule evaluated at least once', 10_000, async () => {
      const answer = await prometheus.get<RulesAnswer>('/api/v1/rules');
      const all = answer.data.groups.flatMap((g) => g.rules);
      const evaluated =
        all.length === rules.length && all.every((r) => !r.lastEvaluation.startsWith('0001-'));
      return evaluated ? all : undefined;
    });
    assert.deepEqual(loaded.map((r) => r.name).sort(), rules.map(ruleName).sort());
    const broken = loaded
      .filter((r) => r.health !== 'ok')
      .map((r) => `${r.name}: ${r.health} ${r.lastError}`);
    assert.deepEqual(broken, []);
  });

  const seconds = (Date.now() - started) / 1000;
  t.diagnostic(`test body took ${seconds.toFixed(1)} s`);
  assert.ok(seconds < 60, `the test stays under a minute (${seconds.toFixed(1)} s)`);
});
