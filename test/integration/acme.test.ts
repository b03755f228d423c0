import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type PeerCertificate } from 'node:tls';
import { after, before, describe, it, type TestContext } from 'node:test';
import { request } from 'undici';
import { startPebble, type Pebble } from '../helpers/pebble.ts';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { freePort } from '../helpers/ports.ts';
import { startRedis, type RedisServer } from '../helpers/redis-server.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { until } from '../helpers/wait.ts';

const HOST = 'shop.test';

async function served(port: number, servername = HOST): Promise<PeerCertificate | null> {
  const s = tlsConnect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false });
  try {
    await Promise.race([once(s, 'secureConnect'), once(s, 'error').then(([e]) => Promise.reject(e as Error))]);
    return s.getPeerCertificate();
  } catch {
    return null;
  } finally {
    s.destroy();
  }
}

/** Waits until `port` serves a certificate for HOST that `accept` likes; returns it. */
async function waitServed(t: TestContext, port: number, accept: (c: PeerCertificate) => boolean, ms = 20_000): Promise<PeerCertificate> {
  return until(t, `an ACME certificate served on ${port}`, async () => {
    const c = await served(port);
    return c !== null && (c.subjectaltname ?? '').includes(`DNS:${HOST}`) && accept(c) && c;
  }, { timeout: ms, interval: 200 });
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the readyz JSON as the API answers it
async function readyz(p: TestProxy): Promise<any> {
  const r = await request(`${p.adminUrl}/readyz`);
  return JSON.parse(await r.body.text());
}

async function ordersOf(p: TestProxy): Promise<number> {
  const text = await (await request(`${p.adminUrl}/metrics`)).body.text();
  return Number(/switchyard_acme_orders_total\{host="shop\.test"\} (\d+)/.exec(text)?.[1] ?? 0);
}

function acmeDoc(pebble: Pebble, plainPort: number, tlsPort: number, challenge: 'http-01' | 'tls-alpn-01', app: Record<string, unknown>): Record<string, unknown> {
  return {
    // redirect on: the challenge path must still be answered on the plain port, not sent to https
    listen: { host: '127.0.0.1', port: plainPort, acceptors: 1, redirect: true, tls: { port: tlsPort, acme: { directory: pebble.directory, caFile: pebble.caFile, hosts: [HOST], challenge, retry: '500ms' } } },
    apps: [app],
  };
}

describe('ACME against pebble', () => {
  let up: Upstream;
  before(async () => {
    up = await startUpstream('blue');
  });
  after(async () => {
    await up.close();
  });

  for (const challenge of ['http-01', 'tls-alpn-01'] as const) {
    it(`a fresh instance with an empty store gets a certificate by ${challenge} and keeps it in the store's directory`, async (t) => {
      const [plain, tls] = [await freePort(), await freePort()];
      const pebble = await startPebble({ httpPort: plain, tlsPort: tls });
      const p = await startProxy(acmeDoc(pebble, plain, tls, challenge, twoPools(up.url, up.url, { hosts: [HOST] })), { edge: { acmeSyncMs: 200 } });
      t.after(async () => {
        await p.close();
        await pebble.close();
      });
      const cert = await waitServed(t, tls, (c) => /Pebble/i.test(String(c.issuer.CN)));
      assert.match(String(cert.issuer.CN), /Pebble/i);
      assert.ok(existsSync(join(p.dir, 'acme', 'cert_shop.test')), 'the certificate is in the store directory');
      assert.ok(existsSync(join(p.dir, 'acme', 'account')));
      const r = await readyz(p);
      assert.equal(r.details.acme.hosts[0].host, HOST);
      assert.equal(r.details.acme.hosts[0].lastError, null);
      assert.equal(await ordersOf(p), 1);
    });
  }

  describe('a two-instance fleet on Redis', () => {
    let redis: RedisServer;
    before(async () => {
      redis = await startRedis();
    });
    after(async () => {
      await redis.cleanup();
    });

    it('orders once, both serve it; a due renewal is carried out by one instance; pebble down leaves the old certificate serving and shows the error', async (t) => {
      const ports = [await freePort(), await freePort(), await freePort(), await freePort()] as const;
      // pebble validates on instance B's plain port: the instance that answers may not be the one that ordered
      const pebble = await startPebble({ httpPort: ports[2], tlsPort: ports[3], validitySeconds: 15 });
      const fleet: TestProxy[] = [];
      t.after(async () => {
        for (const p of fleet) await p.close();
        await pebble.close();
        for (let i = 0; i < 2; i++) await rm(join(tmpdir(), `sy-acme-cache-${String(ports[i * 2])}.json`), { force: true });
      });
      for (let i = 0; i < 2; i++) {
        const doc = acmeDoc(pebble, ports[i * 2] as number, ports[i * 2 + 1] as number, 'http-01', twoPools(up.url, up.url, { hosts: [HOST] }));
        fleet.push(await startProxy({ ...doc, store: { kind: 'redis', url: redis.url, prefix: 'acmefleet', cachePath: join(tmpdir(), `sy-acme-cache-${String(ports[i * 2])}.json`) } }, { edge: { acmeSyncMs: 200 }, instanceId: `i${i}` }));
      }
      const [a, b] = fleet as [TestProxy, TestProxy];
      const first = await waitServed(t, ports[1], () => true);
      const firstB = await waitServed(t, ports[3], (c) => c.serialNumber === first.serialNumber);
      assert.equal(firstB.fingerprint256, first.fingerprint256, 'both instances serve the same certificate');
      assert.equal((await ordersOf(a)) + (await ordersOf(b)), 1, 'ordered once for the fleet');
      const orderers = [(await readyz(a)).details.acme.orderer, (await readyz(b)).details.acme.orderer];
      assert.deepEqual(orderers, [true, false], 'one lease holder: A, started first');
      // so the HTTP-01 challenge A started was answered by B, the instance pebble asked
      // 15 s lifetime: renewal is due after 10 s; one instance renews, both serve the new one
      const renewed = await waitServed(t, ports[1], (c) => c.serialNumber !== first.serialNumber, 20_000);
      await waitServed(t, ports[3], (c) => c.serialNumber === renewed.serialNumber);
      assert.equal((await ordersOf(a)) + (await ordersOf(b)), 2, 'the renewal was ordered once');
      // pebble down at the next renewal: the renewed certificate keeps serving and the error shows
      await pebble.stop();
      const holder = (await readyz(a)).details.acme.orderer === true ? a : b;
      const status = await until(t, 'the failed renewal in /readyz', async () => {
        const host = (await readyz(holder)).details.acme.hosts[0];
        return host.lastError !== null && host;
      }, { timeout: 20_000, interval: 200 });
      assert.ok(status.failures >= 1);
      assert.match(status.lastError, /did not answer/);
      assert.equal((await served(ports[1]))?.serialNumber, renewed.serialNumber, 'the current certificate still serves');
      assert.equal((await served(ports[3]))?.serialNumber, renewed.serialNumber);
      const metrics = await (await request(`${holder.adminUrl}/metrics`)).body.text();
      assert.match(metrics, /switchyard_acme_order_failures_total\{host="shop\.test"\} [1-9]/);
    });
  });
});
