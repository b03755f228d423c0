import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startAdmin } from '../helpers/admin-server.ts';
import { rawRequest, statusOf } from '../helpers/raw.ts';

/**
 * Without tokens (the default on loopback) the browser is the only credential, so these are the
 * requests a hostile web page can make the operator's browser send: raw bytes on a real socket,
 * exactly the headers a browser would put there.
 */
describe('admin API refuses what a cross-site page or a DNS-rebinding page can send', () => {
  let t: Awaited<ReturnType<typeof startAdmin>>;
  let port: number;
  let host: string;

  /** Sends one raw request and answers `{ status, code, revision }` (revision of shop afterwards). */
  async function send(method: string, path: string, headers: Record<string, string>, body = '') {
    const lines = [`${method} ${path} HTTP/1.1`, ...Object.entries({ host, connection: 'close', ...headers }).map(([k, v]) => `${k}: ${v}`)];
    if (method !== 'GET') lines.push(`content-length: ${Buffer.byteLength(body)}`);
    const reply = await rawRequest(port, `${lines.join('\r\n')}\r\n\r\n${body}`);
    const json = reply.slice(reply.indexOf('\r\n\r\n') + 4);
    const code = statusOf(reply) >= 400 ? (JSON.parse(json) as { error: { code: string } }).error.code : null;
    return { status: statusOf(reply), code };
  }
  const revision = async () => t.controller.state('shop').revision;

  before(async () => {
    t = await startAdmin({ allowedHosts: ['switchyard-admin.internal'] });
    port = Number(new URL(t.base).port);
    host = `127.0.0.1:${port}`;
  });
  after(() => t.close());

  it('refuses a body-less POST (a cross-site form or no-cors fetch) with 415 and writes nothing', async () => {
    const before = await revision();
    assert.deepEqual(await send('POST', '/v1/apps/shop/rollback', {}), { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' });
    assert.deepEqual(await send('POST', '/v1/apps/shop/switch', { 'content-type': 'text/plain' }, '{"to":"green"}'), { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' });
    assert.deepEqual(await send('POST', '/v1/apps/shop/switch', { 'content-type': 'application/x-www-form-urlencoded' }, 'to=green'), { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' });
    assert.equal(await revision(), before);
  });

  it('refuses Sec-Fetch-Site: cross-site and a foreign Origin with 403 CROSS_ORIGIN_REQUEST, even as JSON', async () => {
    const before = await revision();
    const json = { 'content-type': 'application/json' };
    const body = '{"to":"green"}';
    assert.deepEqual(await send('POST', '/v1/apps/shop/switch', { ...json, 'sec-fetch-site': 'cross-site' }, body), { status: 403, code: 'CROSS_ORIGIN_REQUEST' });
    assert.deepEqual(await send('POST', '/v1/apps/shop/switch', { ...json, origin: 'https://evil.example' }, body), { status: 403, code: 'CROSS_ORIGIN_REQUEST' });
    // another port of the same machine is another origin (and a "same-site" one)
    assert.deepEqual(await send('POST', '/v1/apps/shop/switch', { ...json, origin: 'http://127.0.0.1:3000', 'sec-fetch-site': 'same-site' }, body), { status: 403, code: 'CROSS_ORIGIN_REQUEST' });
    assert.deepEqual(await send('POST', '/v1/apps/shop/switch', { ...json, origin: 'null' }, body), { status: 403, code: 'CROSS_ORIGIN_REQUEST' });
    assert.deepEqual(await send('GET', '/v1/apps', { origin: 'https://evil.example' }), { status: 403, code: 'CROSS_ORIGIN_REQUEST' });
    assert.equal(await revision(), before);
  });

  it('refuses a Host the listener does not answer to (DNS rebinding) with 403 HOST_NOT_ALLOWED, but keeps the probes open', async () => {
    const before = await revision();
    // the rebinding page is same-origin with itself: Origin and Host both name the attacker's domain
    const rebound = { host: 'rebind.attacker.example:' + port, origin: `http://rebind.attacker.example:${port}`, 'content-type': 'application/json' };
    assert.deepEqual(await send('POST', '/v1/apps/shop/switch', rebound, '{"to":"green"}'), { status: 403, code: 'HOST_NOT_ALLOWED' });
    assert.deepEqual(await send('GET', '/v1/apps', { host: 'rebind.attacker.example' }), { status: 403, code: 'HOST_NOT_ALLOWED' });
    assert.deepEqual(await send('GET', '/', { host: 'rebind.attacker.example' }), { status: 403, code: 'HOST_NOT_ALLOWED' });
    assert.equal(await revision(), before);
    assert.equal((await send('GET', '/healthz', { host: 'switchyard.svc.cluster.local' })).status, 200);
    assert.equal((await send('GET', '/readyz', { host: 'switchyard.svc.cluster.local' })).status, 200);
  });

  it('answers loopback names, IP literals and admin.allowedHosts, and a same-origin browser write goes through', async () => {
    for (const h of [`localhost:${port}`, `LOCALHOST.:${port}`, `[::1]:${port}`, `10.1.2.3:${port}`, 'switchyard-admin.internal']) {
      assert.equal((await send('GET', '/v1/apps', { host: h })).status, 200, h);
    }
    const before = await revision();
    // what the dashboard sends: same origin, application/json
    const same = await send('POST', '/v1/apps/shop/switch', { origin: `http://${host}`, 'sec-fetch-site': 'same-origin', 'content-type': 'application/json' }, '{"to":"green"}');
    assert.deepEqual(same, { status: 200, code: null });
    assert.equal(await revision(), before + 1);
    // a page served by the configured front name may call it too
    const fronted = await send('POST', '/v1/apps/shop/switch', { host: '127.0.0.1:8081', origin: 'https://switchyard-admin.internal', 'content-type': 'application/json' }, '{"to":"blue"}');
    assert.deepEqual(fronted, { status: 200, code: null });
  });
});
