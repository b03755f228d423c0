/**
 * Read buffers for the upstream sockets, reused (net's `onread`). By default every socket read
 * allocates a fresh 64 KiB ArrayBuffer: at 64 KiB bodies that was ~1 GB/s of external memory
 * and a fifth of the CPU in garbage collection, and the buffers waiting for a GC were most of
 * the RSS under load. Here a socket reads into a buffer it keeps, and a buffer whose bytes were
 * passed on to a client response is reused only once that response has handed them to the
 * kernel (checked after Node's end-of-tick uncork); a buffer still held by a slow client's
 * write queue is left to the GC, as every buffer was before.
 */
export const READ_BUFFER_SIZE = 64 * 1024;
/** free buffers kept at most (4 MiB): beyond it, the GC takes them */
const MAX_FREE = 64;
const free: Buffer[] = [];
/** buffers allocated since the process started (what the test reads: reuse keeps it near the number of connections) */
let allocated = 0;

/** Implemented by a response handler that can tell whether the body chunks it was given are still referenced. */
export interface ChunkHolder {
  /** true once no chunk given to onResponseData is referenced any more (all handed to the kernel) */
  chunksReleased(): boolean;
}

export function takeReadBuffer(): Buffer {
  const buf = free.pop();
  if (buf !== undefined) return buf;
  allocated++;
  return Buffer.allocUnsafeSlow(READ_BUFFER_SIZE);
}

export function readBuffersAllocated(): number {
  return allocated;
}

/** `buf`'s bytes went to `holder`: back to the free list once it no longer references them (after this tick). */
export function releaseAfterTick(buf: Buffer, holder: unknown): void {
  process.nextTick(releaseIfDone, buf, holder);
}

/**
 * Whether `holder` let go of the bytes it was given already, before the end of the tick: most
 * responses copied them (a small body goes out with its head in one buffer), and then the socket
 * reads into the same buffer again, without a nextTick and a free-list round per response. A
 * holder that cannot tell yet (a write still queued or corked) answers false and is asked again
 * after the tick (releaseAfterTick).
 */
export function releasedNow(holder: unknown): boolean {
  const h = holder as Partial<ChunkHolder> | null;
  return typeof h?.chunksReleased === 'function' && h.chunksReleased();
}

function releaseIfDone(buf: Buffer, holder: unknown): void {
  const h = holder as Partial<ChunkHolder> | null;
  if (free.length < MAX_FREE && typeof h?.chunksReleased === 'function' && h.chunksReleased()) free.push(buf);
}
