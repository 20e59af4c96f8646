// Writes the hand-made audit lines to the stream the pino logger writes to. An asynchronous
// sonic-boom (pino.destination({ sync: false }), what `serve` uses) gets the lines of up to
// FLUSH_DELAY_MS in one write (sooner when FLUSH_LINES are waiting):
// - each of its writes measures (Buffer.byteLength) the text still queued behind the write in
//   flight, flattening it, so a write per line costs far more than the line itself;
// - each write it starts is a trip to libuv's thread pool and back. At 1,000 Check/s, a write per
//   event-loop turn was a write per Check: a thread switch and an extra wake-up of the loop on the
//   sidecar's core for every decision.
// Its writes land later anyway; a few ms changes nothing for a reader, and the order of lines
// holds: createLogger flushes these lines before pino writes any line of its own. Any other
// destination (a synchronous sonic-boom, a test's stream) gets each line at once, as pino gave it.
//
// Nothing is lost: the pending lines are written by flush() (the app's stop calls it through
// flushAudit) and, on process exit, synchronously with sonic-boom's flushSync.
import type { DestinationStream } from 'pino';
import { PieceBuffer } from './audit-line.js';

interface AsyncSonicBoom extends DestinationStream {
  readonly sync: false;
  flushSync(): void;
}

function isAsyncSonicBoom(stream: DestinationStream): stream is AsyncSonicBoom {
  const s = stream as Partial<AsyncSonicBoom>;
  return s.sync === false && typeof s.flushSync === 'function';
}

/** Writers holding lines not yet written: flushed synchronously if the process exits first. */
const pending = new Set<LineWriter>();
let exitHooked = false;

function flushOnExit(): void {
  for (const writer of pending) writer.flushSync();
}

/** How long a decision line may wait for others to share its write. */
export const FLUSH_DELAY_MS = 20;
/** A batch of this many lines is written at once. */
export const FLUSH_LINES = 256;

export class LineWriter {
  /** Where audit() writes the line; lineDone() says it is complete. */
  readonly pieces = new PieceBuffer();
  private readonly batched: boolean;
  private scheduled = false;
  private lines = 0;
  /** One timer, re-armed (refresh) for each batch: no Timeout per batch. */
  private timer: NodeJS.Timeout | null = null;
  private readonly flushLater = () => this.flush();

  constructor(private readonly stream: DestinationStream) {
    this.batched = isAsyncSonicBoom(stream);
  }

  /** A complete line is in `pieces`: written now, or with the rest of this turn's. */
  lineDone(): void {
    if (!this.batched) {
      this.stream.write(this.pieces.take());
      return;
    }
    if (++this.lines >= FLUSH_LINES) {
      this.flush();
      return;
    }
    if (this.scheduled) return;
    this.scheduled = true;
    pending.add(this);
    if (!exitHooked) {
      exitHooked = true;
      process.on('exit', flushOnExit);
    }
    // Unref'd: a batch never keeps the process alive (exit and stop flush it).
    if (this.timer === null) this.timer = setTimeout(this.flushLater, FLUSH_DELAY_MS).unref();
    else this.timer.refresh();
  }

  /** Hands the pending lines to the stream (which writes them in its own time). */
  flush(): void {
    // A timer still armed for a batch flushed early finds nothing to write: cheaper than clearing
    // and re-creating it.
    this.scheduled = false;
    this.lines = 0;
    pending.delete(this);
    if (!this.pieces.empty) this.stream.write(this.pieces.take());
  }

  /** flush(), then the stream's own synchronous flush: for process exit, when no I/O completes. */
  flushSync(): void {
    this.flush();
    try {
      (this.stream as AsyncSonicBoom).flushSync();
    } catch {
      // Not open yet, or already closed: there is nothing more to do while exiting.
    }
  }
}
