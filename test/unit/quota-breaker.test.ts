// The quota store's circuit breaker: opens on Redis-side failures only, and recovers by a ramp
// (10 %, 50 %, then all charges) once the connection is back. Time is an injected clock; the store
// is the real in-memory one behind a switch that makes it fail like a Redis that is down.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type BreakerOptions, CircuitOpen, StoreBreaker } from '../../src/quota/breaker.js';
import { MemoryQuotaStore } from '../../src/quota/memory-store.js';
import type { ChargeRequest, ChargeResult, ChargeSink, QuotaStore } from '../../src/quota/types.js';

const OPTIONS: BreakerOptions = {
  resetMs: 100,
  volumeThreshold: 5,
  windowMs: 1000,
  rampShares: [0.1, 0.5],
  rampStepMs: 100,
};

/** A real store that fails (as ioredis does with Redis down) while `down` is set. */
class Switchable implements Pick<QuotaStore, 'charge' | 'chargeTo' | 'refund'> {
  down = false;
  malformed = false;
  calls = 0;
  private readonly store = new MemoryQuotaStore();
  charge(request: ChargeRequest): Promise<ChargeResult> {
    this.calls++;
    if (this.malformed) return Promise.reject(new RangeError('bad charge'));
    if (this.down) return Promise.reject(new Error("Stream isn't writeable"));
    return this.store.charge(request);
  }
  /** The same, answered later through a sink (as RedisQuotaStore.chargeTo does). */
  chargeTo(request: ChargeRequest, sink: ChargeSink): void {
    this.charge(request).then(
      (result) => sink.charged(result),
      (error: unknown) => sink.failed(error),
    );
  }
  refund(request: ChargeRequest, result: ChargeResult): Promise<void> {
    return this.store.refund(request, result);
  }
}

let n = 0;
const charge = (): ChargeRequest => ({
  partner: 'acme',
  requestId: `r-${n++}`,
  limits: [
    {
      id: 'big',
      algorithm: 'gcra',
      limit: 1_000_000,
      periodMs: 1000,
      burst: 1_000_000,
      cost: 1,
      shadow: false,
    },
  ],
  nowMs: 1_000_000,
});

/** How the caller charges: the promise (charge) or the sink (chargeTo, the quota stage's way). */
type Via = 'promise' | 'sink';

function chargeVia(breaker: StoreBreaker, via: Via, request: ChargeRequest): Promise<ChargeResult> {
  if (via === 'promise') return breaker.charge(request);
  return new Promise((resolve, reject) => breaker.chargeTo(request, { charged: resolve, failed: reject }));
}

function setup(via: Via, connected = () => true) {
  let now = 0;
  const store = new Switchable();
  const breaker = new StoreBreaker(store, OPTIONS, { now: () => now, connected });
  return {
    store,
    breaker,
    advance: (ms: number) => {
      now += ms;
    },
    /** `count` charges, one at a time: how many reached the store and succeeded, how many were refused by the circuit. */
    async send(count: number) {
      let ok = 0;
      let refused = 0;
      let failed = 0;
      for (let i = 0; i < count; i++) {
        try {
          await chargeVia(breaker, via, charge());
          ok++;
        } catch (error: unknown) {
          if (error instanceof CircuitOpen) refused++;
          else failed++;
        }
      }
      return { ok, refused, failed };
    },
  };
}

async function openIt(s: ReturnType<typeof setup>) {
  s.store.down = true;
  const r = await s.send(5);
  assert.deepEqual(r, { ok: 0, refused: 0, failed: 5 });
  assert.equal(s.breaker.state(), 'open');
  s.store.down = false;
}

test('chargeTo: an open circuit refuses through the sink before chargeTo returns, without the store', async () => {
  const s = setup('sink');
  await openIt(s);
  const calls = s.store.calls;
  let refusal: unknown;
  s.breaker.chargeTo(charge(), {
    charged: () => assert.fail('charged while open'),
    failed: (error) => {
      refusal = error;
    },
  });
  assert.ok(refusal instanceof CircuitOpen);
  assert.equal(s.store.calls, calls);
});

