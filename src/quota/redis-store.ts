// The Redis quota store: every charge is ONE EVALSHA of the Lua script in charge-script.ts, whatever
// the number of stacked limits, so it is atomic (all or nothing) and costs one round trip.
//
// Keys, all hash-tagged by partner so that one request's keys share one Redis Cluster slot:
//   {q:<partner>}:<limit id>               gcra "<tatMs>:<tatRem>", sliding_window "<index>:<prev>:<cur>"
//   {q:<partner>}:<limit id>:<window id>   fixed_window "<count>" (one key per calendar window)
//   {q:<partner>}:rid:<scope>:<request id> nowMs of the charge; the scope is the route and the set of
//                                          limits charged (`orders|daily,per-minute`), so an id reused on
//                                          another route is charged there; scope and id over 128
//                                          chars together: `sha256:<hex>` of both
// TTLs (every write is SET … PX, so every key expires): a limit key lives as long as its state matters
// (gcra: until the bucket is full again; sliding_window: until the end of the next sub-window;
// fixed_window: until the window ends), a request id `idempotencyMs` (default 10 min), each plus
// `keySlackMs` (default 5 s) so that clock skew between replicas and Redis never drops a live state.
// Expiry never changes an answer: an expired state is exactly equivalent to no state.
//
// Time is the request's nowMs, not Redis TIME: answers are deterministic, and equal to those of
// MemoryQuotaStore for the same charges. A request id counts as charged while
// nowMs − chargedAt < idempotencyMs; only allowed charges are remembered.
//
// The script is sent by EVALSHA (its SHA-1 computed here); on NOSCRIPT (a restarted or flushed Redis,
// a new cluster node) it is sent once by EVAL, which also caches it in that server.
//
// Timeouts: a charge with no reply `timeoutMs` (default 100) after it was WRITTEN fails with
// StoreTimeout (src/net/reply-timer.ts: our own event-loop lag is never counted). Redis may still apply it
// later, and the Check was answered without it: so a refund guarded by the request id is sent at
// once behind it on the same connection (Redis runs them in order; the guard makes it a no-op if
// the charge never happened). Without a request id, the refund waits for the late reply.
import { createHash } from 'node:crypto';
import { Cluster, type ClusterOptions, Command, Redis, type RedisOptions } from 'ioredis';
import { ReplyTimer, StoreTimeout, type Watched } from '../net/reply-timer.js';
import { TurnCork } from '../net/turn-cork.js';
import { DEFAULT_IDEMPOTENCY_MS, normalizeRequestId, validateCharge } from './algorithms.js';
import { CHARGE_LUA } from './charge-script.js';
import { refundCosts } from './refund.js';
import { REFUND_LUA } from './refund-script.js';
import type { ChargeRequest, ChargeResult, ChargeSink, LimitSpec, LimitState, QuotaStore } from './types.js';

export type RedisClient = Redis | Cluster;

/** SHA-1 of the charge script, as EVALSHA wants it. */
export const CHARGE_SHA = createHash('sha1').update(CHARGE_LUA).digest('hex');

export const DEFAULT_KEY_SLACK_MS = 5_000;

/** `{q:<partner>}`: the hash tag of every key of a partner. */
export function partnerTag(partner: string): string {
  return `{q:${partner}}`;
}

/** The key of one limit's state: the partner's own, or the scope's (a route's limit). */
export function limitKey(partner: string, spec: LimitSpec): string {
  const base = spec.scope
    ? `${partnerTag(spec.scope.owner)}:${spec.scope.key}`
    : `${partnerTag(partner)}:${spec.id}`;
  return spec.algorithm === 'fixed_window' ? `${base}:${spec.window?.id ?? ''}` : base;
}

/** The key remembering a request id charged within `scope` (see ChargeRequest.scope). */
export function requestIdKey(partner: string, requestId: string, scope = ''): string {
  return `${partnerTag(partner)}:rid:${normalizeRequestId(scope === '' ? requestId : `${scope}:${requestId}`)}`;
}

export interface RedisQuotaStoreOptions {
  /** How long a charged request id counts as charged (ms of request time). Default 600 000 (10 min). */
  readonly idempotencyMs?: number;
  /** Added to every key's PX. Default 5 000. */
  readonly keySlackMs?: number;
  /**
   * A charge with no reply this long after it was written fails (StoreTimeout), so that the route's
   * on_store_error answers within Envoy's deadline. Default 100 ms. See src/net/reply-timer.ts.
   */
  readonly timeoutMs?: number;
}

