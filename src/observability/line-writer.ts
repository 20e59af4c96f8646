// Writes the hand-made audit lines to the stream the pino logger writes to. An asynchronous
// sonic-boom (pino.destination({ sync: false }), what `serve` uses) gets the lines of one event-loop
// turn in one write: each of its writes measures (Buffer.byteLength) the text still queued behind
// the write in flight, flattening it, so a write per line costs far more than the line itself.
// Its writes land later anyway; a turn later changes nothing for a reader. Any other destination
// (a synchronous sonic-boom, a test's stream) gets each line at once, as pino gave it.
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

export class LineWriter {
  /** Where audit() writes the line; lineDone() says it is complete. */
  readonly pieces = new PieceBuffer();
  private readonly batched: boolean;
  private scheduled = false;
  private readonly flushTurn = () => this.flush();

  constructor(private readonly stream: DestinationStream) {
    this.batched = isAsyncSonicBoom(stream);
  }

  /** A complete line is in `pieces`: written now, or with the rest of this turn's. */
  lineDone(): void {
    if (!this.batched) {
      this.stream.write(this.pieces.take());
      return;
    }
    if (this.scheduled) return;
    this.scheduled = true;
    pending.add(this);
    if (!exitHooked) {
      exitHooked = true;
      process.on('exit', flushOnExit);
    }
    setImmediate(this.flushTurn);
  }

  /** Hands the pending lines to the stream (which writes them in its own time). */
  flush(): void {
    this.scheduled = false;
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
