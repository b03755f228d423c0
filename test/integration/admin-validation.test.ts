import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { startProxy, TOKEN, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { rawRequest, statusOf } from '../helpers/raw.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

/** The admin API refuses what the data plane cannot carry (issue 22): a clear 400 naming the field, nothing written. */
describe('admin API: names, versions and hosts the data plane can carry', () => {
  let blue: Upstream;
  let green: Upstream;
  let p: TestProxy;
  before(async () => {
    blue = await startUpstream('blue');
    green = await startUpstream('green');
    p = await startProxy({ apps: [twoPools(blue.url, green.url, { hosts: ['shop.test'] })] });
  });
  after(async () => {
    await p.close();
    await blue.close();
    await green.close();
  });

  const paths = (r: { body: { error: { details: { path: string }[] } } }): string[] => r.body.error.details.map((d) => d.path);
  const revision = async (): Promise<number> => (await p.admin('GET', '/v1/apps/shop')).body.revision as number;

  it('a version with CR LF, a byte over 0x7F or a space is refused (400 naming version), so no response header can be injected', async () => {
    const rev = await revision();
    for (const version of ['2.0.0\r\nset-cookie: x=1', '2.0.0\u00e9', '2.0 beta', '']) {
      const r = await p.admin('PUT', '/v1/apps/shop/pools/green', { version, targets: [green.url] });
      assert.equal(r.status, 400, JSON.stringify(version));
      assert.deepEqual(paths(r), ['version']);
    }
    assert.equal(await revision(), rev, 'nothing written');
    const ok = await p.admin('PUT', '/v1/apps/shop/pools/green', { version: '2.1.0-rc.1+build.7', targets: [green.url] });
    assert.equal(ok.status, 200);
    await p.admin('POST', '/v1/apps/shop/switch', { to: 'green' });
    // the raw front writes X-Served-By itself: it is one well-formed field
    const reply = await rawRequest(Number(new URL(p.proxyUrl).port), 'GET / HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n', 3000);
    assert.equal(statusOf(reply), 200);
    assert.match(reply, /\r\nx-served-by: green@2\.1\.0-rc\.1\+build\.7\r\n/i);
  });

  it('PUT …/pools/__proto__ (and any name outside [a-z0-9-]) is a 400 naming pool, not a 200 that writes nothing', async () => {
    const rev = await revision();
    for (const name of ['__proto__', 'Blue', 'a%0d%0ab', 'x'.repeat(64)]) {
      const r = await p.admin('PUT', `/v1/apps/shop/pools/${name}`, { version: '3.0.0', targets: [blue.url] });
      assert.equal(r.status, 400, name);
      assert.deepEqual(paths(r), ['pool']);
    }
    assert.equal(await revision(), rev);
  });

  it('a "__proto__" key in a definition or in weights is a 400 naming its path', async () => {
    const def = { hosts: ['blog.test'], pools: { blue: { version: '1', targets: [blue.url] }, green: { version: '2', targets: [green.url] } } };
    for (const [path, body] of [
      ['definition.pools.__proto__', `{"definition":{"hosts":["blog.test"],"pools":{"blue":{"version":"1","targets":["${blue.url}"]},"green":{"version":"2","targets":["${green.url}"]},"__proto__":{"version":"3","targets":[]}}}}`],
      ['weights.__proto__', '{"weights":{"blue":100,"__proto__":0}}'],
      ['definition.__proto__', `{"definition":{"__proto__":{"x":1},${JSON.stringify(def).slice(1)}}`],
    ] as const) {
      const url = path.startsWith('weights') ? '/v1/apps/shop/weights' : '/v1/apps/blog';
      const r = await request(p.adminUrl + url, { method: 'PUT', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body });
      const json = (await r.body.json()) as { error: { details: { path: string }[] } };
      assert.equal(r.statusCode, 400, path);
      assert.deepEqual(json.error.details.map((d) => d.path), [path]);
    }
    assert.equal((await p.admin('GET', '/v1/apps/blog')).status, 404, 'no app was created');
  });

  it('a host with a port is refused for a new app (400 naming the host), so it cannot take the requests of another app on that port', async () => {
    const r = await p.admin('PUT', '/v1/apps/blog', { definition: { hosts: ['blog.test', 'shop.test:27080'], pools: { blue: { version: '1', targets: [blue.url] }, green: { version: '2', targets: [green.url] } } } });
    assert.equal(r.status, 400);
    assert.deepEqual(paths(r), ['definition.hosts[1]']);
    assert.match(r.body.error.message, /must not carry a port/);
    const served = await p.get('/', { host: 'shop.test:27080' });
    assert.match(served.servedBy ?? '', /^(blue|green)@/, 'shop still serves its name on any port');
  });
});
