// One write per event-loop turn for the commands a turn sends to Redis, without ioredis' auto-pipelining.
//
// ioredis writes each command to its socket as it is issued. Its auto-pipelining batches a turn's
// commands into one write, but through a Pipeline object per turn whose bookkeeping outlives the
// replies: measured at 1,000 charges/s, ~2.2 KB per command survived two scavenges and was
// promoted, so every scavenge copied ~1.3 MB (7–11 ms pauses on the server's core) and the old
// space filled with garbage for the next mark-compact. Corking the socket on the first command of a
// turn and uncorking it once the turn is over gives the same single writev, with nothing kept.
import type { Writable } from 'node:stream';

export class TurnCork {
  private corked: Writable | null = null;

  /** Holds `stream`'s writes until this turn is over (once per turn; nothing to do without a stream). */
  hold(stream: Writable | null | undefined): void {
    if (this.corked !== null || !stream || !stream.writable) return;
    stream.cork();
    this.corked = stream;
    // Queued before the reply timer's own setImmediate (see ReplyTimer.join): commands are written
    // before it stamps them as sent.
    setImmediate(this.release);
  }

  // Bound once: no closure per turn. Uncorking a stream destroyed meanwhile is harmless.
  private readonly release = (): void => {
    const stream = this.corked;
    this.corked = null;
    stream?.uncork();
  };
}
