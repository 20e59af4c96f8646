// The replica's memory of the request ids it allowed: what a retry is answered from, without Redis.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ChargedIds, chargedIdKey } from '../../src/quota/charged-ids.js';

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
