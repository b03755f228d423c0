import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { startUpstream, useUpstreams, type Upstream } from '../helpers/upstream.ts';
import { until } from '../helpers/wait.ts';

// docs/definitions.md §1: pools, targets and apps are live data in the store.

describe('live definitions: pools and targets', () => {
  let blue: Upstream;
  let green: Upstream;
  let green2: Upstream;
  let p: TestProxy;
  before(async () => {
    [blue, green, green2] = await Promise.all([startUpstream('blue'), startUpstream('green'), startUpstream('green2')]);
    p = await startProxy({ apps: [twoPools(blue.url, green.url, { sticky: { key: ['header:x-user'] } })] });
  });
  after(async () => {
    await p?.close();
    await Promise.all([blue, green, green2].map((u) => u?.close()));
  });

  it('PUT …/pools/green sets new targets and version under the next revision, with history and If-Match', async () => {
    const before = await p.admin('GET', '/v1/apps/shop');
    const rev = before.body.revision;
    const stale = await p.admin('PUT', '/v1/apps/shop/pools/green', { version: '2.1.0', targets: [green2.url] }, { 'if-match': `"${rev - 1}"` });
    assert.equal(stale.status, 412);
    const r = await p.admin('PUT', '/v1/apps/shop/pools/green', { version: '2.1.0', targets: [green2.url], reason: 'new hosts' }, { 'if-match': `"${rev}"` });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.revision, rev + 1);
    assert.equal(r.headers.etag, `"${rev + 1}"`);
    assert.deepEqual(r.body.pools.green.targets, [green2.url]);
    assert.equal(r.body.pools.green.version, '2.1.0');
    // green has weight 0: reach it with a switch; the new target answers, with the new version
    await p.admin('POST', '/v1/apps/shop/switch', { to: 'green' });
    const res = await p.get('/');
    assert.equal(res.servedBy, 'green@2.1.0');
    assert.equal(JSON.parse(res.body).pool, 'green2');
    const h = await p.admin('GET', '/v1/apps/shop/history?limit=2');
    assert.deepEqual(h.body.entries.map((e: { action: string }) => e.action), ['switch', 'pool']);
    assert.deepEqual(h.body.entries[1].changes, ['pools.green.version', 'pools.green.targets']);
    // the same definition again writes nothing
    const same = await p.admin('PUT', '/v1/apps/shop/pools/green', { version: '2.1.0', targets: [green2.url] });
    assert.equal(same.body.revision, rev + 2);
    // back to blue for the other tests
    await p.admin('POST', '/v1/apps/shop/switch', { to: 'blue' });
  });

  it('a definition from the API gets the config loader\'s key-path errors', async () => {
    const r = await p.admin('PUT', '/v1/apps/shop/pools/green', { version: '2', targets: ['ftp://x'] });
    assert.equal(r.status, 400);
    assert.deepEqual(r.body.error.details, [{ path: 'targets[0]', message: 'must be an http(s) URL with no path, like http://10.0.0.1:8080' }]);
    const bad = await p.admin('PUT', '/v1/apps/shop/pools/green', { version: '2', targets: [], colour: 'red' });
    assert.equal(bad.status, 400);
    assert.match(bad.body.error.message, /colour/);
  });

  it('adding a target already there is a no-op; removing one that is not there is a 404', async () => {
    const rev = (await p.admin('GET', '/v1/apps/shop')).body.revision;
    const add = await p.admin('POST', '/v1/apps/shop/pools/blue/targets', { url: blue.url });
    assert.equal(add.status, 200);
    assert.equal(add.body.revision, rev);
    const gone = await p.admin('DELETE', `/v1/apps/shop/pools/blue/targets?url=${encodeURIComponent('http://127.0.0.1:1')}`);
    assert.deepEqual([gone.status, gone.body.error.code], [404, 'UNKNOWN_TARGET']);
    const last = await p.admin('DELETE', `/v1/apps/shop/pools/blue/targets?url=${encodeURIComponent(blue.url)}`);
    assert.deepEqual([last.status, last.body.error.code], [409, 'DEFINITION_IN_USE'], 'the last target of a pool with weight');
    assert.equal((await p.admin('GET', '/v1/apps/shop')).body.revision, rev, 'refusals write nothing');
  });

  it('a target added then removed: traffic reaches it, then leaves it; history says targets', async () => {
    const added = await p.admin('POST', '/v1/apps/shop/pools/blue/targets', { url: green2.url, reason: 'scale out' });
    assert.deepEqual(added.body.pools.blue.targets, [blue.url, green2.url]);
    const names = new Set<string>();
    for (let i = 0; i < 6; i++) names.add(JSON.parse((await p.get('/')).body).pool);
    assert.deepEqual([...names].sort(), ['blue', 'green2']);
    const removed = await p.admin('DELETE', `/v1/apps/shop/pools/blue/targets?url=${encodeURIComponent(green2.url)}&reason=scale%20in`);
    assert.equal(removed.status, 200);
    assert.deepEqual(removed.body.pools.blue.targets, [blue.url]);
    for (let i = 0; i < 4; i++) assert.equal(JSON.parse((await p.get('/')).body).pool, 'blue');
    const h = await p.admin('GET', '/v1/apps/shop/history?limit=2');
    assert.deepEqual(h.body.entries.map((e: { action: string; reason: string }) => [e.action, e.reason]), [['targets', 'scale in'], ['targets', 'scale out']]);
  });

  it('a new pool is appended at weight 0 and moves no sticky user; a pool in use cannot be deleted', async () => {
    await p.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 50, green: 50 } });
    const keys = Array.from({ length: 40 }, (_, i) => `user-${i}`);
    const where = async () => Promise.all(keys.map(async (k) => (await p.admin('GET', `/v1/apps/shop/whereis?key=${k}`)).body.pool));
    const beforeAdd = await where();
    const r = await p.admin('PUT', '/v1/apps/shop/pools/purple', { version: '3.0.0', targets: [green2.url] });
    assert.equal(r.status, 200);
    assert.deepEqual(Object.keys(r.body.pools), ['blue', 'green', 'purple']);
    assert.equal(r.body.weights.purple, 0);
    assert.deepEqual(await where(), beforeAdd, 'no sticky user moved');
    const inUse = await p.admin('DELETE', '/v1/apps/shop/pools/green');
    assert.deepEqual([inUse.status, inUse.body.error.code], [409, 'POOL_IN_USE']);
    const del = await p.admin('DELETE', '/v1/apps/shop/pools/purple', { reason: 'not needed' });
    assert.equal(del.status, 200);
    assert.deepEqual(Object.keys(del.body.pools), ['blue', 'green']);
    const two = await p.admin('DELETE', '/v1/apps/shop/pools/green', { force: true });
    assert.deepEqual([two.status, two.body.error.code], [409, 'DEFINITION_IN_USE'], 'an app keeps two pools');
    // a forced delete of a pool with weight gives its share to the others; a rollback to weights on it is a 409, not a 500
    await p.admin('PUT', '/v1/apps/shop/pools/purple', { version: '3.0.0', targets: [green2.url] });
    await p.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 40, green: 40, purple: 20 } });
    const forced = await p.admin('DELETE', '/v1/apps/shop/pools/purple', { force: true });
    assert.equal(forced.status, 200, JSON.stringify(forced.body));
    assert.deepEqual(forced.body.weights, { blue: 50, green: 50 });
    // a rollback to a stable routing on a pool removed since
    await p.admin('PUT', '/v1/apps/shop/pools/purple', { version: '3.0.0', targets: [green2.url] });
    await p.admin('POST', '/v1/apps/shop/switch', { to: 'purple', force: true });
    await p.admin('POST', '/v1/apps/shop/switch', { to: 'blue' });
    assert.equal((await p.admin('DELETE', '/v1/apps/shop/pools/purple', { force: true })).status, 200);
    const back = await p.admin('POST', '/v1/apps/shop/rollback', {});
    assert.deepEqual([back.status, back.body.error?.code], [409, 'CONFLICT']);
    assert.match(back.body.error.message, /purple, which the app no longer has/);
    await p.admin('POST', '/v1/apps/shop/switch', { to: 'blue' });
  });

  it('GET /v1/config answers every live definition in the shape apply reads', async () => {
    const r = await p.admin('GET', '/v1/config');
    assert.equal(r.status, 200);
    assert.equal(r.body.apps.length, 1);
    assert.equal(r.body.apps[0].name, 'shop');
    assert.deepEqual(r.body.apps[0].pools.green, { version: '2.1.0', targets: [green2.url] });
  });
});

