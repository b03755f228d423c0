import type { Socket } from 'node:net';

/**
 * Write coalescing over one turn of the event loop, as Netty's FlushConsolidationHandler does it
 * and for the same reason: the small writes of the plain path (a request head to an upstream, a
 * response with its body to a client) are held (`cork`) while the loop's I/O callbacks run and
 * sent together right after them (`setImmediate`, the check phase of the same turn).
 *
 * Why: on a loaded proxy one turn of the loop reads dozens of connections. Written one by one,
 * each send found its reader (the upstream, the client) asleep and woke it: a quarter of the
 * proxy's CPU was the kernel waking the peer (`sock_def_readable` → an IPI, `perf` on this VM),
 * and the peers went back to sleep between sends. Sent back to back, the first send wakes a
 * peer and the rest find it running. Measured (bench/cpu-ab.ts, paired rounds): 0.84× the
 * CPU per request of writing at once. A write waits for the rest of its turn's callbacks, or for
 * MAX_HELD more sockets' writes, whichever comes first.
 *
 * Only copies are held: a body chunk that is a view of a reused read buffer (engine/read-buffers.ts)
 * must reach the kernel before the buffer is read into again, so such a write flushes the held
 * ones first (`flushWrites`) and goes at once, as before. A destroy would drop what is held:
 * `destroyAfterWrites` sends it first, as the unbatched writes had been sent before the destroy.
 */
const held: Socket[] = [];
let scheduled = false;
/**
 * Sockets held at most: past it, those held so far are sent at once, so that no write waits for
 * more than ~32 callbacks of a long turn (~0.6 ms at 20 µs each). 32 kept the whole CPU gain
 * (bench/cpu-ab.ts: 0.843 against 0.847 with no bound; 8: 0.911).
 */
export const MAX_HELD = 32;

function sendHeld(): void {
  for (let i = 0; i < held.length; i++) flushWrites(held[i] as Socket);
  held.length = 0;
}

function flushAll(): void {
  scheduled = false;
  sendHeld();
}

/** Holds the socket's writes until the end of this turn's I/O callbacks (see above). Only for writes of copies. */
export function batchWrites(socket: Socket): void {
  if (socket.writableCorked !== 0 || socket.destroyed) return;
  if (held.length >= MAX_HELD) sendHeld();
  socket.cork();
  held.push(socket);
  if (!scheduled) {
    scheduled = true;
    setImmediate(flushAll);
  }
}

/** Sends what batchWrites holds for the socket now (before a write that must not wait). */
export function flushWrites(socket: Socket): void {
  // a socket is corked across calls only by batchWrites here; end() uncorks by itself
  if (socket.writableCorked !== 0) socket.uncork();
}

/** socket.destroy(), after sending what batchWrites held for it. */
export function destroyAfterWrites(socket: Socket): void {
  flushWrites(socket);
  socket.destroy();
}
