// The replica's memory of the request ids it allowed: what a retry is answered from, without Redis.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type ChargedId, ChargedIds, chargedIdKey } from '../../src/quota/charged-ids.js';
import type { LimitState } from '../../src/quota/types.js';
import { seeded } from '../support/seeded.js';

const at = (atMs: number) => ({ atMs, limits: [] });

test('a remembered id counts as charged within the window, not at its end', () => {
  const ids = new ChargedIds(1000);
  ids.remember(chargedIdKey('acme', 'orders|daily', 'r1'), at(5000));
  assert.deepEqual(ids.get(chargedIdKey('acme', 'orders|daily', 'r1'), 5999), at(5000));
  assert.equal(ids.get(chargedIdKey('acme', 'orders|daily', 'r1'), 6000), undefined);
  // Keyed by partner, scope and id.
  assert.equal(ids.get(chargedIdKey('other', 'orders|daily', 'r1'), 5500), undefined);
  assert.equal(ids.get(chargedIdKey('acme', 'refunds|daily', 'r1'), 5500), undefined);
});

test('expired ids are dropped as new ones come: memory follows the window, not the bound', () => {
  const ids = new ChargedIds(1000, 50_000);
  for (let i = 0; i < 10_000; i++) ids.remember(chargedIdKey('acme', 's', `r${i}`), at(i));
  // Charged at 9,999: everything charged 1,000 ms or more before it is gone, but for the ids
  // remembered since the last sweep (one every 32).
  assert.ok(ids.size >= 1000 && ids.size < 1032, `${ids.size} ids`);
  assert.equal(ids.get(chargedIdKey('acme', 's', 'r8999'), 9999), undefined);
  assert.deepEqual(ids.get(chargedIdKey('acme', 's', 'r9000'), 9999), at(9000));
});

test('bounded: beyond maxEntries the oldest charges are forgotten first', () => {
  const ids = new ChargedIds(60_000, 3);
  for (const [i, id] of ['a', 'b', 'c', 'd'].entries()) ids.remember(chargedIdKey('acme', 's', id), at(i));
  assert.equal(ids.size, 3);
  assert.equal(ids.get(chargedIdKey('acme', 's', 'a'), 10), undefined);
  assert.deepEqual(ids.get(chargedIdKey('acme', 's', 'd'), 10), at(3));
  // Remembered again, an id moves to the end: the next one out is the oldest charge.
  ids.remember(chargedIdKey('acme', 's', 'b'), at(4));
  ids.remember(chargedIdKey('acme', 's', 'e'), at(5));
  assert.equal(ids.get(chargedIdKey('acme', 's', 'c'), 10), undefined);
  assert.deepEqual(ids.get(chargedIdKey('acme', 's', 'b'), 10), at(4));
});

/** The memory as it was kept before the ring (a Map in charge order): what the ring must answer. */
class Reference {
  private readonly ids = new Map<string, ChargedId>();
  private unswept = 0;
  constructor(private readonly windowMs: number) {}
  get(key: string, nowMs: number): ChargedId | undefined {
    const charged = this.ids.get(key);
    return charged !== undefined && nowMs - charged.atMs < this.windowMs ? charged : undefined;
  }
  remember(key: string, charged: ChargedId): void {
    if (this.ids.has(key)) this.ids.delete(key);
    this.ids.set(key, charged);
    if (++this.unswept < 32) return;
    this.unswept = 0;
    for (const [oldest, entry] of this.ids) {
      if (charged.atMs - entry.atMs < this.windowMs) break;
      this.ids.delete(oldest);
    }
  }
  get size(): number {
    return this.ids.size;
  }
}

const state = (id: string, n: number, flags: number): LimitState => ({
  id,
  limit: 1000 + n,
  remaining: n,
  resetMs: 60_000 - n,
  exceeded: (flags & 1) !== 0,
  retryAfterMs: flags & 1 ? 250 + n : 0,
  shadow: (flags & 2) !== 0,
});

for (const [name, hash] of [
  ['its own hash', undefined],
  ['every key colliding with two thirds of the others', (key: string) => key.length % 3],
] as const) {
  test(`the ring answers as a Map in charge order would, growing past its first 1,024 records (${name})`, () => {
    const next = seeded(0x9e3779b9);
    const keys = Array.from({ length: 3000 }, (_, i) => {
      const id = i % 7 === 0 ? `r${i}-${'x'.repeat(150)}` : i % 11 === 0 ? `r${i}-ключ` : `r${i}`;
      return chargedIdKey(i % 5 === 0 ? 'beta' : 'acme', i % 2 === 0 ? 'orders|daily' : 's', id);
    });
    const ids = new ChargedIds(4000, 50_000, hash);
    const model = new Reference(4000);
    let now = 0;
    for (let op = 0; op < 20_000; op++) {
      now += Math.floor(next() * 3);
      const key = keys[Math.floor(next() * keys.length)] as string;
      if (next() < 0.6) {
        const n = Math.floor(next() * 6); // more than 3 limits: kept as given
        const limits = Array.from({ length: n }, (_, i) => state(`l${i}`, op + i, Math.floor(next() * 4)));
        ids.remember(key, { atMs: now, limits });
        model.remember(key, { atMs: now, limits });
      } else {
        assert.deepEqual(ids.get(key, now), model.get(key, now), `op ${op}: ${key.slice(0, 40)}`);
      }
      assert.equal(ids.size, model.size, `op ${op}`);
    }
    assert.ok(model.size > 1024, `grew: ${model.size} ids at the end`);
  });
}

test('one id for one key: keys that share a hash, a prefix or a length stay apart', () => {
  const ids = new ChargedIds(1000, 100, () => 7);
  const a = chargedIdKey('acme', 's', 'a'.repeat(128 - 8));
  const b = chargedIdKey('acme', 's', `${'a'.repeat(127 - 8)}b`);
  const long = chargedIdKey('acme', 's', 'a'.repeat(300));
  ids.remember(a, at(1));
  ids.remember(long, at(2));
  assert.deepEqual(ids.get(a, 10), at(1));
  assert.equal(ids.get(b, 10), undefined);
  assert.deepEqual(ids.get(long, 10), at(2));
  assert.equal(ids.get(chargedIdKey('acme', 's', 'a'.repeat(299)), 10), undefined);
  ids.remember(b, at(3));
  assert.deepEqual(ids.get(a, 10), at(1));
  assert.deepEqual(ids.get(b, 10), at(3));
  // A character past U+00FF is not cut to its low byte: "ł" (U+0142) is not "B" (0x42).
  ids.remember(chargedIdKey('acme', 's', 'idł'), at(4));
  assert.equal(ids.get(chargedIdKey('acme', 's', 'idB'), 10), undefined);
  assert.deepEqual(ids.get(chargedIdKey('acme', 's', 'idł'), 10), at(4));
});
