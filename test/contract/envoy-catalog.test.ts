// envoy.yaml and the example catalog must agree: every route Envoy names exists in the catalog,
// and Envoy's body limit fits under portcullis' message limit.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parse } from 'yaml';
import { SERVE_DEFAULTS } from '../../src/config.js';
import { loadCatalogFile } from '../../src/policy/load.js';

const envoy = readFileSync('envoy/envoy.yaml', 'utf8');
const doc = parse(envoy) as Record<string, unknown>;

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

test('every context extension route in envoy.yaml names a route of examples/catalog.yaml', async () => {
  const catalog = await loadCatalogFile('examples/catalog.yaml');
  const named = collect(doc, 'context_extensions').map((ext) => (ext as { route?: string }).route);
  assert.ok(named.length >= 2);
  for (const name of named) assert.ok(name && catalog.routesByName.has(name), `catalog has route ${name}`);
});

test("Envoy's max_request_bytes plus headers fits under portcullis' default max message size", () => {
  const [buffer] = collect(doc, 'with_request_body') as { max_request_bytes: number }[];
  assert.ok(buffer);
  const headroom = 128 * 1024; // headers (Envoy's default limit is 60 KiB) and the CheckRequest envelope
  assert.ok(buffer.max_request_bytes + headroom <= SERVE_DEFAULTS.maxMessageBytes);
});

test("the ext_authz filter's cluster points at portcullis' default gRPC port", () => {
  const [grpcService] = collect(doc, 'grpc_service') as { envoy_grpc: { cluster_name: string } }[];
  const clusters = (doc.static_resources as { clusters: { name: string }[] }).clusters;
  const cluster = clusters.find((c) => c.name === grpcService?.envoy_grpc.cluster_name);
  const ports = collect(cluster, 'port_value');
  assert.deepEqual(ports, [Number(SERVE_DEFAULTS.grpcAddress.split(':').at(-1))]);
});
