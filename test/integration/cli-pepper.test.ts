// portcullis serve and policy validate without a pepper: one clear line, a warning (real processes).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cleanEnv, runCli as run } from '../support/cli.js';

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
