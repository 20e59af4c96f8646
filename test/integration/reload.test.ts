// Hot reload under load, through the real `portcullis serve` process: the catalog lives in a
// directory laid out like a mounted ConfigMap (catalog.yaml -> ..data/catalog.yaml, ..data -> a
// timestamped directory) and is replaced 20 times by swapping the ..data symlink, some versions
// invalid, while Checks keep flowing. No Check may fail, every answer must belong to exactly one
// valid version, and an invalid version must never be served.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { envoyRequest } from '../support/envoy-request.js';
import { OfficialCheckClient, type OfficialCheckResponse } from '../support/official-client.js';
import { startServeFile } from '../support/serve.js';

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
  readonly child: ChildProcess;
}

/** `portcullis serve --config FILE` as a real process on free ports, killed after the test. */
async function serve(t: TestContext, file: string): Promise<Served> {
  const logs: Record<string, unknown>[] = [];
  const onLog = (entry: Record<string, unknown>) => {
    if (entry.msg !== 'decision') logs.push(entry);
  };
  const { address, adminPort, child } = await startServeFile(t, file, { onLog });
  return { logs, grpcPort: Number(address.slice(address.lastIndexOf(':') + 1)), adminPort, child };
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

// A catalog whose only route checks JSON bodies against schemas/order.json (no identity needed).
const SCHEMA_CATALOG = [
  'version_name: schema-check',
  'routes:',
  '  - name: orders',
  '    identity: { required: false }',
  '    content:',
  '      types: [application/json]',
  '      json: { schema: schemas/order.json }',
].join('\n');
const schemaRequiring = (field: string) =>
  JSON.stringify({ type: 'object', required: [field], properties: { [field]: { type: 'string' } } });
const orderCheck = () =>
  envoyRequest({
    method: 'POST',
    path: '/v1/orders',
    headers: { 'content-type': 'application/json' },
    body: Buffer.from('{"sku":"A-1"}'),
  });

interface Ready {
  status: string;
  policy: { version: string; last_reload?: { result: string; reason?: string; recovered?: boolean } };
}
const readyz = async (adminPort: number) =>
  (await (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).json()) as Ready;
/** Polls /readyz until `done` holds (bounded: 10 s). */
async function readyWhen(adminPort: number, done: (r: Ready) => boolean): Promise<Ready> {
  const deadline = Date.now() + 10_000;
  let ready = await readyz(adminPort);
  while (!done(ready) && Date.now() < deadline) {
    await sleep(50);
    ready = await readyz(adminPort);
  }
  return ready;
}

test('a schema-only edit changes the version and is reloaded without SIGHUP', {
  timeout: 30_000,
}, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-schema-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'schemas'));
  writeFileSync(join(dir, 'schemas', 'order.json'), schemaRequiring('sku'));
  writeFileSync(join(dir, 'catalog.yaml'), SCHEMA_CATALOG);
  const { logs, grpcPort, adminPort } = await serve(t, join(dir, 'catalog.yaml'));
  const client = new OfficialCheckClient(`127.0.0.1:${grpcPort}`);
  t.after(() => client.close());

  const before = await client.check(orderCheck(), 5000);
  assert.equal(before.http_response, 'ok_response', meta(before, 'code'));
  const v1 = meta(before, 'policy_version');
  // The catalog names a file: its version is not the hash of the catalog's bytes alone.
  assert.notEqual(v1, versionOf(SCHEMA_CATALOG));

  // Only the schema changes: the catalog's bytes stay the same. No signal is sent.
  writeFileSync(join(dir, 'schemas', 'order.json'), schemaRequiring('quantity'));
  const ready = await readyWhen(adminPort, (r) => r.policy.version !== v1);
  assert.notEqual(ready.policy.version, v1, 'the schema edit gives a new version');
  assert.equal(ready.policy.last_reload?.result, 'success');
  const after = await client.check(orderCheck(), 5000);
  assert.equal(after.http_response, 'denied_response');
  assert.equal(meta(after, 'code'), 'schema_violation');
  assert.equal(meta(after, 'policy_version'), ready.policy.version, 'the audit version names the new schema');
  // The log line follows the swap /readyz already shows: wait for it (bounded).
  const reloaded = () => logs.some((l) => l.msg === 'policy reloaded' && l.previous_version === v1);
  const logDeadline = Date.now() + 10_000;
  while (!reloaded() && Date.now() < logDeadline) await sleep(50);
  assert.ok(reloaded(), 'the reload is logged with the version it replaced');
  assert.ok(!logs.some((l) => l.msg === 'SIGHUP: reloading the policy catalog'));
});

test('a revert clears the failure: /readyz, the log and the metric record the recovery', {
  timeout: 30_000,
}, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-revert-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'catalog.yaml');
  writeFileSync(file, catalogText(1));
  const { logs, adminPort } = await serve(t, file);
  const good = versionOf(catalogText(1));
  const metric = async (name: string) => {
    const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    return new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1];
  };

  writeFileSync(file, BROKEN);
  const failed = await readyWhen(adminPort, (r) => r.policy.last_reload?.result === 'failure');
  assert.equal(failed.policy.last_reload?.result, 'failure');
  assert.equal(failed.policy.version, good);
  assert.equal(await metric('portcullis_policy_reload_failing'), '1');

  // The good bytes again: the same version as the one served, so nothing to swap, but a recovery.
  writeFileSync(file, catalogText(1));
  const back = await readyWhen(adminPort, (r) => r.policy.last_reload?.result === 'success');
  assert.equal(back.policy.version, good);
  assert.equal(back.policy.last_reload?.result, 'success');
  assert.equal(back.policy.last_reload?.recovered, true);
  assert.equal(back.policy.last_reload?.reason, undefined, 'the old errors are gone');
  assert.equal(await metric('portcullis_policy_reload_failing'), '0');
  const recovered = () =>
    logs.some((l) => l.msg === 'policy reload recovered: the files are back to the catalog being served');
  const logDeadline = Date.now() + 10_000;
  while (!recovered() && Date.now() < logDeadline) await sleep(50);
  assert.ok(recovered(), 'the recovery is logged');
});
