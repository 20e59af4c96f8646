// The reply timer (src/net/reply-timer.ts): one timer for every batch in flight, a call expired no
// earlier than the timeout after it was written, and our own event-loop lag given back.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ReplyTimer, StoreTimeout, type Watched } from '../../src/net/reply-timer.js';

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

class Call implements Watched {
  state: 0 | 1 | 2 = 0;
  expiredAt = -1;
  error: unknown = null;
  expire(error: StoreTimeout): void {
    this.state = 2;
    this.error = error;
    this.expiredAt = performance.now();
  }
}

test('one timer for all batches: 50 turns of calls arm at most 3 timers, none expires once answered', async () => {
  const timer = new ReplyTimer(50);
  const real = globalThis.setTimeout;
  let armed = 0;
  globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => {
    armed++;
    return real(...args);
  }) as typeof setTimeout;
  const calls: Call[] = [];
  try {
    for (let turn = 0; turn < 50; turn++) {
      for (let k = 0; k < 3; k++) {
        const call = new Call();
        calls.push(call);
        timer.join(call);
      }
      await nextTurn();
    }
  } finally {
    globalThis.setTimeout = real;
  }
  for (const call of calls) call.state = 1;
  assert.ok(armed <= 3, `${armed} timers armed for 50 batches`);
  await sleep(200);
  assert.equal(timer.watching, 0);
  assert.ok(calls.every((c) => c.expiredAt === -1));
});

test('an unanswered call expires with StoreTimeout, never before the timeout; answered ones in its batch do not', async () => {
  const timer = new ReplyTimer(40);
  const late = new Call();
  const answered = new Call();
  assert.equal(timer.join(late), true);
  assert.equal(timer.join(answered), false);
  await nextTurn(); // the batch is written (stamped) now
  const writtenBy = performance.now();
  answered.state = 1;
  for (let waited = 0; late.expiredAt < 0 && waited < 4000; waited += 10) await sleep(10);
  assert.ok(late.error instanceof StoreTimeout);
  assert.ok(late.expiredAt - writtenBy >= 40 - 1, `expired ${late.expiredAt - writtenBy} ms after the write`);
  assert.equal(answered.expiredAt, -1);
  assert.equal(timer.watching, 0);
});

test('our own lag is given back: a reply that comes after a 150 ms stall of our event loop is in time (40 ms timeout)', async () => {
  const timer = new ReplyTimer(40);
  const call = new Call();
  timer.join(call);
  await nextTurn(); // written
  const stallUntil = performance.now() + 150;
  while (performance.now() < stallUntil) {
    // our process cannot run: no timer fires, no socket is read
  }
  // The reply comes 20 ms after the stall: Redis answered in time, we could not look.
  setTimeout(() => {
    if (call.state === 0) call.state = 1;
  }, 20);
  await sleep(400);
  assert.equal(call.expiredAt, -1, 'judged late for our own stall');
  assert.equal(call.state, 1);
});
