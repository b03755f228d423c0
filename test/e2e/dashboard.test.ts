import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { copyFile, mkdir } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Browser, Page } from 'playwright-core';
import { launchPage } from '../helpers/browser.ts';
import { startProxy, TOKEN, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

/**
 * The dashboard in a real browser: Debian's Chromium driven by playwright-core (no browser is
 * ever downloaded). Without Chromium this test fails, on purpose: CI installs it (.ci/run).
 * SWITCHYARD_DOCS_SCREENSHOT=1 also refreshes docs/dashboard.png for the README.
 */
const OUT = new URL('../../test-output/', import.meta.url);
const DOCS = new URL('../../docs/', import.meta.url);
const FOR_DOCS = process.env['SWITCHYARD_DOCS_SCREENSHOT'] === '1';
/** the docs screenshot lets the charts fill in longer */
const DWELL_MS = FOR_DOCS ? 15_000 : 4000;

/** An upstream with a little latency (and, for blue, a few 5xx) so the charts have something to draw. */
function lively(name: string, errorRate: number, latencyMs: number) {
  return startUpstream(name, (_req, res) => {
    setTimeout(() => {
      const fail = Math.random() < errorRate;
      res.writeHead(fail ? 500 : 200, { 'content-type': 'text/plain' });
      res.end(name);
    }, Math.random() * latencyMs);
  });
}

describe('dashboard in Chromium', () => {
  let blue: Upstream;
  let green: Upstream;
  let p: TestProxy;
  let browser: Browser;
  let page: Page;
  let traffic = true;
  let load: Promise<void>;
  let problems: string[];

  before(async () => {
    blue = await lively('blue', 0.03, 30);
    green = await lively('green', 0, 14);
    // a short affinity window: blue holds pinned sessions for 4 s after the switch, then drains
    p = await startProxy({ apps: [twoPools(blue.url, green.url, { affinity: { secret: 'affinity-secret-0123456789', window: '4s' } })] });
    // steady background traffic through the proxy, ~40 requests/s
    load = (async () => {
      while (traffic) {
        await p.get('/').catch(() => undefined);
        await sleep(20);
      }
    })();
    ({ browser, page, problems } = await launchPage({ context: { viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1, colorScheme: 'light' } }));
  });

  after(async () => {
    traffic = false;
    await load;
    await browser?.close();
    await p?.close();
    await blue?.close();
    await green?.close();
  });

  it('shows the state, sets a canary and switches to green through the UI, and routing follows', async () => {
    await page.goto(p.adminUrl);
    assert.equal(await page.title(), 'Switchyard');

    // a wrong token is refused and the form stays
    await page.fill('#token', 'not-the-token-at-all');
    await page.click('#connect');
    await page.locator('#status', { hasText: 'token rejected' }).waitFor();
    // Chromium logs the 401 itself; that one was asked for
    problems.length = 0;

    await page.fill('#token', TOKEN);
    await page.click('#connect');
    const shop = page.locator('section[data-app="shop"]');
    await shop.locator('.badge.active', { hasText: 'active: blue' }).waitFor();
    assert.equal(await shop.locator('tr[data-pool="blue"] .state').textContent(), 'serving');
    assert.equal(await shop.locator('tr[data-pool="green"] .state').textContent(), '✓ drained');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('switchyard.token')), TOKEN);

    // canary: 20 % to green with the weights control, confirmed in the dialog
    await shop.locator('select[aria-label="pool"]').selectOption('green');
    await shop.locator('.pct-input').fill('20');
    assert.equal(await shop.locator('.preview').textContent(), 'blue 80% · green 20%');
    await shop.locator('button[data-action="weights"]').click();
    const dialog = page.locator('dialog#confirm');
    await dialog.waitFor({ state: 'visible' });
    await page.fill('#confirm-reason', 'canary 20%');
    await page.click('#confirm-ok');
    await shop.locator('.badge.active', { hasText: 'split' }).waitFor();
    assert.deepEqual((await p.admin('GET', '/v1/apps/shop')).body.weights, { blue: 80, green: 20 });
    await sleep(DWELL_MS);

    // cancelling the dialog changes nothing
    await shop.locator('button[data-action="switch"][data-pool="green"]').click();
    await dialog.waitFor({ state: 'visible' });
    await page.click('#confirm-cancel');
    await dialog.waitFor({ state: 'hidden' });
    assert.equal((await p.admin('GET', '/v1/apps/shop')).body.revision, 2);

    // a browser pinned to blue before the switch
    let pin = '';
    while (pin === '') {
      const r = await p.get('/');
      if (r.servedBy === 'blue@1.0.0') pin = String(r.headers['set-cookie']).split(';')[0] as string;
    }

    // the switch
    await shop.locator('button[data-action="switch"][data-pool="green"]').click();
    await dialog.waitFor({ state: 'visible' });
    await page.fill('#confirm-reason', 'release 2.0.0');
    await page.click('#confirm-ok');
    await shop.locator('.badge.active', { hasText: 'active: green' }).waitFor();
    const state = (await p.admin('GET', '/v1/apps/shop')).body;
    assert.equal(state.active, 'green');
    assert.equal(state.reason, 'release 2.0.0');
    assert.equal(state.updatedBy, 'tester');
    for (let i = 0; i < 5; i++) assert.equal((await p.get('/')).servedBy, 'green@2.0.0');
    // the pinned session finishes on blue, and the dashboard shows it holding blue
    for (let i = 0; i < 3; i++) assert.equal((await p.get('/', { cookie: pin })).servedBy, 'blue@1.0.0');
    await shop.locator('tr[data-pool="blue"] .state[data-state="draining"]', { hasText: /· [1-9]\d* pinned/ }).waitFor({ timeout: 5_000 });

    // blue drains, the history shows who did what and why
    await shop.locator('tr[data-pool="blue"] .state[data-state="drained"]').waitFor({ timeout: 10_000 });
    await shop.locator('.history tbody tr', { hasText: 'release 2.0.0' }).waitFor();
    assert.match((await shop.locator('.history tbody tr').first().textContent()) ?? '', /3.*switch.*tester.*green 100%.*release 2\.0\.0/);
    assert.match((await shop.locator('.who').textContent()) ?? '', /tester.*release 2\.0\.0/);

    // live figures and charts from /stats
    await sleep(DWELL_MS + 1000);
    const rps = Number(await shop.locator('tr[data-pool="green"] td').nth(5).textContent());
    assert.ok(rps > 1, `green shows ${rps} req/s`);
    assert.ok((await shop.locator('.chart path').count()) >= 6, 'a line per pool in each of the three charts');

    await mkdir(OUT, { recursive: true });
    const shot = new URL('dashboard.png', OUT);
    await page.screenshot({ path: shot.pathname, fullPage: true });
    assert.ok(existsSync(shot));
    if (FOR_DOCS) {
      await mkdir(DOCS, { recursive: true });
      await copyFile(shot, new URL('dashboard.png', DOCS));
    }

    assert.deepEqual(await page.context().cookies(), [], 'no cookies');
    assert.deepEqual(problems, [], 'no console errors or CSP violations');
  });

  it('rolls back through the UI, to the last known-good routing the confirm shows', async () => {
    const shop = page.locator('section[data-app="shop"]');
    await shop.locator('button[data-action="rollback"]').click();
    await page.locator('dialog#confirm').waitFor({ state: 'visible' });
    // after a canary at 20 % and a switch: back to blue at 100 %, not to the canary
    assert.deepEqual(await page.locator('dialog#confirm .change:not([data-pool])').allTextContents(), ['blue 0% → 100%', 'green 100% → 0%']);
    await page.click('#confirm-ok');
    await shop.locator('.badge.active', { hasText: 'active: blue' }).waitFor();
    assert.deepEqual((await p.admin('GET', '/v1/apps/shop')).body.weights, { blue: 100, green: 0 });
    assert.deepEqual(problems, []);
  });
});
