// The quota stage's way from a store's answer to the Check's decision (QuotaCharge, src/pipeline/quota.ts),
// through the real pipeline over a real catalog: an answer given before chargeTo returns (the
// in-process store, an open circuit) costs no promise; one given later settles the Check's promise;
// a failure follows the route's on_store_error; a charge the store refuses as malformed is our bug.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AdmissionGate } from '../../src/admission/gate.js';
import { GradientLimit } from '../../src/admission/limit.js';
import type { Clock } from '../../src/clock.js';
import type { Decision } from '../../src/decision.js';
import { checkCodec } from '../../src/envoy/codec.js';
import { normalize } from '../../src/envoy/normalize.js';
import { ApiKeyVerifier } from '../../src/identity/apikeys.js';
import { CertificateReader } from '../../src/identity/certificates.js';
import { StaticRevocations } from '../../src/identity/revocation.js';
import type { Outcome } from '../../src/pipeline/check.js';
import { parseCatalog } from '../../src/policy/load.js';
import { StoreBreaker } from '../../src/quota/breaker.js';
import { windowAt } from '../../src/quota/calendar.js';
import { MemoryQuotaStore } from '../../src/quota/memory-store.js';
import { OverLimitCache } from '../../src/quota/over-limit.js';
import type { ChargeRequest, ChargeResult, ChargeSink, QuotaStore } from '../../src/quota/types.js';
import { createPipeline } from '../../src/runtime.js';
import { envoyRequest } from '../support/envoy-request.js';

const CATALOG = `
version_name: quota-stage
plans:
  - name: small
    limits:
      - { name: per-minute, algorithm: fixed_window, limit: 2, window: minute }
partners:
  - id: acme
    name: Acme
    plan: small
    identities:
      principals: [spiffe://partners.example.com/acme]
routes:
  - name: closed
    match: { path: { prefix: /closed } }
    identity: { any_of: [mtls] }
  - name: open
    match: { path: { prefix: /open } }
    identity: { any_of: [mtls] }
    quota: { on_store_error: fail_open }
`;

const T0 = Date.UTC(2026, 11, 7, 12, 0, 30);
const clock: Clock = { now: () => T0 };
const codec = checkCodec();

/** A store whose answers wait until `release()` (a Redis reply arriving later), or fail. */
class Deferred implements Pick<QuotaStore, 'charge' | 'chargeTo' | 'refund'> {
  readonly inner = new MemoryQuotaStore();
  waiting: (() => void)[] = [];
  error: unknown = null;
  charge(request: ChargeRequest): Promise<ChargeResult> {
    return new Promise((resolve, reject) => this.chargeTo(request, { charged: resolve, failed: reject }));
  }
  chargeTo(request: ChargeRequest, sink: ChargeSink): void {
    const error = this.error;
    this.waiting.push(() => (error === null ? this.inner.chargeTo(request, sink) : sink.failed(error)));
  }
  refund(request: ChargeRequest, result: ChargeResult): Promise<void> {
    return this.inner.refund(request, result);
  }
  release(): void {
    for (const answer of this.waiting.splice(0)) answer();
  }
}

function setup(
  store: Pick<QuotaStore, 'charge' | 'chargeTo' | 'refund'>,
  fallback: MemoryQuotaStore | null,
  options: { gate?: AdmissionGate; deadlineMs?: number } = {},
) {
  const catalog = parseCatalog(CATALOG, 'quota-stage.yaml');
  const failures: string[] = [];
  const pipeline = createPipeline({
    identity: {
      tokens: null,
      apiKeys: new ApiKeyVerifier(null),
      certificates: new CertificateReader(),
      revocations: new StaticRevocations(),
      clock,
    },
    quota: {
      store,
      fallback,
      windowAt,
      overLimit: new OverLimitCache(),
      clock,
      events: { charged: () => {}, storeFailed: (behaviour) => failures.push(behaviour) },
    },
    clock,
    admission: options.gate ? { gate: options.gate, maxQueueWaitMs: 0 } : undefined,
  });
  let n = 0;
  const check = (path: string): Outcome | Promise<Outcome> => {
    const wire = envoyRequest({
      path,
      principal: 'spiffe://partners.example.com/acme',
      requestId: `r-${n++}`,
    });
    const normalized = normalize(codec.decodeRequest(codec.encodeRequest(wire)), {
      maxHeaderValueBytes: 8192,
    });
    if (!normalized.ok) throw new Error('test request did not normalize');
    return pipeline.check(normalized.request, {
      catalog,
      decisionId: `d-${n}`,
      deadline: options.deadlineMs === undefined ? Number.POSITIVE_INFINITY : T0 + options.deadlineMs,
    });
  };
  return { check, failures };
}

const codeOf = (d: Decision) => (d.kind === 'allow' ? d.code : d.code);

