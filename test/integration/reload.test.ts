// Hot reload under load, through the real `portcullis serve` process: the catalog lives in a
// directory laid out like a mounted ConfigMap (catalog.yaml -> ..data/catalog.yaml, ..data -> a
// timestamped directory) and is replaced 20 times by swapping the ..data symlink, some versions
// invalid, while Checks keep flowing. No Check may fail, every answer must belong to exactly one
// valid version, and an invalid version must never be served.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { envoyRequest } from '../support/envoy-request.js';
import { OfficialCheckClient, type OfficialCheckResponse } from '../support/official-client.js';

const catalogText = (generation: number) =>
  [
    `version_name: gen-${generation}`,
    'routes:',
    '  - name: open',
    '    identity: { required: false }',
    '    response_headers:',
    `      set: { x-generation: "${generation}" }`,
  ].join('\n');
const BROKEN = 'routes:\n  - name: open\n    on_error: perhaps\n';
const versionOf = (text: string) => `sha256:${createHash('sha256').update(text).digest('hex').slice(0, 16)}`;

/** Publishes `text` the way the kubelet updates a ConfigMap volume: a new dir, then a symlink swap. */
function publish(dir: string, n: number, text: string): void {
  const data = join(dir, `..2026_11_28_${String(n).padStart(3, '0')}`);
  mkdirSync(data);
  writeFileSync(join(data, 'catalog.yaml'), text);
  symlinkSync(data, join(dir, '..data_tmp'));
  renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
}

interface Served {
  /** Every log line but decisions, as they come. */
  readonly logs: Record<string, unknown>[];
  readonly grpcPort: number;
  readonly adminPort: number;
}

/** `portcullis serve --config FILE` as a real process on free ports, killed after the test. */
async function serve(t: TestContext, file: string): Promise<Served & { child: ChildProcess }> {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      'src/cli/main.ts',
      'serve',
      '--config',
      file,
      '--grpc-address',
      '127.0.0.1:0',
      '--admin-address',
      '127.0.0.1:0',
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  t.after(() => child.kill('SIGKILL'));
  const logs: Record<string, unknown>[] = [];
  return new Promise((resolve) => {
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      const entry = JSON.parse(line) as Record<string, unknown>;
      if (entry.msg !== 'decision') logs.push(entry);
      if (entry.msg === 'serving') {
        resolve({ child, logs, grpcPort: entry.grpc_port as number, adminPort: entry.admin_port as number });
      }
    });
  });
}

const meta = (res: OfficialCheckResponse, key: string) =>
  res.dynamic_metadata?.fields[key]?.stringValue ?? '';
const header = (res: OfficialCheckResponse, name: string) =>
  res.ok_response?.response_headers_to_add?.find((h) => h.header.key === name)?.header.value;

test('reload under load: 20 replacements, some invalid; no failed Check, one version per answer', {
  timeout: 60_000,
}, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-reload-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  publish(dir, 0, catalogText(0));
  symlinkSync('..data/catalog.yaml', join(dir, 'catalog.yaml'));

  const { logs, grpcPort, adminPort } = await serve(t, join(dir, 'catalog.yaml'));
  const ports = { grpc: grpcPort, admin: adminPort };
  const client = new OfficialCheckClient(`127.0.0.1:${ports.grpc}`);
  t.after(() => client.close());

  const valid = new Map<string, number>([[versionOf(catalogText(0)), 0]]);
  const invalid = new Set<string>();
  const seen = new Map<string, number>();
  const failures: string[] = [];
  let running = true;
  const worker = async () => {
    while (running) {
      try {
        const res = await client.check(envoyRequest({ path: '/anything' }), 2000);
        const version = meta(res, 'policy_version');
        seen.set(version, (seen.get(version) ?? 0) + 1);
        if (res.http_response !== 'ok_response') failures.push(`denied: ${meta(res, 'code')}`);
        else if (header(res, 'x-generation') !== String(valid.get(version))) {
          failures.push(`version ${version} answered with generation ${header(res, 'x-generation')}`);
        }
      } catch (err: unknown) {
        failures.push(`RPC failed: ${String(err)}`);
      }
    }
  };
  const workers = Array.from({ length: 8 }, worker);

  let last = 0;
  for (let n = 1; n <= 20; n++) {
    const text = n % 4 === 2 ? `${BROKEN}# ${n}\n` : catalogText(n);
    if (n % 4 === 2) invalid.add(versionOf(text));
    else {
      valid.set(versionOf(text), n);
      last = n;
    }
    publish(dir, n, text);
    // Longer than the watcher's debounce (200 ms), so most versions get their turn.
    await sleep(300);
  }
  // The last valid version must end up served.
  const lastVersion = versionOf(catalogText(last));
  const deadline = Date.now() + 5000;
  while (!seen.has(lastVersion) && Date.now() < deadline) await sleep(50);
  running = false;
  await Promise.all(workers);

  assert.deepEqual(failures.slice(0, 5), [], `${failures.length} failed Checks`);
  for (const version of seen.keys()) {
    assert.ok(
      valid.has(version),
      `served ${version}, which is ${invalid.has(version) ? 'an INVALID' : 'an unknown'} version`,
    );
  }
  assert.ok(seen.has(lastVersion), 'the last valid version is served');
  const total = [...seen.values()].reduce((a, b) => a + b, 0);
  t.diagnostic(`${total} Checks over ${seen.size} versions`);
  assert.ok(seen.size >= 3, 'several versions were served along the way');

  const refused = logs.filter((l) => l.msg === 'policy reload refused: keeping the last good catalog');
  assert.ok(refused.length >= 1, 'a refused reload is logged');
  assert.match(String(refused[0]?.reason), /on_error: must be one of "deny", "allow"/);
  const metrics = await (await fetch(`http://127.0.0.1:${ports.admin}/metrics`)).text();
  assert.match(metrics, /portcullis_policy_reloads_total\{result="failure"\} [1-9]/);
  assert.match(metrics, /portcullis_policy_reloads_total\{result="success"\} [1-9]/);
  assert.match(
    metrics,
    new RegExp(`portcullis_policy_info\\{version="${lastVersion}",name="gen-${last}"\\} 1`),
  );

  // A broken version now: /readyz still serves the last good one and says the reload failed.
  publish(dir, 99, BROKEN);
  const readyDeadline = Date.now() + 5000;
  let ready: {
    status: string;
    policy: { version: string; last_reload?: { result: string; reason?: string } };
  };
  do {
    await sleep(50);
    ready = (await (await fetch(`http://127.0.0.1:${ports.admin}/readyz`)).json()) as typeof ready;
  } while (ready.policy.last_reload?.result !== 'failure' && Date.now() < readyDeadline);
  assert.equal(ready.status, 'ready');
  assert.equal(ready.policy.version, lastVersion);
  assert.equal(ready.policy.last_reload?.result, 'failure');
  assert.match(ready.policy.last_reload?.reason ?? '', /routes\[0\]\.on_error/);
});

test('SIGHUP forces a reload of the same file', { timeout: 30_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-hup-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'catalog.yaml');
  writeFileSync(file, catalogText(1));
  const { child, logs: lines } = await serve(t, file);
  child.kill('SIGHUP');
  const deadline = Date.now() + 5000;
  while (!lines.some((l) => l.msg === 'policy reloaded') && Date.now() < deadline) await sleep(50);
  assert.ok(lines.some((l) => l.msg === 'SIGHUP: reloading the policy catalog'));
  assert.ok(
    lines.some((l) => l.msg === 'policy reloaded'),
    'a forced reload rebuilds even for the same bytes',
  );
});
