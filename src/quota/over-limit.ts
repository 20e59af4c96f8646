// Partners known to be over a limit until a given time are refused locally until then, without a
// store call: a partner hammering past its limit costs a map lookup, not a Redis round trip.
// Bounded: the least recently used entries go first.
import { LRUCache } from 'lru-cache';

export class OverLimitCache {
  private readonly until: LRUCache<string, number>;

  constructor(maxEntries = 10_000) {
    this.until = new LRUCache({ max: maxEntries });
  }

  /** The first of these limits the partner is known to be over at `nowMs`, with when it ends. */
  blocked(
    partner: string,
    limitIds: readonly string[],
    nowMs: number,
  ): { id: string; untilMs: number } | null {
    for (const id of limitIds) {
      const key = `${partner}\u0000${id}`;
      const until = this.until.get(key);
      if (until === undefined) continue;
      if (until > nowMs) return { id, untilMs: until };
      this.until.delete(key);
    }
    return null;
  }

  remember(partner: string, limitId: string, untilMs: number): void {
    this.until.set(`${partner}\u0000${limitId}`, untilMs);
  }
}
