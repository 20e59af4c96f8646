// The pure quota algorithms on an injected clock: edges, exact retryAfter, the sliding window's error
// bound, stacked all-or-nothing and shadow limits.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  type CounterState,
  ceilDiv,
  chargeAll,
  duplicateViews,
  evaluate,
  idiv,
  isDuplicate,
  normalizeRequestId,
  peekAll,
  RETRY_NEVER,
  validateCharge,
  validateLimit,
} from '../../src/quota/algorithms.js';
import type { CalendarWindow, LimitSpec, LimitState } from '../../src/quota/types.js';

function gcra(limit: number, periodMs: number, burst: number, extra: Partial<LimitSpec> = {}): LimitSpec {
  return { id: 'g', algorithm: 'gcra', limit, periodMs, burst, cost: 1, shadow: false, ...extra };
}
function sliding(limit: number, periodMs: number, extra: Partial<LimitSpec> = {}): LimitSpec {
  return {
    id: 's',
    algorithm: 'sliding_window',
    limit,
    periodMs,
    burst: limit,
    cost: 1,
    shadow: false,
    ...extra,
  };
}
function fixed(limit: number, window: CalendarWindow, extra: Partial<LimitSpec> = {}): LimitSpec {
  const periodMs = window.endMs - window.startMs;
  return {
    id: 'f',
    algorithm: 'fixed_window',
    limit,
    periodMs,
    burst: limit,
    window,
    cost: 1,
    shadow: false,
    ...extra,
  };
}
const W0: CalendarWindow = { id: '2026-11-28T14:05', startMs: 0, endMs: 60_000 };
const W1: CalendarWindow = { id: '2026-11-28T14:06', startMs: 60_000, endMs: 120_000 };

/** A step of a script run against one limit: at `at`, with `cost`, expect (part of) the LimitState. */
interface Step {
  readonly at: number;
  readonly cost?: number;
  readonly spec?: LimitSpec; // a different spec for this step (e.g. the next fixed window)
  readonly expect: Partial<LimitState>;
}

/** Runs the steps on one limit, charging when allowed, like a store would. */
function runScript(spec: LimitSpec, steps: readonly Step[]): void {
  let state: CounterState | undefined;
  steps.forEach((step, i) => {
    const s = { ...(step.spec ?? spec), cost: step.cost ?? 1 };
    const result = chargeAll([s], [state], step.at);
    const got = result.limits[0] as LimitState;
    const picked = Object.fromEntries(Object.keys(step.expect).map((k) => [k, got[k as keyof LimitState]]));
    assert.deepEqual(picked, step.expect, `step ${i} at ${step.at} (cost ${s.cost})`);
    assert.equal(result.allowed, !got.exceeded, `step ${i}: allowed iff not exceeded (one enforced limit)`);
    state = result.states[0];
  });
}

