// The shared deadline timer behind Pipeline.check: every Check's budget on one Node timer.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type DeadlineEntry, Deadlines } from '../../src/pipeline/deadlines.js';

const until = (d: Deadlines, fired: string[], n: number) =>
  new Promise<void>((resolve) => {
    const poll = () => (fired.length >= n ? resolve() : setTimeout(poll, 5));
    poll();
    void d;
  });

test('entries fire in due order, whatever order they were added in', async () => {
  const d = new Deadlines();
  const fired: string[] = [];
  const c = d.after(60, () => fired.push('c'));
  const a = d.after(20, () => fired.push('a')); // earlier than the armed one: re-arms
  const b = d.after(40, () => fired.push('b'));
  await until(d, fired, 3);
  // Due times count from each call (a stalled machine may space the calls out): compare with them.
  const due = [
    ['a', a.at],
    ['b', b.at],
    ['c', c.at],
  ] as const;
  assert.deepEqual(
    fired,
    [...due].sort((x, y) => x[1] - y[1]).map(([name]) => name),
  );
  assert.equal(d.size, 0, 'fired entries leave the heap');
});

test('a cancelled entry never fires; the ones after it still do', async () => {
  const d = new Deadlines();
  const fired: string[] = [];
  const first = d.after(10, () => fired.push('cancelled'));
  d.after(30, () => fired.push('kept'));
  d.cancel(first);
  await until(d, fired, 1);
  assert.deepEqual(fired, ['kept']);
});

/**
 * `count` entries due after `delayOf(i)` ms, those with `cancelled(i)` cancelled at once: the others
 * each fire exactly once, in order of their own due instant (not their delay: the entries were
 * created over time, a millisecond or more apart on a loaded machine), and leave the heap.
 */
async function firesAllButCancelled(
  count: number,
  delayOf: (i: number) => number,
  cancelled: (i: number) => boolean,
): Promise<void> {
  const d = new Deadlines();
  const fired: number[] = [];
  const entries = Array.from({ length: count }, (_, i) => d.after(delayOf(i), () => fired.push(i)));
  for (const [i, e] of entries.entries()) if (cancelled(i)) d.cancel(e);
  const expected = entries.map((_, i) => i).filter((i) => !cancelled(i));
  await new Promise<void>((resolve) => {
    const poll = () => (fired.length >= expected.length ? resolve() : setTimeout(poll, 5));
    poll();
  });
  await new Promise((r) => setTimeout(r, 60)); // nothing more fires
  assert.deepEqual(
    [...fired].sort((a, b) => a - b),
    expected,
  );
  const dues = fired.map((i) => (entries[i] as DeadlineEntry).at);
  assert.deepEqual(
    dues,
    [...dues].sort((a, b) => a - b),
    'in due order',
  );
  assert.equal(d.size, 0);
}

test('many entries: each fires exactly once, cancelled ones never', () =>
  firesAllButCancelled(
    200,
    (i) => (i * 7) % 50,
    (i) => i % 3 === 0,
  ));

test('a cancelled entry leaves the heap at once: nothing of a finished Check is kept until its due time', () => {
  // Kept until due, the entries (and their backing array's regrowth) outlived two scavenges at
  // 1,000 Check/s and were promoted: ~0.4 MB per scavenge in bench/ at a 1 s deadline.
  const d = new Deadlines();
  const entries = Array.from({ length: 50 }, (_, i) => d.after(10_000 + ((i * 37) % 50), () => {}));
  for (const [i, e] of entries.entries()) if (i % 2 === 0) d.cancel(e);
  assert.equal(d.size, 25);
  for (const [i, e] of entries.entries()) if (i % 2 === 1) d.cancel(e);
  assert.equal(d.size, 0);
  d.cancel(entries[0] as DeadlineEntry); // twice: harmless
  assert.equal(d.size, 0);
});

test('cancelling from the middle keeps the heap ordered', () =>
  firesAllButCancelled(
    60,
    (i) => (i * 13) % 40,
    (i) => i % 4 === 1,
  ));
