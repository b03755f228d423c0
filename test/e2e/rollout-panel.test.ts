import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startProxy, TOKEN, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

/** The dashboard's rollout panel in Debian's Chromium (see dashboard.test.ts: no browser is downloaded). */
const CHROMIUM = process.env['SWITCHYARD_CHROMIUM'] ?? '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const OUT = new URL('../../test-output/', import.meta.url);

describe('rollout panel in Chromium', () => {
  let blue: Upstream;
  let green: Upstream;
  let p: TestProxy;
  let browser: Browser;
  let page: Page;
  const problems: string[] = [];

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM}: install it (Debian: apt-get install -y chromium) or set SWITCHYARD_CHROMIUM`);
    blue = await startUpstream('blue');
    green = await startUpstream('green');
    p = await startProxy({ apps: [twoPools(blue.url, green.url)] });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 30_000 });
    page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  });

  after(async () => {
    await browser?.close();
    await p?.close();
    await blue?.close();
    await green?.close();
  });

  it('stays hidden without a rollout, then shows its step and countdown, and pauses, resumes and aborts it with confirmation', async () => {
    await page.goto(p.adminUrl);
    await page.fill('#token', TOKEN);
    await page.click('#connect');
    const shop = page.locator('section[data-app="shop"]');
    await shop.locator('.badge.active', { hasText: 'active: blue' }).waitFor();
    const panel = shop.locator('.rollout');
    assert.equal(await panel.isHidden(), true, 'no rollout yet: no panel');

    const started = await p.admin('POST', '/v1/apps/shop/rollouts', { to: 'green', steps: [{ weight: 10, pause: '5m' }, { weight: 50, pause: '5m' }] });
    assert.equal(started.status, 201);
    await panel.locator('.rollout-state', { hasText: 'running' }).waitFor();
    assert.match((await panel.locator('.rollout-title').textContent()) ?? '', new RegExp(`Rollout ${started.body.id} → green · step 1/3 \\(10%\\)`));
    assert.match((await panel.locator('.rollout-next').textContent()) ?? '', /next step in [45]m/);
    assert.deepEqual(await panel.locator('.rollout-steps li').allTextContents(), ['10% · 5m', '50% · 5m', '100%']);
    assert.match((await panel.locator('.rollout-analysis').textContent()) ?? '', /errors ≤ 1%, after 100 requests, on failure rollback/);

    const dialog = page.locator('dialog#confirm');
    await panel.locator('button[data-action="rollout-pause"]').click();
    await dialog.waitFor({ state: 'visible' });
    await page.fill('#confirm-reason', 'look first');
    await page.click('#confirm-ok');
    await panel.locator('.rollout-state', { hasText: 'paused' }).waitFor();
    assert.equal((await p.admin('GET', '/v1/apps/shop/rollouts/current')).body.reason, 'paused by tester: look first');
    assert.equal(await panel.locator('button[data-action="rollout-pause"]').isHidden(), true);

    await panel.locator('button[data-action="rollout-resume"]').click();
    await dialog.waitFor({ state: 'visible' });
    await page.click('#confirm-ok');
    await panel.locator('.rollout-state', { hasText: 'running' }).waitFor();

    // cancelling changes nothing
    await panel.locator('button[data-action="rollout-abort"]').click();
    await dialog.waitFor({ state: 'visible' });
    await page.click('#confirm-cancel');
    await dialog.waitFor({ state: 'hidden' });
    assert.equal((await p.admin('GET', '/v1/apps/shop/rollouts/current')).body.state, 'running');

    await panel.locator('button[data-action="rollout-abort"]').click();
    await dialog.waitFor({ state: 'visible' });
    await page.click('#confirm-ok');
    await panel.locator('.rollout-state', { hasText: 'aborted' }).waitFor();
    await shop.locator('.badge.active', { hasText: 'active: blue' }).waitFor();
    assert.equal(await panel.locator('button[data-action="rollout-promote"]').isHidden(), true, 'no controls once it ended');
    await mkdir(OUT, { recursive: true });
    await page.screenshot({ path: new URL('rollout-panel.png', OUT).pathname, fullPage: true });
    assert.deepEqual(problems, [], 'no console errors or CSP violations');
  });
});
