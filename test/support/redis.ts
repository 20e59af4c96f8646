// A real redis-server for a test: its own process on a free loopback port, no persistence unless
// asked, killable and restartable on the same port, and always cleaned up (t.after, and a last-resort
// kill when the test process exits).
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { Redis, type RedisOptions } from 'ioredis';
import { freePort, probe, resolveBinary } from './processes.js';

export const REDIS_HOST = '127.0.0.1';

export interface RedisServerOptions {
  /** The executable, looked up on PATH unless absolute. Default `redis-server`. */
  readonly binary?: string;
  /**
   * Extra configuration, appended after ours so it wins, e.g. `['--appendonly', 'yes']` for data that
   * survives `kill()` + `restart()`, or `['--maxmemory', '16mb']`.
   */
  readonly args?: readonly string[];
  /** How long to wait for the server to answer PING, per start or restart. Default 10 s. */
  readonly startTimeoutMs?: number;
}

export interface RedisServer {
  readonly host: string;
  readonly port: number;
  /** `redis://127.0.0.1:PORT` */
  readonly url: string;
  /** True while the process runs. */
  readonly running: boolean;
  /** What the server printed (its log), for failure messages. */
  output(): string;
  /**
   * A new client to this server, disconnected on cleanup. It reconnects fast (≤ 500 ms between
   * attempts, override with `retryStrategy`) and ignores 'error' events (commands still reject), so a
   * killed server does not flood the test output; add your own listener to see them.
   */
  client(options?: RedisOptions): Redis;
  /** SIGKILL, then wait for the process to exit. A crash: no shutdown work, sockets reset. */
  kill(): Promise<void>;
  /** SIGTERM (a clean shutdown), then wait for exit; SIGKILL if it takes over 5 s. */
  stop(): Promise<void>;
  /** Start again on the same port (stopping first if running), with the same data directory. */
  restart(): Promise<void>;
  /** Kill the server, disconnect its clients, remove its data directory. Idempotent. */
  close(): Promise<void>;
}

const NOT_FOUND = 'redis-server not found: run `make test`, which installs it';

// Every live server of this process, killed if the process exits without cleaning up.
const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  const killAll = () => {
    for (const child of live) child.kill('SIGKILL');
    live.clear();
  };
  process.on('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      killAll();
      // If nobody else handles the signal, keep its default meaning (terminate).
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    });
  }
}

export async function startRedis(t?: TestContext, opts: RedisServerOptions = {}): Promise<RedisServer> {
  const binary = resolveBinary(
    opts.binary ?? 'redis-server',
    opts.binary ? `${opts.binary} not found` : NOT_FOUND,
  );
  const startTimeoutMs = opts.startTimeoutMs ?? 10_000;
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-redis-'));
  const clients = new Set<Redis>();
  installExitHook();

  let child: ChildProcess | undefined;
  let out = '';
  let port = 0;
  let closed = false;

  const server: RedisServer = {
    host: REDIS_HOST,
    get port() {
      return port;
    },
    get url() {
      return `redis://${REDIS_HOST}:${port}`;
    },
    get running() {
      return child !== undefined && isAlive(child);
    },
    output: () => out,
    client(options?: RedisOptions): Redis {
      if (closed) throw new Error('redis server closed');
      const client = new Redis({
        host: REDIS_HOST,
        port,
        retryStrategy: (times) => Math.min(times * 50, 500),
        ...options,
      });
      client.on('error', () => {});
      clients.add(client);
      client.once('end', () => clients.delete(client));
      return client;
    },
    kill: () => terminate('SIGKILL'),
    stop: () => terminate('SIGTERM'),
    async restart() {
      if (closed) throw new Error('redis server closed');
      if (server.running) await terminate('SIGTERM');
      await launch(port, true);
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const client of clients) client.disconnect();
      clients.clear();
      await terminate('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };

  async function terminate(signal: 'SIGKILL' | 'SIGTERM'): Promise<void> {
    const proc = child;
    if (!proc || !isAlive(proc)) return;
    const exited = once(proc, 'exit');
    proc.kill(signal);
    if (signal === 'SIGTERM') {
      const force = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(force);
    } else {
      await exited;
    }
  }

  /** Start on `p`. Resolves when it answers PING; rejects (with the server's log) otherwise. */
  async function launch(p: number, retryInUse: boolean): Promise<void> {
    const deadline = Date.now() + startTimeoutMs;
    for (;;) {
      const result = await spawnOnce(p, deadline);
      if (result === 'ready') return;
      if (result === 'in-use' && retryInUse && Date.now() < deadline) {
        await sleep(50);
        continue;
      }
      if (result === 'in-use') throw Object.assign(new Error(`port ${p} in use`), { code: 'EADDRINUSE' });
      throw new Error(`redis-server on port ${p} did not start (${result}):\n${out.slice(-4000)}`);
    }
  }

  async function spawnOnce(p: number, deadline: number): Promise<'ready' | 'in-use' | string> {
    let runOut = '';
    const args = [
      '--port',
      String(p),
      '--bind',
      REDIS_HOST,
      '--save',
      '',
      '--appendonly',
      'no',
      '--daemonize',
      'no',
      '--logfile',
      '',
      '--dir',
      dir,
      ...(opts.args ?? []),
    ];
    const proc = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    live.add(proc);
    let spawnError: Error | undefined;
    proc.on('error', (err) => {
      spawnError = err;
    });
    proc.once('exit', () => live.delete(proc));
    const collect = (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      if (runOut.length < 64 * 1024) runOut += text;
      if (out.length < 256 * 1024) out += text;
    };
    proc.stdout?.on('data', collect);
    proc.stderr?.on('data', collect);

    // "Ready to accept connections" proves that *this* process bound the port; PING proves it answers.
    while (Date.now() < deadline) {
      if (spawnError) return `spawn failed: ${spawnError.message}`;
      if (!isAlive(proc)) {
        if (/address already in use/i.test(runOut)) return 'in-use';
        return `exited with ${proc.exitCode ?? proc.signalCode}`;
      }
      if (/ready to accept connections/i.test(runOut) && (await ping(p))) return 'ready';
      await sleep(20);
    }
    await terminate('SIGKILL');
    return `no PING answer within ${startTimeoutMs} ms`;
  }

  try {
    for (let attempt = 1; ; attempt++) {
      port = await freePort(REDIS_HOST);
      try {
        await launch(port, false);
        break;
      } catch (err) {
        // Someone took the port between our probe and redis-server's bind: try another one.
        if (attempt < 5 && (err as { code?: string }).code === 'EADDRINUSE') continue;
        throw err;
      }
    }
  } catch (err) {
    await server.close();
    throw err;
  }
  t?.after(() => server.close());
  return server;
}

function isAlive(proc: ChildProcess): boolean {
  return proc.exitCode === null && proc.signalCode === null;
}

/** One raw `PING` on a fresh socket; true on `+PONG`. */

const ping = (port: number) =>
  probe(REDIS_HOST, port, 'PING\r\n', '+PONG\r\n', (r) => r.includes('\r\n'), 500);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