describe('gcra', () => {
  // limit 10 per 1000 ms: T = 100 ms; burst 5: up to 5 at once.
  const cases: { name: string; spec: LimitSpec; steps: Step[] }[] = [
    {
      name: 'a burst of 5 at once, then one per 100 ms, exact retryAfter',
      spec: gcra(10, 1000, 5),
      steps: [
        { at: 0, expect: { exceeded: false, remaining: 4, resetMs: 100 } },
        { at: 0, expect: { remaining: 3, resetMs: 200 } },
        { at: 0, expect: { remaining: 2 } },
        { at: 0, expect: { remaining: 1 } },
        { at: 0, expect: { exceeded: false, remaining: 0, resetMs: 500 } },
        { at: 0, expect: { exceeded: true, remaining: 0, retryAfterMs: 100, resetMs: 500 } },
        { at: 99, expect: { exceeded: true, retryAfterMs: 1, resetMs: 401 } },
        { at: 100, expect: { exceeded: false, remaining: 0, resetMs: 500 } },
        { at: 150, expect: { exceeded: true, retryAfterMs: 50 } },
        { at: 200, expect: { exceeded: false, remaining: 0 } },
        { at: 300, expect: { exceeded: false, remaining: 0 } },
        // idle for a full bucket's time: the burst is back
        { at: 800, expect: { exceeded: false, remaining: 4, resetMs: 100 } },
      ],
    },
    {
      name: 'a fractional emission interval (3 per second) stays exact',
      spec: gcra(3, 1000, 3),
      steps: [
        { at: 0, expect: { remaining: 2, resetMs: 334 } }, // TAT = 333.33…: reset rounds up
        { at: 0, expect: { remaining: 1, resetMs: 667 } },
        { at: 0, expect: { remaining: 0, resetMs: 1000 } }, // 3 · 1000/3 is exactly 1000
        { at: 0, expect: { exceeded: true, retryAfterMs: 334 } }, // 333.33… rounded up: never early
        { at: 333, expect: { exceeded: true, retryAfterMs: 1 } },
        { at: 334, expect: { exceeded: false, remaining: 0, resetMs: 1000 } },
        { at: 667, expect: { exceeded: false, remaining: 0 } }, // TAT 1666.66…
        { at: 999, expect: { exceeded: true, retryAfterMs: 1 } }, // the steady rate: one per 333.33… ms
        { at: 1000, expect: { exceeded: false, remaining: 0, resetMs: 1000 } }, // TAT exactly 2000
        { at: 1000, expect: { exceeded: true, retryAfterMs: 334 } },
      ],
    },
    {
      name: 'cost > 1 uses cost·T of the bucket',
      spec: gcra(10, 1000, 5),
      steps: [
        { at: 0, cost: 3, expect: { exceeded: false, remaining: 2, resetMs: 300 } },
        { at: 0, cost: 3, expect: { exceeded: true, remaining: 2, retryAfterMs: 100 } },
        { at: 100, cost: 3, expect: { exceeded: false, remaining: 0, resetMs: 500 } },
      ],
    },
    {
      name: 'cost > burst never fits',
      spec: gcra(10, 1000, 5),
      steps: [
        { at: 0, cost: 6, expect: { exceeded: true, retryAfterMs: RETRY_NEVER, remaining: 5, resetMs: 0 } },
        { at: 0, cost: 5, expect: { exceeded: false, remaining: 0 } },
      ],
    },
  ];
  for (const c of cases) test(c.name, () => runScript(c.spec, c.steps));
});