describe('live definitions: health checks follow the targets', () => {
  const up = useUpstreams('blue', 'green');

  it('a target that joins starts up and is checked at once; one that leaves is no longer checked', async (t) => {
    const p = await startProxy({ apps: [twoPools(up.blue.url, up.green.url, { health: { path: '/', interval: '100ms', timeout: '2s', fall: 1, rise: 1 } })] });
    // the dead target refuses at once; the 2 s timeout keeps a slow check of a healthy one on a loaded machine from flagging it
    t.after(() => p.close());
    const dead = 'http://127.0.0.1:1';
    const added = await p.admin('POST', '/v1/apps/shop/pools/blue/targets', { url: dead });
    assert.deepEqual(added.body.pools.blue.targetStates.map((s: { url: string; state: string }) => [s.url, s.state]), [[up.blue.url, 'up'], [dead, 'up']], 'up until a check says otherwise');
    let states: [string, string][] = [];
    await until(t, 'the dead target down', async () => {
      states = (await p.admin('GET', '/v1/apps/shop')).body.pools.blue.targetStates.map((s: { url: string; state: string }) => [s.url, s.state]);
      return states[1]?.[1] === 'down';
    }, { timeout: 3000, interval: 50, detail: () => JSON.stringify(states) });
    assert.deepEqual(states, [[up.blue.url, 'up'], [dead, 'down']]);
    // no request goes to the down target
    for (let i = 0; i < 4; i++) assert.equal(JSON.parse((await p.get('/')).body).pool, 'blue');
    await p.admin('DELETE', `/v1/apps/shop/pools/blue/targets?url=${encodeURIComponent(dead)}`);
    const checks = [...(p.sy.health as unknown as { checkOf: Map<unknown, { target: { url: string } }> }).checkOf.values()].map((c) => c.target.url).sort();
    assert.deepEqual(checks, [up.blue.url, up.green.url].sort());
  });
});