/** The default of RedisQuotaStoreOptions.timeoutMs. */
export const DEFAULT_STORE_TIMEOUT_MS = 100;

const ALGORITHM_CODE = { gcra: 'g', sliding_window: 's', fixed_window: 'f' } as const;

export class RedisQuotaStore implements QuotaStore {
  private readonly idempotencyMs: number;
  private readonly keySlackMs: number;
  private readonly timer: ReplyTimer;
  /** A standalone or Sentinel client's turn batching (a Cluster auto-pipelines per node instead). */
  private readonly cork: TurnCork | null;
  private onLateCharge: (refunded: boolean, error?: unknown) => void = () => {};

  /** `client`: a connected ioredis Redis (standalone or Sentinel) or Cluster, e.g. createRedisClient(). */
  constructor(
    private readonly client: RedisClient,
    options: RedisQuotaStoreOptions = {},
  ) {
    this.idempotencyMs = options.idempotencyMs ?? DEFAULT_IDEMPOTENCY_MS;
    this.keySlackMs = options.keySlackMs ?? DEFAULT_KEY_SLACK_MS;
    const cork = client instanceof Cluster || client.options.enableAutoPipelining ? null : new TurnCork();
    this.cork = cork;
    this.timer = new ReplyTimer(options.timeoutMs ?? DEFAULT_STORE_TIMEOUT_MS, () => cork?.release());
    // Load the script on every (re)connection: a fresh or restarted Redis has none, and a burst of
    // charges would each pay a NOSCRIPT round trip and send the script again.
    const load = () => this.loadScript().catch(() => {});
    client.on('ready', load);
    if (client.status === 'ready') void load();
    if (!Number.isSafeInteger(this.idempotencyMs) || this.idempotencyMs < 1) {
      throw new RangeError('idempotencyMs must be an integer ≥ 1');
    }
    if (!Number.isSafeInteger(this.keySlackMs) || this.keySlackMs < 0) {
      throw new RangeError('keySlackMs must be an integer ≥ 0');
    }
  }

  charge(request: ChargeRequest): Promise<ChargeResult> {
    return new Promise((resolve, reject) => this.chargeTo(request, { charged: resolve, failed: reject }));
  }

  /**
   * One EVALSHA, watched by the reply timer; its outcome goes to `sink` (QuotaStore.chargeTo).
   * Built for the hot path: no promise from the write to the sink on a standalone or Sentinel
   * client (ChargeCommand), the limits' constant arguments and keys reused per spec (wireOf).
   */
  chargeTo(request: ChargeRequest, sink: ChargeSink): void {
    const { partner, requestId, limits, nowMs } = request;
    try {
      validateCharge(partner, limits, nowMs);
      this.checkSlots(partner, limits);
    } catch (error: unknown) {
      sink.failed(error);
      return;
    }
    const ridTtl = requestId === '' ? 0 : this.idempotencyMs;
    const ridKey = requestIdKey(partner, requestId, request.scope ?? '');
    const head = this.argvHead('c', nowMs, ridTtl, limits.length);
    const call = new ChargeCall(this, request, ridKey, head, sink);
    if (this.cork === null) {
      this.timer.join(call);
      call.watch(this.client.evalsha(CHARGE_SHA, limits.length + 1, call.args));
      return;
    }
    // The turn's first charge is written at once; the next ones wait for the end of the turn and go
    // out in one writev, when the reply timer closes the batch (TurnCork).
    const client = this.client as Redis;
    if (!this.timer.join(call)) this.cork.hold(client.stream);
    client.sendCommand(new ChargeCommand(call, chargeWire(partner, ridKey, head, limits)));
  }

  /** EVAL of the charge script, after EVALSHA met NOSCRIPT (ChargeCall). */
  evalCharge(args: readonly string[], limits: number): Promise<unknown> {
    return this.client.eval(CHARGE_LUA, limits + 1, args as string[]);
  }

  /** Tells `listener` of each refund sent for a late reply (QuotaStore.watchLateRefunds). */
  watchLateRefunds(listener: (refunded: boolean, error?: unknown) => void): void {
    this.onLateCharge = listener;
  }

