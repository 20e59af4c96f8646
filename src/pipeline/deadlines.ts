// One timer for every Check in flight, instead of a setTimeout, a timer promise and a
// Promise.race per Check: entries sit in a binary heap ordered by due time, the one Node timer is
// armed for the earliest, and a Check that finishes first only marks its entry cancelled (it is
// dropped when it reaches the top). Checks of one Envoy share a timeout, so a new entry is almost
// always the latest and arming is rare.

export interface DeadlineEntry {
  readonly at: number;
  /** Called once at `at` unless cancelled first; null once called or cancelled. */
  fire: (() => void) | null;
}

export class Deadlines {
  private readonly heap: DeadlineEntry[] = [];
  private timer: NodeJS.Timeout | undefined;
  private armedAt = Number.POSITIVE_INFINITY;

  /** Calls `fire` after `delayMs` (real time, like setTimeout) unless `cancel`led first. */
  after(delayMs: number, fire: () => void): DeadlineEntry {
    const entry: DeadlineEntry = { at: performance.now() + delayMs, fire };
    const heap = this.heap;
    let i = heap.push(entry) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = heap[parent] as DeadlineEntry;
      if (p.at <= entry.at) break;
      heap[i] = p;
      i = parent;
    }
    heap[i] = entry;
    if (entry.at < this.armedAt) this.arm(entry.at);
    return entry;
  }

  cancel(entry: DeadlineEntry): void {
    entry.fire = null;
  }

  /** Entries still in the heap, cancelled ones included (for tests). */
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
      if (top.fire !== null && top.at > now) break;
      this.pop();
      const fire = top.fire;
      top.fire = null;
      fire?.();
    }
    const next = heap[0];
    if (next) this.arm(next.at);
  };

  private pop(): void {
    const heap = this.heap;
    const last = heap.pop() as DeadlineEntry;
    if (heap.length === 0) return;
    let i = 0;
    const n = heap.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const child = r < n && (heap[r] as DeadlineEntry).at < (heap[l] as DeadlineEntry).at ? r : l;
      if ((heap[child] as DeadlineEntry).at >= last.at) break;
      heap[i] = heap[child] as DeadlineEntry;
      i = child;
    }
    heap[i] = last;
  }
}
