// Issue 12, suspicion c: a body limit above what Envoy buffers cannot work. Envoy sends at most
// with_request_body.max_request_bytes of the body (allow_partial_message: the rest is cut, marked
// x-envoy-auth-partial-body): a larger max_body_bytes only ever sees truncated bodies, and a route
// that skipped truncated bodies would let them through unscanned.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parse } from 'yaml';
import { CatalogError, loadCatalogFile, parseCatalog } from '../../src/policy/load.js';

function collect(node: unknown, key: string, out: unknown[] = []): unknown[] {
  if (Array.isArray(node)) for (const item of node) collect(item, key, out);
  else if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if (k === key) out.push(v);
      collect(v, key, out);
    }
  }
  return out;
}

test('suspicion c: every body limit of the example catalog fits in what envoy.yaml buffers', async () => {
  const envoy = parse(readFileSync('envoy/envoy.yaml', 'utf8')) as unknown;
  const [buffer] = collect(envoy, 'with_request_body') as { max_request_bytes: number }[];
  assert.ok(buffer);
  const catalog = await loadCatalogFile('examples/catalog.yaml');
  for (const route of catalog.routes) {
    if (!route.content) continue;
    const limits = [
      ['(route)', route.content.policy.maxBodyBytes],
      ...[...route.content.byPartner].map(([partner, p]) => [partner, p.maxBodyBytes] as const),
    ] as const;
    for (const [who, bytes] of limits) {
      assert.ok(
        bytes <= buffer.max_request_bytes,
        `route ${route.name} ${who}: max_body_bytes ${bytes} > Envoy's max_request_bytes ${buffer.max_request_bytes}`,
      );
    }
  }
});

test('suspicion c: a route that scans cannot skip truncated bodies (on_truncated: skip is refused)', () => {
  const text = [
    'routes:',
    '  - name: documents',
    '    content:',
    '      on_truncated: skip',
    '      scan: {}',
    '      partners:',
    '        acme: { scan: { on_error: allow } }',
    'partners:',
    '  - { id: acme, name: Acme }',
  ].join('\n');
  assert.throws(
    () => parseCatalog(text, 'catalog.yaml'),
    (err: unknown) => {
      assert.ok(err instanceof CatalogError, String(err));
      assert.deepEqual(
        err.issues.map((i) => `${i.line} ${i.path}`),
        ['4 routes[0].content.on_truncated', '7 routes[0].content.partners.acme.on_truncated'],
      );
      assert.match(err.issues[0]?.message ?? '', /a truncated body cannot be scanned/);
      return true;
    },
  );
  // Without a scan, skipping the checks that need the whole body stays a route's choice.
  parseCatalog(
    text.replace('      scan: {}\n', '').replace(/ {6}partners:[\s\S]*?\n(?=partners)/, ''),
    'catalog.yaml',
  );
});
