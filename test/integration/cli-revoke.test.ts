// portcullis revoke and revoke list against a real redis-server: ids checked against the catalog.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCli as run } from '../support/cli.js';
import { startRedis } from '../support/redis.js';

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
