// FastCounter / FastHistogram must expose exactly what prom-client's Counter / Histogram expose for
// the same observations: /metrics, dashboards, alerts and the workers' aggregation read them alike.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AggregatorRegistry, Counter, Histogram, Registry } from 'prom-client';
import { FastCounter, FastHistogram } from '../../src/observability/fast-metrics.js';

const BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];
// Bounds themselves (le is inclusive), between them, below the first, above the last, zero.
const OBSERVATIONS = [0, 0.0001, 0.00011, 0.0005, 0.0007, 0.001, 0.3, 1, 1.5, 42, 0.0049, 0.005];

function pair() {
  const ours = new Registry();
  const theirs = new Registry();
  const h = {
    ours: new FastHistogram({
      name: 'h_seconds',
      help: 'H.',
      labelNames: ['stage'],
      buckets: BUCKETS,
      registers: [ours],
    }),
    theirs: new Histogram({
      name: 'h_seconds',
      help: 'H.',
      labelNames: ['stage'],
      buckets: BUCKETS,
      registers: [theirs],
    }),
  };
  const c = {
    ours: new FastCounter({ name: 'c_total', help: 'C.', labelNames: ['route', 'code'], registers: [ours] }),
    theirs: new Counter({ name: 'c_total', help: 'C.', labelNames: ['route', 'code'], registers: [theirs] }),
  };
  return { ours, theirs, h, c };
}

describe('fast metrics: the same exposition as prom-client', () => {
  it('histogram buckets, sum and count per label set, and counters, in the text format', async () => {
    const { ours, theirs, h, c } = pair();
    for (const [i, v] of OBSERVATIONS.entries()) {
      const stage = i % 3 === 0 ? 'quota' : 'identify';
      h.ours.labels(stage).observe(v);
      h.theirs.labels(stage).observe(v);
    }
    // A label value that needs escaping in the exposition.
    for (const route of ['orders', 'we"ird\\route']) {
      c.ours.labels(route, 'allowed').inc();
      c.ours.labels(route, 'allowed').inc(2);
      c.theirs.labels(route, 'allowed').inc();
      c.theirs.labels(route, 'allowed').inc(2);
    }
    assert.equal(await ours.metrics(), await theirs.metrics());
    assert.match(await ours.metrics(), /h_seconds_bucket\{le="0\.0005",stage="quota"\} 2/);
  });

  it('the workers aggregation (AggregatorRegistry) sums ours like theirs', async () => {
    const a = pair();
    const b = pair();
    for (const p of [a, b]) {
      for (const v of OBSERVATIONS) {
        p.h.ours.labels('scan').observe(v);
        p.h.theirs.labels('scan').observe(v);
      }
      p.c.ours.labels('r', 'x').inc(3);
      p.c.theirs.labels('r', 'x').inc(3);
    }
    const ours = AggregatorRegistry.aggregate([
      await a.ours.getMetricsAsJSON(),
      await b.ours.getMetricsAsJSON(),
    ]);
    const theirs = AggregatorRegistry.aggregate([
      await a.theirs.getMetricsAsJSON(),
      await b.theirs.getMetricsAsJSON(),
    ]);
    assert.equal(await ours.metrics(), await theirs.metrics());
    assert.match(await ours.metrics(), /h_seconds_count\{stage="scan"\} 24/);
  });

  it('a label set is resolved once: the same series object comes back', () => {
    const { h } = pair();
    assert.equal(h.ours.labels('route'), h.ours.labels('route'));
    assert.notEqual(h.ours.labels('route'), h.ours.labels('quota'));
  });

  it('a wrong number of label values is refused, and NaN is not observed', async () => {
    const { ours, h } = pair();
    assert.throws(() => h.ours.labels(), /1 label values expected, got 0/);
    h.ours.labels('route').observe(Number.NaN);
    assert.match(await ours.metrics(), /h_seconds_count\{stage="route"\} 0/);
  });

  it('a name already registered is refused by the registry', () => {
    const { ours } = pair();
    assert.throws(
      () => new FastCounter({ name: 'c_total', help: 'again', labelNames: [], registers: [ours] }),
      /already been registered/,
    );
  });
});
