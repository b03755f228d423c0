import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { openDashboard } from '../helpers/browser.ts';
import { closedPort } from '../helpers/ports.ts';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

/** Screenshots to look at (test-output/ is ignored by git). */
const SHOTS = new URL('../../test-output/', import.meta.url).pathname;

async function deadUrl(): Promise<string> {
  return `http://127.0.0.1:${await closedPort()}`;
}

/** The release signals of issue 23 as an operator sees them, in Chromium at 1280 and 760 px. */
describe('dashboard release signals in Chromium', () => {
  let blue: Upstream;
  let green: Upstream;
  let p: TestProxy;
  let browser: Browser;
  let page: Page;
  let problems: string[];

  before(async () => {
    await mkdir(SHOTS, { recursive: true });
    blue = await startUpstream('blue');
    green = await startUpstream('green');
    // green's port refuses at once, so two failed checks (400 ms) flag it; blue, healthy, is
    // flagged only by two checks in a row over 2 s (a 150 ms timeout and one miss flagged blue too
    // on a loaded machine: CI, 2026-12-06)
    const health = { path: '/', interval: '200ms', timeout: '2s', rise: 1, fall: 2 };
    p = await startProxy({
      apps: [
        // shop's green runs on a port nothing listens on: unhealthy
        { ...twoPools(blue.url, await deadUrl()), health },
        { ...twoPools(blue.url, green.url), name: 'blog', hosts: ['blog.example.com'] },
      ],
    });
    await p.admin('GET', '/v1/apps/shop'); // warm
    ({ browser, page, problems } = await openDashboard(p.adminUrl));
  });
  after(async () => {
    await browser?.close();
    await p?.close();
    await blue?.close();
    await green?.close();
  });

  const shop = () => page.locator('section[data-app="shop"]');
  const dialog = () => page.locator('dialog#confirm');

  it('flags an unhealthy pool in its row, and asks before forcing traffic onto it (the API says "send force: true")', async () => {
    await shop().locator('tr[data-pool="green"] [data-state="unhealthy"]').waitFor({ timeout: 15_000 });
    assert.equal(await shop().locator('tr[data-pool="blue"] [data-state="unhealthy"]').count(), 0);
    await shop().locator('select[aria-label="pool"]').selectOption('green');
    await shop().locator('.pct-input').fill('5');
    await shop().locator('button[data-action="weights"]').click();
    await dialog().waitFor({ state: 'visible' });
    await page.click('#confirm-ok');
    // the refusal comes back as a question, not as an instruction the page cannot follow
    await dialog().locator('h3', { hasText: 'send traffic to a pool with no healthy target?' }).waitFor();
    // the first confirm's 'close' event, should it come late (a busy browser queues it, and CI saw
    // it arrive after the question opened and close it): the open question ignores it
    await dialog().evaluate((d) => d.dispatchEvent(new Event('close')));
    assert.equal(await dialog().isVisible(), true, 'a stale close event leaves the question open');
    assert.match(await dialog().locator('.confirm-body p.bad').textContent() ?? '', /POOL_UNHEALTHY|no healthy target|green/);
    await page.click('#confirm-ok');
    await shop().locator('.badge.active', { hasText: 'split' }).waitFor();
    assert.deepEqual((await p.admin('GET', '/v1/apps/shop')).body.weights, { blue: 95, green: 5 });
  });

  it('names a canary segment under 8 % beside the bar', async () => {
    await shop().locator('.bar-legend [data-pool="green"]').waitFor();
    assert.equal(await shop().locator('.bar-legend').textContent(), 'green 5%');
    await page.screenshot({ path: `${SHOTS}dashboard-release-1280.png`, fullPage: true });
  });

  it('the rollback confirm shows the weights it restores and each pool\'s version then and now, and forces only when asked', async () => {
    // blue is redeployed while the canary runs: rolling back to "blue 100 %" now means 3.0.0
    assert.equal((await p.admin('PUT', '/v1/apps/shop/pools/blue', { version: '3.0.0', targets: [blue.url] })).status, 200);
    await shop().locator('tr[data-pool="blue"] td.mono', { hasText: '3.0.0' }).waitFor();
    await shop().locator('button[data-action="rollback"]').click();
    await dialog().waitFor({ state: 'visible' });
    const text = await dialog().locator('.confirm-body').innerText();
    assert.match(text, /Back to the last known-good routing: revision 1 /);
    assert.deepEqual(await dialog().locator('.change:not([data-pool])').allTextContents(), ['blue 95% → 100%', 'green 5% → 0%']);
    assert.equal(await dialog().locator('.change[data-pool="blue"]').textContent(), 'blue ran 1.0.0 then, runs 3.0.0 now — redeployed since');
    assert.equal(await dialog().locator('.change[data-pool="green"]').textContent(), 'green ran 2.0.0 then, runs 2.0.0 now');
    assert.match(text, /VERSION_CHANGED/);
    await page.screenshot({ path: `${SHOTS}dashboard-rollback-confirm-1280.png` });
    await dialog().locator('input[name="force"]').check();
    await page.click('#confirm-ok');
    await shop().locator('.badge.active', { hasText: 'active: blue' }).waitFor();
    const state = (await p.admin('GET', '/v1/apps/shop')).body;
    assert.deepEqual(state.weights, { blue: 100, green: 0 });
    // a second rollback has nothing to go back to: said at once, no dialog
    await shop().locator('button[data-action="rollback"]').click();
    await shop().locator('.toast.bad', { hasText: 'NOTHING_TO_ROLL_BACK' }).waitFor();
    assert.equal(await dialog().isVisible(), false);
  });

  it('the history says what each entry did in words', async () => {
    await shop().locator('.history td.did', { hasText: 'rollback: blue 100 %, green 0 %' }).waitFor();
    const did = await shop().locator('.history td.did').allTextContents();
    assert.ok(did.includes('blue → 3.0.0 on 1 target'), did.join(' | '));
    assert.ok(did.includes('weights: blue 95 %, green 5 %'), did.join(' | '));
  });

  it('an add-target error names the field (url), not an empty one', async () => {
    const input = shop().locator('input[aria-label="new target of green"]');
    await input.fill('ftp://nope');
    await shop().locator('button[data-action="add-target"][data-pool="green"]').click();
    await page.click('#confirm-ok');
    const err = await shop().locator('.toast.bad', { hasText: 'BAD_REQUEST' }).last().textContent();
    assert.match(err ?? '', /^BAD_REQUEST: url: /);
  });

  it('a failed rollout\'s panel goes once the app moves on (a fixed deploy)', async () => {
    const blog = page.locator('section[data-app="blog"]');
    assert.equal((await p.admin('POST', '/v1/apps/blog/rollouts', { to: 'green', steps: [{ weight: 20, pause: '10m' }, { weight: 100 }] })).status, 201);
    assert.equal((await p.admin('POST', '/v1/apps/blog/rollouts/current/abort', { reason: 'bad build' })).status, 200);
    await blog.locator('.rollout[data-rollout="aborted"]:not([hidden])').waitFor();
    assert.equal((await p.admin('PUT', '/v1/apps/blog/pools/green', { version: '2.0.1', targets: [green.url] })).status, 200);
    await blog.locator('.rollout[data-rollout="aborted"]').waitFor({ state: 'hidden' });
  });

  it('fits 760 px without sideways scrolling', async () => {
    await page.setViewportSize({ width: 760, height: 1000 });
    await page.waitForTimeout(300);
    // a string, run in the page: this file is type-checked without the DOM's types
    const [scroll, client] = (await page.evaluate('[document.documentElement.scrollWidth, document.documentElement.clientWidth]')) as [number, number];
    const wide = await page.evaluate(`[...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > ${client} + 1).slice(0, 12).map((e) => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))`);
    await page.screenshot({ path: `${SHOTS}dashboard-release-760.png`, fullPage: true });
    assert.ok(scroll <= client, `the page is ${scroll} px wide in a ${client} px window: ${JSON.stringify(wide)}`);
    // the 409s and the 400 this test provokes are logged by Chromium as failed loads; nothing else may be
    assert.deepEqual(problems.filter((x) => !/Failed to load resource: the server responded with a status of (400|409)/.test(x)), []);
  });
});