  /** A charge whose reply came after its StoreTimeout (ChargeCall). */
  lateReply(request: ChargeRequest, late: readonly number[]): void {
    // Without a request id the refund cannot be guarded: send it only once we know it charged.
    if (request.requestId !== '' || late[0] !== 1 || late[1] === 1) return;
    this.settleLate(
      this.refund(request, { allowed: true, duplicate: false, limits: states(request.limits, late) }),
    );
  }

  /**
   * A charge that timed out (ours or ioredis' backstop): Redis may still apply it. A refund guarded
   * by the request id, sent now on the same connection, runs after it and undoes it if it happened.
   */
  timedOut(request: ChargeRequest): void {
    if (request.requestId !== '') this.settleLate(this.refund(request, BLIND));
  }

  private settleLate(refund: Promise<void>): void {
    refund.then(
      () => this.onLateCharge(true),
      (error: unknown) => this.onLateCharge(false, error),
    );
  }

  /** SCRIPT LOAD of the charge script (on every node of a cluster). */
  async loadScript(): Promise<void> {
    if (this.client instanceof Cluster) {
      await Promise.all(this.client.nodes('master').map((node) => node.script('LOAD', CHARGE_LUA)));
    } else {
      await this.client.script('LOAD', CHARGE_LUA);
    }
  }

  connected(): boolean {
    return this.client.status === 'ready';
  }

  async refund(request: ChargeRequest, result: ChargeResult): Promise<void> {
    const costs =
      result === BLIND
        ? request.limits.map((spec) => (spec.shadow ? 0 : spec.cost))
        : refundCosts(request, result);
    if (!costs.some((cost) => cost > 0)) return;
    const { partner, requestId, limits, nowMs } = request;
    const keys = [
      requestIdKey(partner, requestId, request.scope ?? ''),
      ...limits.map((spec) => limitKey(partner, spec)),
    ];
    const args: (string | number)[] = [nowMs, requestId === '' ? 0 : 1, limits.length];
    limits.forEach((spec, i) => {
      args.push(ALGORITHM_CODE[spec.algorithm], spec.limit, spec.periodMs, costs[i] as number);
    });
    // EVAL, not EVALSHA: refunds are rare, and one that must follow a timed-out charge cannot
    // afford a NOSCRIPT round trip (its EVALSHA could itself time out before the fallback is sent).
    await this.client.eval(REFUND_LUA, keys.length, ...keys, ...args);
  }

  async peek(partner: string, limits: readonly LimitSpec[], nowMs: number): Promise<readonly LimitState[]> {
    const specs = limits.map((spec) => ({ ...spec, cost: 1 }));
    validateCharge(partner, specs, nowMs);
    return states(specs, await this.run('p', partner, '', '', specs, nowMs, 0));
  }

  private async run(
    mode: 'c' | 'p',
    partner: string,
    requestId: string,
    scope: string,
    limits: readonly LimitSpec[],
    nowMs: number,
    ridTtl: number,
  ): Promise<number[]> {
    this.checkSlots(partner, limits);
    const args = this.scriptArgs(mode, partner, requestId, scope, limits, nowMs, ridTtl);
    let reply: unknown;
    try {
      reply = await this.client.evalsha(CHARGE_SHA, limits.length + 1, args);
    } catch (err: unknown) {
      if (!isNoScript(err)) throw err;
      reply = await this.evalCharge(args, limits.length);
    }
    return decodeReply(reply, limits.length);
  }

  private checkSlots(partner: string, limits: readonly LimitSpec[]): void {
    if (!(this.client instanceof Cluster)) return;
    // One script call must touch one slot. A route's shared or per-source counter lives under
    // the route's tag; charged together with a partner's own limits it cannot be atomic on a
    // cluster. Refused as our configuration problem (RangeError: internal_error), never half-charged.
    const other = limits.find((spec) => spec.scope && spec.scope.owner !== partner);
    if (other) {
      throw new RangeError(
        `limit ${JSON.stringify(other.id)} is counted under {q:${other.scope?.owner}} but charged with ` +
          `partner ${JSON.stringify(partner)}'s limits: on Redis Cluster, per: route limits apply only ` +
          'to callers without limits of their own (docs/configuration.md#route-limits)',
      );
    }
  }

  /** The script's KEYS then ARGV (charge-script.ts), as strings: what ioredis would make of them. */
  private scriptArgs(
    mode: 'c' | 'p',
    partner: string,
    requestId: string,
    scope: string,
    limits: readonly LimitSpec[],
    nowMs: number,
    ridTtl: number,
  ): string[] {
    const head = this.argvHead(mode, nowMs, ridTtl, limits.length);
    return scriptArgs(partner, requestIdKey(partner, requestId, scope), head, limits);
  }

