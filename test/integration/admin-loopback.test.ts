// The admin port's partner quota endpoint is for operators on the pod only. A service mesh sidecar
// (Istio) hands every inbound mesh connection to the application from 127.0.0.6: such a caller is
// not an operator on the pod and must not be taken for one.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { test } from 'node:test';
import { startTestApp } from '../support/app.js';

const CATALOG = `
partners:
  - id: acme
    name: Acme
    identities: { principals: ["spiffe://p/acme"] }
routes:
  - name: orders
    match: { path: { prefix: /v1/orders } }
`;

function get(url: string, localAddress: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { localAddress }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

test('suspicion a: a mesh caller relayed by a sidecar from 127.0.0.6 is refused the partner quota endpoint; 127.0.0.1 is served', async (t) => {
  const { adminUrl } = await startTestApp(t, { catalogText: CATALOG });
  assert.equal(await get(`${adminUrl}/v1/partners/acme/quota`, '127.0.0.6'), 403);
  assert.equal(await get(`${adminUrl}/v1/partners/acme/quota`, '127.0.0.1'), 200);
  // Probes and Prometheus are not affected.
  assert.equal(await get(`${adminUrl}/healthz`, '127.0.0.6'), 200);
});
