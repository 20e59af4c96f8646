// The audit line never carries a secret: with `audit.headers: true`, only allow-listed headers keep
// their values; every other header (a route's own API key header included) is logged redacted.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import type { Decision } from '../../src/decision.js';
import {
  audit,
  createLogger,
  LOGGED_HEADERS,
  REDACTED,
  redactHeaders,
} from '../../src/observability/audit.js';
import type { Request } from '../../src/request.js';
import { LogCapture } from '../support/app.js';

const KEY = 'pk_live_3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c';

function request(headers: Record<string, string>): Request {
  return {
    requestId: 'r-1',
    method: 'GET',
    path: '/v1/orders',
    query: new Map(),
    host: 'api.example.com',
    scheme: 'https',
    headers: new Map(Object.entries(headers)),
    body: new Uint8Array(0),
    bodyTruncated: false,
    source: { address: '192.0.2.1', port: 1, principal: '', certificatePem: '' },
    sni: '',
    contextExtensions: new Map(),
    protocol: 'HTTP/2',
  };
}

const decision = {
  kind: 'deny',
  code: 'api_key_invalid',
  detail: '',
  headers: [],
  decisionId: 'd-1',
  requestId: 'r-1',
  route: 'orders',
  partner: '',
  policyVersion: 'v',
  reason: 'no such key',
} as unknown as Decision;

test("finding 6: a route's own API key header (x-partner-auth) never reaches the audit line", () => {
  const logs = new LogCapture();
  const req = request({
    ':path': '/v1/orders',
    'x-partner-auth': KEY,
    'x-tenant-token-ish': 'also-secret',
    'x-custom-id': 'some value',
    'content-type': 'application/json',
    'x-request-id': 'r-1',
  });
  audit(createLogger('info', logs), {
    decision,
    request: req,
    latencyMs: 1,
    policyName: 'p',
    includeHeaders: true,
  });
  const line = logs.decisions()[0];
  assert.ok(line);
  assert.doesNotMatch(JSON.stringify(line), new RegExp(KEY));
  const headers = line.headers as Record<string, string>;
  assert.equal(headers['x-partner-auth'], REDACTED);
  assert.equal(headers['x-custom-id'], REDACTED, 'not on the allow list: value not logged');
  assert.equal(headers['content-type'], 'application/json');
  assert.equal(headers['x-request-id'], 'r-1');
  assert.equal(headers[':path'], undefined);
});

test('redactHeaders: allow-listed headers keep their values, credentials never do', () => {
  const out = redactHeaders(
    new Map([
      ['authorization', 'Bearer abc'],
      ['cookie', 'sid=1'],
      ['user-agent', 'sdk/1'],
      ['accept', 'application/json'],
      ['referer', 'https://x.example/?access_token=abc'],
      ['x-forwarded-client-cert', 'Hash=…'],
    ]),
  );
  assert.deepEqual(out, {
    authorization: REDACTED,
    cookie: REDACTED,
    'user-agent': 'sdk/1',
    accept: 'application/json',
    referer: REDACTED,
    'x-forwarded-client-cert': REDACTED,
  });
});

test('docs/configuration.md lists every header the audit line logs in clear', () => {
  const docs = readFileSync('docs/configuration.md', 'utf8');
  const row = docs.split('\n').find((l) => l.startsWith('| `settings.audit.headers` |')) ?? '';
  for (const name of LOGGED_HEADERS) assert.ok(row.includes(`\`${name}\``), name);
});
