// Request ids this replica allowed, remembered for the idempotency window: a retry of one of them is
// allowed at once, without Redis — so neither the over-limit cache nor an open circuit can refuse a
// request that was already charged. Keyed by partner, idempotency scope (route and limits) and
// request id, like the stores. Bounded (LRU): under pressure the oldest are forgotten, and their
// retries go to the store again, which still knows them (it answers `duplicate`).
import { LRUCache } from 'lru-cache';
import { normalizeRequestId } from './algorithms.js';
import type { LimitState } from './types.js';

export interface ChargedId {
  /** Request time of the charge (ms). */
  readonly atMs: number;
  /** The limits' states the allow reported (replayed in the retry's headers). */
  readonly limits: readonly LimitState[];
}

export class ChargedIds {
  private readonly ids: LRUCache<string, ChargedId>;

  constructor(
    private readonly windowMs: number,
    maxEntries = 50_000,
  ) {
    this.ids = new LRUCache({ max: maxEntries });
  }

  /** The charge of this id within the window ending at `nowMs`, else undefined. */
  get(partner: string, scope: string, requestId: string, nowMs: number): ChargedId | undefined {
    if (requestId === '') return undefined;
    const key = keyOf(partner, scope, requestId);
    const charged = this.ids.get(key);
    if (charged === undefined) return undefined;
    if (nowMs - charged.atMs < this.windowMs) return charged;
    this.ids.delete(key);
    return undefined;
  }

  remember(partner: string, scope: string, requestId: string, charged: ChargedId): void {
    if (requestId !== '') this.ids.set(keyOf(partner, scope, requestId), charged);
  }

  get size(): number {
    return this.ids.size;
  }
}

function keyOf(partner: string, scope: string, requestId: string): string {
  return `${partner}\u0000${scope}\u0000${normalizeRequestId(requestId)}`;
}
