import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { EventEmitter } from 'node:events';
import * as ws from 'ws';
import { clientCloseFrame, FrameCursor, serverCloseFrame } from '../../src/dataplane/ws-frames.ts';

// ws's frame parser: exported at run time, absent from @types/ws
const { Receiver } = ws as unknown as { Receiver: new (opts: { isServer: boolean }) => EventEmitter & { write(b: Buffer): void } };

/** One RFC 6455 frame (opcode 2, binary, unless told) with a `len`-byte payload, masked when `mask`. */
function frame(len: number, mask: boolean, opcode = 2): Buffer {
  const ext = len < 126 ? Buffer.alloc(0) : len < 65536 ? Buffer.alloc(2) : Buffer.alloc(8);
  if (len >= 126 && len < 65536) ext.writeUInt16BE(len);
  else if (len >= 65536) ext.writeBigUInt64BE(BigInt(len));
  const b1 = (mask ? 0x80 : 0) | (len < 126 ? len : len < 65536 ? 126 : 127);
  return Buffer.concat([Buffer.from([0x80 | opcode, b1]), ext, mask ? Buffer.from([1, 2, 3, 4]) : Buffer.alloc(0), Buffer.alloc(len, 0x61)]);
}

describe('FrameCursor', () => {
  it('finds every frame boundary whatever the chunking (7-bit, 16-bit and 64-bit lengths, masked or not)', () => {
    const frames = [frame(0, false), frame(5, true), frame(125, false), frame(126, true), frame(300, false), frame(70_000, true), frame(1, false, 9)];
    const stream = Buffer.concat(frames);
    const boundaries = new Set<number>([0]);
    let at = 0;
    for (const f of frames) boundaries.add((at += f.length));
    for (const size of [1, 2, 3, 7, 13, 64, 1000, stream.length]) {
      const c = new FrameCursor();
      for (let off = 0; off < stream.length; off += size) {
        const chunk = stream.subarray(off, off + size);
        assert.equal(c.advance(chunk), chunk.length);
        assert.equal(c.atBoundary, boundaries.has(off + chunk.length), `chunk size ${size}, offset ${off + chunk.length}`);
      }
    }
  });

  it('with stopAtBoundary stops right after the frame in progress', () => {
    const a = frame(10, true);
    const b = frame(20, true);
    const c = new FrameCursor();
    assert.equal(c.advance(a.subarray(0, 4)), 4);
    const rest = Buffer.concat([a.subarray(4), b]);
    assert.equal(c.advance(rest, true), a.length - 4);
    assert.ok(c.atBoundary);
    assert.equal(c.advance(b, true), 0, 'already at a boundary: nothing more is taken');
  });

  it('notices close frames', () => {
    const c = new FrameCursor();
    c.advance(frame(3, false));
    assert.equal(c.closeSeen, false);
    c.advance(serverCloseFrame(1000, 'bye'));
    assert.equal(c.closeSeen, true);
  });
});

describe('close frames', () => {
  for (const [name, build, isServer] of [['server (unmasked)', serverCloseFrame, false], ['client (masked)', clientCloseFrame, true]] as const) {
    it(`a ${name} close frame parses as 1001 with its reason`, async () => {
      // the receiving side: a server expects masked frames, a client unmasked ones
      const r = new Receiver({ isServer });
      const got = new Promise<[number, string]>((resolve) => r.on('conclude', (code: number, reason: Buffer) => resolve([code, reason.toString()])));
      r.write(build(1001, 'pool drained'));
      assert.deepEqual(await got, [1001, 'pool drained']);
    });
  }
  it('a long reason is cut to fit a control frame', () => {
    const f = serverCloseFrame(1001, 'x'.repeat(500));
    assert.equal(f[1], 125);
    assert.equal(f.length, 127);
  });
});
