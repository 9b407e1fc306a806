// Large NATS writes go to the socket as the parts they are, not joined into one copy.
//
// The client queues a publish as its parts (the PUB/HPUB line, the headers, our payload)
// and, to send them, `DataBuffer.pack()` joins every queued part into one new zeroed
// Uint8Array. For a ~512 KiB batch that is a 512 KiB allocation and copy per publish:
// over a 100k-record flush these external megabytes set off 14 V8 mark-compacts (4
// without them), and JetStream shipped ~121k records/s on one core against ~214k
// without (BENCHMARKS.md, shipping fifth pass).
// Here, when at least DIRECT_WRITE_BYTES are queued, the parts are written in one corked
// writev instead; smaller writes (pings, acks, subscriptions, small publishes) keep the
// client's own path, where joining costs less than a syscall's iovec.
//
// This replaces one method of the client's ProtocolHandler (@nats-io/nats-core's
// internal export), so the version is pinned in package.json and the unit test checks
// that a live connection runs this function and that no large join happens.

import { Socket } from 'node:net';
import { ProtocolHandler } from '@nats-io/nats-core/internal';

/** Queued bytes from which the parts are written as they are. */
export const DIRECT_WRITE_BYTES = 64 * 1024;

/** What this file uses of a ProtocolHandler (its own fields, typed there as public). */
interface Handler {
  infoReceived: boolean;
  connected: boolean;
  outbound: { buffers: Uint8Array[]; byteLength: number; reset(): void };
  transport: { socket?: unknown; isClosed?: boolean };
}

type Proto = { flushPending(this: Handler): void };
const proto = ProtocolHandler.prototype as unknown as Proto;
const clientFlushPending = proto.flushPending;

function flushPending(this: Handler): void {
  const out = this.outbound;
  const socket = this.transport.socket;
  if (
    out.byteLength < DIRECT_WRITE_BYTES ||
    !this.infoReceived ||
    !this.connected ||
    this.transport.isClosed === true ||
    !(socket instanceof Socket) ||
    socket.destroyed
  ) {
    clientFlushPending.call(this);
    return;
  }
  const parts = out.buffers.slice();
  out.reset();
  // Corked, the writes leave as one writev. A write error also reaches the transport's
  // 'error' listener, which closes the connection as it does for the client's own
  // writes; an unacknowledged publish then times out and the retry loop resends it.
  socket.cork();
  for (const p of parts) if (p.length > 0) socket.write(p);
  socket.uncork();
}

proto.flushPending = flushPending;

/** The function a ProtocolHandler now flushes with (the unit test compares). */
export const installed = flushPending;
