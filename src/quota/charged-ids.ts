// Request ids this replica allowed, remembered for the idempotency window: a retry of one of them is
// allowed at once, without Redis — so neither the over-limit cache nor an open circuit can refuse a
// request that was already charged. Keyed by partner, idempotency scope (route and limits) and
// request id, like the stores.
//
// A ring in charge order, not an LRU: an entry's life is the window from its charge, whatever reads
// it, so the oldest entries are always the first to go. remember() drops the expired ones from the
// front (once every 32 ids; memory follows the window), and at most `maxEntries` are kept: under
// pressure the oldest are forgotten, and their retries go to the store again, which still knows them
// (it answers `duplicate`). Measured at saturation on quota-only, lru-cache's bookkeeping was 3.4 %
// of the server's CPU; how the ring is held is said at ChargedIds.
import { normalizeRequestId } from './algorithms.js';
import type { LimitState } from './types.js';

export interface ChargedId {
  /** Request time of the charge (ms). */
  readonly atMs: number;
  /** The limits' states the allow reported (replayed in the retry's headers). */
  readonly limits: readonly LimitState[];
}

const SWEEP_EVERY = 32;

/** Limits kept in a record's numbers; a charge of more limits keeps its ChargedId object instead. */
const INLINE = 3;
/** Per record in `nums`: atMs, the number of limits, then per limit its five numbers (FIELDS). */
const FIELDS = 5;
const STRIDE = 2 + FIELDS * INLINE;
/** Key characters kept in a record's bytes; a longer key (or one past U+00FF) is kept as a string. */
const KEY_BYTES = 128;
const FIRST_CAPACITY = 1024;
const NONE = -1;
const EXCEEDED = 1;
const SHADOW = 2;

/**
 * The ids live in a ring of records, in charge order, held in typed arrays; a Map from a seeded
 * 30-bit hash of the key (a small integer, no object) to the newest record of that hash, and each
 * record to the next older one of the same hash (`next`). So a remembered id costs the garbage
 * collector nothing: measured at 1,000 Check/s on quota-only, the entries as objects (the key
 * string, the entry, its LimitStates, ~270 B) were 60 % of what every scavenge copied, and the
 * scavenge pause halved without them. The key itself is compared in full (`bytes`, or `long` for a
 * key that does not fit), so a hash collision never makes one id pass for another; the seed keeps
 * a sender from choosing ids that all collide.
 */
export class ChargedIds {
  /** Hash → the newest record with that hash. */
  private readonly byHash = new Map<number, number>();
  private capacity: number;
  private readonly maxCapacity: number;
  /** The ring: `head` is the oldest record, `count` records follow it (dead ones included). */
  private head = 0;
  private count = 0;
  private live = 0;
  private unswept = 0;
  private nums!: Float64Array;
  private hashes!: Int32Array;
  private next!: Int32Array;
  /** The key's length; NONE: a dead record (forgotten, or remembered again later). */
  private lengths!: Int32Array;
  private bytes!: Uint8Array;
  /** Per record, the key when it is not in `bytes`. */
  private long!: (string | undefined)[];
  /** Per record and inline limit, the limit's id (the spec's string, shared: a pointer). */
  private ids!: string[];
  /** Records of more than INLINE limits: their ChargedId as given. */
  private wide = new Map<number, ChargedId>();
  private readonly seed = (Math.random() * 0x7fffffff) | 0;

  /** `hash`: tests only, to make keys collide. */
  constructor(
    private readonly windowMs: number,
    private readonly maxEntries = 50_000,
    hash?: (key: string) => number,
  ) {
    if (hash) this.hash = hash;
    this.maxCapacity = powerOfTwoAtLeast(Math.max(1, maxEntries));
    this.capacity = Math.min(FIRST_CAPACITY, this.maxCapacity);
    this.allocate();
  }

  /** The charge of the id `key` (chargedIdKey) within the window ending at `nowMs`, else undefined. */
  get(key: string, nowMs: number): ChargedId | undefined {
    const r = this.find(key, this.hash(key));
    if (r === NONE) return undefined;
    const at = r * STRIDE;
    const atMs = this.nums[at] as number;
    if (nowMs - atMs >= this.windowMs) return undefined;
    return this.wide.get(r) ?? { atMs, limits: this.limitsOf(r) };
  }

