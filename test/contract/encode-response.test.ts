// Contract: the hand-written CheckResponse encoder (src/envoy/encode-response.ts) says exactly what
// the reference says, toCheckResponse() encoded by protobufjs: for a table of decisions, both byte
// strings decode, with Envoy's official CheckResponse type, to the same message. They are also the
// same bytes, which localises any divergence to a field.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Allow, Decision, Deny, Header } from '../../src/decision.js';
import { checkCodec } from '../../src/envoy/codec.js';
import { encodeCheckResponse } from '../../src/envoy/encode-response.js';
import { toCheckResponse } from '../../src/envoy/respond.js';
import { DENY_CODES, type DenyCode } from '../../src/errors.js';
import { loadOfficialRoot } from './official-protos.js';

const BASE = 'https://docs.example.com/errors';
const official = loadOfficialRoot().lookupType('envoy.service.auth.v3.CheckResponse');
const ours = checkCodec();

/** The official decode as a plain object, every default spelled out so an absent field shows. */
function decodeOfficial(bytes: Uint8Array): Record<string, unknown> {
  const message = official.decode(bytes);
  return official.toObject(message, { defaults: true, arrays: true, objects: true, oneofs: true });
}

function reference(decision: Decision): Uint8Array {
  return ours.encodeResponse(toCheckResponse(decision, BASE));
}

const common = {
  decisionId: '6f1c2a8e-3b7d-4e0a-9c55-0d2f1e4b7a90',
  requestId: 'req-42',
  route: 'orders',
  partner: 'acme',
  policyVersion: 'sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
  reason: 'internal only',
};
const allow: Allow = {
  ...common,
  kind: 'allow',
  code: 'allowed',
  upstreamHeaders: [{ name: 'x-portcullis-decision-id', value: common.decisionId }],
  removeHeaders: ['x-portcullis-partner'],
  removeQueryParams: [],
  responseHeaders: [],
};
const deny = (code: DenyCode, headers: readonly Header[] = []): Deny => ({
  ...common,
  kind: 'deny',
  code,
  detail: DENY_CODES[code].detail,
  headers,
});
const numbered = (n: number, prefix: string): Header[] =>
  Array.from({ length: n }, (_, i) => ({ name: `${prefix}-${i}`, value: `value ${i}; q=${i * 7}` }));

/** Values around protobufjs' 40-character switch, our 64-character one and the varint boundaries. */
const LONG = [39, 40, 63, 64, 127, 128, 129, 16383, 16384].map((n) => 'v'.repeat(n));
const UNICODE = [
  'é',
  'naïve café — “quoted”',
  '東京都渋谷区',
  '😀 emoji 🚀 and ZWJ 👩‍👩‍👧',
  'é'.repeat(8192), // exactly 16 KiB of UTF-8
  '日本'.repeat(30), // 60 characters, 180 bytes: short in characters, long in bytes
  '\t tab is allowed',
  '',
];

const allowCases: [string, Allow][] = [
  ['allow, one header and one removal (allow-all)', allow],
  [
    'allow with empty lists',
    { ...allow, upstreamHeaders: [], removeHeaders: [], responseHeaders: [], removeQueryParams: [] },
  ],
  [
    'allow with many headers, removals, query removals and response headers',
    {
      ...allow,
      upstreamHeaders: numbered(40, 'x-up'),
      removeHeaders: Array.from({ length: 30 }, (_, i) => `x-remove-${i}`),
      removeQueryParams: ['access_token', 'api_key', 'sig', 'token'],
      responseHeaders: [
        { name: 'ratelimit-policy', value: '"per-minute";q=1000;w=60, "per-day";q=100000;w=86400' },
        { name: 'ratelimit', value: '"per-minute";r=999;t=60' },
        ...numbered(10, 'x-resp'),
      ],
    },
  ],
  [
    'allow in dry run',
    {
      ...allow,
      dryRun: 'quota_exceeded',
      upstreamHeaders: [...allow.upstreamHeaders, { name: 'x-portcullis-dry-run', value: 'quota_exceeded' }],
    },
  ],
  [
    'allow with unicode and long values',
    {
      ...allow,
      partner: 'partenaire-é',
      route: 'r'.repeat(200),
      upstreamHeaders: [...LONG, ...UNICODE].map((value, i) => ({ name: `x-v${i}`, value })),
      removeHeaders: ['x-ünicode-is-not-a-token-but-removal-is-a-name-list'],
      removeQueryParams: ['q-😀', 'p'.repeat(300)],
      responseHeaders: UNICODE.map((value, i) => ({ name: `x-r${i}`, value })),
    },
  ],
  [
    'allow under on_error: allow',
    {
      ...allow,
      code: 'allowed_on_error',
      failure: 'internal_error',
      upstreamHeaders: [...allow.upstreamHeaders, { name: 'x-portcullis-on-error', value: 'internal_error' }],
    },
  ],
  ['allow with empty metadata strings', { ...allow, partner: '', route: '', policyVersion: '' }],
];

