// The `portcullis` command as a user runs it: a real process, real flags, real exit codes.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { hashApiKey } from '../../src/identity/apikeys.js';
import { startTestApp } from '../support/app.js';
import { startRedis } from '../support/redis.js';

const CLI = ['--import', 'tsx', 'src/cli/main.ts'];

/** The environment without any pepper or catalog setting: each test says what it sets. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  for (const name of ['PORTCULLIS_API_KEY_PEPPER', 'PORTCULLIS_API_KEY_PEPPER_FILE', 'PORTCULLIS_CONFIG']) {
    if (!(name in extra)) delete env[name];
  }
  return env;
}

function run(
  args: string[],
  env: NodeJS.ProcessEnv = cleanEnv(),
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [...CLI, ...args], { timeout: 20_000, env }, (err, stdout, stderr) => {
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

test('serve: a catalog with API keys and no pepper exits 1 with one line naming the flag and the variables', async () => {
  // The example catalog, named by --config: the pepper is read as for any other path.
  const out = await run(['serve', '--config', 'examples/catalog.yaml', '--grpc-address', '127.0.0.1:0']);
  assert.equal(out.code, 1);
  assert.equal(
    out.stderr,
    'portcullis: examples/catalog.yaml has 1 API key but no pepper is configured: pass ' +
      '--api-key-pepper-file FILE, or set PORTCULLIS_API_KEY_PEPPER_FILE (a file) or PORTCULLIS_API_KEY_PEPPER (the value)\n',
  );
  assert.doesNotMatch(out.stdout, /\bat .*\(.*:\d+:\d+\)|stack/, 'no stack trace in the log either');
  const missing = await run([
    'serve',
    '--config',
    'examples/catalog.yaml',
    '--api-key-pepper-file',
    '/nonexistent/pepper',
    '--grpc-address',
    '127.0.0.1:0',
  ]);
  assert.equal(missing.code, 1);
  assert.equal(
    missing.stderr,
    'portcullis: cannot read the API key pepper file /nonexistent/pepper ' +
      '(--api-key-pepper-file, PORTCULLIS_API_KEY_PEPPER_FILE): no such file\n',
  );
});

test('policy validate: warns when the catalog has API keys and no pepper is configured', async () => {
  const bare = await run(['policy', 'validate', 'examples/catalog.yaml']);
  assert.equal(bare.code, 0);
  assert.match(
    bare.stderr,
    /^warning: examples\/catalog\.yaml has 1 API key but no pepper is configured: pass --api-key-pepper-file FILE/,
  );
  const flag = await run([
    'policy',
    'validate',
    'examples/catalog.yaml',
    '--api-key-pepper-file',
    'examples/keys/api-key-pepper.txt',
  ]);
  assert.equal(flag.code, 0);
  assert.equal(flag.stderr, '');
  const env = await run(
    ['policy', 'validate', 'examples/catalog.yaml'],
    cleanEnv({ PORTCULLIS_API_KEY_PEPPER_FILE: 'examples/keys/api-key-pepper.txt' }),
  );
  assert.equal(env.stderr, '');
});

test('revoke: an unknown revocation id warns and writes nothing; --force writes it; revoke list shows ttl and time', async (t) => {
  const redis = await startRedis(t);
  const url = ['--redis-url', redis.url];
  const typo = await run([
    'revoke',
    'api_key',
    'globex-demo-kye',
    '--config',
    'examples/catalog.yaml',
    ...url,
  ]);
  assert.equal(typo.code, 1);
  assert.equal(
    typo.stderr,
    'portcullis: warning: api_key "globex-demo-kye" is not in examples/catalog.yaml (did you mean "globex-demo-key"?): ' +
      'nothing revoked. Check the id, or pass --force to revoke it anyway.\n',
  );
  assert.equal(
    (await run(['revoke', 'list', ...url])).stdout,
    "nothing is revoked in Redis (the catalog's revocations: lists apply too)\n",
  );

  const known = await run([
    'revoke',
    'api_key',
    'globex-demo-key',
    '--ttl',
    '3600',
    '--config',
    'examples/catalog.yaml',
    ...url,
  ]);
  assert.equal(known.code, 0, known.stderr);
  assert.match(
    known.stdout,
    /^revoked api_key globex-demo-key \(partner globex\), for 1h \(until \d{4}-\d\d-\d\dT/,
  );
  const forced = await run([
    'revoke',
    'application',
    'next-app',
    '--force',
    '--config',
    'examples/catalog.yaml',
    ...url,
  ]);
  assert.equal(forced.code, 0);
  assert.match(
    forced.stderr,
    /warning: application "next-app" is not in examples\/catalog\.yaml; revoking anyway \(--force\)/,
  );
  // Without a catalog, an id cannot be checked: a note, and the revocation.
  const unchecked = await run(['revoke', 'jti', 'token-1', ...url]);
  assert.equal(unchecked.code, 0);
  assert.match(unchecked.stderr, /note: jti "token-1" not checked against a catalog \(pass --config FILE\)/);

  const list = await run(['revoke', 'list', '--config', 'examples/catalog.yaml', ...url]);
  assert.equal(list.code, 0, list.stderr);
  const lines = list.stdout.trimEnd().split('\n');
  assert.match(lines[0] ?? '', /^KIND +ID +PARTNER +REVOKED AT +TTL +EXPIRES AT$/);
  assert.match(lines[1] ?? '', /^jti +token-1 +- +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ +permanent +-$/);
  assert.match(lines[2] ?? '', /^application +next-app +- +\S+Z +permanent +-$/);
  assert.match(lines[3] ?? '', /^api_key +globex-demo-key +globex +\S+Z +(1h|59m \d+s) +\S+Z$/);
  assert.equal(lines[4], '3 revoked');
  const json = JSON.parse((await run(['revoke', 'list', '--json', ...url])).stdout) as {
    id: string;
    ttl_seconds: number | null;
  }[];
  assert.deepEqual(
    json.map((e) => e.id),
    ['token-1', 'next-app', 'globex-demo-key'],
  );
  const ttl = json[2]?.ttl_seconds ?? 0;
  assert.ok(ttl > 3000 && ttl <= 3600, `ttl ${ttl}`);

  assert.equal((await run(['unrevoke', 'api_key', 'globex-demo-key', ...url])).code, 0);
  assert.doesNotMatch((await run(['revoke', 'list', ...url])).stdout, /globex-demo-key/);
});
