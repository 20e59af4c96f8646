// Admission control, pure: the gradient limit over scripted latencies, and the gate's admission,
// fairness, queue bound and expiry over a fake clock.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AdmissionGate, type Ticket } from '../../src/admission/gate.js';
import { GradientLimit, type LimitOptions } from '../../src/admission/limit.js';

const BASE: LimitOptions = {
  min: 4,
  max: 100,
  initial: 20,
  tolerance: 2,
  eventLoopDelayMs: 50,
  windowMs: 90,
  windowSamples: 10,
};

/** Feeds `windows` full windows of `samples` at `latencyMs`, `inFlight` each; returns the limit after each. */
function drive(
  limit: GradientLimit,
  t: { now: number },
  windows: number,
  latencyMs: number,
  inFlight: (limit: number) => number,
): number[] {
  const after: number[] = [];
  for (let w = 0; w < windows; w++) {
    for (let i = 0; i < 10; i++) {
      t.now += 10;
      limit.sample(t.now, latencyMs, inFlight(limit.limit));
    }
    after.push(limit.limit);
  }
  return after;
}

describe('GradientLimit', () => {
  interface Case {
    readonly name: string;
    readonly options?: Partial<LimitOptions>;
    /** Phases: windows at a latency, the limit fully used (or not), an event-loop delay. */
    readonly phases: readonly {
      windows: number;
      latencyMs: number;
      used: boolean;
      eventLoopDelayMs?: number;
    }[];
    readonly check: (history: readonly number[]) => void;
  }
  const cases: Case[] = [
    {
      name: 'latency at the baseline, limit used: grows to the ceiling and stays there',
      phases: [{ windows: 60, latencyMs: 2, used: true }],
      check: (h) => {
        assert.ok((h[1] as number) > 20, `grows: ${h.slice(0, 5)}`);
        assert.equal(h.at(-1), 100);
      },
    },
    {
      name: 'latency at the baseline, limit not used: does not grow',
      phases: [{ windows: 30, latencyMs: 2, used: false }],
      check: (h) => assert.deepEqual(new Set(h), new Set([20])),
    },
    {
      name: 'latency within the tolerance (1.5× baseline): still grows',
      phases: [
        { windows: 3, latencyMs: 2, used: true },
        { windows: 20, latencyMs: 3, used: true },
      ],
      check: (h) => assert.ok((h.at(-1) as number) > (h[2] as number)),
    },
    {
      name: 'latency 5× the baseline: shrinks to the floor',
      phases: [
        { windows: 3, latencyMs: 2, used: true },
        { windows: 30, latencyMs: 10, used: true },
      ],
      check: (h) => {
        assert.ok((h[3] as number) < (h[2] as number), 'the first slow window already shrinks it');
        assert.equal(h.at(-1), 4);
      },
    },
    {
      name: 'a late event loop shrinks the limit even at baseline latency',
      phases: [
        { windows: 3, latencyMs: 2, used: true },
        { windows: 30, latencyMs: 2, used: true, eventLoopDelayMs: 80 },
      ],
      check: (h) => assert.equal(h.at(-1), 4),
    },
    {
      name: 'an event-loop delay under the threshold changes nothing',
      phases: [{ windows: 60, latencyMs: 2, used: true, eventLoopDelayMs: 20 }],
      check: (h) => assert.equal(h.at(-1), 100),
    },
    {
      name: 'recovers once latency is back at the baseline',
      phases: [
        { windows: 3, latencyMs: 2, used: true },
        { windows: 30, latencyMs: 10, used: true },
        { windows: 60, latencyMs: 2, used: true },
      ],
      check: (h) => {
        assert.equal(h[32], 4);
        assert.equal(h.at(-1), 100);
      },
    },
    {
      name: 'floor = ceiling: a fixed limit whatever happens',
      options: { min: 7, max: 7, initial: 50 },
      phases: [
        { windows: 10, latencyMs: 2, used: true },
        { windows: 10, latencyMs: 50, used: true, eventLoopDelayMs: 500 },
      ],
      check: (h) => assert.deepEqual(new Set(h), new Set([7])),
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const limit = new GradientLimit({ ...BASE, ...c.options });
      const t = { now: 1_000_000 };
      const history: number[] = [];
      for (const phase of c.phases) {
        limit.eventLoopDelayMs(phase.eventLoopDelayMs ?? 0);
        history.push(...drive(limit, t, phase.windows, phase.latencyMs, (l) => (phase.used ? l : 1)));
      }
      c.check(history);
    });
  }

  test('bounds are validated', () => {
    assert.throws(() => new GradientLimit({ ...BASE, min: 5, max: 4 }), /1 ≤ min ≤ max/);
    assert.throws(() => new GradientLimit({ ...BASE, min: 0 }), /1 ≤ min ≤ max/);
  });

  test('configure() clamps the current limit into new bounds', () => {
    const limit = new GradientLimit(BASE);
    limit.configure({ ...BASE, min: 1, max: 8 });
    assert.equal(limit.limit, 8);
  });
});

/** A gate with a fixed limit over a fake clock. */
function gate(limit: number, maxQueue: number) {
  const clock = { t: 1_000, now: () => clock.t };
  const g = new AdmissionGate(
    new GradientLimit({ ...BASE, min: limit, max: limit, initial: limit }),
    clock,
    maxQueue,
  );
  return { g, clock };
}

