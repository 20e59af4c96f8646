// OpenTelemetry: a real OTLP/HTTP receiver on loopback gets a span per Check, a child per stage,
// in the trace Envoy started (traceparent), with the decision's attributes.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { test } from 'node:test';
import { startTestApp } from '../support/app.js';
import { envoyRequest } from '../support/envoy-request.js';
import { OfficialCheckClient } from '../support/official-client.js';

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  attributes: { key: string; value: { stringValue?: string } }[];
  status?: { code?: number };
}
interface OtlpBody {
  resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[];
}

const TRACE_ID = '0af7651916cd43dd8448eb211c80319c';
const PARENT_ID = 'b7ad6b7169203331';

test('a span per Check and per stage, in the trace of the traceparent header', async (t) => {
  const spans: OtlpSpan[] = [];
  const receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => {
      body += chunk;
    });
    req.on('end', () => {
      assert.equal(req.url, '/v1/traces');
      const parsed = JSON.parse(body) as OtlpBody;
      for (const r of parsed.resourceSpans) for (const s of r.scopeSpans) spans.push(...s.spans);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  t.after(() => receiver.close());
  const port = (receiver.address() as { port: number }).port;

  const { app, address } = await startTestApp(t, { otlpEndpoint: `http://127.0.0.1:${port}/v1/traces` });
  const client = new OfficialCheckClient(address);
  const res = await client.check(
    envoyRequest({
      principal: 'spiffe://partners.example.com/acme',
      headers: { traceparent: `00-${TRACE_ID}-${PARENT_ID}-01` },
    }),
  );
  client.close();
  assert.equal(res.http_response, 'ok_response');
  await app.stop(); // flushes the batch processor

  const check = spans.find((s) => s.name === 'portcullis.check');
  assert.ok(check, `got spans: ${spans.map((s) => s.name).join(', ')}`);
  assert.equal(check.traceId, TRACE_ID);
  assert.equal(check.parentSpanId, PARENT_ID);
  const attr = (key: string) => check.attributes.find((a) => a.key === key)?.value.stringValue;
  assert.equal(attr('portcullis.code'), 'allowed');
  assert.equal(attr('portcullis.partner'), 'acme');
  assert.equal(attr('portcullis.route'), 'orders');
  for (const stage of ['route', 'identify', 'authorize', 'quota']) {
    const child = spans.find((s) => s.name === `portcullis.${stage}`);
    assert.ok(child, `a span for ${stage}`);
    assert.equal(child.traceId, TRACE_ID);
    assert.equal(child.parentSpanId, check.spanId);
  }
});