const denyCases: [string, Deny][] = [
  ...(Object.keys(DENY_CODES) as DenyCode[]).map((code): [string, Deny] => [
    `deny ${code} (HTTP ${DENY_CODES[code].http})`,
    deny(code, [{ name: 'x-portcullis-decision-id', value: common.decisionId }]),
  ]),
  ['deny 503 with its own Retry-After', deny('quota_unavailable', [{ name: 'retry-after', value: '7' }])],
  [
    'deny 429 with RateLimit headers and a problem extension',
    {
      ...deny('quota_exceeded', [
        { name: 'retry-after', value: '30' },
        { name: 'ratelimit', value: '"per-minute";r=0;t=30' },
      ]),
      problem: { limits: [{ name: 'per-minute', remaining: 0 }] },
    },
  ],
  [
    'deny with a unicode detail and a body over 2 MiB (4-byte lengths)',
    {
      ...deny('schema_violation'),
      detail: 'Le champ « montant » est négatif 😀',
      problem: {
        errors: Array.from({ length: 30000 }, (_, i) => ({ path: `/items/${i}`, message: 'é'.repeat(30) })),
      },
    },
  ],
];

describe('hand-written CheckResponse encoder ≡ toCheckResponse() + protobufjs (official protos)', () => {
  for (const [name, decision] of [...allowCases, ...denyCases]) {
    it(name, () => {
      const mine = encodeCheckResponse(decision, BASE);
      const theirs = reference(decision);
      const decoded = decodeOfficial(mine);
      assert.deepEqual(decoded, decodeOfficial(theirs));
      // Not vacuous: the decode carries the decision (status and metadata at least).
      const meta = (decoded.dynamic_metadata as { fields: Record<string, { stringValue: string }> }).fields;
      assert.equal(meta.decision_id?.stringValue, decision.decisionId);
      assert.equal(meta.code?.stringValue, decision.code);
      assert.equal(decoded.http_response, decision.kind === 'allow' ? 'ok_response' : 'denied_response');
      assert.ok(Buffer.from(mine).equals(Buffer.from(theirs)), 'the same bytes as protobufjs');
    });
  }

  it('a 503 carries Retry-After in the decoded headers', () => {
    const decoded = decodeOfficial(encodeCheckResponse(deny('quota_unavailable'), BASE)) as {
      denied_response: { headers: { header: { key: string; value: string } }[] };
    };
    const keys = decoded.denied_response.headers.map((h) => h.header.key);
    assert.deepEqual(keys, ['content-type', 'retry-after']);
  });

  it('a lone UTF-16 surrogate is sent as U+FFFD (valid UTF-8), however long the string', () => {
    // protobufjs' own short-string path writes it as CESU-8 bytes, invalid UTF-8 that Envoy's proto3
    // parser refuses; its Buffer path (40+ characters) and we write U+FFFD.
    for (const value of ['a\ud800b', `${'a'.repeat(50)}\udc00`]) {
      const decision: Allow = { ...allow, upstreamHeaders: [{ name: 'x-lone', value }] };
      const bytes = encodeCheckResponse(decision, BASE);
      const res = decodeOfficial(bytes) as { ok_response: { headers: { header: { value: string } }[] } };
      assert.equal(res.ok_response.headers[0]?.header.value, value.replace(/[\ud800-\udfff]/g, '\ufffd'));
      const cesu8 = Buffer.from([0xed, value.at(-1) === 'b' ? 0xa0 : 0xb0, 0x80]);
      assert.ok(!Buffer.from(bytes).includes(cesu8), 'no surrogate code point in the UTF-8');
    }
  });
});
