import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import { autoMaxConnections, FALLBACK_MAX_CONNECTIONS, fdLimit, FD_RESERVE, Limits } from '../../src/dataplane/limits.ts';
import { ConfigError } from '../../src/errors.ts';
import { ManualClock } from '../helpers/clock.ts';
import { until } from '../helpers/wait.ts';

const app = { name: 'shop', hosts: ['*'], pools: { blue: { version: '1', targets: ['http://10.0.0.1:8080'] }, green: { version: '2', targets: ['http://10.0.0.2:8080'] } } };

/** /proc/self/limits as Linux writes it (the rows around the one read). */
const PROC_LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max processes             63704                63704                processes
Max open files            20000                20000                files
Max locked memory         8388608              8388608              bytes
`;

describe('limits', () => {
  it('documents its defaults: auto cap, 60 s header, body and send timeouts, 10 s queue timeout', () => {
    const c = parseConfig({ apps: [app] });
    assert.deepEqual(c.limits, { maxConnections: 'auto', headerTimeout: 60_000, bodyTimeout: 60_000, sendTimeout: 60_000, queueTimeout: 10_000 });
  });

  it('names the key path of a bad limit', () => {
    const doc = { apps: [app], limits: { maxConnections: 0, headerTimeout: 'soon', sendTimeout: '0s', queueLimit: 3 } };
    assert.throws(
      () => parseConfig(doc),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.deepEqual([...err.issues].sort(), [
          'limits.headerTimeout: must be a duration like 250ms, 5s, 10m or 1h',
          'limits.maxConnections: Too small: expected number to be >=1',
          'limits.queueLimit: unknown key',
          'limits.sendTimeout: must be more than 0',
        ].sort());
        return true;
      },
    );
  });

  it('reads the fd limit from /proc/self/limits, and says unknown when it cannot', () => {
    assert.equal(fdLimit(() => PROC_LIMITS), 20_000);
    assert.equal(
      fdLimit(() => {
        throw new Error('ENOENT');
      }),
      null,
    );
    assert.equal(fdLimit(() => 'no such row'), null);
  });

  it('auto: half of what the fd limit leaves after the listeners and the reserve (the admin API keeps its file descriptors)', () => {
    assert.equal(autoMaxConnections(20_000, 256), (20_000 - 256 - FD_RESERVE) / 2);
    assert.equal(autoMaxConnections(1024, 256), 256);
    assert.equal(autoMaxConnections(100, 256), 1);
    assert.equal(autoMaxConnections(null, 256), null);
    const config = parseConfig({ apps: [app] }).limits;
    assert.equal(new Limits({ config, acceptors: 256, fdLimit: 20_000 }).max, 9744);
    const unknown = new Limits({ config, acceptors: 256, fdLimit: null });
    assert.equal(unknown.max, FALLBACK_MAX_CONNECTIONS);
    assert.equal(unknown.fdLimit, null);
    assert.equal(new Limits({ config: { ...config, maxConnections: 50 }, acceptors: 256, fdLimit: 20_000 }).max, 50);
  });

  it('gives memory back once a burst of connections is over, not while it lasts', async (t) => {
    let overs = 0;
    const config = { ...parseConfig({ apps: [app] }).limits, headerTimeout: 60_000 };
    // the burst-over timer runs on a hand-moved clock: the test proves the quiet time without waiting for it
    const clock = new ManualClock();
    const limits = new Limits({ config, acceptors: 1, fdLimit: 20_000, burstSize: 30, burstQuietMs: 200, onBurstOver: () => overs++, timers: clock });
    const server = createServer();
    limits.attach(server);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.after(() => {
      limits.stop();
      server.closeAllConnections();
      server.close();
    });
    const port = (server.address() as AddressInfo).port;
    const sockets: Socket[] = [];
    for (let i = 0; i < 40; i++) {
      const s = connect(port, '127.0.0.1');
      sockets.push(s);
      await once(s, 'connect');
    }
    await until(t, '40 connections counted', () => limits.open === 40);
    // 10 of 40 closed: still a quarter of the peak, the burst goes on (no quiet timer armed, however long)
    for (const s of sockets.splice(0, 10)) s.destroy();
    await until(t, '30 connections counted', () => limits.open === 30);
    assert.equal(clock.pending, 0);
    clock.advance(60_000);
    assert.equal(overs, 0);
    for (const s of sockets.splice(0)) s.destroy();
    await until(t, 'every connection closed', () => limits.open === 0);
    assert.equal(clock.pending, 1);
    clock.advance(199);
    assert.equal(overs, 0, 'not before burstQuietMs');
    clock.advance(1);
    assert.equal(overs, 1);
  });
});
