import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decisionId } from '../../src/envoy/decision-id.js';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test('decision ids are canonical UUIDs v4, distinct across many CSPRNG batches', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 10_000; i++) {
    const id = decisionId();
    assert.match(id, UUID_V4);
    seen.add(id);
  }
  assert.equal(seen.size, 10_000);
});

test('an id is a string of its own: the next id does not change it', () => {
  const first = decisionId();
  const copy = `${first}`;
  decisionId();
  assert.equal(first, copy);
});

test('every random nibble varies (no position stuck at one value)', () => {
  const ids = Array.from({ length: 2_000 }, decisionId);
  for (let at = 0; at < 36; at++) {
    if ([8, 13, 14, 18, 19, 23].includes(at)) continue; // dashes, version, variant
    const values = new Set(ids.map((id) => id[at]));
    assert.ok(values.size >= 12, `position ${at}: ${values.size} values`);
  }
});
