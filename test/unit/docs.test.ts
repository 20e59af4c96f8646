// The docs show real output: keep the example catalog's version line true where it is quoted.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { loadCatalogFile } from '../../src/policy/load.js';

test('README and the configuration reference quote the example catalog as it is', async () => {
  const catalog = await loadCatalogFile('examples/catalog.yaml');
  const line = `ok: examples/catalog.yaml: version ${catalog.version} (${catalog.versionName}), ${catalog.routes.length} routes, ${catalog.partners.size} partners`;
  for (const file of ['README.md', 'docs/configuration.md']) {
    assert.ok(readFileSync(file, 'utf8').includes(line), `${file} shows: ${line}`);
  }
});

test('README shows the two commands', () => {
  const readme = readFileSync('README.md', 'utf8');
  assert.match(readme, /^make run +#/m);
  assert.match(readme, /^make test +#/m);
});
