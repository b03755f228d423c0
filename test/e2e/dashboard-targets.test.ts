import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { openDashboard } from '../helpers/browser.ts';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

/** The targets panel (live definitions) in Debian's Chromium (see dashboard.test.ts). */
describe('dashboard targets panel in Chromium', () => {
  let blue: Upstream;
  let green: Upstream;
  let extra: Upstream;
  let p: TestProxy;
  let browser: Browser;
  let page: Page;
  let problems: string[] = [];

  before(async () => {
    [blue, green, extra] = await Promise.all([startUpstream('blue'), startUpstream('green'), startUpstream('extra')]);
    p = await startProxy({ apps: [twoPools(blue.url, green.url)] });
    ({ browser, page, problems } = await openDashboard(p.adminUrl));
  });

  after(async () => {
    await browser?.close();
    await p?.close();
    await Promise.all([blue, green, extra].map((u) => u?.close()));
  });

  it('lists each pool\'s targets with their state and in-flight count', async () => {
    const pool = page.locator('section[data-app="shop"] .target-pool[data-pool="blue"]');
    const row = pool.locator(`tr[data-target="${blue.url}"]`);
    await row.waitFor();
    assert.deepEqual(await row.locator('td').allTextContents(), [blue.url, 'up', '0', 'Remove…']);
  });

  it('adds a target after the confirmation, and removes one after the confirmation', async () => {
    const pool = page.locator('section[data-app="shop"] .target-pool[data-pool="blue"]');
    await pool.locator('input.target-input').fill(extra.url);
    await pool.locator('button[data-action="add-target"]').click();
    const dialog = page.locator('dialog#confirm');
    await dialog.waitFor({ state: 'visible' });
    assert.match(String(await dialog.locator('#confirm-body').textContent()), new RegExp(`${extra.url} joins blue`));
    await page.fill('#confirm-reason', 'scale out');
    await page.click('#confirm-ok');
    await pool.locator(`tr[data-target="${extra.url}"]`).waitFor();
    assert.deepEqual((await p.admin('GET', '/v1/apps/shop')).body.pools.blue.targets, [blue.url, extra.url]);

    // cancelled: nothing written
    const rev = (await p.admin('GET', '/v1/apps/shop')).body.revision;
    await pool.locator(`button[data-action="remove-target"][data-target="${extra.url}"]`).click();
    await dialog.waitFor({ state: 'visible' });
    await page.click('#confirm-cancel');
    assert.equal((await p.admin('GET', '/v1/apps/shop')).body.revision, rev);

    await pool.locator(`button[data-action="remove-target"][data-target="${extra.url}"]`).click();
    await dialog.waitFor({ state: 'visible' });
    assert.match(String(await dialog.locator('#confirm-body').textContent()), /Requests in flight on it finish there/);
    await page.click('#confirm-ok');
    await page.locator('section[data-app="shop"] .toast', { hasText: `removed ${extra.url} from blue` }).waitFor();
    assert.deepEqual((await p.admin('GET', '/v1/apps/shop')).body.pools.blue.targets, [blue.url]);
    const h = (await p.admin('GET', '/v1/apps/shop/history?limit=2')).body.entries;
    assert.deepEqual(h.map((e: { action: string }) => e.action), ['targets', 'targets']);
    assert.equal(h[1].reason, 'scale out');
  });

  it('redraws the card when a pool is added elsewhere', async () => {
    await p.admin('PUT', '/v1/apps/shop/pools/purple', { version: '3.0.0', targets: [extra.url] });
    await page.locator('section[data-app="shop"] .target-pool[data-pool="purple"]').waitFor({ timeout: 5000 });
    await page.locator('section[data-app="shop"] tr[data-pool="purple"]').waitFor();
    assert.deepEqual(problems, [], 'no console errors or CSP violations');
  });
});
