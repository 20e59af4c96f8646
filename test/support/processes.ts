// What the tests' real servers (redis-server, clamd, a Redis Cluster) share: finding the program,
// a free loopback port, and a one-shot request/reply probe on a fresh connection.
import { accessSync, constants } from 'node:fs';
import { connect, createServer } from 'node:net';
import { delimiter, isAbsolute, join } from 'node:path';

/** The program on PATH or in the sbin directories (daemons live there); `notFound` otherwise. */
export function resolveBinary(name: string, notFound: string): string {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin'];
  const candidates = isAbsolute(name) ? [name] : dirs.map((dir) => join(dir || '.', name));
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  throw new Error(notFound);
}

/** A port free on `host` right now (the caller retries if someone takes it first). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.unref();
    probe.once('error', reject);
    probe.listen(0, host, () => {
      const address = probe.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

/** Sends `request` on a fresh connection; true when the reply, once `complete`, equals `expected`. */
export function probe(
  host: string,
  port: number,
  request: string,
  expected: string,
  complete: (reply: string) => boolean,
  timeoutMs: number,
): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    let reply = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write(request));
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1');
      if (complete(reply)) done(reply === expected);
    });
    socket.once('end', () => done(false));
  });
}
