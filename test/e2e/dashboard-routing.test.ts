import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { openDashboard } from '../helpers/browser.ts';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

/** The routing beyond the weights in Debian's Chromium (see dashboard.test.ts): rules and the mirror pool's figures. */
describe('dashboard rules and mirror in Chromium', () => {
  let blue: Upstream;
  let green: Upstream;
  let p: TestProxy;
  let browser: Browser;
  let page: Page;
  let problems: string[] = [];

  before(async () => {
    [blue, green] = await Promise.all([startUpstream('blue'), startUpstream('green', (_req, res) => res.writeHead(503).end('no'))]);
    p = await startProxy({ apps: [twoPools(blue.url, green.url, { rules: [{ name: 'beta', match: { header: { 'x-beta': '1' } }, to: 'green', share: 50 }], mirror: { to: 'green', share: 100, compare: true } })] });
    ({ browser, page, problems } = await openDashboard(p.adminUrl));
  });

  after(async () => {
    await browser?.close();
    await p?.close();
    await Promise.all([blue, green].map((u) => u?.close()));
  });

  it('shows the rules and the mirror pool\'s figures with the share of answers that differ', async () => {
    const rules = page.locator('section[data-app="shop"] .routing-info[data-part="rules"]');
    await rules.waitFor();
    assert.equal(await rules.textContent(), 'Rules (first match wins): beta → green (50 %)');
    for (let i = 0; i < 10; i++) await p.get(`/m${i}`);
    const mirror = page.locator('section[data-app="shop"] .routing-info[data-part="mirror"]');
    // the 10 s window counts complete seconds: the figures show up within a poll or two
    await mirror.filter({ hasText: /answers differ 100(\.0)? ?% of 10$/ }).waitFor({ timeout: 15_000 });
    assert.match(String(await mirror.textContent()), /^Mirror → green \(100 % copied\): .* req\/s · errors 100(\.0)? ?%/);
    assert.deepEqual(problems, []);
  });
});
