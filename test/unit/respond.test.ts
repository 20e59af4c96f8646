// Edge out: Decision → CheckResponse, checked by decoding the encoded bytes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Allow, Deny } from '../../src/decision.js';
import { checkCodec } from '../../src/envoy/codec.js';
import { encodeCheckResponse } from '../../src/envoy/encode-response.js';
import { InvalidHeaderError, problemBody, toCheckResponse } from '../../src/envoy/respond.js';
import { NEXT_STEPS } from '../../src/partner-errors.js';

const BASE = 'https://docs.example.com/errors';
const common = {
  decisionId: 'd-1',
  requestId: 'r-1',
  route: 'orders',
  partner: 'acme',
  policyVersion: 'sha256:0123456789abcdef',
  reason: 'internal only',
};
const allow: Allow = {
  ...common,
  kind: 'allow',
  code: 'allowed',
  upstreamHeaders: [{ name: 'x-portcullis-partner', value: 'acme' }],
  removeHeaders: ['x-debug'],
  removeQueryParams: [],
  responseHeaders: [{ name: 'x-gateway', value: 'p' }],
};
const deny: Deny = {
  ...common,
  kind: 'deny',
  code: 'partner_denied',
  detail: 'No.',
  headers: [{ name: 'allow', value: 'GET' }],
};
const roundTrip = (d: Allow | Deny) => {
  const codec = checkCodec();
  return codec.decodeResponse(codec.encodeResponse(toCheckResponse(d, BASE)));
};

test('allow: OK status, overwrite semantics, removals, response headers, metadata', () => {
  const res = roundTrip(allow);
  assert.equal(res.status.code, 0);
  assert.equal(res.denied_response, null);
  assert.deepEqual(
    res.ok_response?.headers.map((h) => [h.header.key, h.header.value, h.append.value]),
    [['x-portcullis-partner', 'acme', false]],
  );
  assert.deepEqual(res.ok_response?.headers_to_remove, ['x-debug']);
  assert.equal(res.ok_response?.response_headers_to_add[0]?.header.key, 'x-gateway');
  assert.equal(res.dynamic_metadata.fields.policy_version?.stringValue, 'sha256:0123456789abcdef');
  assert.equal(res.dynamic_metadata.fields.code?.stringValue, 'allowed');
});

test('deny: registry status, problem+json first, the internal reason never sent', () => {
  const res = roundTrip(deny);
  assert.equal(res.status.code, 7);
  assert.equal(res.denied_response?.status.code, 403);
  assert.deepEqual(
    res.denied_response?.headers.map((h) => h.header.key),
    ['content-type', 'allow'],
  );
  assert.deepEqual(JSON.parse(res.denied_response?.body ?? ''), {
    type: `${BASE}#partner_denied`,
    title: 'Partner denied',
    status: 403,
    code: 'partner_denied',
    detail: 'No.',
    next_step: NEXT_STEPS.partner_denied,
    request_id: 'r-1',
    decision_id: deny.decisionId,
  });
  assert.ok(!JSON.stringify(res).includes('internal only'));
});

test('problem body escapes what it carries', () => {
  const body = problemBody({ ...deny, detail: '"quoted" </script>\n' }, BASE);
  assert.equal(JSON.parse(body).detail, '"quoted" </script>\n');
});

const badHeaders: [string, { name: string; value: string }][] = [
  ['CR LF in a value', { name: 'x-a', value: 'a\r\nb' }],
  ['NUL in a value', { name: 'x-a', value: 'a\u0000' }],
  ['space in a name', { name: 'x a', value: 'v' }],
  ['colon in a name', { name: 'x:a', value: 'v' }],
  ['empty name', { name: '', value: 'v' }],
  ['DEL in a value', { name: 'x-a', value: 'a\u007f' }],
  ['ESC in a value', { name: 'x-a', value: '\u001b[31m' }],
  ['non-ASCII name', { name: 'x-é', value: 'v' }],
  ['name over 16 KiB', { name: 'x'.repeat(16385), value: 'v' }],
  ['value over 16 KiB', { name: 'x-a', value: 'a'.repeat(16385) }],
  ['value over 16 KiB of UTF-8 in fewer characters', { name: 'x-a', value: 'é'.repeat(8193) }],
];
/** Every place a header goes, in both encoders (server.ts turns the error into on_error). */
const placements: [string, (h: { name: string; value: string }) => Allow | Deny][] = [
  ['upstream', (h) => ({ ...allow, upstreamHeaders: [...allow.upstreamHeaders, h] })],
  ['response', (h) => ({ ...allow, responseHeaders: [h] })],
  ['deny', (h) => ({ ...deny, headers: [h] })],
  ['503 deny', (h) => ({ ...deny, code: 'quota_unavailable', headers: [h] })],
];
for (const [name, header] of badHeaders) {
  test(`refuses to send a header: ${name}`, () => {
    for (const [where, decision] of placements) {
      const expected = (err: unknown): boolean => {
        assert.ok(err instanceof InvalidHeaderError, where);
        assert.match(err.message, /^refusing to send header /);
        return true;
      };
      assert.throws(() => toCheckResponse(decision(header), BASE), expected);
      assert.throws(() => encodeCheckResponse(decision(header), BASE), expected);
    }
  });
}

test('the limits are inclusive: 16 KiB names and values, a TAB, any printable unicode', () => {
  const fine = [
    { name: 'x'.repeat(16384), value: 'v' },
    { name: 'x-a', value: 'a'.repeat(16384) },
    { name: 'x-a', value: 'é'.repeat(8192) },
    { name: 'x-a', value: '\tvalue 😀' },
    { name: "!#$%&'*+-.^_`|~09AZaz", value: '' },
  ];
  for (const header of fine) {
    for (const [, decision] of placements) {
      const bytes = encodeCheckResponse(decision(header), BASE);
      assert.ok(bytes.length > header.name.length);
      assert.deepEqual(
        bytes,
        Buffer.from(checkCodec().encodeResponse(toCheckResponse(decision(header), BASE))),
      );
    }
  }
});

test('the first invalid header is the one named, as before', () => {
  const decision: Allow = {
    ...allow,
    upstreamHeaders: [{ name: 'x-first', value: 'a\nb' }],
    responseHeaders: [{ name: 'x second', value: 'v' }],
  };
  assert.throws(
    () => encodeCheckResponse(decision, BASE),
    /refusing to send header "x-first": value contains/,
  );
  assert.throws(() => toCheckResponse(decision, BASE), /refusing to send header "x-first": value contains/);
});