  /** The script's first ARGV: mode, time, the request id's TTL, key slack, number of limits. */
  private argvHead(mode: 'c' | 'p', nowMs: number, ridTtl: number, n: number): string {
    return `${mode}:${nowMs}:${ridTtl}:${this.keySlackMs}:${n}`;
  }
}

/** KEYS (the request id's, then each limit's) then ARGV (`head`, then each limit's). */
function scriptArgs(partner: string, ridKey: string, head: string, limits: readonly LimitSpec[]): string[] {
  const n = limits.length;
  const args = new Array<string>(2 + 2 * n);
  args[0] = ridKey;
  args[1 + n] = head;
  let a = 2 + n;
  for (let i = 0; i < n; i++) {
    const wire = wireOf(partner, limits[i] as LimitSpec);
    args[1 + i] = wire.key;
    args[a++] = wire.argv;
  }
  return args;
}

/** Who receives a ChargeCommand's reply: its ChargeCall. */
export interface ReplyTarget {
  /**
   * The script's KEYS then ARGV, as the array ioredis would send (built on demand), until the call
   * is answered in time: then it keeps none of its request, and reading this throws.
   */
  readonly args: readonly string[];
  replied(reply: unknown): void;
  failed(error: unknown): void;
}

/**
 * One charge in flight: the caller's sink, the reply timer's view of it (`state`, `expire`), and
 * what to do with a reply, late or not. One object instead of a closure per step.
 */
class ChargeCall implements Watched, ReplyTarget {
  state: 0 | 1 | 2 = 0;
  private retried = false;
  /**
   * What the call needs until it is answered in time, then dropped: the reply timer holds its batch
   * for the whole timeout (100 ms by default), and through the sink this would keep the Check's
   * request, result and promise alive that long, to be copied by every scavenge meanwhile.
   */
  private job: ChargeJob | null;

  constructor(
    private readonly store: RedisQuotaStore,
    request: ChargeRequest,
    ridKey: string,
    head: string,
    sink: ChargeSink,
  ) {
    this.job = { request, ridKey, head, sink };
  }

  /** The script's KEYS then ARGV, built only where a command needs them as an array. */
  get args(): string[] {
    const { request, ridKey, head } = this.live();
    return scriptArgs(request.partner, ridKey, head, request.limits);
  }

  /** The reply of a command sent with a promise (a Cluster, the EVAL after NOSCRIPT). */
  watch(reply: Promise<unknown>): void {
    reply.then(
      (value) => this.replied(value),
      (error: unknown) => this.failed(error),
    );
  }

  expire(error: StoreTimeout): void {
    const job = this.job;
    if (job === null) return;
    this.state = 2;
    this.store.timedOut(job.request);
    job.sink.failed(error);
  }

  replied(value: unknown): void {
    const job = this.job;
    if (job === null) return;
    const limits = job.request.limits;
    let reply: number[];
    try {
      reply = decodeReply(value, limits.length);
    } catch (error: unknown) {
      this.failed(error);
      return;
    }
    if (this.state === 2) {
      this.store.lateReply(job.request, reply);
      return;
    }
    this.state = 1;
    this.job = null;
    job.sink.charged({ allowed: reply[0] === 1, duplicate: reply[1] === 1, limits: states(limits, reply) });
  }

  failed(error: unknown): void {
    const job = this.job;
    if (this.state === 2 || job === null) return;
    if (!this.retried && isNoScript(error)) {
      // A restarted or flushed Redis: send the script itself, once, under the same timer.
      this.retried = true;
      this.watch(this.store.evalCharge(this.args, job.request.limits.length));
      return;
    }
    this.state = 1;
    this.job = null;
    if (isTimeout(error)) this.store.timedOut(job.request);
    job.sink.failed(error);
  }

  /** The job of a call not yet answered in time (every caller of this runs before that). */
  private live(): ChargeJob {
    if (this.job === null) throw new Error('charge call already answered');
    return this.job;
  }
}

interface ChargeJob {
  readonly request: ChargeRequest;
  readonly ridKey: string;
  readonly head: string;
  readonly sink: ChargeSink;
}

function isNoScript(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('NOSCRIPT');
}

