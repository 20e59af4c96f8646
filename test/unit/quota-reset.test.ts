// One truth about resets (src/quota/reset.ts) and the address blocks of per-source limits.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sourceBlock } from '../../src/net/source-block.js';
import { humanDuration, resetSeconds, retryAfterOf, usageRatio } from '../../src/quota/reset.js';
import type { LimitState } from '../../src/quota/types.js';

const state = (over: Partial<LimitState>): LimitState => ({
  id: 'l',
  limit: 10,
  remaining: 0,
  resetMs: 102_000,
  exceeded: true,
  retryAfterMs: 47_001,
  shadow: false,
  ...over,
});

test('a refusing limit resets when its cost fits: t and Retry-After are one figure', () => {
  const s = state({});
  assert.equal(resetSeconds(s), 48);
  assert.equal(retryAfterOf([s]), 48);
  // not exceeded: the full reset
  assert.equal(resetSeconds(state({ exceeded: false, retryAfterMs: 0, remaining: 3 })), 102);
  // a cost that never fits: no Retry-After, t is the full reset
  assert.equal(retryAfterOf([state({ retryAfterMs: -1 })]), null);
  assert.equal(resetSeconds(state({ retryAfterMs: -1 })), 102);
  // several refusing limits: the largest; shadow ones never count
  assert.equal(
    retryAfterOf([s, state({ retryAfterMs: 5_000 }), state({ retryAfterMs: 900_000, shadow: true })]),
    48,
  );
});

const durations: [number, string][] = [
  [0, '0s'],
  [45, '45s'],
  [72, '1m 12s'],
  [60, '1m'],
  [3600, '1h'],
  [12_318, '3h 25m'],
  [2_194_186, '25d 9h'],
  [0.2, '1s'],
];
for (const [seconds, text] of durations) {
  test(`quota status prints ${seconds} s as "${text}"`, () => assert.equal(humanDuration(seconds), text));
}

test('the usage ratio stays in 0..1 (gcra counts its burst)', () => {
  const gcra = { algorithm: 'gcra' as const, limit: 10, burst: 200 };
  assert.equal(usageRatio(gcra, state({ remaining: 200, exceeded: false })), 0);
  assert.equal(usageRatio(gcra, state({ remaining: 0 })), 1);
  const sliding = { algorithm: 'sliding_window' as const, limit: 10, burst: 10 };
  assert.equal(usageRatio(sliding, state({ remaining: 25 })), 0, 'more left than the limit (edited) clamps');
  assert.equal(usageRatio(sliding, state({ remaining: 4 })), 0.6);
});

const blocks: [string, { ipv4: number; ipv6: number }, string][] = [
  ['203.0.113.7', { ipv4: 32, ipv6: 64 }, '203.0.113.7/32'],
  ['203.0.113.7', { ipv4: 24, ipv6: 64 }, '203.0.113.0/24'],
  ['::ffff:203.0.113.7', { ipv4: 32, ipv6: 64 }, '203.0.113.7/32'],
  ['2001:db8:1:2:3:4:5:6', { ipv4: 32, ipv6: 64 }, '2001:db8:1:2::/64'],
  ['2001:DB8:1:2::9', { ipv4: 32, ipv6: 64 }, '2001:db8:1:2::/64'],
  ['2001:db8:1:2:3:4:5:6', { ipv4: 32, ipv6: 56 }, '2001:db8:1::/56'],
  ['', { ipv4: 32, ipv6: 64 }, 'unknown'],
];
for (const [address, prefix, want] of blocks) {
  test(`a per-source limit counts ${address || '(no address)'} under ${want}`, () =>
    assert.equal(sourceBlock(address, prefix), want));
}
