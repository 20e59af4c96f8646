// One timer for every Check in flight, instead of a setTimeout, a timer promise and a
// Promise.race per Check: entries sit in a binary heap ordered by due time, and the one Node timer
// is armed for the earliest. A Check that finishes first takes its entry out at once (each entry
// knows its place in the heap): left in until due, as before, the entries of finished Checks and
// the heap's regrowing array outlived two scavenges at 1,000 Check/s and were promoted (~0.4 MB per
// scavenge, doubling its pause). Checks of one Envoy share a timeout, so a new entry is almost always
// the latest and arming is rare.

export interface DeadlineEntry {
  /** performance.now() milliseconds. */
  readonly at: number;
  /**
   * Called once at `at` (with the entry as `this`) unless cancelled first; null once called or
   * cancelled. An entry that is an object of its own can so share one function among all entries.
   */
  fire: ((this: DeadlineEntry) => void) | null;
  /** Its place in the heap; -1 once out of it. */
  index: number;
}

export class Deadlines {
  private readonly heap: DeadlineEntry[] = [];
  private timer: NodeJS.Timeout | undefined;
  private armedAt = Number.POSITIVE_INFINITY;

  /** Calls `fire` after `delayMs` (real time, like setTimeout) unless `cancel`led first. */
  after(delayMs: number, fire: () => void): DeadlineEntry {
    return this.add({ at: performance.now() + delayMs, fire, index: -1 });
  }

  /** Adds an entry the caller built (its `at` set, its `index` -1): it fires at `at`. */
  add<E extends DeadlineEntry>(entry: E): E {
    entry.index = this.heap.length;
    this.heap.push(entry);
    this.up(entry.index);
    if (entry.at < this.armedAt) this.arm(entry.at);
    return entry;
  }

  /** Takes the entry out (O(log n)); it never fires. The timer stays armed: it re-arms when it fires. */
  cancel(entry: DeadlineEntry): void {
    entry.fire = null;
    const i = entry.index;
    if (i < 0) return;
    entry.index = -1;
    const last = this.heap.pop() as DeadlineEntry;
    if (last === entry) return;
    this.heap[i] = last;
    last.index = i;
    this.down(i);
    this.up(last.index);
  }

  /** Entries waiting to fire. */
  get size(): number {
    return this.heap.length;
  }

  private arm(at: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.armedAt = at;
    this.timer = setTimeout(this.tick, Math.max(0, at - performance.now()));
    // A pending deadline never keeps the process alive on its own (the Check it bounds does).
    this.timer.unref();
  }

  private readonly tick = (): void => {
    this.timer = undefined;
    this.armedAt = Number.POSITIVE_INFINITY;
    const now = performance.now();
    const heap = this.heap;
    while (heap.length > 0) {
      const top = heap[0] as DeadlineEntry;
      if (top.at > now) break;
      const fire = top.fire;
      this.cancel(top);
      fire?.call(top);
    }
    const next = heap[0];
    if (next) this.arm(next.at);
  };

  private up(i: number): void {
    const heap = this.heap;
    const entry = heap[i] as DeadlineEntry;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = heap[parent] as DeadlineEntry;
      if (p.at <= entry.at) break;
      heap[i] = p;
      p.index = i;
      i = parent;
    }
    heap[i] = entry;
    entry.index = i;
  }

  private down(i: number): void {
    const heap = this.heap;
    const n = heap.length;
    const entry = heap[i] as DeadlineEntry;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const child = r < n && (heap[r] as DeadlineEntry).at < (heap[l] as DeadlineEntry).at ? r : l;
      const c = heap[child] as DeadlineEntry;
      if (c.at >= entry.at) break;
      heap[i] = c;
      c.index = i;
      i = child;
    }
    heap[i] = entry;
    entry.index = i;
  }
}
