// Malware scanning. `MalwareScanner` is the small interface the pipeline sees; `ClamdScanner` speaks
// clamd's INSTREAM protocol over TCP or a unix socket, with a bound on concurrent scans, a time budget
// per scan inside the Check deadline (queueing included), a cache of clean verdicts by SHA-256, and an
// explicit too_large verdict above clamd's StreamMaxLength. It never throws: failures are verdicts.
//
// Not clamdjs: its createScanner(host, port) has no unix sockets; its timeout only runs until the first
// reply byte (socket.setTimeout without a 'timeout' handler does nothing), cannot be tied to a deadline
// and leaves the socket open on some failures; and it has no types. INSTREAM is small (a command, length
// prefixed chunks, a zero chunk, one NUL-terminated reply line), so it is implemented here on net.Socket.
import { Buffer } from 'node:buffer';
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { LRUCache } from 'lru-cache';
import { type Clock, systemClock } from '../clock.js';
import { sha256Hex } from './digest.js';

export type ScanVerdict =
  | { readonly verdict: 'clean'; readonly cached?: boolean }
  | { readonly verdict: 'infected'; readonly signature: string }
  | { readonly verdict: 'too_large'; readonly maxBytes: number; readonly reason: string }
  | { readonly verdict: 'error'; readonly reason: string };

export interface ScanOptions {
  /** Lower-case hex SHA-256 of the bytes when already known (the cache key); computed otherwise. */
  readonly sha256?: string;
  /** This scan's timeout (queue wait included), instead of the scanner's default. */
  readonly timeoutMs?: number;
}

export interface MalwareScanner {
  /**
   * Scans `bytes`, answering by `deadlineMs` (epoch ms on the scanner's clock) at the latest: the
   * budget is min(deadline, now + timeout), waiting for a free slot included. Never rejects.
   */
  scan(bytes: Uint8Array, deadlineMs: number, options?: ScanOptions): Promise<ScanVerdict>;
}

export type ClamdAddress = { readonly host: string; readonly port: number } | { readonly path: string };

export interface ScanEvents {
  /** One verdict returned. `ms` is the clamd round trip (0 for a cache hit or a refusal before clamd). */
  scanned(verdict: ScanVerdict['verdict'], ms: number, cached: boolean): void;
}

export interface ClamdScannerOptions {
  readonly address: ClamdAddress;
  /** Scans in flight at once; others wait for a slot (within their budget). Default 4. */
  readonly maxConcurrent?: number;
  /** Default per-scan timeout. Default 2000 ms. */
  readonly timeoutMs?: number;
  /** clamd's StreamMaxLength: larger objects get a too_large verdict without being sent. */
  readonly maxBytes: number;
  /** Clean verdicts remembered by SHA-256; null = no cache. Default 10 000 entries for 10 minutes. */
  readonly cache?: { readonly max: number; readonly ttlMs: number } | null;
  /** Size of the INSTREAM chunks. Default 64 KiB. */
  readonly chunkBytes?: number;
  readonly clock?: Clock;
  readonly events?: ScanEvents;
}

export interface ScannerStats {
  /** scan() calls. */
  readonly requests: number;
  /** Scans sent to clamd. */
  readonly clamdScans: number;
  readonly cacheHits: number;
  readonly outcomes: Readonly<Record<ScanVerdict['verdict'], number>>;
  /** Scans talking to clamd now, and the most there ever were at once. */
  readonly inFlight: number;
  readonly maxInFlight: number;
  /** Scans waiting for a slot now, and how many gave up waiting (budget spent). */
  readonly queued: number;
  readonly queueTimeouts: number;
  /** clamd round trips. */
  readonly latency: { readonly count: number; readonly totalMs: number; readonly maxMs: number };
}

const MAX_REPLY = 4096;

/** A counting semaphore whose waiters give up after their own timeout. */
class Slots {
  #active = 0;
  readonly #waiting: { resolve: (got: boolean) => void; timer: NodeJS.Timeout }[] = [];
  constructor(readonly size: number) {}

  get waiting(): number {
    return this.#waiting.length;
  }

  acquire(waitMs: number): Promise<boolean> {
    if (this.#active < this.size) {
      this.#active++;
      return Promise.resolve(true);
    }
    if (waitMs <= 0) return Promise.resolve(false);
    return new Promise((resolve) => {
      const waiter = {
        resolve,
        timer: setTimeout(() => {
          const at = this.#waiting.indexOf(waiter);
          if (at !== -1) this.#waiting.splice(at, 1);
          resolve(false);
        }, waitMs),
      };
      this.#waiting.push(waiter);
    });
  }

