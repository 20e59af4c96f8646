// What partners read: every denial's body has a next step, every 503 has Retry-After, and the
// partner-facing page (docs/partner-errors.md) is generated from the registry.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import type { Deny } from '../../src/decision.js';
import { toCheckResponse } from '../../src/envoy/respond.js';
import { DENY_CODES, type DenyCode } from '../../src/errors.js';
import { NEXT_STEPS, partnerErrorsPage, unavailableCodes } from '../../src/partner-errors.js';

const BASE = 'https://developer.example.com/partner-errors';
const CODES = Object.keys(DENY_CODES) as DenyCode[];

function denial(code: DenyCode, headers: Deny['headers'] = []): Deny {
  return {
    kind: 'deny',
    code,
    decisionId: 'd-1',
    requestId: 'r-1',
    route: 'orders',
    partner: 'acme',
    policyVersion: 'sha256:0',
    reason: 'internal only',
    detail: DENY_CODES[code].detail,
    headers,
  };
}

function render(deny: Deny) {
  const res = toCheckResponse(deny, BASE);
  const headers = Object.fromEntries(
    (res.denied_response?.headers ?? []).map((h) => [h.header?.key, h.header?.value]),
  );
  return { headers, body: JSON.parse(res.denied_response?.body ?? '{}') as Record<string, unknown> };
}

test('every denial code renders a body with a next step for the partner', () => {
  for (const code of CODES) {
    const { body } = render(denial(code));
    const next = body.next_step;
    assert.equal(typeof next, 'string', `${code}: next_step`);
    assert.ok((next as string).length >= 20 && (next as string).endsWith('.'), `${code}: "${next}"`);
    assert.equal(next, NEXT_STEPS[code], code);
    assert.ok(
      !/\$\{|undefined|internal only/.test(JSON.stringify(body)),
      `${code}: nothing unexpanded or internal`,
    );
    assert.equal(body.type, `${BASE}#${code}`);
    assert.equal(body.request_id, 'r-1');
    assert.equal(body.decision_id, 'd-1');
  }
});

test('the codes that used to say nothing actionable now tell the partner whom to ask', () => {
  for (const code of ['partner_not_allowed', 'api_key_revoked', 'partner_denied'] as const) {
    assert.match(NEXT_STEPS[code] ?? '', /partner manager/, code);
  }
});

test('every 503 has Retry-After, and the body repeats it as retry_after', () => {
  const codes = unavailableCodes();
  assert.ok(codes.includes('quota_unavailable') && codes.includes('scan_unavailable'), codes.join());
  for (const code of codes) {
    const { headers, body } = render(denial(code));
    assert.match(headers['retry-after'] ?? '', /^[1-9]\d*$/, `${code}: Retry-After`);
    assert.equal(body.retry_after, Number(headers['retry-after']), code);
  }
});

test("a 503 keeps the stage's own Retry-After; other statuses get none invented", () => {
  const own = render(denial('quota_unavailable', [{ name: 'retry-after', value: '7' }]));
  assert.equal(own.headers['retry-after'], '7');
  assert.equal(own.body.retry_after, 7);
  for (const code of CODES.filter((c) => DENY_CODES[c].http !== 503)) {
    const { headers, body } = render(denial(code));
    assert.equal(headers['retry-after'], undefined, code);
    assert.equal(body.retry_after, undefined, code);
  }
});

test('docs/partner-errors.md is generated from the registry (node --import tsx scripts/partner-errors.ts)', () => {
  assert.equal(readFileSync('docs/partner-errors.md', 'utf8'), partnerErrorsPage());
  for (const code of CODES) assert.ok(partnerErrorsPage().includes(`\n## ${code}\n`), code);
});
