// A real clamd for a test: its own process, listening on a free loopback TCP port and on a unix socket
// in a temporary directory, with a temporary configuration and a test signature database that holds
// one signature (the EICAR test string; no freshclam, no network). It can be killed (SIGKILL), stalled
// (SIGSTOP) and resumed (SIGCONT), and is always cleaned up: t.after, and a last-resort kill when the
// test process exits.
import { Buffer } from 'node:buffer';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { freePort, probe, resolveBinary } from './processes.js';

export const CLAMD_HOST = '127.0.0.1';

/**
 * The EICAR anti-virus test file (68 bytes). Assembled at run time so that this source file itself
 * does not trip a scanner on a developer's machine.
 */
export const EICAR = Buffer.from(
  ['X5O!P%@AP[4', '\\PZX54(P^)7CC)7}$', 'EICAR-STANDARD-ANTIVIRUS', '-TEST-FILE!$H+H*'].join(''),
  'latin1',
);

/** The signature's name in the test database; clamd reports it with `.UNOFFICIAL` appended. */
export const EICAR_SIGNATURE = 'Portcullis.Test.EICAR';

export interface ClamdOptions {
  /** The executable, looked up on PATH, then in /usr/sbin, unless absolute. Default `clamd`. */
  readonly binary?: string;
  /** clamd's StreamMaxLength in bytes (written as a byte count). Default 2 MiB. */
  readonly streamMaxBytes?: number;
  /** Extra `Option value` lines, appended after ours. */
  readonly config?: readonly string[];
  /** How long to wait for PONG. Default 30 s (loading even one signature takes a moment). */
  readonly startTimeoutMs?: number;
}

export interface ClamdServer {
  readonly host: string;
  readonly port: number;
  /** The unix socket clamd also listens on. */
  readonly socketPath: string;
  /** StreamMaxLength, in bytes. */
  readonly streamMaxBytes: number;
  /** True while the process exists (stopped included). */
  readonly running: boolean;
  /** stdout + stderr, and clamd's log file: for failure messages. */
  output(): string;
  /** Scans clamd logged (one line per stream it scanned). */
  scansLogged(): number;
  /** SIGKILL, then wait for the exit: connections are refused from then on. */
  kill(): Promise<void>;
  /** SIGSTOP: the process stays, its sockets accept connections (kernel backlog), nothing answers. */
  stop(): void;
  /** SIGCONT after stop(). */
  cont(): void;
  /** Kill the process and remove its directory. Idempotent. */
  close(): Promise<void>;
}

const NOT_FOUND = 'clamd not found: run `make test`, which installs clamav-daemon';

const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of live) {
      child.kill('SIGCONT');
      child.kill('SIGKILL');
    }
    live.clear();
  });
}

export async function startClamd(t?: TestContext, opts: ClamdOptions = {}): Promise<ClamdServer> {
  const binary = resolveBinary(opts.binary ?? 'clamd', opts.binary ? `${opts.binary} not found` : NOT_FOUND);
  const streamMaxBytes = opts.streamMaxBytes ?? 2 * 1024 * 1024;
  const startTimeoutMs = opts.startTimeoutMs ?? 30_000;
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-clamd-'));
  const dbDir = join(dir, 'db');
  const tmp = join(dir, 'tmp');
  mkdirSync(dbDir);
  mkdirSync(tmp);
  // An .ndb body signature: any target type (0), anywhere in the object (*), the EICAR bytes in hex.
  writeFileSync(join(dbDir, 'test.ndb'), `${EICAR_SIGNATURE}:0:*:${EICAR.toString('hex')}\n`);
  const socketPath = join(dir, 'clamd.sock');
  const logFile = join(dir, 'clamd.log');
  installExitHook();

  let child: ChildProcess | undefined;
  let out = '';
  let port = 0;
  let closed = false;

  const server: ClamdServer = {
    host: CLAMD_HOST,
    get port() {
      return port;
    },
    socketPath,
    streamMaxBytes,
    get running() {
      return child !== undefined && isAlive(child);
    },
    output: () => `${out}\n--- ${logFile} ---\n${readLog()}`,
    scansLogged: () => readLog().match(/^instream\([^)]*\): .*(?:OK|FOUND)$/gm)?.length ?? 0,
    kill: () => terminate(),
    stop() {
      if (child && isAlive(child)) child.kill('SIGSTOP');
    },
    cont() {
      if (child && isAlive(child)) child.kill('SIGCONT');
    },
    async close() {
      if (closed) return;
      closed = true;
      await terminate();
      rmSync(dir, { recursive: true, force: true });
    },
  };

  function readLog(): string {
    try {
      return readFileSync(logFile, 'utf8');
    } catch {
      return '';
    }
  }

  async function terminate(): Promise<void> {
    const proc = child;
    if (!proc || !isAlive(proc)) return;
    const exited = once(proc, 'exit');
    proc.kill('SIGCONT'); // a stopped process dies of SIGKILL too, but let it go cleanly
    proc.kill('SIGKILL');
    await exited;
  }

  function writeConfig(p: number): string {
    const file = join(dir, 'clamd.conf');
    const lines = [
      'Foreground yes',
      `DatabaseDirectory ${dbDir}`,
      `TemporaryDirectory ${tmp}`,
      `TCPSocket ${p}`,
      `TCPAddr ${CLAMD_HOST}`,
      `LocalSocket ${socketPath}`,
      `StreamMaxLength ${streamMaxBytes}`,
      `LogFile ${logFile}`,
      'LogClean yes',
      'LogTime no',
      'MaxThreads 8',
      'SelfCheck 3600',
      ...(opts.config ?? []),
    ];
    writeFileSync(file, `${lines.join('\n')}\n`);
    return file;
  }

  async function launch(p: number): Promise<'ready' | 'in-use' | string> {
    rmSync(socketPath, { force: true });
    const config = writeConfig(p);
    const proc = spawn(binary, ['--config-file', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    live.add(proc);
    let spawnError: Error | undefined;
    proc.on('error', (err) => {
      spawnError = err;
    });
    proc.once('exit', () => live.delete(proc));
    const collect = (chunk: Buffer) => {
      if (out.length < 256 * 1024) out += chunk.toString('utf8');
    };
    proc.stdout?.on('data', collect);
    proc.stderr?.on('data', collect);

    const deadline = Date.now() + startTimeoutMs;
    while (Date.now() < deadline) {
      if (spawnError) return `spawn failed: ${spawnError.message}`;
      if (!isAlive(proc)) {
        if (/address already in use/i.test(out + readLog())) return 'in-use';
        return `exited with ${proc.exitCode ?? proc.signalCode}`;
      }
      if (await ping(p)) return 'ready';
      await sleep(50);
    }
    await terminate();
    return `no PONG within ${startTimeoutMs} ms`;
  }

  try {
    for (let attempt = 1; ; attempt++) {
      port = await freePort(CLAMD_HOST);
      const result = await launch(port);
      if (result === 'ready') break;
      // Someone took the port between our probe and clamd's bind: try another one.
      if (result === 'in-use' && attempt < 5) continue;
      throw new Error(`clamd did not start (${result}):\n${server.output().slice(-4000)}`);
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

/** `zPING\0` on a fresh connection; true on `PONG\0`. */

/** `zPING\0` on a fresh connection; true on `PONG\0`. */
const ping = (port: number) => probe(CLAMD_HOST, port, 'zPING\0', 'PONG\0', (r) => r.includes('\0'), 1000);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
