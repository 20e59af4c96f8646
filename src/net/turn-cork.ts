// One write per event-loop turn for the commands a turn sends to Redis after its first, without
// ioredis' auto-pipelining.
//
// ioredis writes each command to its socket as it is issued. Its auto-pipelining batches a turn's
// commands into one write, but through a Pipeline object per turn whose bookkeeping outlives the
// replies: measured at 1,000 charges/s, ~2.2 KB per command survived two scavenges and was
// promoted, so every scavenge copied ~1.3 MB (7–11 ms pauses on the server's core) and the old
// space filled with garbage for the next mark-compact. Instead, the quota store writes a turn's
// first charge at once and corks the socket for the others; the reply timer uncorks it when the
// turn is over (ReplyTimer's onWritten), so a burst still costs two writes per turn, and a lone
// charge (the common case below saturation) costs no buffering and no extra setImmediate.
import type { Writable } from 'node:stream';

export class TurnCork {
  private corked: Writable | null = null;

  /** Holds `stream`'s writes until release() (once per turn; nothing to do without a stream). */
  hold(stream: Writable | null | undefined): void {
    if (this.corked !== null || !stream || !stream.writable) return;
    stream.cork();
    this.corked = stream;
  }

  /** Writes what was held, in one writev. Uncorking a stream destroyed meanwhile is harmless. */
  release(): void {
    const stream = this.corked;
    if (stream === null) return;
    this.corked = null;
    stream.uncork();
  }
}
