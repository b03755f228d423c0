import { randomBytes } from 'node:crypto';

/** RFC 6455 §7.4.1: the endpoint is going away (server shutdown, pool drained). */
export const CLOSE_GOING_AWAY = 1001;

const OPCODE_CLOSE = 0x8;

/**
 * Follows WebSocket frame boundaries in one direction of a proxied connection without decoding
 * anything (no unmasking, no inflate): it only reads each frame header to learn how many payload
 * bytes follow. The upgrade pipe needs it to inject a close frame between two frames rather than
 * into the middle of one. Control frames may sit between the fragments of a message (RFC 6455 §5.4), so
 * any frame boundary will do.
 */
export class FrameCursor {
  private readonly header = Buffer.alloc(14);
  private headerLength = 0;
  /** header bytes of the current frame, known once its first two bytes are in */
  private headerNeed = 2;
  private payloadLeft = 0;
  /** whether a close frame (opcode 8) has gone by */
  closeSeen = false;

  /** true between two frames */
  get atBoundary(): boolean {
    return this.headerLength === 0 && this.payloadLeft === 0;
  }

  /**
   * Follows `chunk` from its start. With `stopAtBoundary`, stops at the first frame boundary
   * (which may be offset 0). Returns how many bytes of `chunk` it went over.
   */
  advance(chunk: Uint8Array, stopAtBoundary = false): number {
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      if (stopAtBoundary && this.atBoundary) return i;
      if (this.payloadLeft > 0) {
        const k = Math.min(this.payloadLeft, n - i);
        this.payloadLeft -= k;
        i += k;
        continue;
      }
      this.header[this.headerLength++] = chunk[i++] as number;
      if (this.headerLength === 2) {
        const b1 = this.header[1] as number;
        const len7 = b1 & 0x7f;
        this.headerNeed = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (b1 & 0x80 ? 4 : 0);
      }
      if (this.headerLength >= 2 && this.headerLength === this.headerNeed) {
        if (((this.header[0] as number) & 0x0f) === OPCODE_CLOSE) this.closeSeen = true;
        this.payloadLeft = this.payloadLength();
        this.headerLength = 0;
        this.headerNeed = 2;
      }
    }
    return i;
  }

  private payloadLength(): number {
    const len7 = (this.header[1] as number) & 0x7f;
    if (len7 === 126) return this.header.readUInt16BE(2);
    if (len7 === 127) return this.header.readUInt32BE(2) * 2 ** 32 + this.header.readUInt32BE(6);
    return len7;
  }
}

function closePayload(code: number, reason: string): Buffer {
  // a control frame's payload is at most 125 bytes: 2 for the code, the rest for the reason
  const text = Buffer.from(reason, 'utf8').subarray(0, 123);
  const payload = Buffer.alloc(2 + text.length);
  payload.writeUInt16BE(code, 0);
  text.copy(payload, 2);
  return payload;
}

/** A close frame as a server sends it (unmasked), for the client side of the pipe. */
export function serverCloseFrame(code: number, reason: string): Buffer {
  const payload = closePayload(code, reason);
  return Buffer.concat([Buffer.from([0x80 | OPCODE_CLOSE, payload.length]), payload]);
}

/** A close frame as a client must send it (masked, RFC 6455 §5.3), for the upstream side of the pipe. */
export function clientCloseFrame(code: number, reason: string): Buffer {
  const payload = closePayload(code, reason);
  const mask = randomBytes(4);
  for (let i = 0; i < payload.length; i++) payload[i] = (payload[i] as number) ^ (mask[i & 3] as number);
  return Buffer.concat([Buffer.from([0x80 | OPCODE_CLOSE, 0x80 | payload.length]), mask, payload]);
}
