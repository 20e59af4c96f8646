// Two real `portcullis serve --redis-url` replicas sharing one real redis-server (issue 13), for the
// replica tests (quota-replicas*.test.ts): the catalog they serve, the replicas themselves (spawned by
// serve.ts), and a Check that reports its decision code or the gRPC error instead of throwing.
import type { TestContext } from 'node:test';
import { envoyRequest } from './envoy-request.js';
import { OfficialCheckClient } from './official-client.js';
import { type RedisServer, startRedis } from './redis.js';
import { codeOf, principal, type Serve, startServe, tally as tallyCodes } from './serve.js';

/** Partner `burst`: 100 at once, then one per 864 s; partner `steady`: 10 million a day. */
export const REPLICA_CATALOG = JSON.stringify({
  version_name: 'replica-tests',
  settings: { quotas: { replicas: 2, idempotency_seconds: 600 } },
  partners: [
    {
      id: 'burst',
      name: 'burst',
      identities: { principals: [principal('burst')] },
      // 100 at once, then one more every 864 s: no refill during the burst, however long it takes.
      limits: [{ name: 'per-day', algorithm: 'gcra', limit: 100, period: '1d', burst: 100 }],
    },
    {
      id: 'steady',
      name: 'steady',
      identities: { principals: [principal('steady')] },
      limits: [{ name: 'daily', algorithm: 'fixed_window', limit: 10_000_000, window: 'day' }],
    },
  ],
  routes: [{ name: 'orders', match: { path: { prefix: '/v1/orders' } } }],
});

export interface Replica {
  readonly client: OfficialCheckClient;
  readonly serve: Serve;
}

export interface Answer {
  readonly code: string;
  readonly error?: string;
}

/** A fresh `portcullis serve` process (cold: no warm-up), once it logs "serving", with a client. */
async function startReplica(t: TestContext, redis: RedisServer): Promise<Replica> {
  const serve = await startServe(t, REPLICA_CATALOG, redis.url);
  const client = new OfficialCheckClient(serve.address);
  t.after(() => client.close());
  return { client, serve };
}

/** A redis-server and two replicas `a` and `b` using it; all stopped after the test. */
export async function startReplicas(t: TestContext) {
  const redis = await startRedis(t);
  const [a, b] = await Promise.all([startReplica(t, redis), startReplica(t, redis)]);
  return { redis, a, b };
}

/** One Check on /v1/orders/1 as `partner`: its decision code, or `grpc_error` with the error. */
export async function check(
  replica: Replica,
  partner: string,
  requestId: string,
  timeoutMs = 60_000,
): Promise<Answer> {
  try {
    const res = await replica.client.check(
      envoyRequest({ path: '/v1/orders/1', principal: principal(partner), requestId }),
      timeoutMs,
    );
    return { code: codeOf(res) };
  } catch (error: unknown) {
    return { code: 'grpc_error', error: String(error) };
  }
}

/** How many answers carried each code. */
export const tally = (answers: readonly Answer[]): Record<string, number> =>
  tallyCodes(answers.map((a) => a.code));
