// Issue 12: nothing slips past the scanner. A real server, a real clamd (EICAR-only test database) and
// Envoy-shaped requests built from Envoy's official protos.
//   finding 4: a multipart part without a file name is type-checked and scanned like a file part;
//   finding 5: an urlencoded body is scanned decoded, not only as the %-encoded text;
//   suspicion d: a stalled clamd gets the scan's declared answer (scan.on_error), whatever the timing,
//   never the route's on_error through the pipeline's own deadline timer.
import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import { startTestApp } from '../support/app.js';
import { EICAR, startClamd } from '../support/clamd.js';
import { envoyRequest, type RequestSpec } from '../support/envoy-request.js';
import {
  checkWithEnvoyTimeout,
  OfficialCheckClient,
  type OfficialCheckResponse,
} from '../support/official-client.js';

const CATALOG = `
partners:
  - id: acme
    name: Acme
    identities: { principals: ["spiffe://p/acme"] }
routes:
  - name: uploads
    match: { path: { prefix: /v1/uploads } }
    content:
      types: [multipart/form-data, application/x-www-form-urlencoded]
      multipart: { types: [application/pdf] }
      scan: {}
  - name: lenient
    match: { path: { prefix: /v1/lenient } }
    # The route lets internal failures through; its scan does not (scan.on_error: deny, the default).
    on_error: allow
    content:
      scan: {}
`;

const PDF = Buffer.from(`%PDF-1.7\n${'A'.repeat(300)}\n%%EOF\n`);
const code = (res: OfficialCheckResponse) => res.dynamic_metadata?.fields.code?.stringValue;

async function setup(t: TestContext) {
  const clamd = await startClamd(t);
  const server = await startTestApp(t, {
    catalogText: CATALOG,
    clamd: { address: `${clamd.host}:${clamd.port}`, maxBytes: clamd.streamMaxBytes },
  });
  const client = new OfficialCheckClient(server.address);
  t.after(() => client.close());
  const check = (spec: RequestSpec, timeoutMs?: number) =>
    client.check(envoyRequest({ principal: 'spiffe://p/acme', method: 'POST', ...spec }), timeoutMs);
  /** Envoy's deadline is envoyTimeoutMs; the test waits longer, to see what the server decided. */
  const checkPatiently = (spec: RequestSpec, envoyTimeoutMs: number) =>
    checkWithEnvoyTimeout(
      server.address,
      envoyRequest({ principal: 'spiffe://p/acme', method: 'POST', ...spec }),
      envoyTimeoutMs,
    );
  return { ...server, clamd, check, checkPatiently };
}

/** A multipart body; each part is [headers, content]. */
function multipart(parts: readonly (readonly [string, Buffer])[]): RequestSpec {
  const boundary = 'scan-coverage-boundary';
  const body = Buffer.concat([
    ...parts.flatMap(([headers, content]) => [
      Buffer.from(`--${boundary}\r\n${headers}\r\n\r\n`),
      content,
      Buffer.from('\r\n'),
    ]),
    Buffer.from(`--${boundary}--\r\n`),
  ]);
  return {
    path: '/v1/uploads',
    body,
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
  };
}

const pdfPart = [
  'content-disposition: form-data; name="file"; filename="a.pdf"\r\ncontent-type: application/pdf',
  PDF,
] as const;

test('finding 4: multipart parts without a file name are type-checked and scanned', async (t) => {
  const { check } = await setup(t);
  // The finding: EICAR declared as an executable, in a part without a file name.
  const typed = await check(
    multipart([
      pdfPart,
      ['content-disposition: form-data; name="payload"\r\ncontent-type: application/x-msdownload', EICAR],
    ]),
  );
  assert.equal(code(typed), 'media_type_not_allowed');
  // Without a Content-Type the part is a text field: not a listed file type, but scanned all the same.
  const field = await check(multipart([pdfPart, ['content-disposition: form-data; name="note"', EICAR]]));
  assert.equal(code(field), 'malware_detected');
  // A field that declares a charset cannot hide its bytes from the scan by being decoded.
  const utf16 = await check(
    multipart([
      pdfPart,
      ['content-disposition: form-data; name="note"\r\ncontent-type: text/plain; charset=utf-16le', EICAR],
    ]),
  );
  assert.equal(code(utf16), 'malware_detected');
  // Ordinary text fields next to a clean file still pass.
  const clean = await check(
    multipart([pdfPart, ['content-disposition: form-data; name="title"', Buffer.from('Quarterly report')]]),
  );
  assert.equal(code(clean), 'allowed');
});

test('finding 5: an urlencoded body is scanned decoded', async (t) => {
  const { check } = await setup(t);
  const encoded = [...EICAR].map((b) => `%${b.toString(16).padStart(2, '0').toUpperCase()}`).join('');
  const form = (text: string): RequestSpec => ({
    path: '/v1/uploads',
    body: Buffer.from(text),
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
  });
  assert.equal(code(await check(form(`name=report&data=${encoded}`))), 'malware_detected');
  // In the field name, and with + for the spaces of the decoded text: decoded all the same.
  assert.equal(code(await check(form(`${encoded}=1`))), 'malware_detected');
  assert.equal(code(await check(form('name=quarterly+report&year=2026'))), 'allowed');
});

test('suspicion d: a stalled clamd gets scan_unavailable (scan.on_error: deny) even on an on_error: allow route', async (t) => {
  const { check, checkPatiently, clamd, logs } = await setup(t);
  assert.equal(code(await check({ path: '/v1/lenient', method: 'GET' })), 'allowed');
  clamd.stop(); // SIGSTOP: connections are accepted, nothing answers
  t.after(() => clamd.cont());
  // Envoy's deadline: 250 ms. Three bodies (not cached), one after the other.
  for (let i = 0; i < 3; i++) {
    const res = await checkPatiently(
      {
        path: '/v1/lenient',
        body: Buffer.from(`%PDF-1.7\n${'C'.repeat(100 + i)}\n%%EOF\n`),
        headers: { 'content-type': 'application/pdf' },
      },
      250,
    );
    const logged = JSON.stringify(logs.decisions().at(-1));
    assert.equal(code(res), 'scan_unavailable', `attempt ${i}: an unscanned body must not pass: ${logged}`);
  }
});