  /** Remembers the id `key` (chargedIdKey) as charged. */
  remember(key: string, charged: ChargedId): void {
    const h = this.hash(key);
    // Re-remembered: its old record dies, and it moves to the end, in charge order.
    const old = this.find(key, h);
    if (old !== NONE) this.kill(old);
    if (this.count === this.capacity) {
      // At the largest ring, records of re-remembered ids (dead) still hold their places until the
      // front passes them: the oldest id may then go a little before maxEntries are live.
      if (this.capacity < this.maxCapacity) this.grow();
      else this.dropOldest();
    }
    const r = (this.head + this.count) & (this.capacity - 1);
    this.count++;
    this.live++;
    this.write(r, key, h, charged);
    while (this.live > this.maxEntries) this.dropOldest();
    // Expired ids go from the front, once every SWEEP_EVERY ids (up to that many wait meanwhile).
    if (++this.unswept < SWEEP_EVERY) return;
    this.unswept = 0;
    while (this.count > 0) {
      const oldest = this.head;
      if (
        this.lengths[oldest] !== NONE &&
        charged.atMs - (this.nums[oldest * STRIDE] as number) < this.windowMs
      )
        break;
      this.dropOldest();
    }
  }

  get size(): number {
    return this.live;
  }

  /** Empty arrays for `capacity` records (set by the constructor, and by grow after it copied the old). */
  private allocate(): void {
    this.nums = new Float64Array(this.capacity * STRIDE);
    this.hashes = new Int32Array(this.capacity);
    this.next = new Int32Array(this.capacity);
    this.lengths = new Int32Array(this.capacity).fill(NONE);
    this.bytes = new Uint8Array(this.capacity * KEY_BYTES);
    this.long = new Array<string | undefined>(this.capacity).fill(undefined);
    this.ids = new Array<string>(this.capacity * INLINE).fill('');
  }

  private write(r: number, key: string, h: number, charged: ChargedId): void {
    this.hashes[r] = h;
    this.lengths[r] = key.length;
    this.long[r] = this.storeKey(r, key) ? undefined : key;
    const limits = charged.limits;
    const at = r * STRIDE;
    this.nums[at] = charged.atMs;
    this.nums[at + 1] = limits.length;
    if (limits.length > INLINE) this.wide.set(r, charged);
    else {
      for (let i = 0; i < limits.length; i++) {
        const state = limits[i] as LimitState;
        const o = at + 2 + i * FIELDS;
        this.nums[o] = state.limit;
        this.nums[o + 1] = state.remaining;
        this.nums[o + 2] = state.resetMs;
        this.nums[o + 3] = state.retryAfterMs;
        this.nums[o + 4] = (state.exceeded ? EXCEEDED : 0) | (state.shadow ? SHADOW : 0);
        this.ids[r * INLINE + i] = state.id;
      }
    }
    this.link(r, h);
  }

  /** Record `r` becomes the newest of hash `h`, in front of its chain. */
  private link(r: number, h: number): void {
    const newest = this.byHash.get(h);
    this.next[r] = newest === undefined ? NONE : newest;
    this.byHash.set(h, r);
  }

  /** The key into record `r`'s bytes; false when it does not fit (too long, or a unit past U+00FF). */
  private storeKey(r: number, key: string): boolean {
    if (key.length > KEY_BYTES) return false;
    const at = r * KEY_BYTES;
    for (let i = 0; i < key.length; i++) {
      const c = key.charCodeAt(i);
      if (c > 0xff) return false;
      this.bytes[at + i] = c;
    }
    return true;
  }

