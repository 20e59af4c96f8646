// A real 3-master Redis Cluster for a test: three redis-server processes (test/support/redis.ts) with
// cluster mode on, joined by `redis-cli --cluster create … --cluster-replicas 0 --cluster-yes`, ready
// once every node reports cluster_state:ok. Each node's cluster config file lives in its own temp data
// directory; everything (processes, directories, clients) is removed on t.after, and at once if
// anything fails while starting.
import { execFile } from 'node:child_process';
import type { TestContext } from 'node:test';
import { promisify } from 'node:util';
import { freePort } from './processes.js';
import { REDIS_HOST, type RedisServer, startRedis } from './redis.js';

const run = promisify(execFile);

export interface RedisClusterHandle {
  readonly nodes: readonly RedisServer[];
  /** `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3` (for createRedisClient). */
  readonly url: string;
  /** Kill every node and remove its files. Idempotent. */
  close(): Promise<void>;
}

export interface RedisClusterOptions {
  /** Wait this long at most for the cluster to form. Default 30 s. */
  readonly timeoutMs?: number;
}

export async function startRedisCluster(
  t?: TestContext,
  opts: RedisClusterOptions = {},
): Promise<RedisClusterHandle> {
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  const nodes: RedisServer[] = [];
  const close = async () => {
    await Promise.all(nodes.map((node) => node.close()));
  };
  t?.after(close);
  try {
    const started = await Promise.allSettled([0, 1, 2].map(() => startNode()));
    for (const result of started) if (result.status === 'fulfilled') nodes.push(result.value);
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;

    const addresses = nodes.map((node) => `${REDIS_HOST}:${node.port}`);
    try {
      await run(
        'redis-cli',
        ['--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes'],
        {
          timeout: Math.max(1000, deadline - Date.now()),
        },
      );
    } catch (err: unknown) {
      const e = err as { stdout?: string; stderr?: string; message?: string };
      throw new Error(
        `redis-cli --cluster create failed: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`,
      );
    }
    for (const node of nodes) await waitClusterOk(node, deadline);
    return { nodes, url: `redis+cluster://${addresses.join(',')}`, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/**
 * One cluster-mode node. The cluster bus needs a second port (default: port + 10000, which can fall
 * outside the port range), so we pick a free one and pass it as `cluster-port` (Redis ≥ 7.0).
 */
async function startNode(): Promise<RedisServer> {
  for (let attempt = 1; ; attempt++) {
    const busPort = await freePort(REDIS_HOST);
    try {
      return await startRedis(undefined, {
        args: [
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          'nodes.conf', // relative to the node's own temp --dir
          '--cluster-port',
          String(busPort),
          '--cluster-node-timeout',
          '2000',
        ],
      });
    } catch (err) {
      if (attempt >= 3) throw err; // the bus port was taken meanwhile: try another
    }
  }
}

async function waitClusterOk(node: RedisServer, deadline: number): Promise<void> {
  const client = node.client({ lazyConnect: false });
  try {
    for (;;) {
      const info = String(await client.call('CLUSTER', 'INFO'));
      if (/cluster_state:ok/.test(info) && /cluster_known_nodes:3/.test(info)) return;
      if (Date.now() > deadline) throw new Error(`cluster not ok on ${node.port}:\n${info}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    client.disconnect();
  }
}
