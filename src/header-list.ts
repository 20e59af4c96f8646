// A request's headers as a ReadonlyMap read in place from the decoder's flat [name, value, …] list,
// instead of a Map built per Check: a Map of ~15 headers grows its table twice and hashes every name
// (~950 B and a few µs per Check, sampling heap profile at 1,000 Check/s), while the pipeline reads
// only a handful of them. Lookups scan the list: names are compared by length first, and a Check's
// ten-odd lookups over ~15 names cost less than building the table.
//
// Only for lists that are small and free of repeated names (fromPairs checks both): a proto map
// may repeat a key (the last one wins), and a huge list must not make every lookup slow.

/** Lists longer than this are read into a Map (a scan per lookup would then cost too much). */
export const MAX_LISTED_HEADERS = 64;

export class HeaderList implements ReadonlyMap<string, string> {
  /** `pairs`: lower-case names, each once, each followed by its value. */
  private constructor(private readonly pairs: readonly string[]) {}

  /**
   * The headers of a flat [name, value, …] list whose names are already lower-case: a HeaderList
   * when it has at most MAX_LISTED_HEADERS names, none repeated; null otherwise (use a Map).
   */
  static fromPairs(pairs: readonly string[]): HeaderList | null {
    if (pairs.length > 2 * MAX_LISTED_HEADERS) return null;
    for (let i = 2; i < pairs.length; i += 2) {
      const name = pairs[i] as string;
      for (let j = 0; j < i; j += 2) if (pairs[j] === name) return null;
    }
    return new HeaderList(pairs);
  }

  get size(): number {
    return this.pairs.length >> 1;
  }

  /** The name of the `index`th header (0 ≤ index < size), for a loop over names without an iterator. */
  nameAt(index: number): string {
    return this.pairs[2 * index] as string;
  }

  get(name: string): string | undefined {
    const pairs = this.pairs;
    for (let i = 0; i < pairs.length; i += 2) if (pairs[i] === name) return pairs[i + 1];
    return undefined;
  }

  has(name: string): boolean {
    const pairs = this.pairs;
    for (let i = 0; i < pairs.length; i += 2) if (pairs[i] === name) return true;
    return false;
  }

  forEach(callback: (value: string, name: string, map: ReadonlyMap<string, string>) => void): void {
    const pairs = this.pairs;
    for (let i = 0; i < pairs.length; i += 2) callback(pairs[i + 1] as string, pairs[i] as string, this);
  }

  *entries(): MapIterator<[string, string]> {
    const pairs = this.pairs;
    for (let i = 0; i < pairs.length; i += 2) yield [pairs[i] as string, pairs[i + 1] as string];
  }

  *keys(): MapIterator<string> {
    const pairs = this.pairs;
    for (let i = 0; i < pairs.length; i += 2) yield pairs[i] as string;
  }

  *values(): MapIterator<string> {
    const pairs = this.pairs;
    for (let i = 1; i < pairs.length; i += 2) yield pairs[i] as string;
  }

  [Symbol.iterator](): MapIterator<[string, string]> {
    return this.entries();
  }
}