  private limitsOf(r: number): LimitState[] {
    const at = r * STRIDE;
    const n = this.nums[at + 1] as number;
    const limits = new Array<LimitState>(n);
    for (let i = 0; i < n; i++) {
      const o = at + 2 + i * FIELDS;
      const flags = this.nums[o + 4] as number;
      limits[i] = {
        id: this.ids[r * INLINE + i] as string,
        limit: this.nums[o] as number,
        remaining: this.nums[o + 1] as number,
        resetMs: this.nums[o + 2] as number,
        exceeded: (flags & EXCEEDED) !== 0,
        retryAfterMs: this.nums[o + 3] as number,
        shadow: (flags & SHADOW) !== 0,
      };
    }
    return limits;
  }

  /** The live record of `key`, or NONE. */
  private find(key: string, h: number): number {
    let r = this.byHash.get(h);
    while (r !== undefined && r !== NONE) {
      if (this.keyIs(r, key)) return r;
      r = this.next[r];
    }
    return NONE;
  }

  private keyIs(r: number, key: string): boolean {
    if (this.lengths[r] !== key.length) return false;
    const long = this.long[r];
    if (long !== undefined) return long === key;
    const at = r * KEY_BYTES;
    for (let i = 0; i < key.length; i++) if (this.bytes[at + i] !== key.charCodeAt(i)) return false;
    return true;
  }

  /** Forgets live record `r`: out of its hash's chain, and dead in the ring until the front passes it. */
  private kill(r: number): void {
    const h = this.hashes[r] as number;
    const newest = this.byHash.get(h) as number;
    if (newest === r) {
      const older = this.next[r] as number;
      if (older === NONE) this.byHash.delete(h);
      else this.byHash.set(h, older);
    } else {
      let p = newest;
      while (p !== NONE && this.next[p] !== r) p = this.next[p] as number;
      if (p !== NONE) this.next[p] = this.next[r] as number;
    }
    this.lengths[r] = NONE;
    this.long[r] = undefined;
    this.wide.delete(r);
    this.live--;
  }

  private dropOldest(): void {
    const r = this.head;
    if (this.lengths[r] !== NONE) this.kill(r);
    this.head = (r + 1) & (this.capacity - 1);
    this.count--;
  }

  /** Twice the records: the live ones move to the front, oldest first; the dead are left behind. */
  private grow(): void {
    const old = {
      capacity: this.capacity,
      head: this.head,
      count: this.count,
      nums: this.nums,
      hashes: this.hashes,
      lengths: this.lengths,
      bytes: this.bytes,
      long: this.long,
      ids: this.ids,
      wide: this.wide,
    };
    this.capacity *= 2;
    this.allocate();
    this.byHash.clear();
    this.wide = new Map();
    this.head = 0;
    let r = 0;
    for (let k = 0; k < old.count; k++) {
      const from = (old.head + k) & (old.capacity - 1);
      const length = old.lengths[from] as number;
      if (length === NONE) continue;
      this.nums.set(old.nums.subarray(from * STRIDE, (from + 1) * STRIDE), r * STRIDE);
      this.bytes.set(old.bytes.subarray(from * KEY_BYTES, (from + 1) * KEY_BYTES), r * KEY_BYTES);
      for (let i = 0; i < INLINE; i++) this.ids[r * INLINE + i] = old.ids[from * INLINE + i] as string;
      const h = old.hashes[from] as number;
      this.hashes[r] = h;
      this.lengths[r] = length;
      this.long[r] = old.long[from];
      const wide = old.wide.get(from);
      if (wide !== undefined) this.wide.set(r, wide);
      this.link(r, h);
      r++;
    }
    this.count = r;
  }

  /** FNV-1a over the key's UTF-16 units, from a per-process seed, to 30 bits (a small integer). */
  private hash = (key: string): number => {
    let h = 0x811c9dc5 ^ this.seed;
    for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
    return (h ^ (h >>> 15)) & 0x3fffffff;
  };
}

function powerOfTwoAtLeast(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/**
 * The key of a request id within a partner's idempotency scope (route and limits): built once per
 * Check, for the lookup and for remembering the allow. Only for a non-empty request id.
 */
export function chargedIdKey(partner: string, scope: string, requestId: string): string {
  return `${partner}\u0000${scope}\u0000${normalizeRequestId(requestId)}`;
}
