// The `portcullis` command as a user runs it: a real process, real flags, real exit codes.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { startTestApp } from '../support/app.js';

const CLI = ['--import', 'tsx', 'src/cli/main.ts'];

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [...CLI, ...args], { timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

test('check: allow exits 0 and prints upstream headers; denials exit 1 with the problem', async (t) => {
  const { address } = await startTestApp(t, {});
  const ok = await run([
    'check',
    'https://api.example.com/v1/orders',
    '--principal',
    'spiffe://partners.example.com/acme',
    '--server',
    address,
  ]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /^ALLOW {2}allowed {2}route=orders partner=acme/);
  assert.match(ok.stdout, /x-portcullis-partner: acme/);

  const suspended = await run([
    'check',
    'https://api.example.com/v1/orders',
    '--principal',
    'spiffe://partners.example.com/initech',
    '--server',
    address,
  ]);
  assert.equal(suspended.code, 1);
  assert.match(suspended.stdout, /^DENY {3}403 partner_suspended/);
  assert.match(suspended.stdout, /"code": "partner_suspended"/);

  const posted = await run([
    'check',
    '/v1/documents/9',
    '-X',
    'PUT',
    '-H',
    'host: api.example.com',
    '--data',
    '{"a":1}',
    '--principal',
    'spiffe://partners.example.com/globex',
    '--server',
    address,
  ]);
  assert.equal(posted.code, 1);
  assert.match(posted.stdout, /partner_not_allowed/);

  const json = await run(['check', 'https://api.example.com/v1/status', '--json', '--server', address]);
  assert.equal(json.code, 0);
  assert.equal(JSON.parse(json.stdout).status.code, 0);
});

test('check: usage errors and an unreachable server exit 2', async () => {
  const noTarget = await run(['check']);
  assert.equal(noTarget.code, 2);
  assert.match(noTarget.stderr, /check needs a URL or a path/);
  const badFlag = await run(['check', '/x', '--bogus']);
  assert.equal(badFlag.code, 2);
  const down = await run([
    'check',
    'https://api.example.com/v1/orders',
    '--server',
    '127.0.0.1:1',
    '--timeout-ms',
    '300',
  ]);
  assert.equal(down.code, 2);
  assert.match(down.stderr, /^portcullis: /);
});

test('policy validate: ok exits 0 with a summary, problems exit 1 with file:line:col', async () => {
  const ok = await run(['policy', 'validate', 'examples/catalog.yaml']);
  assert.equal(ok.code, 0);
  assert.match(
    ok.stdout,
    /^ok: examples\/catalog.yaml: version sha256:[0-9a-f]{16} \(example-2026-11\), 3 routes, 3 partners\n$/,
  );
  const bad = await run(['policy', 'validate', 'test/fixtures/catalogs/handler-broken.yaml']);
  assert.equal(bad.code, 1);
  assert.equal(
    bad.stdout,
    'test/fixtures/catalogs/handler-broken.yaml:5:5: routes[0].on_error: must be one of "deny", "allow"\n' +
      '1 problem in test/fixtures/catalogs/handler-broken.yaml\n',
  );
  assert.equal((await run(['policy'])).code, 2);
});

test('help: every command documents itself; unknown commands exit 2', async () => {
  for (const topic of ['serve', 'check', 'policy']) {
    const help = await run(['help', topic]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, new RegExp(`^portcullis ${topic}`));
  }
  assert.match((await run(['serve', '--help'])).stdout, /PORTCULLIS_GRPC_ADDRESS/);
  assert.equal((await run(['frobnicate'])).code, 2);
});

test('serve: SERVING log line, then SIGTERM drains and exits 0', async () => {
  const child = spawn(
    process.execPath,
    [...CLI, 'serve', '--grpc-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0'],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const lines = createInterface({ input: child.stdout });
  let serving: Record<string, unknown> | undefined;
  for await (const line of lines) {
    const entry = JSON.parse(line);
    if (entry.msg === 'serving') {
      serving = entry;
      break;
    }
  }
  assert.ok(serving && typeof serving.grpc_port === 'number' && serving.grpc_port > 0);
  child.kill('SIGTERM');
  const [code] = await once(child, 'exit');
  assert.equal(code, 0);
});

test('serve: an invalid catalog or setting exits 1 or 2 with the reason', async () => {
  const bad = await run([
    'serve',
    '--config',
    'test/fixtures/catalogs/handler-broken.yaml',
    '--grpc-address',
    '127.0.0.1:0',
  ]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /handler-broken.yaml:5:5: routes\[0\].on_error/);
  const setting = await run(['serve', '--max-message-bytes', '12']);
  assert.equal(setting.code, 1);
  assert.match(
    setting.stderr,
    /maxMessageBytes \(PORTCULLIS_MAX_MESSAGE_BYTES\) must be an integer from 65536/,
  );
});
