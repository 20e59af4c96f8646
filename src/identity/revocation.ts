// Real-time revocation of token ids (`jti`), applications (client ids) and API key ids.
//
// The hot path asks `isRevoked(kind, id)`: synchronous, one Set (and for expiring entries one Map)
// lookup, no I/O. `RedisRevocations` keeps those local structures in step with Redis:
//
// - Storage, per kind, under one hash tag (so every key lives in one Redis Cluster slot and one
//   MULTI can read or write them all):
//     {portcullis:revoked}:<kind>            SET   permanent revocations
//     {portcullis:revoked}:<kind>:expiring   ZSET  revocations with a TTL; score = expiry, in ms since
//                                                  the epoch. Members at or past their expiry no longer
//                                                  count; writers trim them (ZREMRANGEBYSCORE).
//     {portcullis:revoked}:<kind>:at         HASH  id → when it was revoked (ms since the epoch), for
//                                                  `portcullis revoke list`; not read on the hot path
//   <kind> is `jti`, `application` or `api_key`. An id revoked both ways stays revoked until removed
//   from both (`unrevoke` removes both).
// - Changes: every write is one MULTI that changes the key(s) and PUBLISHes a JSON message on
//   `portcullis:revocations`; each replica applies it on arrival (sub-second propagation):
//     {"op":"add","kind":"jti","id":"…","exp":1767225600000}   exp (ms since the epoch) only for a TTL
//     {"op":"remove","kind":"application","id":"…"}
//     {"op":"resync"}                                           every replica reloads all sets now
//   (plus "src"/"seq", which a replica uses to recognise its own messages).
// - Healing: a full reload (one MULTI of SMEMBERS + ZRANGEBYSCORE) at start, after every reconnect
//   of either connection, and every `resyncIntervalSeconds` (default 30), which repairs missed
//   messages and direct edits made without a PUBLISH. Redis is the source of truth: an id removed
//   from Redis stops counting after the next reload, so the Redis holding revocations must persist
//   its data (AOF), or a Redis restart forgets them.
// - Outage: the last known sets stay in force, `healthy()` turns false, one warning is logged per
//   change of state (not per retry), and ioredis reconnects on its own; we resubscribe and reload.
//   A connection that looks open but does not answer (half-open TCP) is caught by the periodic
//   reload (a PING on the subscriber, a timeout on both) and replaced.
// - Clocks: expiries are computed by the writer's clock and compared with each reader's clock, so
//   clock skew between replicas shifts a TTL by that skew.
//
// An operator can revoke by hand, atomically:
//   MULTI
//   SADD {portcullis:revoked}:application app-123
//   PUBLISH portcullis:revocations '{"op":"add","kind":"application","id":"app-123"}'
//   EXEC
import { randomUUID } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { type Clock, systemClock } from '../clock.js';
import { MAX_STRETCH, ReplyTimer, StoreTimeout } from '../net/reply-timer.js';

export type RevocationKind = 'jti' | 'application' | 'api_key';
export const REVOCATION_KINDS: readonly RevocationKind[] = ['jti', 'application', 'api_key'];

/** Is this id revoked? Synchronous and O(1): it runs on every Check. */
export interface Revocations {
  isRevoked(kind: RevocationKind, id: string): boolean;
  /**
   * False while the revoked sets were never loaded (a replica started during a Redis outage): the
   * answer of isRevoked is then unknown, and a credential that could be revoked is a dependency
   * failure (the route's on_error), not an allow. Absent = always known.
   */
  loaded?(): boolean;
}

export type RevocationLists = { readonly [K in RevocationKind]?: Iterable<string> };

/** Revocations fixed at construction, e.g. the lists of the policy catalog. */
export class StaticRevocations implements Revocations {
  private readonly sets: Readonly<Record<RevocationKind, ReadonlySet<string>>>;

  constructor(lists: RevocationLists = {}) {
    this.sets = {
      jti: new Set(lists.jti ?? []),
      application: new Set(lists.application ?? []),
      api_key: new Set(lists.api_key ?? []),
    };
  }

  /** From the catalog's `revocations` (its field names). */
  static fromCatalog(lists: {
    readonly jti: Iterable<string>;
    readonly applications: Iterable<string>;
    readonly apiKeys: Iterable<string>;
  }): StaticRevocations {
    return new StaticRevocations({ jti: lists.jti, application: lists.applications, api_key: lists.apiKeys });
  }