describe('sliding_window', () => {
  const cases: { name: string; spec: LimitSpec; steps: Step[] }[] = [
    {
      name: 'the previous window full at its last ms: refused at the edge, exact retryAfter',
      spec: sliding(10, 1000),
      steps: [
        ...Array.from({ length: 10 }, () => ({ at: 999, expect: { exceeded: false } })),
        { at: 999, expect: { exceeded: true, remaining: 0, resetMs: 1001, retryAfterMs: 101 } },
        // e = 0: estimate = 10·(1 − 0) = 10; one unit fits once 10·(1 − e/1000) ≤ 9, at e = 100
        { at: 1000, expect: { exceeded: true, remaining: 0, resetMs: 1000, retryAfterMs: 100 } },
        { at: 1099, expect: { exceeded: true, retryAfterMs: 1 } },
        { at: 1100, expect: { exceeded: false, remaining: 0, resetMs: 1900 } },
        { at: 1100, expect: { exceeded: true, retryAfterMs: 100 } },
        { at: 1200, expect: { exceeded: false, remaining: 0 } },
        // e = 500: estimate = 5 + 2 = 7: three fit
        { at: 1500, expect: { exceeded: false, remaining: 2 } },
      ],
    },
    {
      name: 'the current window alone full: retry in the next one, as prev decays',
      spec: sliding(10, 1000),
      steps: [
        { at: 1500, cost: 10, expect: { exceeded: false, remaining: 0, resetMs: 1500 } },
        // next window: prev' = 10; one unit fits at e = 100 → at 2100
        { at: 1500, expect: { exceeded: true, retryAfterMs: 600, resetMs: 1500 } },
        { at: 2099, expect: { exceeded: true, retryAfterMs: 1 } },
        { at: 2100, expect: { exceeded: false, remaining: 0 } },
      ],
    },
    {
      name: 'a cost that needs the previous window gone entirely: retry at the start of the one after',
      spec: sliding(10, 1000),
      steps: [
        { at: 1000, cost: 1, expect: { exceeded: false } },
        // cost 10 needs estimate 0: cur (1) must leave the estimate, i.e. window 3 (t = 3000)
        { at: 1000, cost: 10, expect: { exceeded: true, retryAfterMs: 2000, remaining: 9 } },
        { at: 2999, cost: 10, expect: { exceeded: true, retryAfterMs: 1 } },
        { at: 3000, cost: 10, expect: { exceeded: false, remaining: 0 } },
      ],
    },
    {
      name: 'cost > limit never fits',
      spec: sliding(10, 1000),
      steps: [{ at: 0, cost: 11, expect: { exceeded: true, retryAfterMs: RETRY_NEVER, remaining: 10 } }],
    },
    {
      name: 'two windows of silence forget everything',
      spec: sliding(10, 1000),
      steps: [
        { at: 500, cost: 10, expect: { exceeded: false } },
        { at: 2000, cost: 1, expect: { exceeded: false, remaining: 9, resetMs: 2000 } },
      ],
    },
  ];
  for (const c of cases) test(c.name, () => runScript(c.spec, c.steps));

  // The documented error bound: in any interval of length P at most L + floor(prev·e/P) ≤ 2L − 1 units
  // are admitted, where prev is the previous sub-window's total and e the offset in the current one.
  function maxInTrailingWindow(admitted: readonly number[], P: number, t: number): number {
    return admitted.filter((a) => a > t - P && a <= t).length;
  }

  test('error bound, worst case: the previous window all at its end → 2L − 1 in one period (tight)', () => {
    const L = 10;
    const P = 1000;
    const spec = sliding(L, P);
    let state: CounterState | undefined;
    const admitted: number[] = [];
    const offer = (at: number) => {
      const r = chargeAll([spec], [state], at);
      if (r.allowed) admitted.push(at);
      state = r.states[0];
    };
    for (let i = 0; i < L; i++) offer(P - 1); // all of window 0 at its last ms
    for (let t = P; t < 2 * P; t++) for (let k = 0; k < L; k++) offer(t); // greedy in window 1
    let worst = 0;
    for (let t = P; t < 2 * P; t++) {
      const count = maxInTrailingWindow(admitted, P, t);
      const e = t - P;
      assert.ok(count <= L + Math.floor((L * e) / P), `at ${t}: ${count} > bound`);
      worst = Math.max(worst, count);
    }
    assert.equal(worst, 2 * L - 1, 'the bound is reached: 19 units in (999, 1998]');
  });

  test('error bound, other direction: the previous window all at its start → refused while nothing is in the last period', () => {
    const spec = sliding(10, 1000);
    const first = chargeAll([{ ...spec, cost: 10 }], [undefined], 0); // window 0, at its first ms
    const at = 1000; // (0, 1000] holds nothing, yet the estimate is 10·(1 − 0) = 10
    const r = chargeAll([spec], [first.states[0]], at);
    assert.equal(r.allowed, false);
    assert.equal(r.limits[0]?.retryAfterMs, 100);
  });

  test('error bound holds on random traffic (many windows, random costs)', () => {
    const L = 20;
    const P = 997; // not a round number, on purpose
    const spec = sliding(L, P);
    let seed = 42;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    let state: CounterState | undefined;
    const admitted: number[] = [];
    let t = 0;
    for (let i = 0; i < 20_000; i++) {
      t += Math.floor(random() * 4) * (random() < 0.05 ? 50 : 1);
      const cost = 1 + Math.floor(random() * 3);
      const r = chargeAll([{ ...spec, cost }], [state], t);
      if (r.allowed) for (let k = 0; k < cost; k++) admitted.push(t);
      state = r.states[0];
    }
    const perWindow = new Map<number, number>();
    for (const a of admitted) perWindow.set(Math.floor(a / P), (perWindow.get(Math.floor(a / P)) ?? 0) + 1);
    // check the bound at every admission instant (the trailing count only grows there)
    let lo = 0;
    for (let hi = 0; hi < admitted.length; hi++) {
      const at = admitted[hi] as number;
      while ((admitted[lo] as number) <= at - P) lo++;
      const count = hi + 1 - lo + admitted.slice(hi + 1).filter((a) => a === at).length;
      const index = Math.floor(at / P);
      const prev = perWindow.get(index - 1) ?? 0;
      const bound = L + Math.floor((prev * (at - index * P)) / P);
      assert.ok(count <= bound, `at ${at}: ${count} in the last period > ${bound}`);
    }
  });
});