/** What a limit adds to a script call: its key and its ARGV string (charge-script.ts). */
interface Wire {
  readonly partner: string;
  readonly key: string;
  readonly argv: string;
  /** The same two as RESP bulk strings (ChargeCommand). */
  readonly keyBulk: string;
  readonly argvBulk: string;
}

// Per spec: the quota stage reuses a frozen spec for as long as its window and cost hold
// (quota-plan.ts), so its key and arguments are built once, not per charge. Unfrozen specs (tests,
// other callers) are built every time: they could change.
const wires = new WeakMap<LimitSpec, Wire>();

function wireOf(partner: string, spec: LimitSpec): Wire {
  const cached = wires.get(spec);
  if (cached !== undefined && cached.partner === partner) return cached;
  const key = limitKey(partner, spec);
  const argv = `${ALGORITHM_CODE[spec.algorithm]}:${spec.limit}:${spec.periodMs}:${spec.burst}:${spec.cost}:${spec.shadow ? 1 : 0}:${spec.window?.endMs ?? 0}`;
  const wire: Wire = { partner, key, argv, keyBulk: bulk(key), argvBulk: bulk(argv) };
  if (Object.isFrozen(spec)) wires.set(spec, wire);
  return wire;
}

/**
 * EVALSHA of the charge script on a standalone or Sentinel client: the command ioredis would send
 * for `client.evalsha(CHARGE_SHA, n + 1, args)`, with three differences that matter at every Check:
 * - its RESP text comes from chargeWire (a dozen joins of mostly cached pieces), not from
 *   ioredis' toWritable (five joins per argument: ~1.4 KB of intermediate strings per charge);
 * - no promise: ioredis hands the reply (or the error) to `resolve` (or `reject`), which pass it
 *   straight to the ChargeCall, undecoded (a Buffer: decodeReply reads its bytes);
 * - no ioredis timer per charge: the store's ReplyTimer already fails any charge unanswered after
 *   at most 10 × its timeout (MAX_STRETCH), so ioredis' commandTimeout backstop would only add a
 *   setTimeout and a closure to every Check. Other commands (refunds, SCRIPT LOAD) keep it.
 * test/integration/quota-redis.test.ts holds its text to ioredis' own encoding of the same arguments.
 */
export class ChargeCommand extends Command {
  readonly #wire: string;

  constructor(
    readonly call: ReplyTarget,
    wire: string,
  ) {
    // ioredis reads `args` only for error texts (err.command) and keys (a Cluster, a keyPrefix: not
    // ours): the charge's text is all in `wire`.
    super('evalsha', NO_ARGS);
    this.#wire = wire;
  }

  override toWritable(_socket: object): string {
    return this.#wire;
  }

  override setTimeout(_ms: number): void {}
}

// Command's constructor calls initPromise(), which makes the promise, its resolvers and three
// closures. ioredis only ever calls `resolve`/`reject` on a command it wrote, and reads `promise`
// only to return it from sendCommand (or to trace it): a settled constant serves. (initPromise is
// private in ioredis' types, hence the prototype assignment.)
(ChargeCommand.prototype as unknown as { initPromise(this: ChargeCommand): void }).initPromise =
  function initPromise(this: ChargeCommand): void {
    this.isResolved = false;
    this.isSettled = false;
    this.promise = SETTLED;
    this.resolve = replyToCall;
    this.reject = errorToCall;
  };

const SETTLED: Promise<unknown> = Promise.resolve(null);
const NO_ARGS: string[] = [];

function replyToCall(this: ChargeCommand, reply: unknown): void {
  this.isResolved = true;
  this.isSettled = true;
  this.call.replied(reply);
}

function errorToCall(this: ChargeCommand, error: unknown): void {
  this.isSettled = true;
  this.call.failed(error);
}

/** `$<bytes>\r\n<text>\r\n`: one RESP bulk string. */
function bulk(text: string): string {
  return `$${Buffer.byteLength(text)}\r\n${text}\r\n`;
}

/** `*<count>\r\n` EVALSHA <sha> <numkeys>, per number of limits: constant, built once. */
const prefixes: string[] = [];

function evalshaPrefix(n: number): string {
  let prefix = prefixes[n];
  if (prefix === undefined) {
    prefix = `*${2 * n + 5}\r\n${bulk('evalsha')}${bulk(CHARGE_SHA)}${bulk(String(n + 1))}`;
    prefixes[n] = prefix;
  }
  return prefix;
}