/** What happened to each entry, in order of settlement. */
function tracker() {
  const log: string[] = [];
  const tickets = new Map<string, Ticket>();
  const enter = (g: AdmissionGate, key: string, name: string, startBy = Number.POSITIVE_INFINITY) => {
    const r = g.enter(key, startBy);
    const settle = (t: Ticket | null) => {
      if (t) tickets.set(name, t);
      log.push(`${name}:${t ? 'in' : 'shed'}`);
    };
    if (r instanceof Promise) void r.then(settle);
    else settle(r);
  };
  return { log, tickets, enter };
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

describe('AdmissionGate', () => {
  test('below the limit: admitted synchronously; over it, with no queue: shed at once', () => {
    const { g } = gate(2, 0);
    const a = g.enter('a', Number.POSITIVE_INFINITY);
    const b = g.enter('b', Number.POSITIVE_INFINITY);
    assert.ok(a && !(a instanceof Promise));
    assert.ok(b && !(b instanceof Promise));
    assert.equal(g.enter('c', Number.POSITIVE_INFINITY), null);
    assert.deepEqual(
      { inFlight: g.snapshot().inFlight, queued: g.snapshot().queued },
      { inFlight: 2, queued: 0 },
    );
    g.leave(a);
    const c = g.enter('c', Number.POSITIVE_INFINITY);
    assert.ok(c && !(c instanceof Promise));
  });

  test('a freed slot goes to the caller holding the fewest slots, not to the longest queue', async () => {
    const { g } = gate(3, 100);
    const t = tracker();
    // heavy takes every slot, then queues 5 more; light queues 2 behind them.
    for (let i = 0; i < 3; i++) t.enter(g, 'heavy', `h${i}`);
    for (let i = 3; i < 8; i++) t.enter(g, 'heavy', `h${i}`);
    t.enter(g, 'light', 'l0');
    t.enter(g, 'light', 'l1');
    await flush();
    assert.deepEqual(t.log, ['h0:in', 'h1:in', 'h2:in']);
    g.leave(t.tickets.get('h0') as Ticket);
    await flush();
    assert.deepEqual(t.log.slice(3), ['l0:in'], 'light (0 slots) before heavy (2 slots)');
    g.leave(t.tickets.get('h1') as Ticket);
    await flush();
    assert.deepEqual(t.log.slice(4), ['h3:in'], 'one slot each: a tie goes to the longest waiter');
    g.leave(t.tickets.get('l0') as Ticket);
    await flush();
    assert.deepEqual(t.log.slice(5), ['l1:in'], 'light (0 slots) before heavy (2 slots)');
    assert.deepEqual(
      { inFlight: g.snapshot().inFlight, queued: g.snapshot().queued },
      { inFlight: 3, queued: 4 },
    );
  });

  test('full queue: the caller with the most waiters gives up its newest, the arrival of another caller gets in', async () => {
    const { g } = gate(1, 3);
    const t = tracker();
    t.enter(g, 'heavy', 'h0'); // in
    t.enter(g, 'heavy', 'h1');
    t.enter(g, 'heavy', 'h2');
    t.enter(g, 'heavy', 'h3'); // queue full (3)
    t.enter(g, 'heavy', 'h4'); // heavy's own arrival: shed
    t.enter(g, 'light', 'l0'); // evicts h3
    await flush();
    assert.deepEqual(t.log, ['h0:in', 'h4:shed', 'h3:shed']);
    g.leave(t.tickets.get('h0') as Ticket);
    await flush();
    assert.deepEqual(t.log.slice(3), ['h1:in'], 'no slots held on either side: the longest waiter');
    assert.equal(g.snapshot().queued, 2, 'h2 and l0 still wait');
  });

  test('a waiter whose start-by time passes is shed by expire(), the others keep waiting', async () => {
    const { g, clock } = gate(1, 10);
    const t = tracker();
    t.enter(g, 'a', 'a0');
    t.enter(g, 'b', 'b0', 1_050);
    t.enter(g, 'c', 'c0', 2_000);
    clock.t = 1_100;
    g.expire(clock.t);
    await flush();
    assert.deepEqual(t.log, ['a0:in', 'b0:shed']);
    g.leave(t.tickets.get('a0') as Ticket);
    await flush();
    assert.deepEqual(t.log.slice(2), ['c0:in']);
  });

  test('a start-by time already past is shed without queueing', () => {
    const { g } = gate(1, 10);
    assert.ok(g.enter('a', 5_000));
    assert.equal(g.enter('b', 999), null);
    assert.equal(g.snapshot().queued, 0);
  });

  test('callers are forgotten once they hold and wait for nothing (bounded memory)', () => {
    const { g } = gate(4, 10);
    for (let i = 0; i < 1000; i++) {
      const ticket = g.enter(`caller-${i}`, Number.POSITIVE_INFINITY);
      assert.ok(ticket && !(ticket instanceof Promise));
      g.leave(ticket, false);
    }
    // Reach into the private map through its effect: a full gate with a fresh caller still queues.
    assert.deepEqual(
      { inFlight: g.snapshot().inFlight, queued: g.snapshot().queued },
      { inFlight: 0, queued: 0 },
    );
    assert.equal((g as unknown as { callers: Map<string, unknown> }).callers.size, 0);
  });

  test('queue-then-admit keeps arrival order within one caller', async () => {
    const { g } = gate(1, 10);
    const t = tracker();
    for (let i = 0; i < 4; i++) t.enter(g, 'a', `a${i}`);
    for (let i = 0; i < 3; i++) {
      await flush();
      g.leave(t.tickets.get(`a${i}`) as Ticket);
    }
    await flush();
    assert.deepEqual(t.log, ['a0:in', 'a1:in', 'a2:in', 'a3:in']);
  });
});
