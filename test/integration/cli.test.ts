// The `portcullis` command as a user runs it: a real process, real flags, real exit codes.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { hashApiKey } from '../../src/identity/apikeys.js';
import { startTestApp } from '../support/app.js';
import { CLI, runCli as run } from '../support/cli.js';

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

  const minted = await run(['token', 'mint', '--client-id', 'globex-erp', '--scope', 'documents']);
  assert.equal(minted.code, 0, minted.stderr);
  assert.match(minted.stdout, /^[\w-]+\.[\w-]+\.[\w-]+\n$/);
  const posted = await run([
    'check',
    '/v1/documents/9',
    '-X',
    'PUT',
    '-H',
    'host: api.example.com',
    '-H',
    `authorization: Bearer ${minted.stdout.trim()}`,
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
  for (const topic of ['serve', 'check', 'policy', 'key', 'token', 'revoke']) {
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

test('key create: prints the key once and a catalog entry holding only its HMAC under the pepper', async () => {
  const out = await run([
    'key',
    'create',
    '--partner',
    'acme',
    '--id',
    'acme-k1',
    '--expires',
    '2030-01-01T00:00:00Z',
    '--pepper-file',
    'examples/keys/api-key-pepper.txt',
  ]);
  assert.equal(out.code, 0, out.stderr);
  const key = /\n {2}(pcl_[A-Za-z0-9_-]{43})\n/.exec(out.stdout)?.[1];
  const hash = /hash: hmac-sha256:([A-Za-z0-9_-]{43})/.exec(out.stdout)?.[1];
  assert.ok(key && hash, out.stdout);
  const pepper = Buffer.from(readFileSync('examples/keys/api-key-pepper.txt', 'utf8').trim());
  assert.equal(hashApiKey(key, pepper), hash);
  assert.match(
    out.stdout,
    /- id: acme-k1\n {4}hash: hmac-sha256:\S+\n {4}expires_at: 2030-01-01T00:00:00Z\n$/,
  );
  assert.equal(out.stdout.split(key).length, 2, 'the key is printed exactly once');

  const noPepper = await run(['key', 'create', '--partner', 'acme']);
  assert.equal(noPepper.code, 2);
  assert.match(noPepper.stderr, /no pepper: pass --pepper-file or set PORTCULLIS_API_KEY_PEPPER/);
});

test('revoke: usage errors exit 2 with the reason', async () => {
  assert.match((await run(['revoke', 'jti', 'x'])).stderr, /no Redis: pass --redis-url/);
  const badKind = await run(['revoke', 'token', 'x', '--redis-url', 'redis://127.0.0.1:1']);
  assert.equal(badKind.code, 2);
  assert.match(badKind.stderr, /KIND must be one of jti, application, api_key/);
});
