import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { openDashboard } from '../helpers/browser.ts';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

/** Editing the cohort rules and the mirror from the dashboard (docs/cohorts.md §2, §4) in Debian's Chromium, behind the confirm dialog. */
describe('dashboard rules and mirror editor in Chromium', () => {
  let blue: Upstream;
  let green: Upstream;
  let p: TestProxy;
  let browser: Browser;
  let page: Page;
  let problems: string[] = [];
  const card = () => page.locator('section[data-app="shop"] details.routing-edit');
  const dialog = () => page.locator('dialog#confirm');
  const state = async () => (await p.admin('GET', '/v1/apps/shop')).body;

  /** Fills the "add rule" row: a header match. */
  async function fillRule(name: string, mode: string, value: string): Promise<void> {
    const c = card();
    await c.locator('input[name="rule-name"]').fill(name);
    await c.locator('select[name="rule-to"]').selectOption('green');
    await c.locator('select[name="rule-kind"]').selectOption('header');
    await c.locator('input[name="rule-key"]').fill('x-beta');
    await c.locator('select[name="rule-mode"]').selectOption(mode);
    await c.locator('input[name="rule-value"]').fill(value);
    await c.locator('input[name="rule-share"]').fill('100');
  }

  before(async () => {
    [blue, green] = await Promise.all([startUpstream('blue'), startUpstream('green')]);
    p = await startProxy({ apps: [twoPools(blue.url, green.url)] });
    ({ browser, page, problems } = await openDashboard(p.adminUrl));
    await card().waitFor({ state: 'attached' });
    await card().locator('summary').click();
  });

  after(async () => {
    await browser?.close();
    await p?.close();
    await Promise.all([blue, green].map((u) => u?.close()));
  });

  it('adds a rule after a confirmation showing what is written, and the header routes to its pool', async () => {
    assert.equal((await p.get('/', { 'x-beta': '1' })).servedBy, 'blue@1.0.0');
    const rev = (await state()).revision;
    await fillRule('beta', 'exact', '1');
    await card().locator('button[data-action="add-rule"]').click();
    await dialog().waitFor({ state: 'visible' });
    const shown = String(await dialog().locator('#confirm-body').textContent());
    assert.match(shown, /"name": "beta"/);
    assert.match(shown, /"x-beta": \{\s*"exact": "1"/);
    // cancelled: nothing written
    await page.click('#confirm-cancel');
    assert.equal((await state()).revision, rev);

    await card().locator('button[data-action="add-rule"]').click();
    await dialog().waitFor({ state: 'visible' });
    await page.fill('#confirm-reason', 'beta testers');
    const put = page.waitForRequest((r) => r.method() === 'PUT' && r.url().endsWith('/v1/apps/shop/rules'));
    await page.click('#confirm-ok');
    assert.equal((await put).headers()['if-match'], `"${rev}"`, 'the write is conditional, like the weights editor\'s');
    await card().locator('li[data-rule="beta"]').waitFor();
    const s = await state();
    assert.equal(s.revision, rev + 1);
    assert.deepEqual(s.rules, [{ name: 'beta', match: { header: { 'x-beta': { exact: '1' } } }, to: 'green', share: 100 }]);
    assert.equal((await p.admin('GET', '/v1/apps/shop/history?limit=1')).body.entries[0].reason, 'beta testers');
    assert.equal((await p.get('/', { 'x-beta': '1' })).servedBy, 'green@2.0.0');
    assert.equal((await p.get('/', { 'x-beta': '2' })).servedBy, 'blue@1.0.0');
    // green has 0 % of the weights but the rule sends to it: it is serving, not draining
    await page.locator('section[data-app="shop"] tr[data-pool="green"] [data-state="routed"]', { hasText: 'serving · rule beta' }).waitFor();
  });

  it('shows the field the API refuses: a regex the linear-time matcher does not accept', async () => {
    const rev = (await state()).revision;
    await fillRule('bad', 'regex', '(a)\\1');
    await card().locator('button[data-action="add-rule"]').click();
    await dialog().waitFor({ state: 'visible' });
    await page.click('#confirm-ok');
    const error = card().locator('.routing-error');
    await error.filter({ hasText: /refused a field/ }).waitFor();
    assert.match(String(await error.textContent()), /rules\[1\]\.match\.header\.x-beta\.regex: not a pattern the linear-time matcher/);
    assert.equal((await state()).revision, rev);
    // Chromium logs the refused request itself; nothing else may have gone wrong
    assert.deepEqual(problems.splice(0), ['console: Failed to load resource: the server responded with a status of 400 (Bad Request)']);
  });

  it('sets the mirror and turns it off, each after a confirmation', async () => {
    const c = card();
    await c.locator('select[name="mirror-to"]').selectOption('green');
    await c.locator('input[name="mirror-share"]').fill('50');
    await c.locator('input[name="mirror-compare"]').check();
    await c.locator('button[data-action="set-mirror"]').click();
    await dialog().waitFor({ state: 'visible' });
    assert.match(String(await dialog().locator('#confirm-body').textContent()), /"to": "green",\s*"share": 50,\s*"compare": true/);
    await page.click('#confirm-ok');
    await page.locator('section[data-app="shop"] .toast', { hasText: 'mirroring to green' }).waitFor();
    const m = (await state()).mirror;
    assert.deepEqual([m.to, m.share, m.compare], ['green', 50, true]);
    assert.equal(await c.locator('.routing-error').textContent(), '', 'a successful write clears the last refusal');
    await page.screenshot({ path: '/tmp/d25-routing-edit.png', fullPage: true });

    await c.locator('button[data-action="mirror-off"]:not([disabled])').click();
    await dialog().waitFor({ state: 'visible' });
    await page.click('#confirm-ok');
    await page.locator('section[data-app="shop"] .toast', { hasText: 'turned the mirror off' }).waitFor();
    assert.equal((await state()).mirror, null);
    await c.locator('button[data-action="mirror-off"][disabled]').waitFor({ state: 'attached' });
  });

  it('removes a rule after a confirmation', async () => {
    await card().locator('button[data-action="remove-rule"][data-rule="beta"]').click();
    await dialog().waitFor({ state: 'visible' });
    assert.match(String(await dialog().locator('#confirm-body').textContent()), /"rules": \[\]/);
    await page.click('#confirm-ok');
    await card().locator('li[data-rule="beta"]').waitFor({ state: 'detached' });
    assert.deepEqual((await state()).rules, []);
    assert.equal((await p.get('/', { 'x-beta': '1' })).servedBy, 'blue@1.0.0');
    assert.deepEqual(problems, [], 'no console errors or CSP violations');
  });
});
