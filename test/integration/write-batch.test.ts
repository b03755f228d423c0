import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { batchWrites, destroyAfterWrites, flushWrites, MAX_HELD } from '../../src/dataplane/write-batch.ts';
import { until } from '../helpers/wait.ts';

/** A connected pair on loopback: `ours` writes, the peer's reads are recorded one entry per read. */
async function pair(t: { after(fn: () => unknown): void }): Promise<{ ours: Socket; reads: string[]; closed: Promise<unknown> }> {
  const server: Server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const peer = connect((server.address() as { port: number }).port, '127.0.0.1');
  await once(peer, 'connect');
  const [ours] = await accepted;
  const reads: string[] = [];
  peer.on('data', (d: Buffer) => reads.push(d.toString('latin1')));
  const closed = once(peer, 'close');
  t.after(() => {
    ours.destroy();
    peer.destroy();
    server.close();
  });
  return { ours, reads, closed };
}

describe('write coalescing over one turn of the event loop (src/dataplane/write-batch.ts)', () => {
  it('holds the writes of this turn and sends them together, in order, after its callbacks', async (t) => {
    const { ours, reads } = await pair(t);
    batchWrites(ours);
    ours.write('HTTP/1.1 200 OK\r\n', 'latin1');
    ours.write(Buffer.from('\r\nbody'));
    // nothing reached the kernel yet: it is all still queued in the socket (an idle socket's
    // write otherwise goes to the kernel at once: writableLength 0, as the last test shows)
    assert.equal(ours.writableLength, 'HTTP/1.1 200 OK\r\n\r\nbody'.length);
    await until(t, 'the peer read it all', () => reads.join('') === 'HTTP/1.1 200 OK\r\n\r\nbody');
    assert.equal(ours.writableCorked, 0);
  });

  it('sends the held writes first when a write must go at once (flushWrites), so the order on the wire is the order written', async (t) => {
    const { ours, reads } = await pair(t);
    batchWrites(ours);
    ours.write('head;', 'latin1');
    flushWrites(ours);
    assert.equal(ours.writableCorked, 0);
    ours.write('chunk;', 'latin1');
    batchWrites(ours);
    ours.write('tail', 'latin1');
    await until(t, 'the peer read it all', () => reads.join('') === 'head;chunk;tail');
  });

  it('a destroy in the same turn still sends what was held (destroyAfterWrites), as the unbatched write had', async (t) => {
    const { ours, reads, closed } = await pair(t);
    batchWrites(ours);
    ours.write('HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n', 'latin1');
    destroyAfterWrites(ours);
    await closed;
    assert.equal(reads.join(''), 'HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n');
  });

  it('a plain destroy would drop the held bytes: the reason every destroy on the plain path goes through destroyAfterWrites', async (t) => {
    const { ours, reads, closed } = await pair(t);
    batchWrites(ours);
    ours.write('lost', 'latin1');
    ours.destroy();
    await closed;
    assert.equal(reads.join(''), '');
  });

  it('end() sends what was held, and a socket already destroyed is left alone', async (t) => {
    const { ours, reads, closed } = await pair(t);
    batchWrites(ours);
    ours.end('bye', 'latin1');
    await closed;
    assert.equal(reads.join(''), 'bye');
    if (!ours.destroyed) await once(ours, 'close');
    batchWrites(ours);
    assert.equal(ours.writableCorked, 0);
  });

  it(`holds ${MAX_HELD} sockets at most: the next one sends those held so far at once, so no write waits for a whole long turn`, async (t) => {
    const pairs = await Promise.all(Array.from({ length: MAX_HELD + 1 }, () => pair(t)));
    for (const p of pairs.slice(0, MAX_HELD)) {
      batchWrites(p.ours);
      p.ours.write('x', 'latin1');
    }
    assert.ok(pairs.slice(0, MAX_HELD).every((p) => p.ours.writableCorked === 1 && p.ours.writableLength === 1));
    const last = pairs[MAX_HELD] as (typeof pairs)[number];
    batchWrites(last.ours);
    last.ours.write('y', 'latin1');
    // the first MAX_HELD went to the kernel in this same turn; the last one waits for its end
    assert.ok(pairs.slice(0, MAX_HELD).every((p) => p.ours.writableCorked === 0 && p.ours.writableLength === 0));
    assert.equal(last.ours.writableLength, 1);
    await until(t, 'the peer read it all', () => last.reads.join('') === 'y');
  });

  it('an unbatched write on an idle socket reaches the kernel at once (what batchWrites changes)', async (t) => {
    const { ours, reads } = await pair(t);
    ours.write('now', 'latin1');
    assert.equal(ours.writableLength, 0);
    await until(t, 'the peer read it all', () => reads.join('') === 'now');
  });
});
