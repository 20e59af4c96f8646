// Request ids this replica allowed, remembered for the idempotency window: a retry of one of them is
// allowed at once, without Redis — so neither the over-limit cache nor an open circuit can refuse a
// request that was already charged. Keyed by partner, idempotency scope (route and limits) and
// request id, like the stores.
//
// A Map in charge order, not an LRU: an entry's life is the window from its charge, whatever reads
// it, so the oldest entries are always the first to go. remember() drops the expired ones from the
// front (once every 32 ids, so the sweep's iterator is rare; memory follows the window, and nothing
// dead waits for a major GC), and at most `maxEntries` are kept: under pressure the oldest are
// forgotten, and their retries go to the store again, which still knows them (it answers
// `duplicate`). Measured at saturation on quota-only, lru-cache's bookkeeping was 3.4 % of the
// server's CPU.
import { normalizeRequestId } from './algorithms.js';
import type { LimitState } from './types.js';

export interface ChargedId {
  /** Request time of the charge (ms). */
  readonly atMs: number;
  /** The limits' states the allow reported (replayed in the retry's headers). */
  readonly limits: readonly LimitState[];
}

const SWEEP_EVERY = 32;

export class ChargedIds {
  private readonly ids = new Map<string, ChargedId>();
  private unswept = 0;

  constructor(
    private readonly windowMs: number,
    private readonly maxEntries = 50_000,
  ) {}

  /** The charge of the id `key` (chargedIdKey) within the window ending at `nowMs`, else undefined. */
  get(key: string, nowMs: number): ChargedId | undefined {
    const charged = this.ids.get(key);
    return charged !== undefined && nowMs - charged.atMs < this.windowMs ? charged : undefined;
  }

  /** Remembers the id `key` (chargedIdKey) as charged. */
  remember(key: string, charged: ChargedId): void {
    // Re-remembered: it moves to the end, in charge order.
    if (this.ids.has(key)) this.ids.delete(key);
    this.ids.set(key, charged);
    // The sweep's iterator is an allocation: once every SWEEP_EVERY ids (up to that many expired
    // ones wait meanwhile), or at once past the bound.
    if (++this.unswept < SWEEP_EVERY && this.ids.size <= this.maxEntries) return;
    this.unswept = 0;
    for (const [oldest, entry] of this.ids) {
      if (this.ids.size <= this.maxEntries && charged.atMs - entry.atMs < this.windowMs) break;
      this.ids.delete(oldest);
    }
  }

  get size(): number {
    return this.ids.size;
  }
}

/**
 * The key of a request id within a partner's idempotency scope (route and limits): built once per
 * Check, for the lookup and for remembering the allow. Only for a non-empty request id.
 */
export function chargedIdKey(partner: string, scope: string, requestId: string): string {
  return `${partner}\u0000${scope}\u0000${normalizeRequestId(requestId)}`;
}
