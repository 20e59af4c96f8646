// Issue 13, must-show 5, against a real `portcullis serve` and a real redis-server: a partner sending
// 10× the others' rate while the process is overloaded gets about its share of the slots; the
// others are never shed. The ceiling is fixed and low; Redis replies are slowed by a relay so that
// admission slots, not the test's client, are what the partners compete for.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { envoyRequest } from '../support/envoy-request.js';
import { OfficialCheckClient } from '../support/official-client.js';
import { startRedis } from '../support/redis.js';
import { codeOf, counter, metricsText, principal, startServe, tally } from '../support/serve.js';

// -------------------------------------------------------------------------------------------
// 5. Fairness

const PARTNERS = ['heavy', 'light-a', 'light-b', 'light-c'];
const FAIR_CATALOG = `
settings:
  admission: { min_limit: 4, max_limit: 4, initial_limit: 4, max_queue: 64, max_queue_wait_ms: 10000 }
partners:
${PARTNERS.map(
  (p) => `  - id: ${p}
    name: ${p}
    identities: { principals: ["${principal(p)}"] }
    limits:
      - { name: per-hour, algorithm: sliding_window, limit: 1000000, period: 1h }`,
).join('\n')}
routes:
  - name: orders
    match: { path: { prefix: /v1/orders } }
    identity: { any_of: [mtls] }
`;

/** The relay of `slowLink`, run as its own process: the test's busy client loop must not delay it. */
const RELAY = `
const net = require('node:net');
const [port, delay] = process.argv.slice(1).map(Number);
const relay = net.createServer((down) => {
  const up = net.connect({ host: '127.0.0.1', port });
  down.on('data', (chunk) => up.write(chunk));
  up.on('data', (chunk) => setTimeout(() => down.writable && down.write(chunk), delay));
  const close = () => { down.destroy(); up.destroy(); };
  for (const s of [down, up]) { s.on('error', close); s.on('close', close); }
});
relay.listen(0, '127.0.0.1', () => console.log(relay.address().port));
`;

/**
 * A TCP relay to Redis that holds every reply for `delayMs`: Redis behind a slower link. Admitted
 * Checks then hold their slot for that long, so the slots (not the test's client) are what the
 * partners compete for.
 */
async function slowLink(t: TestContext, port: number, delayMs: number): Promise<string> {
  const child = spawn(process.execPath, ['-e', RELAY, String(port), String(delayMs)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.after(() => {
    child.kill('SIGKILL');
  });
  const [line] = (await once(createInterface({ input: child.stdout as NodeJS.ReadableStream }), 'line')) as [
    string,
  ];
  return `redis://127.0.0.1:${Number(line)}`;
}

test('5. fairness: a partner sending 10× the others while overloaded gets about its share; the others are never shed', async (t) => {
  const redis = await startRedis(t);
  const serve = await startServe(t, FAIR_CATALOG, await slowLink(t, redis.port, 40));
  const client = new OfficialCheckClient(serve.address);
  t.after(() => client.close());
  await client.check(envoyRequest({ principal: principal('heavy') }), 10_000);

  // Closed loops: heavy keeps 100 Checks outstanding, each light partner 10 (10× fewer): enough
  // for every partner to have Checks waiting whenever a slot frees, on a loaded machine too. The run ends
  // when every light partner has had 30 allows (or heavy has sent 20,000 Checks: a bound, not a goal).
  const LIGHT_TARGET = 30;
  const HEAVY_CAP = 20_000;
  const codes = new Map<string, string[]>(PARTNERS.map((p) => [p, []]));
  /** Allows answered while every partner was still sending: the contested part of the run. */
  const contested = new Map<string, number>(PARTNERS.map((p) => [p, 0]));
  let lightsDone = 0;
  let heavySent = 0;
  const done = () => lightsDone === 3 || heavySent >= HEAVY_CAP;
  const allowedOf = (p: string) => (codes.get(p) as string[]).filter((c) => c === 'allowed').length;
  const worker = async (partner: string, target: number) => {
    const mine = codes.get(partner) as string[];
    while (!done() && allowedOf(partner) < target) {
      if (partner === 'heavy') heavySent++;
      const res = await client.check(envoyRequest({ principal: principal(partner) }), 20_000);
      mine.push(codeOf(res));
      if (lightsDone === 0 && codeOf(res) === 'allowed')
        contested.set(partner, (contested.get(partner) ?? 0) + 1);
      // A shed Check comes back at once; a client retrying in a tight loop would measure our
      // answer rate, not the slots. 20 ms keeps heavy's demand far above its share.
      if (codeOf(res) === 'overloaded') await sleep(20);
    }
  };
  const light = async (partner: string) => {
    await Promise.all(Array.from({ length: 10 }, () => worker(partner, LIGHT_TARGET)));
    lightsDone++;
  };
  await Promise.all([
    ...Array.from({ length: 100 }, () => worker('heavy', Number.POSITIVE_INFINITY)),
    light('light-a'),
    light('light-b'),
    light('light-c'),
  ]);

  const summary = Object.fromEntries([...codes].map(([p, c]) => [p, tally(c)]));
  t.diagnostic(`answers by partner: ${JSON.stringify(summary)}`);
  const count = (p: string, code: string) => summary[p]?.[code] ?? 0;
  for (const p of ['light-a', 'light-b', 'light-c']) {
    assert.equal(count(p, 'overloaded'), 0, `${p} is never shed`);
    assert.ok(count(p, 'allowed') >= LIGHT_TARGET, `${p} keeps being served`);
  }
  assert.ok(count('heavy', 'overloaded') > 0, 'the heavy partner is the one shed');
  // Over the contested part only: before the first light partner stopped (afterwards heavy's queue
  // drains alone, as it should).
  const heavyAllowed = contested.get('heavy') ?? 0;
  const allAllowed = [...contested.values()].reduce((a, b) => a + b, 0);
  t.diagnostic(
    `while all four sent: heavy ${heavyAllowed} of ${allAllowed} allows (${((100 * heavyAllowed) / allAllowed).toFixed(0)} %; ` +
      `it had 77 % of the Checks outstanding; a fair share of 4 callers is 25 %); ${JSON.stringify(Object.fromEntries(contested))}`,
  );
  // First come, first served would give heavy about its 77 % of the outstanding Checks.
  assert.ok(heavyAllowed <= allAllowed / 2, `heavy got ${heavyAllowed} of ${allAllowed} admitted Checks`);

  const metrics = await metricsText(serve.adminPort);
  assert.equal(
    counter(metrics, 'portcullis_admission_shed_total', { partner: 'heavy' }),
    count('heavy', 'overloaded'),
  );
  for (const p of ['light-a', 'light-b', 'light-c']) {
    assert.equal(counter(metrics, 'portcullis_admission_shed_total', { partner: p }), 0);
  }
});