describe('the quota stage answers as the store does', () => {
  test('an in-process store answers before chargeTo returns: the Check is decided without a promise', () => {
    const { check } = setup(new MemoryQuotaStore(), null);
    const codes = [0, 1, 2].map(() => {
      const outcome = check('/closed');
      assert.equal(outcome instanceof Promise, false, 'no promise on a synchronous charge');
      return codeOf((outcome as Outcome).decision);
    });
    assert.deepEqual(codes, ['allowed', 'allowed', 'quota_exceeded']);
  });

  test('an open circuit refuses at once: fail_closed → quota_unavailable, fail_open → the fallback, both without a promise', () => {
    const failing = new Deferred();
    failing.error = new Error("Stream isn't writeable");
    const breaker = new StoreBreaker(failing, { resetMs: 60_000, volumeThreshold: 1 }, { now: () => 0 });
    const { check, failures } = setup(breaker, new MemoryQuotaStore());
    const first = check('/closed');
    assert.ok(first instanceof Promise, 'the store answers later');
    failing.release();
    return first.then((outcome) => {
      assert.equal(codeOf(outcome.decision), 'quota_unavailable');
      assert.equal(breaker.state(), 'open');
      const closed = check('/closed');
      const open = check('/open');
      assert.equal(closed instanceof Promise || open instanceof Promise, false);
      assert.equal(codeOf((closed as Outcome).decision), 'quota_unavailable');
      const allowed = (open as Outcome).decision;
      assert.equal(codeOf(allowed), 'allowed');
      assert.match(
        allowed.reason,
        /quota store failed \(Redis is considered down.*\): charged this replica's share/,
      );
      assert.deepEqual(failures, ['fail_closed', 'fail_closed', 'fail_open']);
    });
  });

  test('a store that answers later: one promise per Check, settled with the store answer in order', async () => {
    const store = new Deferred();
    const { check } = setup(store, null);
    const pending = [check('/closed'), check('/closed'), check('/closed')];
    assert.ok(pending.every((p) => p instanceof Promise));
    store.release();
    const codes = (await Promise.all(pending)).map((o) => codeOf(o.decision));
    assert.deepEqual(codes, ['allowed', 'allowed', 'quota_exceeded']);
  });

  test('a late failure on a fail_open route charges the fallback; the fallback failing too is internal_error', async () => {
    const store = new Deferred();
    store.error = new Error('Connection is closed.');
    const fallback = new MemoryQuotaStore();
    const { check } = setup(store, fallback);
    const open = check('/open');
    store.release();
    const outcome = await open;
    assert.equal(codeOf(outcome.decision), 'allowed');
    assert.match(outcome.decision.reason, /quota store failed .*charged this replica's share/);
    fallback.chargeTo = (_request, sink) => sink.failed(new Error('fallback broke'));
    const broken = check('/open');
    store.release();
    const failed = await broken;
    assert.equal(codeOf(failed.decision), 'internal_error');
  });

  test('a charge the store refuses as malformed (RangeError) is internal_error, never quota_unavailable', async () => {
    const store = new Deferred();
    store.error = new RangeError('limit must be ≥ 1');
    const { check, failures } = setup(store, new MemoryQuotaStore());
    const pending = check('/open');
    store.release();
    assert.equal(codeOf((await pending).decision), 'internal_error');
    assert.deepEqual(failures, [], 'not counted as a store failure');
  });

  test('an admitted Check waiting on its charge holds its admission slot until the store answers, even past its deadline', async () => {
    const store = new Deferred();
    const gate = new AdmissionGate(
      new GradientLimit({ min: 1, max: 1, initial: 1, tolerance: 2, eventLoopDelayMs: 1000 }),
      clock,
      0,
    );
    const { check } = setup(store, null, { gate, deadlineMs: 60 });
    const waiting = check('/closed');
    assert.ok(waiting instanceof Promise);
    assert.equal(gate.snapshot().inFlight, 1);
    const shed = check('/closed');
    assert.equal(codeOf((shed as Outcome).decision), 'overloaded', 'the one slot is taken');
    // The deadline answers the Check (route on_error: deny) while the charge is still in flight…
    // (the deadline timer is unref'd: keep the loop alive meanwhile)
    const alive = setInterval(() => {}, 10);
    const late = await waiting.finally(() => clearInterval(alive));
    assert.equal(codeOf(late.decision), 'deadline_exceeded');
    assert.equal(gate.snapshot().inFlight, 1, 'the work it admitted is still running');
    // …and the slot comes back once the store has answered.
    store.release();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(gate.snapshot().inFlight, 0);
    const next = check('/closed');
    assert.ok(next instanceof Promise);
    store.release();
    assert.equal(codeOf((await next).decision), 'allowed');
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(gate.snapshot().inFlight, 0, 'an answered Check gives its slot back');
  });
});