describe('fixed_window', () => {
  const cases: { name: string; spec: LimitSpec; steps: Step[] }[] = [
    {
      name: 'the last ms of a window, then the first ms of the next',
      spec: fixed(3, W0),
      steps: [
        { at: 59_999, expect: { exceeded: false, remaining: 2, resetMs: 1 } },
        { at: 59_999, expect: { exceeded: false, remaining: 1 } },
        { at: 59_999, expect: { exceeded: false, remaining: 0, resetMs: 1 } },
        { at: 59_999, expect: { exceeded: true, remaining: 0, resetMs: 1, retryAfterMs: 1 } },
        { at: 60_000, spec: fixed(3, W1), expect: { exceeded: false, remaining: 2, resetMs: 60_000 } },
      ],
    },
    {
      name: 'cost that fits only in a fresh window: retry at the window end',
      spec: fixed(3, W0),
      steps: [
        { at: 10_000, cost: 2, expect: { exceeded: false, remaining: 1, resetMs: 50_000 } },
        { at: 20_000, cost: 2, expect: { exceeded: true, remaining: 1, retryAfterMs: 40_000 } },
        { at: 20_000, cost: 1, expect: { exceeded: false, remaining: 0 } },
      ],
    },
    {
      name: 'cost > limit never fits',
      spec: fixed(3, W0),
      steps: [{ at: 0, cost: 4, expect: { exceeded: true, retryAfterMs: RETRY_NEVER, remaining: 3 } }],
    },
  ];
  for (const c of cases) test(c.name, () => runScript(c.spec, c.steps));

  test('a stored count of another window id counts as zero', () => {
    const ev = evaluate(fixed(3, W1), { algorithm: 'fixed_window', windowId: W0.id, count: 3 }, 60_000);
    assert.equal(ev.fits, true);
    assert.equal(ev.remainingAfter, 2);
  });
});

