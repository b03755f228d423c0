import assert from 'node:assert/strict';
import { it } from 'node:test';
import { CHUNKED_ERROR, CHUNKED_MORE, ChunkedDecoder } from '../../src/dataplane/chunked.ts';

/** Decodes `wire` fed in pieces cut at `cuts`: the body, where it ended in the last piece, or the error. */
function decode(wire: string, cuts: number[] = []): { body: string; end: number } | { error: string } {
  const d = new ChunkedDecoder();
  const bounds = [0, ...cuts, wire.length];
  let body = '';
  for (let i = 0; i + 1 < bounds.length; i++) {
    const piece = Buffer.from(wire.slice(bounds[i], bounds[i + 1]), 'latin1');
    const r = d.feed(piece, 0, (c) => (body += c.toString('latin1')));
    if (r === CHUNKED_ERROR) return { error: d.reason };
    if (r !== CHUNKED_MORE) return { body, end: (bounds[i] as number) + r };
  }
  return { error: 'incomplete' };
}

it('chunked: decodes sizes, extensions and trailers, and tells where the body ended', () => {
  const wire = '5;a=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nx-t: 1\r\n\r\nGET / HTTP/1.1\r\n';
  assert.deepEqual(decode(wire), { body: 'hello0123456789', end: wire.indexOf('GET') });
  assert.deepEqual(decode('0\r\n\r\n'), { body: '', end: 5 });
});

it('chunked: the same body and end whatever the reads it arrives in', () => {
  const wire = '3\r\nabc\r\n10;q="x y"\r\n0123456789abcdef\r\n0\r\nt: v\r\n\r\nNEXT';
  const whole = decode(wire);
  for (let a = 1; a < wire.length; a++) {
    assert.deepEqual(decode(wire, [a]), whole, `cut at ${a}`);
    assert.deepEqual(decode(wire, [a, Math.min(wire.length, a + 3)]), whole, `cuts at ${a}, ${a + 3}`);
  }
});

it('chunked: refuses what llhttp refuses (bare LF, whitespace, bad digits, missing CRLF, huge sizes, control characters)', () => {
  for (const bad of ['5\nhello\r\n0\r\n\r\n', ' 5\r\nhello\r\n', '5 \r\nhello\r\n', 'zz\r\n', '3\r\nabcX', `${'f'.repeat(17)}\r\n`, '1;\x01\r\na\r\n', '0\r\n bad\r\n\r\n', '0\r\nt: \x00\r\n\r\n', '0\r\n\rX']) {
    assert.ok('error' in decode(bad), JSON.stringify(bad));
  }
});
