// `serve --workers N`: N worker processes share the gRPC port (node:cluster hands each new
// connection to a worker in turn; Envoy keeps a few long-lived HTTP/2 connections, so N should not
// exceed them). The primary answers nothing on the Check path: it serves the admin endpoints —
// /metrics summed over the workers (prom-client's AggregatorRegistry), /readyz ready when every
// worker is — forwards SIGHUP and SIGTERM, and restarts a worker that dies.
import cluster, { type Worker } from 'node:cluster';
import type { Server } from 'node:http';
import type { Logger } from 'pino';
import { AggregatorRegistry } from 'prom-client';
import { splitHostPort } from '../config.js';
import { type AdminState, createAdminServer } from '../observability/admin.js';
import type { QuotaStatus } from '../quota/status.js';

/**
 * Why `workers` processes cannot serve without a shared quota store, or null when they can. Each
 * worker's in-process store would count every limit alone (N times each limit). Dividing each limit
 * by N is not a fix: node:cluster spreads connections, not requests, and Envoy keeps a few long-lived
 * HTTP/2 connections, so one worker may see all of a partner's traffic and hold it to 1/N of its
 * limit. Refusing is the only honest answer.
 */
export function workersNeedSharedStore(workers: number, redisUrl: string): string | null {
  if (workers <= 1 || redisUrl !== '') return null;
  return (
    `--workers ${workers} needs a shared quota store (--redis-url): without one each worker would count ` +
    `every limit alone (${workers}× each limit); use --workers 1 or set --redis-url`
  );
}

type Query = { type: 'policy' } | { type: 'quota'; partner: string };
interface Request {
  readonly portcullis: 'request';
  readonly id: number;
  readonly query: Query;
}
interface Reply {
  readonly portcullis: 'reply';
  readonly id: number;
  readonly value?: unknown;
  readonly error?: string;
}
interface Ready {
  readonly portcullis: 'ready';
}

/** In a worker: answer the primary's admin questions from this process's state. */
export function serveWorkerQueries(state: AdminState): void {
  process.on('message', (message: Request) => {
    if (message?.portcullis !== 'request') return;
    const answer = async (): Promise<unknown> =>
      message.query.type === 'policy' ? state.policy() : state.quotaStatus(message.query.partner);
    answer().then(
      (value) => process.send?.({ portcullis: 'reply', id: message.id, value } satisfies Reply),
      (err: unknown) =>
        process.send?.({ portcullis: 'reply', id: message.id, error: String(err) } satisfies Reply),
    );
  });
  process.send?.({ portcullis: 'ready' } satisfies Ready);
}

export async function runPrimary(workers: number, adminAddress: string, logger: Logger): Promise<number> {
  const ready = new Set<number>();
  let draining = false;
  let nextId = 0;
  const pending = new Map<number, (reply: Reply) => void>();

  const fork = () => {
    const worker = cluster.fork();
    worker.on('message', (message: Ready | Reply) => {
      if (message?.portcullis === 'ready') ready.add(worker.id);
      if (message?.portcullis === 'reply') pending.get(message.id)?.(message);
    });
    return worker;
  };
  for (let i = 0; i < workers; i++) fork();
  cluster.on('exit', (worker: Worker, code, signal) => {
    ready.delete(worker.id);
    if (draining) return;
    logger.error({ worker: worker.id, code, signal }, 'worker died: starting another');
    fork();
  });

  const ask = (query: Query): Promise<unknown> => {
    const worker = Object.values(cluster.workers ?? {}).find((w) => w && ready.has(w.id));
    if (!worker) return Promise.reject(new Error('no worker is ready'));
    const id = ++nextId;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error('worker did not answer'));
      }, 2000);
      pending.set(id, (reply) => {
        clearTimeout(timer);
        pending.delete(id);
        if (reply.error) reject(new Error(reply.error));
        else resolve(reply.value);
      });
      worker.send({ portcullis: 'request', id, query } satisfies Request);
    });
  };

  let policy: ReturnType<AdminState['policy']> = { version: '', name: '' };
  const refreshPolicy = () =>
    ask({ type: 'policy' }).then(
      (value) => {
        policy = value as typeof policy;
      },
      () => {},
    );
  const policyTimer = setInterval(refreshPolicy, 1000);
  const aggregator = new AggregatorRegistry();
  const admin: Server = createAdminServer(
    { text: () => aggregator.clusterMetrics(), contentType: aggregator.contentType },
    {
      ready: () => !draining && ready.size === workers,
      policy: () => policy,
      quotaStatus: (partner) => ask({ type: 'quota', partner }) as Promise<QuotaStatus | null>,
    },
  );
  const { host, port } = splitHostPort(adminAddress);
  await new Promise<void>((resolve) => admin.listen(port, host, resolve));
  const waitReady = setInterval(() => {
    if (ready.size === workers) {
      clearInterval(waitReady);
      void refreshPolicy();
      logger.info({ workers, admin: adminAddress }, 'serving');
    }
  }, 20);

  process.on('SIGHUP', () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGHUP');
  });
  const signal = await new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  draining = true;
  logger.info({ signal }, 'shutting down the workers');
  clearInterval(policyTimer);
  clearInterval(waitReady);
  const exits = Object.values(cluster.workers ?? {}).map(
    (w) => new Promise((resolve) => (w?.isDead() ? resolve(null) : w?.once('exit', resolve))),
  );
  for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
  await Promise.all(exits);
  await new Promise<void>((resolve) => admin.close(() => resolve()));
  admin.closeAllConnections();
  return 0;
}