/**
 * The RESP text of EVALSHA CHARGE_SHA n+1 with scriptArgs' KEYS then ARGV: the limits' keys and
 * arguments as bulk strings cached with their Wire, only the request id key and the first argument
 * built per charge.
 */
function chargeWire(partner: string, ridKey: string, head: string, limits: readonly LimitSpec[]): string {
  const n = limits.length;
  let keys = '';
  let argv = '';
  for (let i = 0; i < n; i++) {
    const wire = wireOf(partner, limits[i] as LimitSpec);
    keys += wire.keyBulk;
    argv += wire.argvBulk;
  }
  return `${evalshaPrefix(n)}${bulk(ridKey)}${keys}${bulk(head)}${argv}`;
}

/**
 * The result of a charge whose reply never came: refund every enforced limit (the request id guard
 * makes it a no-op if the charge was not applied). Shadow limits are left alone: whether their cost
 * fitted is unknown, and they never refuse.
 */
const BLIND: ChargeResult = Object.freeze({ allowed: true, duplicate: false, limits: [] });

function isTimeout(error: unknown): boolean {
  return error instanceof StoreTimeout || (error instanceof Error && error.message === 'Command timed out');
}

/**
 * The script's reply, `1:0:99:59000:0:0:…` (charge-script.ts), as its 2 + 4n integers: a string
 * (ioredis' utf8 reply) or its bytes (ChargeCommand's raw reply; the text is ASCII).
 */
export function decodeReply(reply: unknown, n: number): number[] {
  const expected = 2 + 4 * n;
  let text = '';
  let bytes: Uint8Array | null = null;
  if (reply instanceof Uint8Array) bytes = reply;
  else if (typeof reply === 'string') text = reply;
  else throw unexpectedReply(reply);
  const length = bytes === null ? text.length : bytes.length;
  const out = new Array<number>(expected);
  let count = 0;
  let value = 0;
  let digits = 0;
  let negative = false;
  for (let i = 0; i <= length; i++) {
    const c = i === length ? COLON : bytes === null ? text.charCodeAt(i) : (bytes[i] as number);
    if (c === COLON) {
      if (digits === 0 || count === expected) throw unexpectedReply(reply);
      out[count++] = negative ? -value : value;
      value = 0;
      digits = 0;
      negative = false;
    } else if (c >= ZERO && c <= NINE && digits < 15) {
      value = value * 10 + (c - ZERO);
      digits++;
    } else if (c === MINUS && digits === 0 && !negative) {
      negative = true;
    } else {
      throw unexpectedReply(reply);
    }
  }
  if (count !== expected) throw unexpectedReply(reply);
  return out;
}

const COLON = 0x3a;
const MINUS = 0x2d;
const ZERO = 0x30;
const NINE = 0x39;

function unexpectedReply(reply: unknown): Error {
  const shown = reply instanceof Uint8Array ? Buffer.from(reply).toString('latin1') : reply;
  return new Error(`quota script: unexpected reply ${JSON.stringify(shown)?.slice(0, 200)}`);
}

function states(limits: readonly LimitSpec[], reply: readonly number[]): LimitState[] {
  return limits.map((spec, i) => {
    const o = 2 + i * 4;
    return {
      id: spec.id,
      limit: spec.limit,
      remaining: reply[o] as number,
      resetMs: reply[o + 1] as number,
      exceeded: reply[o + 2] === 1,
      retryAfterMs: reply[o + 3] as number,
      shadow: spec.shadow,
    };
  });
}

// ---------------------------------------------------------------------------------------------------
// Connecting

export interface RedisAddress {
  readonly host: string;
  readonly port: number;
}

/** A parsed Redis URL (parseRedisUrl). */
export type RedisTarget =
  | { readonly kind: 'standalone'; readonly url: string; readonly tls: boolean }
  | {
      readonly kind: 'sentinel';
      readonly sentinels: readonly RedisAddress[];
      readonly masterName: string;
      readonly db: number;
      readonly username?: string;
      readonly password?: string;
      readonly sentinelUsername?: string;
      readonly sentinelPassword?: string;
      readonly tls: boolean;
    }
  | {
      readonly kind: 'cluster';
      readonly nodes: readonly RedisAddress[];
      readonly username?: string;
      readonly password?: string;
      readonly tls: boolean;
    };