  isRevoked(kind: RevocationKind, id: string): boolean {
    return this.sets[kind].has(id);
  }

  size(kind: RevocationKind): number {
    return this.sets[kind].size;
  }
}

/** Revoked if any source says so. */
export function combineRevocations(...sources: readonly Revocations[]): Revocations {
  const [first, second, ...rest] = sources;
  if (!first) return new StaticRevocations();
  if (!second) return first;
  if (rest.length === 0) {
    return { isRevoked: (kind, id) => first.isRevoked(kind, id) || second.isRevoked(kind, id) };
  }
  return {
    isRevoked(kind, id) {
      for (const source of sources) if (source.isRevoked(kind, id)) return true;
      return false;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Keys and messages (exported for tools and tests that write to Redis directly)

export const DEFAULT_REVOCATION_KEY_PREFIX = 'portcullis:revoked';
export const DEFAULT_REVOCATION_CHANNEL = 'portcullis:revocations';

export interface RevocationKeys {
  /** SET of permanently revoked ids. */
  readonly permanent: string;
  /** ZSET of ids revoked until their score (expiry, ms since the epoch). */
  readonly expiring: string;
  /** HASH of id → when it was revoked (ms since the epoch). */
  readonly revokedAt: string;
}

/**
 * The keys for a prefix. The prefix is wrapped in `{}` (a Redis Cluster hash tag) unless it already
 * holds one, so that all keys share one slot: `portcullis:revoked` → `{portcullis:revoked}:jti`, ….
 */
export function revocationKeys(
  prefix: string = DEFAULT_REVOCATION_KEY_PREFIX,
): Readonly<Record<RevocationKind, RevocationKeys>> {
  const tagged = /\{[^}]+\}/.test(prefix) ? prefix : `{${prefix}}`;
  const keys = (kind: RevocationKind): RevocationKeys => ({
    permanent: `${tagged}:${kind}`,
    expiring: `${tagged}:${kind}:expiring`,
    revokedAt: `${tagged}:${kind}:at`,
  });
  return { jti: keys('jti'), application: keys('application'), api_key: keys('api_key') };
}

export type RevocationMessage =
  | {
      readonly op: 'add';
      readonly kind: RevocationKind;
      readonly id: string;
      /** Expiry in ms since the epoch; absent for a permanent revocation. */
      readonly exp?: number;
      readonly src?: string;
      readonly seq?: number;
    }
  | {
      readonly op: 'remove';
      readonly kind: RevocationKind;
      readonly id: string;
      readonly src?: string;
      readonly seq?: number;
    }
  | { readonly op: 'resync' };

export function encodeRevocationMessage(message: RevocationMessage): string {
  return JSON.stringify(message);
}

/** The message, or null when it is not one we understand. */
export function parseRevocationMessage(text: string): RevocationMessage | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return null;
  const v = value as Record<string, unknown>;
  if (v.op === 'resync') return { op: 'resync' };
  if (v.op !== 'add' && v.op !== 'remove') return null;
  if (!isKind(v.kind) || typeof v.id !== 'string' || v.id === '') return null;
  const origin = {
    ...(typeof v.src === 'string' ? { src: v.src } : {}),
    ...(Number.isSafeInteger(v.seq) ? { seq: v.seq as number } : {}),
  };
  if (v.op === 'remove') return { op: 'remove', kind: v.kind, id: v.id, ...origin };
  if (v.exp === undefined) return { op: 'add', kind: v.kind, id: v.id, ...origin };
  if (typeof v.exp !== 'number' || !Number.isFinite(v.exp)) return null;
  return { op: 'add', kind: v.kind, id: v.id, exp: v.exp, ...origin };
}

/** A message that changes a set (not a resync request). */
export type ChangeMessage = Exclude<RevocationMessage, { op: 'resync' }>;

function isKind(value: unknown): value is RevocationKind {
  return value === 'jti' || value === 'application' || value === 'api_key';
}

// ---------------------------------------------------------------------------------------------
// Local state: pure data and pure functions over it

interface RevocationState {
  readonly permanent: Record<RevocationKind, Set<string>>;
  /** id → expiry (ms since the epoch). */
  readonly expiring: Record<RevocationKind, Map<string, number>>;
}

function emptyState(): RevocationState {
  return {
    permanent: { jti: new Set(), application: new Set(), api_key: new Set() },
    expiring: { jti: new Map(), application: new Map(), api_key: new Map() },
  };
}

function applyMessage(state: RevocationState, message: RevocationMessage, now: number): void {
  if (message.op === 'resync') return;
  const { kind, id } = message;
  if (message.op === 'remove') {
    state.permanent[kind].delete(id);
    state.expiring[kind].delete(id);
  } else if (message.exp === undefined) {
    state.permanent[kind].add(id);
  } else if (message.exp > now) {
    state.expiring[kind].set(id, message.exp);
  }
}

/** Builds the state from the replies of the reload MULTI (SMEMBERS, ZRANGEBYSCORE per kind). */
function stateFromSnapshot(replies: readonly unknown[], now: number): RevocationState {
  const state = emptyState();
  REVOCATION_KINDS.forEach((kind, i) => {
    const members = replies[2 * i];
    const scored = replies[2 * i + 1];
    if (!Array.isArray(members) || !Array.isArray(scored)) throw new Error('unexpected reply to reload');
    for (const member of members) state.permanent[kind].add(String(member));
    // Legacy reply mapping (forced below): a flat [member, score, member, score, …] array.
    for (let j = 0; j + 1 < scored.length; j += 2) {
      const expiry = parseScore(String(scored[j + 1]));
      if (expiry > now) state.expiring[kind].set(String(scored[j]), expiry);
    }
  });
  return state;
}

/** Redis prints infinite scores as `inf`, which Number() turns into NaN. */
function parseScore(text: string): number {
  if (text === 'inf' || text === '+inf') return Number.POSITIVE_INFINITY;
  if (text === '-inf') return Number.NEGATIVE_INFINITY;
  const n = Number(text);
  return Number.isNaN(n) ? Number.NEGATIVE_INFINITY : n;
}

// ---------------------------------------------------------------------------------------------
// Writes, usable with any connected ioredis client (the `portcullis revoke` command, tests)

export interface RevocationWriteOptions {
  /** Keys, from `revocationKeys(prefix)`. Default: the default prefix. */
  readonly keys?: Readonly<Record<RevocationKind, RevocationKeys>>;
  /** Default `portcullis:revocations`. */
  readonly channel?: string;
  /** Tags the message so its sender can recognise it. */
  readonly origin?: { readonly src: string; readonly seq: number };
}

/**
 * Revokes `id`: one MULTI that stores it (SADD, or ZADD with its expiry when `ttlSeconds` is
 * given), trims expired entries of that kind and PUBLISHes the change. Returns the message sent.
 */
export async function revokeInRedis(
  redis: Redis,
  kind: RevocationKind,
  id: string,
  options: RevocationWriteOptions & { readonly now: number; readonly ttlSeconds?: number | undefined },
): Promise<ChangeMessage> {
  checkId(kind, id);
  const { now, ttlSeconds } = options;
  if (ttlSeconds !== undefined && !(ttlSeconds > 0 && Number.isFinite(ttlSeconds))) {
    throw new RangeError(`ttlSeconds must be a positive number, got ${ttlSeconds}`);
  }
  const keys = (options.keys ?? revocationKeys())[kind];
  const exp = ttlSeconds === undefined ? undefined : now + Math.ceil(ttlSeconds * 1000);
  const message: ChangeMessage = {
    op: 'add',
    kind,
    id,
    ...(exp === undefined ? {} : { exp }),
    ...options.origin,
  };
  const tx = redis.multi();
  if (exp === undefined) tx.sadd(keys.permanent, id);
  else tx.zadd(keys.expiring, exp, id);
  tx.hset(keys.revokedAt, id, String(now));
  tx.zremrangebyscore(keys.expiring, '-inf', now);
  tx.publish(options.channel ?? DEFAULT_REVOCATION_CHANNEL, encodeRevocationMessage(message));
  await exec(tx);
  return message;
}

/** Lifts a revocation, permanent and TTL'd, and PUBLISHes the change. Returns the message sent. */
export async function unrevokeInRedis(
  redis: Redis,
  kind: RevocationKind,
  id: string,
  options: RevocationWriteOptions = {},
): Promise<ChangeMessage> {
  checkId(kind, id);
  const keys = (options.keys ?? revocationKeys())[kind];
  const message: ChangeMessage = { op: 'remove', kind, id, ...options.origin };
  const tx = redis.multi();
  tx.srem(keys.permanent, id);
  tx.zrem(keys.expiring, id);
  tx.hdel(keys.revokedAt, id);
  tx.publish(options.channel ?? DEFAULT_REVOCATION_CHANNEL, encodeRevocationMessage(message));
  await exec(tx);
  return message;
}

/** One revocation in force, as `portcullis revoke list` shows it. */
export interface RevocationEntry {
  readonly kind: RevocationKind;
  readonly id: string;
  /** When it was revoked (ms since the epoch); null when written without that record (by hand). */
  readonly revokedAt: number | null;
  /** When it ends (ms since the epoch); null = permanent. */
  readonly expiresAt: number | null;
}

/**
 * Every revocation in force at `now`, by kind then time of revocation: one MULTI of SMEMBERS,
 * ZRANGEBYSCORE and HGETALL per kind. Times of revocations no longer in force are trimmed.
 */
export async function listRevocations(
  redis: Redis,
  options: { readonly now: number; readonly keys?: Readonly<Record<RevocationKind, RevocationKeys>> },
): Promise<RevocationEntry[]> {
  const keys = options.keys ?? revocationKeys();
  const tx = redis.multi();
  for (const kind of REVOCATION_KINDS) {
    tx.smembers(keys[kind].permanent);
    tx.zrangebyscore(keys[kind].expiring, `(${options.now}`, '+inf', 'WITHSCORES');
    tx.hgetall(keys[kind].revokedAt);
  }
  const replies = await exec(tx);
  const entries: RevocationEntry[] = [];
  const stale: [RevocationKind, string][] = [];
  REVOCATION_KINDS.forEach((kind, i) => {
    const members = replies[3 * i];
    const scored = replies[3 * i + 1];
    const times = replies[3 * i + 2];
    if (!Array.isArray(members) || !Array.isArray(scored) || typeof times !== 'object' || times === null) {
      throw new Error('unexpected reply to the revocation listing');
    }
    const at = times as Record<string, string>;
    const expiring = new Map<string, number>();
    for (let j = 0; j + 1 < scored.length; j += 2) expiring.set(String(scored[j]), Number(scored[j + 1]));
    const timeOf = (id: string) => (at[id] === undefined ? null : Number(at[id]));
    const ids = new Set<string>();
    for (const member of members) {
      const id = String(member);
      ids.add(id);
      entries.push({ kind, id, revokedAt: timeOf(id), expiresAt: null });
    }
    for (const [id, exp] of expiring) {
      if (ids.has(id)) continue; // permanent wins
      ids.add(id);
      entries.push({ kind, id, revokedAt: timeOf(id), expiresAt: exp });
    }
    for (const id of Object.keys(at)) if (!ids.has(id)) stale.push([kind, id]);
  });
  if (stale.length > 0) {
    const trim = redis.multi();
    for (const [kind, id] of stale) trim.hdel(keys[kind].revokedAt, id);
    await trim.exec().catch(() => {}); // housekeeping only
  }
  const order = (e: RevocationEntry) => REVOCATION_KINDS.indexOf(e.kind);
  return entries.sort(
    (a, b) => order(a) - order(b) || (a.revokedAt ?? 0) - (b.revokedAt ?? 0) || (a.id < b.id ? -1 : 1),
  );
}

// ---------------------------------------------------------------------------------------------
// Redis-backed revocations

/** A change this replica applied: from a message, or found by a reload (missed message, edit by hand). */
export interface AppliedRevocation {
  readonly op: 'add' | 'remove';
  readonly kind: RevocationKind;
  readonly id: string;
  readonly source: 'message' | 'reload';
}

export interface RedisRevocationsOptions {
  /** `redis://[user:password@]host:port[/db]` (or `rediss://`). */
  readonly url: string;
  /**
   * Extra ioredis options (TLS, retryStrategy, connectTimeout, …). `lazyConnect`,
   * `enableOfflineQueue`, `autoResubscribe` and `replyMapping` are ours and cannot be overridden.
   */
  readonly redisOptions?: RedisOptions;
  readonly logger: Logger;
  /** For TTL expiry and sync age. Default: the system clock. */
  readonly clock?: Clock;
  /** Key prefix, wrapped in a hash tag unless it has one. Default `portcullis:revoked`. */
  readonly keyPrefix?: string;
  /** Pub/sub channel of change messages. Default `portcullis:revocations`. */
  readonly channel?: string;
  /** Full reload period. Default 30 s. */
  readonly resyncIntervalSeconds?: number;
  /**
   * Bound on each Redis command (reload, write, liveness ping), measured from the command's write
   * to the socket to its reply (src/net/reply-timer.ts): our own event-loop lag never counts.
   * Default 2000 ms.
   */
  readonly commandTimeoutMs?: number;
}

export interface StartOptions {
  /** How long `start()` waits for the first reload. Default 10 s. */
  readonly timeoutMs?: number;
}

/**
 * Reconnect quickly at first, then every ~0.5 s, with jitter so replicas do not reconnect in step:
 * a replica that started during an outage must load the sets within a second of Redis answering.
 */
export const defaultRetryStrategy = (times: number): number =>
  Math.min(50 * 2 ** Math.min(times, 6), 500) + Math.floor(Math.random() * 100);

export class RedisRevocations implements Revocations {
  private state: RevocationState = emptyState();
  private readonly client: Redis;
  private readonly subscriber: Redis;
  private readonly keys: Readonly<Record<RevocationKind, RevocationKeys>>;
  private readonly channel: string;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly resyncIntervalMs: number;
  private readonly replies: ReplyTimer;

  /** Tags our own messages, so a write applied locally is not applied again out of order. */
  private readonly instanceId = randomUUID();
  private seq = 0;
  private lastOwnSeqSeen = 0;

  private subscribed = false;
  /** True when a reload completed with the subscription active and no disconnect since. */
  private synced = false;
  /** Bumped on every disconnect of either connection. */
  private epoch = 0;
  private lastSyncAt: number | undefined;
  private lastError: string | undefined;
  /** The health state last logged; undefined until the first report. */
  private reported: boolean | undefined;
  private everHealthy = false;

  /** Messages received while a reload is in flight, replayed on top of its snapshot. */
  private pending: RevocationMessage[] | null = null;
  private syncLoop: Promise<void> | null = null;
  private syncAgain = false;

  private applied: (change: AppliedRevocation) => void = () => {};
  private timer: NodeJS.Timeout | undefined;
  private started = false;
  private closed = false;
  private readonly firstSync: Promise<void>;
  private settleFirstSync: (err?: Error) => void = () => {};

  constructor(options: RedisRevocationsOptions) {
    const interval = options.resyncIntervalSeconds ?? 30;
    if (!(interval > 0) || !Number.isFinite(interval)) {
      throw new RangeError(`resyncIntervalSeconds must be a positive number, got ${interval}`);
    }
    this.resyncIntervalMs = interval * 1000;
    this.keys = revocationKeys(options.keyPrefix);
    this.channel = options.channel ?? DEFAULT_REVOCATION_CHANNEL;
    this.clock = options.clock ?? systemClock;
    this.log = options.logger.child({ component: 'revocations' });

    const commandTimeoutMs = options.commandTimeoutMs ?? 2000;
    this.replies = new ReplyTimer(commandTimeoutMs);
    const common: RedisOptions = {
      retryStrategy: defaultRetryStrategy,
      // Only a backstop: commands are judged by this.replies, from the socket write, so a replica
      // whose event loop is late (a burst, a CPU hog) does not take its own lag for a Redis outage.
      commandTimeout: commandTimeoutMs * MAX_STRETCH,
      // How long a forced reconnect waits for a graceful close of a hung socket (ioredis: 2 s).
      disconnectTimeout: 500,
      ...options.redisOptions,
      // Ours: connect in start(); fail fast while disconnected (the last known sets stay in force,
      // and a reload follows every reconnect); subscribe ourselves on every 'ready'; flat replies.
      lazyConnect: true,
      enableOfflineQueue: false,
      autoResubscribe: false,
      replyMapping: 'legacy',
    };
    this.client = new Redis(options.url, {
      connectionName: 'portcullis-revocations',
      ...common,
    });
    this.subscriber = new Redis(options.url, {
      connectionName: 'portcullis-revocations-sub',
      ...common,
    });

    this.firstSync = new Promise<void>((resolve, reject) => {
      this.settleFirstSync = (err) => {
        this.settleFirstSync = () => {};
        if (err) reject(err);
        else resolve();
      };
    });
    this.firstSync.catch(() => {}); // nobody may be waiting

    for (const connection of [this.client, this.subscriber]) {
      connection.on('error', (err: Error) => {
        this.lastError = err.message;
        this.evaluate(err.message);
      });
      connection.on('close', () => {
        this.epoch++;
        this.synced = false;
        if (connection === this.subscriber) this.subscribed = false;
        this.evaluate(this.lastError ?? 'connection closed');
      });
    }
    this.client.on('ready', () => void this.resync());
    this.subscriber.on('ready', () => void this.onSubscriberReady());
    this.subscriber.on('message', (channel: string, text: string) => this.onMessage(channel, text));
  }

  /**
   * Connects, subscribes and loads the sets. Resolves once subscribed and reloaded; rejects if
   * that takes longer than `timeoutMs`, but keeps trying in the background (the caller decides:
   * serve with `healthy()` false, or `close()` and exit).
   */
  async start(options: StartOptions = {}): Promise<void> {
    if (this.started) throw new Error('RedisRevocations already started');
    if (this.closed) throw new Error('RedisRevocations closed');
    this.started = true;
    this.client.connect().catch(() => {}); // failures arrive as 'error' events; ioredis retries
    this.subscriber.connect().catch(() => {});
    this.timer = setInterval(() => void this.resync(), this.resyncIntervalMs);
    this.timer.unref();

    const timeoutMs = options.timeoutMs ?? 10_000;
    let timeout: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.firstSync,
        new Promise<never>((_, reject) => {
          timeout = setTimeout(
            () =>
              reject(
                new Error(
                  `revocations: no reload from Redis within ${timeoutMs} ms` +
                    (this.lastError ? ` (${this.lastError})` : ''),
                ),
              ),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timeout);
    }
  }

  /** Called for every change applied (after it is logged): the metrics count them. */
  onApplied(listener: (change: AppliedRevocation) => void): void {
    this.applied = listener;
  }

  isRevoked(kind: RevocationKind, id: string): boolean {
    const state = this.state;
    if (state.permanent[kind].has(id)) return true;
    const expiry = state.expiring[kind].get(id);
    return expiry !== undefined && expiry > this.clock.now();
  }

  /**
   * Revokes `id` in Redis and tells every replica. With `ttlSeconds`, the revocation ends on its
   * own (for a jti: the token's remaining lifetime). Rejects when Redis cannot be written.
   */
  async revoke(kind: RevocationKind, id: string, ttlSeconds?: number): Promise<void> {
    const origin = { src: this.instanceId, seq: ++this.seq };
    const message = await this.judged(
      revokeInRedis(this.client, kind, id, {
        now: this.clock.now(),
        ttlSeconds,
        keys: this.keys,
        channel: this.channel,
        origin,
      }),
    );
    this.applyOwn(message);
  }

  /** Lifts a revocation (permanent and TTL'd) in Redis and tells every replica. */
  async unrevoke(kind: RevocationKind, id: string): Promise<void> {
    const origin = { src: this.instanceId, seq: ++this.seq };
    const message = await this.judged(
      unrevokeInRedis(this.client, kind, id, { keys: this.keys, channel: this.channel, origin }),
    );
    this.applyOwn(message);
  }

  /**
   * Reloads every set from Redis now (coalesced with a reload already running: the promise
   * settles after a reload that started after this call). Never rejects; see `healthy()`.
   */
  resync(): Promise<void> {
    if (this.syncLoop) {
      this.syncAgain = true;
      return this.syncLoop;
    }
    this.syncLoop = (async () => {
      try {
        do {
          this.syncAgain = false;
          await this.syncOnce();
        } while (this.syncAgain && !this.closed);
      } finally {
        this.syncLoop = null;
      }
    })();
    return this.syncLoop;
  }

  /** The sets were loaded from Redis at least once (since then, the last known sets apply). */
  loaded(): boolean {
    return this.lastSyncAt !== undefined;
  }

  /** Both connections up, subscribed, and reloaded since the last disconnect. */
  healthy(): boolean {
    return (
      !this.closed &&
      this.synced &&
      this.subscribed &&
      this.client.status === 'ready' &&
      this.subscriber.status === 'ready'
    );
  }

  /** Seconds since the last successful reload; Infinity before the first one. */
  lastSyncAgeSeconds(): number {
    if (this.lastSyncAt === undefined) return Number.POSITIVE_INFINITY;
    return Math.max(0, (this.clock.now() - this.lastSyncAt) / 1000);
  }

  /** Revoked ids currently in force, per kind (for diagnostics; O(n) over expiring entries). */
  sizes(): Record<RevocationKind, number> {
    const now = this.clock.now();
    const count = (kind: RevocationKind) => {
      let live = 0;
      for (const expiry of this.state.expiring[kind].values()) if (expiry > now) live++;
      return this.state.permanent[kind].size + live;
    };
    return { jti: count('jti'), application: count('application'), api_key: count('api_key') };
  }

  /** Stops reloading and closes both connections. The last known sets stay readable. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.settleFirstSync(new Error('RedisRevocations closed'));
    await Promise.all([quit(this.client), quit(this.subscriber)]);
  }

  // -------------------------------------------------------------------------------------------

  private async onSubscriberReady(): Promise<void> {
    try {
      // Idempotent, and once it is acknowledged every later PUBLISH reaches us: only then reload.
      await this.subscriber.subscribe(this.channel);
    } catch (err) {
      this.lastError = errorMessage(err);
      this.evaluate(this.lastError);
      return;
    }
    if (this.subscriber.status !== 'ready') return;
    this.subscribed = true;
    await this.resync();
  }

  private onMessage(channel: string, text: string): void {
    if (channel !== this.channel) return;
    const message = parseRevocationMessage(text);
    if (!message) {
      this.log.warn({ channel, message: text.slice(0, 200) }, 'revocations: ignored a malformed message');
      return;
    }
    if (message.op === 'resync') {
      void this.resync();
      return;
    }
    if (message.src === this.instanceId && message.seq !== undefined) {
      this.lastOwnSeqSeen = Math.max(this.lastOwnSeqSeen, message.seq);
    }
    applyMessage(this.state, message, this.clock.now());
    this.pending?.push(message);
    this.report({ op: message.op, kind: message.kind, id: message.id, source: 'message' }, message);
  }

  /** Logs and counts one applied change. Ids of tokens, applications and keys are not secrets. */
  private report(change: AppliedRevocation, message?: ChangeMessage): void {
    const exp = message && message.op === 'add' && message.exp !== undefined ? message.exp : undefined;
    this.log.info(
      {
        op: change.op,
        kind: change.kind,
        id: change.id,
        source: change.source,
        ...(exp === undefined ? {} : { expires_at: new Date(exp).toISOString() }),
      },
      change.op === 'add' ? 'revocation applied' : 'revocation lifted',
    );
    this.applied(change);
  }

  /** A write of ours succeeded: apply it now, unless its message already arrived (in order). */
  private applyOwn(message: ChangeMessage): void {
    if (message.seq !== undefined && message.seq <= this.lastOwnSeqSeen) return;
    applyMessage(this.state, message, this.clock.now());
    this.pending?.push(message);
  }

  private async syncOnce(): Promise<void> {
    if (this.closed) return;
    // Not connected yet (the subscriber may be ready first at startup) or any more (the disconnect
    // was reported by its 'close'): the reload follows the client's next 'ready'. Sending it now
    // would only fail with ioredis' "Stream isn't writeable", which is no outage.
    if (this.client.status !== 'ready') return;
    const epoch = this.epoch;
    const wasSubscribed = this.subscribed;
    const now = this.clock.now();
    this.pending = [];
    let failure: string | undefined;
    try {
      const tx = this.client.multi();
      for (const kind of REVOCATION_KINDS) {
        tx.smembers(this.keys[kind].permanent);
        tx.zrangebyscore(this.keys[kind].expiring, `(${now}`, '+inf', 'WITHSCORES');
      }
      const [reload, liveness] = await Promise.allSettled([
        this.judged(exec(tx)),
        wasSubscribed ? this.checkSubscriber() : undefined,
      ]);
      if (reload.status === 'fulfilled') {
        const state = stateFromSnapshot(reload.value, now);
        for (const message of this.pending) applyMessage(state, message, now);
        // After the first load, a difference is a change no message told us about: report it.
        const changes = this.lastSyncAt === undefined ? [] : differences(this.state, state, now);
        this.state = state;
        this.lastSyncAt = this.clock.now();
        for (const change of changes) this.report(change);
      } else {
        failure = errorMessage(reload.reason);
        // No answer on a connection that looks open (half-open TCP): ioredis would wait for
        // keep-alive to notice. Reconnect now; the reload follows the new 'ready'.
        if (timedOut(reload.reason) && this.client.status === 'ready') this.client.disconnect(true);
      }
      if (liveness.status === 'rejected') failure ??= errorMessage(liveness.reason);
    } catch (err) {
      failure = errorMessage(err);
    } finally {
      this.pending = null;
    }
    if (failure !== undefined) {
      this.synced = false;
      this.lastError = failure;
      this.evaluate(failure);
      return;
    }
    if (wasSubscribed && epoch === this.epoch && this.subscribed) {
      this.synced = true;
      this.lastError = undefined;
      this.settleFirstSync();
    }
    this.evaluate();
  }

  /**
   * `reply`, or a StoreTimeout when Redis took longer than the command timeout from the write.
   * A late reply is dropped: a reload is simply retried, and a late write's message still reaches
   * every replica through the channel.
   */
  private judged<T>(reply: Promise<T>): Promise<T> {
    return this.replies.watch(reply, () => {});
  }

  /** A subscriber that stopped answering (half-open TCP) is reconnected, which resubscribes. */
  private async checkSubscriber(): Promise<void> {
    try {
      await this.judged(this.subscriber.ping());
    } catch (err) {
      if (this.subscriber.status === 'ready') this.subscriber.disconnect(true);
      throw new Error(`subscriber connection not answering: ${errorMessage(err)}`);
    }
  }

  /** Logs a change of health, once per change. `cause` marks a failure worth reporting at startup. */
  private evaluate(cause?: string): void {
    if (this.closed || !this.started) return;
    const healthy = this.healthy();
    if (healthy === this.reported) return;
    if (!healthy && this.reported === undefined && cause === undefined) return; // still starting
    this.reported = healthy;
    if (healthy) {
      this.log.info(
        { revoked: this.sizes() },
        this.everHealthy
          ? 'revocations: redis is back, sets reloaded'
          : 'revocations: sets loaded from redis',
      );
      this.everHealthy = true;
    } else {
      const age = this.lastSyncAgeSeconds();
      this.log.warn(
        { err: cause, last_sync_age_s: Number.isFinite(age) ? Math.round(age) : null },
        'revocations: redis unavailable, keeping the last known sets',
      );
    }
  }
}

/** What a reload changed: ids in force now and not before (add), or before and not now (remove). */
function differences(before: RevocationState, after: RevocationState, now: number): AppliedRevocation[] {
  const inForce = (state: RevocationState, kind: RevocationKind) => {
    const ids = new Set(state.permanent[kind]);
    for (const [id, exp] of state.expiring[kind]) if (exp > now) ids.add(id);
    return ids;
  };
  const changes: AppliedRevocation[] = [];
  for (const kind of REVOCATION_KINDS) {
    const was = inForce(before, kind);
    const is = inForce(after, kind);
    for (const id of is) if (!was.has(id)) changes.push({ op: 'add', kind, id, source: 'reload' });
    for (const id of was) if (!is.has(id)) changes.push({ op: 'remove', kind, id, source: 'reload' });
  }
  return changes;
}

function checkId(kind: RevocationKind, id: string): void {
  if (!isKind(kind)) throw new TypeError(`unknown revocation kind: ${String(kind)}`);
  if (typeof id !== 'string' || id === '') throw new TypeError('revocation id must be a non-empty string');
}

/** A command that got no reply in time: ours (from the socket write) or ioredis' backstop. */
function timedOut(err: unknown): boolean {
  return err instanceof StoreTimeout || /timed out/i.test(errorMessage(err));
}

/** Runs a MULTI; rejects on a transport error, an aborted transaction or any failed command. */
async function exec(tx: ReturnType<Redis['multi']>): Promise<unknown[]> {
  const results = await tx.exec();
  if (!results) throw new Error('transaction aborted');
  return results.map(([err, value]) => {
    if (err) throw err;
    return value;
  });
}

async function quit(connection: Redis): Promise<void> {
  if (connection.status === 'ready') {
    try {
      await connection.quit();
      return;
    } catch {
      // fall through to a hard disconnect
    }
  }
  connection.disconnect();
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
