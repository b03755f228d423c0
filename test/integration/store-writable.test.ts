import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { request } from 'undici';
import { startProxy, twoPools } from '../helpers/proxy.ts';
import { startUpstream } from '../helpers/upstream.ts';
import { until } from '../helpers/wait.ts';

// The file store's filesystem stops taking writes (read-only, full, gone): routing goes on, writes
// answer 503, and /readyz (storeHealth) and /metrics (switchyard_store_writable) say so — between
// writes too, from a probe (issue 24).

describe('a file store that cannot be written', () => {
  it('shows in /readyz storeHealth and switchyard_store_writable, from a failed write and from the probe, and clears once fixed', async (t) => {
    const blue = await startUpstream('blue');
    const green = await startUpstream('green');
    const dir = await mkdtemp(join(tmpdir(), 'switchyard-writable-'));
    const stateDir = join(dir, 'state');
    t.after(async () => {
      await blue.close();
      await green.close();
      await rm(dir, { recursive: true, force: true });
    });
    // the state lives in a directory the test can take away
    const q = await startProxy({ apps: [twoPools(blue.url, green.url)], store: { kind: 'file', path: join(stateDir, 'state.json') } });
    t.after(() => q.close());
    const ready = async () => (await q.admin('GET', '/readyz')).body as { status: string; details: { storeHealth: { writable: boolean; error?: string; since?: string } } };
    const gauge = async () => {
      const text = await (await request(`${q.adminUrl}/metrics`)).body.text();
      return /^switchyard_store_writable (\d)$/m.exec(text)?.[1];
    };
    assert.deepEqual((await ready()).details.storeHealth, { writable: true });
    assert.equal(await gauge(), '1');

    // the directory becomes a file: nothing can be written under it (as root, permissions would not stop a write)
    await rm(stateDir, { recursive: true, force: true });
    await writeFile(stateDir, 'not a directory');
    // no write yet: the probe finds it
    await until(t, 'the probe to find the store unwritable', async () => (await ready()).details.storeHealth.writable === false, { timeout: 12_000 });
    const r = await ready();
    assert.equal(r.status, 'ready', 'still routing, so still ready');
    assert.match(r.details.storeHealth.error ?? '', /ENOTDIR|not a directory/);
    assert.ok(r.details.storeHealth.since !== undefined);
    assert.equal(await gauge(), '0');
    const w = await q.admin('POST', '/v1/apps/shop/switch', { to: 'green' });
    assert.equal(w.status, 503);
    assert.equal((await q.get('/')).servedBy, 'blue@1.0.0', 'routing goes on on the last state');

    // fixed: the next write lands and says so at once
    await rm(stateDir, { force: true });
    await mkdir(stateDir);
    const again = await q.admin('POST', '/v1/apps/shop/switch', { to: 'green' });
    assert.equal(again.status, 200);
    assert.deepEqual((await ready()).details.storeHealth, { writable: true });
    assert.equal(await gauge(), '1');
  });
});
