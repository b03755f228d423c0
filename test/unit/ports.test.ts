import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { freePort } from '../helpers/ports.ts';

describe('the tests\' free-port helper', () => {
  it('tries another port when the one it picked is taken, rather than throwing EADDRINUSE', async (t) => {
    const taken = createServer();
    taken.listen(0, '127.0.0.1');
    await once(taken, 'listening');
    t.after(() => taken.close());
    const busy = (taken.address() as AddressInfo).port;
    const other = createServer();
    other.listen(0, '127.0.0.1');
    await once(other, 'listening');
    const free = (other.address() as AddressInfo).port;
    other.close();
    await once(other, 'close');
    const picks = [busy, busy, free];
    assert.equal(await freePort(() => picks.shift() as number), free);
    assert.deepEqual(picks, []);
  });
});
