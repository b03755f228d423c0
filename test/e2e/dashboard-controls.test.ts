import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Browser, Page, Response } from 'playwright-core';
import { launchPage } from '../helpers/browser.ts';
import { startProxy, TOKEN, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

/** The weights control, the charts' first minute and where messages appear, in Debian's Chromium (see dashboard.test.ts). */

describe('dashboard controls in Chromium', () => {
  let blue: Upstream;
  let green: Upstream;
  let p: TestProxy;
  let browser: Browser;
  let page: Page;
  let problems: string[];

  before(async () => {
    blue = await startUpstream('blue');
    green = await startUpstream('green');
    p = await startProxy({ apps: [twoPools(blue.url, green.url)] });
    // traffic before anyone looks: the charts must show it on the first load
    const until = Date.now() + 5000;
    while (Date.now() < until) {
      await p.get('/');
      await sleep(25);
    }
    ({ browser, page, problems } = await launchPage({ context: { viewport: { width: 1280, height: 800 } } }));
  });

  after(async () => {
    await browser?.close();
    await p?.close();
    await blue?.close();
    await green?.close();
  });

  it('draws the last minute in the charts on the first load, not from an empty chart', async () => {
    await page.goto(p.adminUrl);
    await page.fill('#token', TOKEN);
    const first = page.waitForResponse((r) => r.url().includes('/v1/apps/shop/stats'));
    await page.click('#connect');
    const body = await (await first).json();
    assert.ok(body.history.length >= 4, `the server had ${body.history.length} seconds`);
    const shop = page.locator('section[data-app="shop"]');
    const line = shop.locator('.chart').first().locator('path[data-points]').first();
    await line.waitFor({ state: 'attached' });
    // one point per second the server sampled plus the current one, drawn at once
    assert.ok(Number(await line.getAttribute('data-points')) >= body.history.length, String(await line.getAttribute('data-points')));
    // the traffic of the minute before is in what is drawn: the chart's scale is set by it. (Not the
    // legend, which shows the newest second: traffic stopped while Chromium started, and on a busy
    // machine that second can be nearly idle.)
    const top = (await shop.locator('.chart').first().locator('.chart-max').textContent()) ?? '';
    const max = Number(/max (\S+)/.exec(top)?.[1]);
    assert.ok(max > 5, `the requests chart's scale is "${top}"`);
  });

  it('keeps the percentage typed when a pool is picked afterwards, and writes what the dialog shows', async () => {
    const shop = page.locator('section[data-app="shop"]');
    await shop.locator('.badge.active', { hasText: 'active: blue' }).waitFor();
    assert.equal(await shop.locator('select[aria-label="pool"]').inputValue(), 'green', 'green, at 0 %, is the first choice');
    await shop.locator('.pct-input').fill('30');
    await shop.locator('select[aria-label="pool"]').selectOption('blue');
    // the operator's 30 stays: picking blue means "send 30 % to blue", not "blue at its 100 %"
    assert.equal(await shop.locator('.pct-input').inputValue(), '30');
    assert.equal(await shop.locator('.preview').textContent(), 'blue 30% · green 70%');
    // a poll in between must not reset it either: one started after the edit, and done (the next one began)
    const polled = (r: Response) => new URL(r.url()).pathname === '/v1/apps';
    await page.waitForResponse(polled);
    await page.waitForResponse(polled);
    assert.equal(await shop.locator('.pct-input').inputValue(), '30');
    await shop.locator('button[data-action="weights"]').click();
    const dialog = page.locator('dialog#confirm');
    await dialog.waitFor({ state: 'visible' });
    assert.deepEqual(await dialog.locator('.change').allTextContents(), ['blue 100% → 30%', 'green 0% → 70%']);
    await page.click('#confirm-ok');
    await shop.locator('.badge.active', { hasText: 'split' }).waitFor();
    assert.deepEqual((await p.admin('GET', '/v1/apps/shop')).body.weights, { blue: 30, green: 70 });
  });

  it('refuses a no-op instead of confirming "70 % → 70 %" and writing it', async () => {
    const shop = page.locator('section[data-app="shop"]');
    const revision = (await p.admin('GET', '/v1/apps/shop')).body.revision;
    await shop.locator('select[aria-label="pool"]').selectOption('green');
    assert.equal(await shop.locator('.pct-input').inputValue(), '70', 'untouched, the box shows the picked pool’s weight');
    await shop.locator('button[data-action="weights"]').click();
    await shop.locator('.toast', { hasText: 'nothing to change' }).waitFor();
    assert.equal(await page.locator('dialog#confirm').isVisible(), false);
    assert.equal((await p.admin('GET', '/v1/apps/shop')).body.revision, revision);
  });

  it('shows messages in the app card above its history, covering no history row', async () => {
    const shop = page.locator('section[data-app="shop"]');
    await shop.locator('button[data-action="switch"][data-pool="green"]').click();
    await page.locator('dialog#confirm').waitFor({ state: 'visible' });
    await page.click('#confirm-ok');
    const toast = shop.locator('.toast', { hasText: 'switched shop to green' });
    await toast.waitFor();
    await shop.locator('.history tbody tr', { hasText: 'green 100%' }).first().waitFor();
    const t = await toast.boundingBox();
    const history = await shop.locator('.history').boundingBox();
    assert.ok(t !== null && history !== null);
    assert.ok(t.y + t.height <= history.y, `the message (${t.y}..${t.y + t.height}) ends above the history (${history.y})`);
    // what is drawn at the newest history row is that row
    const covered = await shop.locator('.history tbody tr').first().evaluate((row) => {
      const r = row.getBoundingClientRect();
      // the test's tsconfig has no DOM lib: the page's document, typed as far as used here
      const doc = (globalThis as unknown as { document: { elementFromPoint(x: number, y: number): typeof row | null } }).document;
      const hit = doc.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
      return hit === null || !row.contains(hit);
    });
    assert.equal(covered, false);
    assert.deepEqual(problems, [], 'no console errors or CSP violations');
  });
});