const MULTI_HOST_URL = /^(rediss?)\+(sentinel|cluster):\/\/(?:([^@/?#]*)@)?([^/?#]+)(\/[^?#]*)?(\?[^#]*)?$/i;

/**
 * Parses the Redis URLs we accept (credentials percent-encoded):
 *   redis://[user:pass@]host:port[/db]      rediss:// for TLS (standalone; parsed by ioredis)
 *   redis+sentinel://[user:pass@]host:port,host:port/<master name>[/db][?sentinelUsername=u&sentinelPassword=p]
 *     user:pass authenticate to the master; the query to the Sentinels (default port 26379);
 *   redis+cluster://[user:pass@]host:port,host:port   (startup nodes; default port 6379)
 *   rediss+sentinel://, rediss+cluster://   the same over TLS (Sentinels too).
 * Throws a RangeError naming what is wrong (never the password).
 */
export function parseRedisUrl(url: string): RedisTarget {
  if (/^rediss?:\/\//i.test(url)) {
    try {
      new URL(url);
    } catch {
      throw new RangeError('redis URL: not a valid redis:// URL');
    }
    return { kind: 'standalone', url, tls: /^rediss:/i.test(url) };
  }
  const match = MULTI_HOST_URL.exec(url);
  if (!match) {
    throw new RangeError(
      'redis URL: expected redis://, rediss://, redis+sentinel://hosts/master or redis+cluster://hosts',
    );
  }
  const [, scheme = '', kind = '', userinfo, hostList = '', path = '', query = ''] = match;
  const tls = scheme.toLowerCase() === 'rediss';
  const credentials: { username?: string; password?: string } = {};
  if (userinfo !== undefined && userinfo !== '') {
    const colon = userinfo.indexOf(':');
    const user = percentDecode(colon === -1 ? userinfo : userinfo.slice(0, colon));
    const pass = colon === -1 ? '' : percentDecode(userinfo.slice(colon + 1));
    if (user !== '') credentials.username = user;
    if (pass !== '') credentials.password = pass;
  }
  const sentinel = kind.toLowerCase() === 'sentinel';
  const hosts = hostList.split(',').map((entry) => parseAddress(entry, sentinel ? 26379 : 6379));
  if (!sentinel) {
    if (path !== '' && path !== '/')
      throw new RangeError('redis+cluster URL: no path allowed (cluster has db 0)');
    return { kind: 'cluster', nodes: hosts, tls, ...credentials };
  }
  const segments = path.split('/').filter((s) => s !== '');
  const masterName = segments[0] === undefined ? '' : percentDecode(segments[0]);
  if (masterName === '' || segments.length > 2) {
    throw new RangeError('redis+sentinel URL: expected /<master name>[/<db>] after the hosts');
  }
  const db = segments[1] === undefined ? 0 : Number(segments[1]);
  if (!Number.isSafeInteger(db) || db < 0) throw new RangeError('redis+sentinel URL: bad db number');
  const params = new URLSearchParams(query.slice(1));
  const sentinelUsername = params.get('sentinelUsername') ?? undefined;
  const sentinelPassword = params.get('sentinelPassword') ?? undefined;
  return {
    kind: 'sentinel',
    sentinels: hosts,
    masterName,
    db,
    tls,
    ...credentials,
    ...(sentinelUsername === undefined ? {} : { sentinelUsername }),
    ...(sentinelPassword === undefined ? {} : { sentinelPassword }),
  };
}

function percentDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new RangeError('redis URL: bad percent-encoding');
  }
}

function parseAddress(entry: string, defaultPort: number): RedisAddress {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(entry.trim());
  if (!match) throw new RangeError(`redis URL: bad host ${JSON.stringify(entry)}`);
  const host = (match[1] ?? '').replace(/^\[|\]$/g, '');
  const port = match[2] === undefined ? defaultPort : Number(match[2]);
  if (port < 1 || port > 65535) throw new RangeError(`redis URL: bad port in ${JSON.stringify(entry)}`);
  return { host, port };
}

export interface RedisClientOptions {
  /** Give up a connection attempt after this long (ioredis default: 10 s). Default 2 000 ms. */
  readonly connectTimeoutMs?: number;
  /**
   * ioredis' own limit for a command with no reply (ioredis default: never). Default 1 000 ms: only
   * a backstop for a connection that silently stopped answering, for refunds, peeks and SCRIPT LOAD.
   * Charges on a standalone or Sentinel client never arm it (ChargeCommand; a Cluster's do): the
   * quota store judges them itself, on a shorter timeout measured from the write (RedisQuotaStoreOptions.timeoutMs), and
   * ioredis' timer would also count the time our own busy event loop leaves a reply unread.
   */
  readonly commandTimeoutMs?: number;
  /** CLIENT SETNAME, to find our connections in CLIENT LIST. Default `portcullis-quota`. */
  readonly connectionName?: string;
  /** Extra ioredis options, applied last (TLS CA, natMap…). For a cluster: its redisOptions. */
  readonly redisOptions?: RedisOptions;
  /** Extra Cluster options, applied last. */
  readonly clusterOptions?: ClusterOptions;
}

/**
 * An ioredis client for a quota (or any hot-path) Redis, from a URL (see parseRedisUrl):
 * a `Redis` for redis://, rediss:// and redis+sentinel://, a `Cluster` for redis+cluster://.
 * Options, chosen for a sidecar that must answer within Envoy's deadline and fail over to a fallback:
 * - connectTimeout (connectTimeoutMs, 2 s) and commandTimeout (commandTimeoutMs, 1 s backstop): see above;
 * - enableOfflineQueue: false — while disconnected, commands fail at once instead of queueing until
 *   long after the Check's deadline; the stage then applies the route's on_error/fallback;
 * - enableAutoPipelining only for a Cluster: a standalone or Sentinel client's charges are written
 *   once per event-loop turn by RedisQuotaStore itself (src/net/turn-cork.ts), which keeps nothing
 *   alive after the reply, unlike ioredis' per-turn Pipeline (see there for the figures);
 * - maxRetriesPerRequest: 0 and autoResendUnfulfilledCommands: false — a charge in flight when the
 *   connection drops fails; it is never re-sent after reconnecting (that could charge it twice, late);
 * - retryStrategy / clusterRetryStrategy: reconnect forever in the background, backing off from 50 ms
 *   to at most 2 s (Sentinel: ask the Sentinels again at the same pace);
 * - enableReadyCheck (default): "ready" only once Redis has loaded its data (cluster: CLUSTER INFO ok).
 * The client connects at once; await waitForReady() before serving if you want to start warm.
 */
export function createRedisClient(url: string, options: RedisClientOptions = {}): RedisClient {
  const target = parseRedisUrl(url);
  // Capped at 200 ms: once Redis answers again, quotas are shared again within a second.
  const backoff = (times: number) => Math.min(50 * 2 ** Math.min(times, 2), 200);
  const common: RedisOptions = {
    connectTimeout: options.connectTimeoutMs ?? 2000,
    commandTimeout: options.commandTimeoutMs ?? 1000,
    connectionName: options.connectionName ?? 'portcullis-quota',
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    // Standalone and Sentinel: RedisQuotaStore corks the socket per turn (turn-cork.ts) for the same
    // one write per turn; a Cluster has a socket per node, where ioredis' per-slot batching stays.
    enableAutoPipelining: target.kind === 'cluster',
  };
  switch (target.kind) {
    case 'standalone':
      return new Redis(target.url, {
        ...common,
        enableOfflineQueue: false,
        retryStrategy: backoff,
        ...options.redisOptions,
      });
    case 'sentinel':
      return new Redis({
        ...common,
        sentinels: target.sentinels.map((a) => ({ host: a.host, port: a.port })),
        name: target.masterName,
        db: target.db,
        username: target.username,
        password: target.password,
        sentinelUsername: target.sentinelUsername,
        sentinelPassword: target.sentinelPassword,
        ...(target.tls ? { tls: {}, enableTLSForSentinelMode: true, sentinelTLS: {} } : {}),
        sentinelRetryStrategy: backoff,
        enableOfflineQueue: false,
        retryStrategy: backoff,
        ...options.redisOptions,
      });
    case 'cluster':
      return new Cluster(
        target.nodes.map((a) => ({ host: a.host, port: a.port })),
        {
          enableOfflineQueue: false,
          clusterRetryStrategy: backoff,
          redisOptions: {
            ...common,
            username: target.username,
            password: target.password,
            ...(target.tls ? { tls: {} } : {}),
            ...options.redisOptions,
          },
          ...options.clusterOptions,
        },
      );
  }
}

/** Resolves once the client is ready (connected, data loaded); rejects after `timeoutMs`. */
export function waitForReady(client: RedisClient, timeoutMs = 10_000): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('ready', onReady);
      reject(new Error(`redis: not ready within ${timeoutMs} ms (status ${client.status})`));
    }, timeoutMs);
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    client.once('ready', onReady);
  });
}
