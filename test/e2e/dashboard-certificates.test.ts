import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { openDashboard } from '../helpers/browser.ts';
import { createTestCa, type TestCa } from '../helpers/certs.ts';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { freePort } from '../helpers/ports.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

const DAY_MS = 86_400_000;

/**
 * The certificates panel in Debian's Chromium (see dashboard.test.ts): the proxy's clock runs
 * 1.5 days ahead, so its 2-day certificate for shop.test is due for renewal, and ACME's directory
 * does not answer, so the renewal fails; the 30-day certificate is fine.
 */
describe('dashboard certificates panel in Chromium', () => {
  let ca: TestCa;
  let up: Upstream;
  let p: TestProxy;
  let browser: Browser;
  let page: Page;
  let problems: string[] = [];

  before(async () => {
    ca = createTestCa();
    const shop = ca.issue('shop', ['shop.test'], 2);
    const api = ca.issue('api', ['api.test'], 30);
    up = await startUpstream('blue');
    const dead = await freePort();
    p = await startProxy(
      {
        listen: { host: '127.0.0.1', port: 0, tls: { port: 0, certs: [{ cert: shop.cert, key: shop.key }, { cert: api.cert, key: api.key }], acme: { directory: `https://127.0.0.1:${dead}/dir`, hosts: ['shop.test', 'new.test'], retry: '30s' } } },
        apps: [twoPools(up.url, up.url)],
      },
      { now: () => Date.now() + 1.5 * DAY_MS, edge: { acmeSyncMs: 200 } },
    );
    ({ browser, page, problems } = await openDashboard(p.adminUrl));
  });

  after(async () => {
    await browser?.close();
    await p?.close();
    await up?.close();
    ca?.close();
  });

  it('shows a certificate due for renewal and a failing ACME renewal, and the healthy one as valid', async () => {
    const panel = page.locator('section.certificates');
    await panel.waitFor();
    const shopRow = panel.locator('tr[data-names="shop.test"]');
    await shopRow.locator('[data-state="expiring"]').waitFor();
    assert.equal(await shopRow.locator('.state').textContent(), 'renewal due');
    assert.match(String(await shopRow.locator('td').nth(1).textContent()), /shop\.pem$/);
    assert.equal(await panel.locator('tr[data-names="api.test"] .state').textContent(), 'valid');

    const acmeRow = panel.locator('tr[data-host="shop.test"][data-state="failing"]');
    await acmeRow.waitFor({ timeout: 10_000 });
    assert.equal(await acmeRow.locator('.state').textContent(), 'renewal failing');
    assert.match(String(await acmeRow.locator('td.acme-error').textContent()), /did not answer|ECONNREFUSED|connect/i);
    // 30 s after the failure by the proxy's clock, whatever the browser's says
    assert.match(String(await acmeRow.locator('td').nth(3).textContent()), /^next try .* \(in [1-3]?\ds\)$/);

    // the first order for new.test fails on its own round, after shop.test's renewal: wait for it
    await panel.locator('tr[data-host="new.test"][data-state="unissued"]').waitFor({ timeout: 10_000 });
    const summary = panel.locator('.app-title .badge');
    assert.equal(await summary.getAttribute('data-state'), 'bad');
    assert.match(String(await summary.textContent()), /1 due for renewal · 1 renewal failing · 1 first order failing/);
    // regression: a host no certificate serves yet was shown as "renewal failing"
    const fresh = panel.locator('tr[data-host="new.test"]');
    assert.equal(await fresh.getAttribute('data-state'), 'unissued');
    assert.equal(await fresh.locator('.state').textContent(), 'first order failing');
    assert.deepEqual(problems, [], 'no console errors or CSP violations');
    await mkdir(new URL('../../test-output/', import.meta.url), { recursive: true });
    await panel.screenshot({ path: new URL('../../test-output/dashboard-certificates.png', import.meta.url).pathname });
  });

  it('GET /v1/certificates carries what the panel shows', async () => {
    const r = await p.admin('GET', '/v1/certificates');
    assert.equal(r.status, 200);
    assert.equal(r.body.tls, true);
    const shop = r.body.certificates.find((c: { names: string[] }) => c.names[0] === 'shop.test');
    assert.equal(shop.source, 'file');
    assert.equal(shop.state, 'expiring');
    assert.ok(shop.expiresInSeconds > 0 && shop.expiresInSeconds < DAY_MS / 1000);
    assert.equal(r.body.acme.hosts[0].host, 'shop.test');
    assert.notEqual(r.body.acme.hosts[0].lastError, null);
    assert.notEqual(r.body.acme.hosts[0].retryAt, null);
  });
});

describe('GET /v1/certificates without listen.tls', () => {
  it('says there is no TLS port (the panel stays hidden)', async (t) => {
    const up = await startUpstream('blue');
    const p = await startProxy({ apps: [twoPools(up.url, up.url)] });
    t.after(async () => {
      await p.close();
      await up.close();
    });
    const r = await p.admin('GET', '/v1/certificates');
    assert.deepEqual(r.body, { tls: false, certificates: [], acme: null });
  });
});