  release(): void {
    const next = this.#waiting.shift();
    if (next) {
      clearTimeout(next.timer);
      next.resolve(true); // the slot passes to the waiter: #active unchanged
    } else {
      this.#active--;
    }
  }
}

export class ClamdScanner implements MalwareScanner {
  readonly #address: ClamdAddress;
  readonly #timeoutMs: number;
  readonly #maxBytes: number;
  readonly #chunkBytes: number;
  readonly #clock: Clock;
  readonly #events: ScanEvents | undefined;
  readonly #slots: Slots;
  readonly #cache: LRUCache<string, true> | null;
  #requests = 0;
  #clamdScans = 0;
  #cacheHits = 0;
  #inFlight = 0;
  #maxInFlight = 0;
  #queueTimeouts = 0;
  readonly #outcomes: Record<ScanVerdict['verdict'], number> = {
    clean: 0,
    infected: 0,
    too_large: 0,
    error: 0,
  };
  readonly #latency = { count: 0, totalMs: 0, maxMs: 0 };

  constructor(options: ClamdScannerOptions) {
    this.#address = options.address;
    this.#timeoutMs = options.timeoutMs ?? 2000;
    this.#maxBytes = options.maxBytes;
    this.#chunkBytes = options.chunkBytes ?? 64 * 1024;
    this.#clock = options.clock ?? systemClock;
    this.#events = options.events;
    this.#slots = new Slots(Math.max(1, options.maxConcurrent ?? 4));
    const cache = options.cache === undefined ? { max: 10_000, ttlMs: 600_000 } : options.cache;
    this.#cache = cache ? new LRUCache<string, true>({ max: cache.max, ttl: cache.ttlMs }) : null;
  }

  get maxBytes(): number {
    return this.#maxBytes;
  }

  async scan(bytes: Uint8Array, deadlineMs: number, options: ScanOptions = {}): Promise<ScanVerdict> {
    this.#requests++;
    try {
      return await this.#scan(bytes, deadlineMs, options);
    } catch (error: unknown) {
      return this.#record({ verdict: 'error', reason: `scanner: ${describe(error)}` }, 0, false);
    }
  }

  async #scan(bytes: Uint8Array, deadlineMs: number, options: ScanOptions): Promise<ScanVerdict> {
    if (bytes.length > this.#maxBytes) {
      return this.#record(
        {
          verdict: 'too_large',
          maxBytes: this.#maxBytes,
          reason: `${bytes.length} bytes, over clamd's StreamMaxLength of ${this.#maxBytes}`,
        },
        0,
        false,
      );
    }
    const key = this.#cache ? (options.sha256 ?? sha256Hex(bytes)) : '';
    if (this.#cache?.get(key)) {
      this.#cacheHits++;
      return this.#record({ verdict: 'clean', cached: true }, 0, true);
    }
    const timeout = this.#clock.now() + (options.timeoutMs ?? this.#timeoutMs);
    const budgetEnd = Number.isNaN(deadlineMs) ? timeout : Math.min(deadlineMs, timeout);
    const wait = budgetEnd - this.#clock.now();
    if (wait <= 0)
      return this.#record({ verdict: 'error', reason: 'no time left before the deadline' }, 0, false);
    if (!(await this.#slots.acquire(wait))) {
      this.#queueTimeouts++;
      return this.#record(
        {
          verdict: 'error',
          reason: `timed out after ${wait} ms waiting for one of ${this.#slots.size} scan slots`,
        },
        0,
        false,
      );
    }
    let verdict: ScanVerdict;
    let ms = 0;
    this.#inFlight++;
    if (this.#inFlight > this.#maxInFlight) this.#maxInFlight = this.#inFlight;
    try {
      const left = budgetEnd - this.#clock.now();
      if (left <= 0) {
        verdict = { verdict: 'error', reason: 'no time left before the deadline' };
      } else {
        this.#clamdScans++;
        const started = performance.now();
        const reply = await instream(this.#address, bytes, left, this.#chunkBytes);
        ms = performance.now() - started;
        verdict = interpret(reply, this.#maxBytes);
        this.#latency.count++;
        this.#latency.totalMs += ms;
        if (ms > this.#latency.maxMs) this.#latency.maxMs = ms;
      }
    } finally {
      this.#inFlight--;
      this.#slots.release();
    }
    if (verdict.verdict === 'clean') this.#cache?.set(key, true);
    return this.#record(verdict, ms, false);
  }

  /** True when clamd answers PING with PONG within `timeoutMs`. For readiness checks. */
  async ping(timeoutMs = 1000): Promise<boolean> {
    const reply = await exchange(this.#address, timeoutMs, (socket) => socket.write('zPING\0'));
    return 'reply' in reply && reply.reply === 'PONG';
  }

  stats(): ScannerStats {
    return {
      requests: this.#requests,
      clamdScans: this.#clamdScans,
      cacheHits: this.#cacheHits,
      outcomes: { ...this.#outcomes },
      inFlight: this.#inFlight,
      maxInFlight: this.#maxInFlight,
      queued: this.#slots.waiting,
      queueTimeouts: this.#queueTimeouts,
      latency: { ...this.#latency },
    };
  }

  #record(verdict: ScanVerdict, ms: number, cached: boolean): ScanVerdict {
    this.#outcomes[verdict.verdict]++;
    this.#events?.scanned(verdict.verdict, ms, cached);
    return verdict;
  }
}

type Reply = { readonly reply: string } | { readonly error: string; readonly partial: string };

/** INSTREAM: `zINSTREAM\0`, then <u32 big-endian length><bytes> chunks, then a zero length. */
function instream(
  address: ClamdAddress,
  bytes: Uint8Array,
  timeoutMs: number,
  chunkBytes: number,
): Promise<Reply> {
  return exchange(address, timeoutMs, (socket) => {
    socket.cork();
    socket.write('zINSTREAM\0');
    for (let at = 0; at < bytes.length; at += chunkBytes) {
      const chunk = bytes.subarray(at, Math.min(at + chunkBytes, bytes.length));
      const size = Buffer.alloc(4);
      size.writeUInt32BE(chunk.length, 0);
      socket.write(size);
      socket.write(chunk);
    }
    socket.write(Buffer.alloc(4));
    socket.uncork();
  });
}

/**
 * One command on a fresh connection: resolves with the NUL-terminated reply (NUL removed), or an error
 * (refused, reset, closed early, timed out). The socket is always destroyed; never rejects.
 */
function exchange(address: ClamdAddress, timeoutMs: number, send: (socket: Socket) => void): Promise<Reply> {
  return new Promise((resolve) => {
    let received = '';
    let done = false;
    const socket =
      'path' in address
        ? connect({ path: address.path })
        : connect({ host: address.host, port: address.port });
    const finish = (result: Reply) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(
      () => finish({ error: `timed out after ${Math.round(timeoutMs)} ms`, partial: received }),
      timeoutMs,
    );
    socket.setNoDelay(true);
    socket.once('connect', () => send(socket));
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1');
      const end = received.indexOf('\0');
      if (end !== -1) finish({ reply: received.slice(0, end).trim() });
      else if (received.length > MAX_REPLY)
        finish({ error: 'reply too long', partial: received.slice(0, 200) });
    });
    socket.on('error', (error: Error) => {
      const code = (error as NodeJS.ErrnoException).code;
      finish({ error: code ? `${code}: ${error.message}` : error.message, partial: received });
    });
    socket.on('close', () => {
      // Every z-command reply ends with NUL: without one the reply is cut short.
      finish({
        error: received ? 'connection closed mid-reply' : 'connection closed without a reply',
        partial: received,
      });
    });
  });
}

function interpret(reply: Reply, maxBytes: number): ScanVerdict {
  const text = 'reply' in reply ? reply.reply : reply.partial;
  if (/size limit exceeded/i.test(text)) {
    return {
      verdict: 'too_large',
      maxBytes,
      reason: `clamd: ${printable(text)} (its StreamMaxLength is below ${maxBytes}?)`,
    };
  }
  if (!('reply' in reply)) return { verdict: 'error', reason: `clamd: ${reply.error}` };
  if (text === 'stream: OK') return { verdict: 'clean' };
  const found = /^stream: (.+) FOUND$/.exec(text);
  if (found) return { verdict: 'infected', signature: printable(found[1] as string) };
  return { verdict: 'error', reason: `clamd: ${printable(text)}` };
}

function printable(s: string): string {
  const clean = s.replace(/[^\x20-\x7e]/g, '?');
  return clean.length > 200 ? `${clean.slice(0, 200)}…` : clean;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
