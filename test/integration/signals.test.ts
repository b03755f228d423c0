import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { connect } from 'node:tls';
import { request } from 'undici';
import { createTestCa } from '../helpers/certs.ts';
import { TOKEN, twoPools } from '../helpers/proxy.ts';
import { freePort } from '../helpers/ports.ts';
import { spawnServe, type ServeProcess } from '../helpers/serve-process.ts';
import { startUpstream } from '../helpers/upstream.ts';
import { until } from '../helpers/wait.ts';

const line = (sp: ServeProcess, msg: RegExp): Record<string, unknown> | undefined => sp.log().find((l) => msg.test(String(l['msg'])));

/** Rewrites the process's config file (JSON) with `change` applied. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the test edits a config document of any shape
type Doc = Record<string, any>;

function editConfig(sp: ServeProcess, change: (doc: Doc) => void): void {
  const file = join(sp.dir, 'switchyard.yaml');
  const doc = JSON.parse(readFileSync(file, 'utf8')) as Doc;
  change(doc);
  writeFileSync(file, JSON.stringify(doc));
}

function servedSerial(port: number, servername: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false }, () => {
      resolve(s.getPeerCertificate().serialNumber);
      s.end();
    });
    s.on('error', reject);
  });
}

describe('SIGHUP reloads what can change while running and never stops the process', { concurrency: 1, timeout: 120_000 }, () => {
  it('a request in flight finishes, the process keeps serving, a changed log level applies and what needs a restart is named', async (t) => {
    const up = await startUpstream('blue', (req, res) => {
      setTimeout(() => res.end('done'), req.url === '/slow' ? 5000 : 0);
    });
    t.after(() => up.close());
    const sp = await spawnServe({ apps: [twoPools(up.url, up.url)], log: { level: 'warn' } }, 30_000);
    t.after(() => sp.cleanup());
    const slow = request(`${sp.proxyUrl}/slow`);
    await until(t, 'the slow request to reach the upstream', () => up.seen.some((s) => s.url === '/slow'));
    editConfig(sp, (d) => {
      d['log'] = { level: 'info' };
      d['shutdown'] = { grace: '7s' };
    });
    process.kill(sp.child.pid as number, 'SIGHUP');
    const report = await until(t, 'the reload', () => line(sp, /^SIGHUP: /), { timeout: 20_000, interval: 50, detail: () => sp.output().slice(-3000) });
    assert.match(String(report['msg']), /log\.level warn → info/);
    assert.deepEqual(report['needsRestart'], ['shutdown']);
    const r = await slow;
    assert.equal(r.statusCode, 200);
    assert.equal(await r.body.text(), 'done');
    // at info, every request now has its access line (at warn there was none for /slow)
    await until(t, 'the access line of /slow, which ended after the reload', () => sp.log().find((l) => l['access'] === true && l['path'] === '/slow'), { timeout: 20_000, interval: 50, detail: () => sp.output().slice(-3000) });
    const again = await request(`${sp.proxyUrl}/after`);
    assert.equal(again.statusCode, 200);
    await again.body.dump();
    await until(t, 'the access line of /after', () => sp.log().find((l) => l['access'] === true && l['path'] === '/after'), { timeout: 20_000, interval: 50, detail: () => sp.output().slice(-3000) });
    // a broken file changes nothing, and is said so
    writeFileSync(join(sp.dir, 'switchyard.yaml'), '{ listen: [');
    process.kill(sp.child.pid as number, 'SIGHUP');
    await until(t, 'the refusal', () => line(sp, /SIGHUP: the config file cannot be used; nothing changed/), { timeout: 20_000, interval: 50, detail: () => sp.output().slice(-3000) });
    const still = await request(`${sp.proxyUrl}/still`);
    assert.equal(still.statusCode, 200);
    await still.body.dump();
    assert.equal(sp.child.exitCode, null);
  });

  it('a renewed certificate is served right after SIGHUP', async (t) => {
    const up = await startUpstream('blue');
    const ca = createTestCa();
    const first = ca.issue('first', ['shop.test']);
    const cert = join(ca.dir, 'live.pem');
    const key = join(ca.dir, 'live.key');
    copyFileSync(first.cert, cert);
    copyFileSync(first.key, key);
    const tlsPort = await freePort();
    t.after(async () => {
      ca.close();
      await up.close();
    });
    const sp = await spawnServe({ listen: { host: '127.0.0.1', port: await freePort(), tls: { port: tlsPort, certs: [{ cert, key }] } }, apps: [twoPools(up.url, up.url)], log: { level: 'info' } }, 30_000);
    t.after(() => sp.cleanup());
    const before = await servedSerial(tlsPort, 'shop.test');
    const renewed = ca.issue('renewed', ['shop.test']);
    copyFileSync(renewed.key, key);
    copyFileSync(renewed.cert, cert);
    process.kill(sp.child.pid as number, 'SIGHUP');
    const report = await until(t, 'the reload', () => line(sp, /^SIGHUP: /), { timeout: 20_000, interval: 50, detail: () => sp.output().slice(-3000) });
    assert.match(String(report['msg']), /certificates re-read: 1 loaded/);
    const after = await servedSerial(tlsPort, 'shop.test');
    assert.notEqual(after, before);
  });

  it('changed app definitions are reported as drift, or applied with --apply-config', async (t) => {
    const up = await startUpstream('blue');
    t.after(() => up.close());
    for (const applyConfig of [false, true]) {
      const sp = await spawnServe({ apps: [twoPools(up.url, up.url)], log: { level: 'info' } }, 30_000, (config) => ({ command: process.execPath, args: ['src/main.ts', 'serve', '--config', config, ...(applyConfig ? ['--apply-config'] : [])], cwd: process.cwd() }));
      t.after(() => sp.cleanup());
      editConfig(sp, (d) => {
        d['apps'][0]['pools']['green']['version'] = '3.0.0';
      });
      process.kill(sp.child.pid as number, 'SIGHUP');
      const report = await until(t, 'the reload', () => line(sp, /^SIGHUP: /), { timeout: 20_000, interval: 50, detail: () => sp.output().slice(-3000) });
      const state = (await (await request(`${sp.adminUrl}/v1/config`, { headers: { authorization: `Bearer ${TOKEN}` } })).body.json()) as { apps: { pools: Record<string, { version: string }> }[] };
      if (applyConfig) {
        assert.match(String(report['msg']), /apps\.shop applied at revision 2/);
        assert.deepEqual(report['drift'], {});
        assert.equal(state.apps[0]?.pools['green']?.version, '3.0.0');
      } else {
        assert.deepEqual(report['drift'], { shop: ['pools.green.version'] });
        assert.equal(state.apps[0]?.pools['green']?.version, '2.0.0', 'the store wins');
      }
      // gone before the next round's process starts (cleanup() may run twice)
      await sp.cleanup();
    }
  });
});