describe('stacked limits (chargeAll)', () => {
  const minute = gcra(10, 60_000, 10, { id: 'per-minute' });
  const day = fixed(2, { id: '2026-11-28', startMs: 0, endMs: 86_400_000 }, { id: 'per-day' });
  const window = sliding(100, 1000, { id: 'per-second' });

  test('all admit: all are charged', () => {
    const r = chargeAll([minute, day, window], [], 1000);
    assert.equal(r.allowed, true);
    assert.deepEqual(r.charged, [true, true, true]);
    assert.deepEqual(
      r.limits.map((l) => [l.id, l.remaining, l.exceeded]),
      [
        ['per-minute', 9, false],
        ['per-day', 1, false],
        ['per-second', 99, false],
      ],
    );
    assert.deepEqual(r.ttlMs, [6000, 86_399_000, 2000]);
  });

  test('one refuses: none changes, the refusing one is marked, the others show what is left', () => {
    let states: (CounterState | undefined)[] = [];
    for (let i = 0; i < 2; i++) states = [...chargeAll([minute, day, window], states, 1000 + i).states];
    const before = [...states];
    const r = chargeAll([minute, day, window], states, 2000);
    assert.equal(r.allowed, false);
    assert.deepEqual(r.charged, [false, false, false]);
    r.states.forEach((s, i) => {
      assert.equal(s, before[i], `state ${i} is the very same object`);
    });
    assert.deepEqual(r.ttlMs, [0, 0, 0]);
    const [m, d, w] = r.limits as [LimitState, LimitState, LimitState];
    assert.deepEqual([m.exceeded, m.remaining, m.retryAfterMs], [false, 8, 0]); // not charged: 8 left
    assert.deepEqual([d.exceeded, d.remaining, d.retryAfterMs], [true, 0, 86_398_000]);
    assert.deepEqual([w.exceeded, w.remaining], [false, 98]); // estimate 2·(1 − 0) + 0 = 2 at e = 0
  });

  test('two refuse: both are marked with their own retryAfter', () => {
    const tiny = gcra(1, 1000, 1, { id: 'tiny' });
    const first = chargeAll([tiny, day], [], 0);
    const second = chargeAll([tiny, day], first.states, 500);
    const third = chargeAll([tiny, day], second.states, 500);
    assert.equal(second.allowed, false);
    assert.deepEqual(
      third.limits.map((l) => [l.id, l.exceeded, l.retryAfterMs]),
      [
        ['tiny', true, 500],
        ['per-day', false, 0],
      ],
    );
  });

  describe('shadow limits', () => {
    const shadowTight = fixed(1, W0, { id: 'shadow-tight', shadow: true });
    const cases: {
      name: string;
      specs: LimitSpec[];
      prior: number; // charges before the one checked
      allowed: boolean;
      charged: boolean[];
      exceeded: boolean[];
    }[] = [
      {
        name: 'a shadow limit that fits is charged like an enforced one',
        specs: [minute, shadowTight],
        prior: 0,
        allowed: true,
        charged: [true, true],
        exceeded: [false, false],
      },
      {
        name: 'a shadow limit that does not fit never refuses, and is not charged',
        specs: [minute, shadowTight],
        prior: 1,
        allowed: true,
        charged: [true, false],
        exceeded: [false, true],
      },
      {
        name: 'when an enforced limit refuses, a shadow limit that fits is not charged either',
        specs: [gcra(1, 60_000, 1, { id: 'one' }), fixed(5, W0, { id: 'shadow-roomy', shadow: true })],
        prior: 1,
        allowed: false,
        charged: [false, false],
        exceeded: [true, false],
      },
      {
        name: 'only shadow limits, all exceeded: still allowed',
        specs: [shadowTight],
        prior: 1,
        allowed: true,
        charged: [false],
        exceeded: [true],
      },
    ];
    for (const c of cases) {
      test(c.name, () => {
        let states: readonly (CounterState | undefined)[] = [];
        for (let i = 0; i < c.prior; i++) states = chargeAll(c.specs, states, 100).states;
        const r = chargeAll(c.specs, states, 100);
        assert.equal(r.allowed, c.allowed);
        assert.deepEqual(r.charged, c.charged);
        assert.deepEqual(
          r.limits.map((l) => l.exceeded),
          c.exceeded,
        );
        r.limits.forEach((l, i) => {
          assert.equal(l.shadow, c.specs[i]?.shadow);
        });
      });
    }
  });

  test('cost > limit on one limit refuses the stack with RETRY_NEVER on that limit only', () => {
    const r = chargeAll(
      [
        { ...minute, cost: 3 },
        { ...day, cost: 3 },
      ],
      [],
      0,
    );
    assert.equal(r.allowed, false);
    assert.deepEqual(
      r.limits.map((l) => [l.exceeded, l.retryAfterMs]),
      [
        [false, 0],
        [true, RETRY_NEVER],
      ],
    );
  });
});