for (const via of ['promise', 'sink'] as const) {
  describe(`opening (${via})`, () => {
    test('five failures in a second open the circuit; then charges are refused without calling the store', async () => {
      const s = setup(via);
      await openIt(s);
      const before = s.store.calls;
      assert.deepEqual(await s.send(20), { ok: 0, refused: 20, failed: 0 });
      assert.equal(s.store.calls, before, 'no store call while open');
    });

    test('failures below half of the calls do not open it', async () => {
      const s = setup(via);
      await s.send(6);
      s.store.down = true;
      await s.send(5);
      assert.equal(s.breaker.state(), 'closed');
    });

    test('failures spread over more than the window do not add up', async () => {
      const s = setup(via);
      s.store.down = true;
      for (let i = 0; i < 8; i++) {
        await s.send(1);
        s.advance(300);
      }
      assert.equal(s.breaker.state(), 'closed');
    });

    test('a malformed charge (RangeError) is our bug: it never opens the circuit', async () => {
      const s = setup(via);
      s.store.malformed = true;
      assert.deepEqual(await s.send(20), { ok: 0, refused: 0, failed: 20 });
      assert.equal(s.breaker.state(), 'closed');
    });
  });

  describe(`recovery is a ramp (${via})`, () => {
    test('10 % then 50 % then all, 100 ms each, after the 100 ms pause', async () => {
      const s = setup(via);
      await openIt(s);
      s.advance(99);
      assert.deepEqual(await s.send(10), { ok: 0, refused: 10, failed: 0 }, 'still open before resetMs');
      s.advance(1);
      assert.equal(s.breaker.state(), 'half_open');
      assert.deepEqual(await s.send(100), { ok: 10, refused: 90, failed: 0 }, '10 % in the first step');
      s.advance(100);
      assert.equal(s.breaker.share(), 0.5);
      assert.deepEqual(await s.send(100), { ok: 50, refused: 50, failed: 0 }, '50 % in the second step');
      s.advance(100);
      assert.equal(s.breaker.state(), 'closed');
      assert.deepEqual(await s.send(100), { ok: 100, refused: 0, failed: 0 }, 'all of them once closed');
    });

    test('a failure during the ramp opens the circuit again, and the ramp starts over', async () => {
      const s = setup(via);
      await openIt(s);
      s.advance(100);
      await s.send(10);
      s.advance(100);
      assert.equal(s.breaker.share(), 0.5);
      s.store.down = true;
      assert.equal((await s.send(1)).failed, 1);
      assert.equal(s.breaker.state(), 'open');
      s.store.down = false;
      s.advance(100);
      assert.equal(s.breaker.share(), 0.1);
    });

    test('a step ends only once one of its charges succeeded (no traffic: no promotion)', async () => {
      const s = setup(via);
      await openIt(s);
      s.advance(100);
      assert.equal(s.breaker.state(), 'half_open');
      s.advance(1000);
      assert.equal(s.breaker.share(), 0.1, 'no charge came: still the first step');
      assert.deepEqual(
        await s.send(1),
        { ok: 1, refused: 0, failed: 0 },
        'the first charge of a step always goes',
      );
      assert.equal(s.breaker.share(), 0.5, 'its success ends the (long) step');
    });

    test('no ramp while the connection is down: it waits for the connection, then starts at 10 %', async () => {
      let up = false;
      const s = setup(via, () => up);
      await openIt(s);
      s.advance(5000);
      assert.equal(s.breaker.state(), 'open');
      assert.deepEqual(await s.send(5), { ok: 0, refused: 5, failed: 0 });
      up = true;
      assert.equal(s.breaker.state(), 'half_open');
      assert.equal(s.breaker.share(), 0.1);
    });

    test('normal service 200 ms after the ramp starts, with steady traffic', async () => {
      const s = setup(via);
      await openIt(s);
      s.advance(100);
      let firstFullMs = -1;
      for (let t = 0; t <= 1000; t += 10) {
        const r = await s.send(5);
        if (r.ok === 5 && s.breaker.state() === 'closed') {
          firstFullMs = t;
          break;
        }
        s.advance(10);
      }
      assert.equal(firstFullMs, 200);
    });
  });
}
