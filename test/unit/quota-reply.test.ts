// The charge script's reply (charge-script.ts): 2 + 4n integers joined by ':' in one string.
// Anything else is refused as an unexpected reply (the charge then fails as a store error).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeReply } from '../../src/quota/redis-store.js';

test('a reply of 2 + 4n integers, negatives (retry never) and 15-digit values included', () => {
  assert.deepEqual(decodeReply('1:0:99:59000:0:0', 1), [1, 0, 99, 59000, 0, 0]);
  assert.deepEqual(
    decodeReply('0:0:0:1000:1:-1:5:86400000:0:0', 2),
    [0, 0, 0, 1000, 1, -1, 5, 86400000, 0, 0],
  );
  assert.deepEqual(decodeReply('1:1:999999999999999:0:0:0', 1), [1, 1, 999999999999999, 0, 0, 0]);
});

test('refused: another count, an empty or signed-twice field, a non-digit, 16 digits, not a string', () => {
  const refused = [
    ['1:0:99:59000:0', 1], // one short
    ['1:0:99:59000:0:0:7', 1], // one too many
    ['1:0::59000:0:0', 1], // empty field
    ['1:0:99:59000:0:', 1], // trailing colon
    ['1:0:--1:59000:0:0', 1],
    ['1:0:-:59000:0:0', 1],
    ['1:0:9-9:59000:0:0', 1],
    ['1:0:99:5e4:0:0', 1],
    ['1:0: 99:59000:0:0', 1],
    ['1:0:1000000000000000:59000:0:0', 1], // 16 digits: past what is exact in a double
    ['', 0],
    [[1, 0], 0], // the former array reply
    [null, 0],
  ] as const;
  for (const [reply, n] of refused) {
    assert.throws(() => decodeReply(reply, n), /quota script: unexpected reply/, JSON.stringify(reply));
  }
});

test('the reply as bytes (ChargeCommand hands over the undecoded Buffer) decodes exactly as its text', () => {
  for (const [text, n] of [
    ['1:0:99:59000:0:0', 1],
    ['0:0:0:1000:1:-1:5:86400000:0:0', 2],
  ] as const) {
    assert.deepEqual(decodeReply(Buffer.from(text), n), decodeReply(text, n));
  }
  for (const bytes of [
    Buffer.from('1:0:99:59000:0'),
    Buffer.from('1:0:9\u00e99:59000:0:0'),
    new Uint8Array(0),
  ]) {
    assert.throws(() => decodeReply(bytes, 1), /quota script: unexpected reply/);
  }
});