describe('live definitions: apps', () => {
  const up = useUpstreams('blue', 'green');

  const blog = (hosts: string[]) => ({ hosts, pools: { blue: { version: '1.0.0', targets: [up.blue.url] }, green: { version: '2.0.0', targets: [up.green.url] } }, initial: { green: 100 } });

  it('an app created with PUT /v1/apps/NAME is served, survives a restart, and is deleted cleanly; a host of another app is a 409', async (t) => {
    let p = await startProxy({ apps: [twoPools(up.blue.url, up.green.url, { hosts: ['shop.test'] })] });
    const dir = p.dir;
    t.after(async () => {
      await p.close();
      await rm(dir, { recursive: true, force: true, maxRetries: 5 });
    });
    assert.equal((await p.get('/', { host: 'blog.test' })).status, 421);
    const conflict = await p.admin('PUT', '/v1/apps/blog', { definition: blog(['blog.test', 'shop.test']) });
    assert.deepEqual([conflict.status, conflict.body.error.code], [409, 'HOST_CONFLICT']);
    assert.deepEqual(conflict.body.error.details, [{ path: 'definition.hosts[1]', message: 'host "shop.test" already belongs to app "shop"' }]);
    const bad = await p.admin('PUT', '/v1/apps/blog', { definition: { ...blog(['blog.test']), pools: { blue: { version: '1', targets: ['nope'] } } } });
    assert.equal(bad.status, 400);
    assert.deepEqual(bad.body.error.details.map((d: { path: string }) => d.path).sort(), ['definition.initial.green', 'definition.pools', 'definition.pools.blue.targets[0]']);
    const staleCreate = await p.admin('PUT', '/v1/apps/blog', { definition: blog(['blog.test']) }, { 'if-match': '"4"' });
    assert.deepEqual([staleCreate.status, staleCreate.body.error.code], [412, 'STALE_REVISION']);
    const created = await p.admin('PUT', '/v1/apps/blog', { definition: blog(['blog.test']), reason: 'new site' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.active, 'green');
    assert.equal((await p.get('/', { host: 'blog.test' })).servedBy, 'green@2.0.0');
    const replaced = await p.admin('PUT', '/v1/apps/blog', { definition: { ...blog(['blog.test', 'www.blog.test']) } });
    assert.equal(replaced.status, 200);
    assert.equal((await p.get('/', { host: 'www.blog.test' })).servedBy, 'green@2.0.0');
    // a restart with the same config file: blog comes from the store
    await p.sy.close();
    p = await startProxy({ apps: [twoPools(up.blue.url, up.green.url, { hosts: ['shop.test'] })] }, { dir });
    assert.equal((await p.get('/', { host: 'www.blog.test' })).servedBy, 'green@2.0.0');
    assert.deepEqual((await p.admin('GET', '/v1/apps')).body.apps.map((a: { app: string }) => a.app), ['shop', 'blog']);
    const del = await p.admin('DELETE', '/v1/apps/blog', { reason: 'closed' });
    assert.equal(del.status, 200, JSON.stringify(del.body));
    assert.equal(del.body.deleted, true);
    assert.equal((await p.get('/', { host: 'blog.test' })).status, 421);
    assert.equal((await p.admin('GET', '/v1/apps/blog')).status, 404);
    // and re-created later on a higher revision (the tombstone keeps the count)
    const again = await p.admin('PUT', '/v1/apps/blog', { definition: blog(['blog.test']) });
    assert.equal(again.status, 201);
    assert.ok(again.body.revision > del.body.revision);
    await p.sy.close();
    p = await startProxy({ apps: [twoPools(up.blue.url, up.green.url, { hosts: ['shop.test'] })] }, { dir });
    assert.equal((await p.get('/', { host: 'blog.test' })).servedBy, 'green@2.0.0');
  });

  it('DELETE /v1/apps/NAME is a 409 while requests are in flight, unless force', async (t) => {
    const releases: (() => void)[] = [];
    const slow = await startUpstream('slow', (_req, res) => releases.push(() => res.end('done')));
    const p = await startProxy({ apps: [twoPools(slow.url, slow.url)] });
    t.after(async () => {
      await p.close();
      await slow.close();
    });
    const inflight = p.get('/');
    await until(t, 'the request held at the upstream', () => releases.length >= 1, { timeout: 30_000, interval: 5 });
    const r = await p.admin('DELETE', '/v1/apps/shop');
    assert.deepEqual([r.status, r.body.error.code], [409, 'DEFINITION_IN_USE']);
    const forced = await p.admin('DELETE', '/v1/apps/shop', { force: true });
    assert.equal(forced.status, 200);
    // the request in flight finishes where it started
    for (const f of releases) f();
    assert.equal((await inflight).status, 200);
  });
});