describe('peek and duplicates', () => {
  test('peek: remaining now, exceeded when not even one unit fits', () => {
    const spec = gcra(10, 1000, 2);
    const charged = chargeAll([{ ...spec, cost: 2 }], [], 0);
    assert.deepEqual(peekAll([spec], [undefined], 0), [
      { id: 'g', limit: 10, remaining: 2, resetMs: 0, exceeded: false, retryAfterMs: 0, shadow: false },
    ]);
    assert.deepEqual(peekAll([{ ...spec, cost: 7 }], charged.states, 0), [
      { id: 'g', limit: 10, remaining: 0, resetMs: 200, exceeded: true, retryAfterMs: 100, shadow: false },
    ]);
  });

  test('duplicate views: never exceeded, remaining as now', () => {
    const spec = fixed(1, W0);
    const charged = chargeAll([spec], [], 0);
    assert.deepEqual(duplicateViews([spec], charged.states, 10), [
      { id: 'f', limit: 1, remaining: 0, resetMs: 59_990, exceeded: false, retryAfterMs: 0, shadow: false },
    ]);
  });

  const duplicates: [string, number | undefined, number, boolean][] = [
    ['never charged', undefined, 1000, false],
    ['charged just now', 1000, 1000, true],
    ['last ms of the ttl', 1000, 1000 + 599_999, true],
    ['ttl over', 1000, 1000 + 600_000, false],
    ['clock went back', 5000, 1000, true],
  ];
  for (const [name, at, now, expected] of duplicates) {
    test(`isDuplicate: ${name}`, () => assert.equal(isDuplicate(at, now, 600_000), expected));
  }
});

describe('exact integer helpers', () => {
  const cases: [number, number][] = [
    [0, 7],
    [6, 7],
    [7, 7],
    [-1, 7],
    [-7, 7],
    [2 ** 51 - 1, 3],
    [2 ** 51, 2 ** 26 + 1],
    [9_007_199_254_740_990, 10],
  ];
  for (const [a, b] of cases) {
    test(`idiv/ceilDiv(${a}, ${b})`, () => {
      const q = idiv(a, b);
      assert.ok(q * b <= a && (q + 1) * b > a, `floor: ${q}`);
      assert.ok(!Object.is(q, -0));
      const c = ceilDiv(a, b);
      assert.ok(c * b >= a && (c - 1) * b < a, `ceil: ${c}`);
      assert.ok(!Object.is(c, -0));
      assert.equal(BigInt(q), BigInt(a) / BigInt(b) - (a < 0 && a % b !== 0 ? 1n : 0n));
    });
  }
});

describe('validation', () => {
  const bad: [string, LimitSpec, RegExp][] = [
    ['limit 0', gcra(0, 1000, 1), /limit must be an integer/],
    ['fractional limit', sliding(1.5, 1000), /limit must be an integer/],
    ['cost 0', { ...sliding(10, 1000), cost: 0 }, /cost must be an integer/],
    ['burst 0', gcra(10, 1000, 0), /burst must be an integer/],
    ['period 0', sliding(10, 0), /periodMs must be an integer/],
    ['burst·period too large', gcra(10, 86_400_000, 1e9), /≤ 2\^51/],
    ['limit·period too large', sliding(1e9, 86_400_000), /≤ 2\^51/],
    ['fixed without window', { ...fixed(1, W0), window: undefined }, /needs its calendar window/],
    ['id with a colon', { ...gcra(1, 1000, 1), id: 'a:b' }, /the id must match/],
    ['id rid (reserved)', { ...gcra(1, 1000, 1), id: 'rid' }, /not be "rid"/],
    ['unknown algorithm', { ...gcra(1, 1000, 1), algorithm: 'leaky' as never }, /unknown algorithm/],
  ];
  for (const [name, spec, message] of bad) {
    test(`validateLimit refuses: ${name}`, () => assert.throws(() => validateLimit(spec), message));
  }

  test('validateCharge refuses duplicate ids, braces in the partner, bad time', () => {
    assert.throws(() => validateCharge('p', [gcra(1, 1000, 1), gcra(2, 1000, 1)], 0), /appears twice/);
    assert.throws(() => validateCharge('a}b', [], 0), /without \{ or \}/);
    assert.throws(() => validateCharge('', [], 0), /non-empty/);
    assert.throws(() => validateCharge('p', [], 1.5), /nowMs/);
    assert.doesNotThrow(() => validateCharge('acme', [gcra(1, 1000, 1), sliding(1, 1000)], 0));
  });

  test('long request ids are hashed, short ones kept', () => {
    assert.equal(normalizeRequestId('abc'), 'abc');
    const long = 'x'.repeat(129);
    assert.match(normalizeRequestId(long), /^sha256:[0-9a-f]{64}$/);
    assert.equal(normalizeRequestId(long), normalizeRequestId(long));
  });
});
