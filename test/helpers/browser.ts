import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chromium, type Browser, type BrowserContextOptions, type Page } from 'playwright-core';
import { TOKEN } from './proxy.ts';

/** Debian's Chromium, or $SWITCHYARD_CHROMIUM (see test/e2e/dashboard.test.ts). */
export const CHROMIUM = process.env['SWITCHYARD_CHROMIUM'] ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export interface LaunchOptions {
  /** Chromium switches added to CHROMIUM_ARGS (e.g. `--host-resolver-rules=…`). */
  args?: string[];
  /** Options of the page's browser context (viewport, ignoreHTTPSErrors, colorScheme, …). */
  context?: BrowserContextOptions;
}

/**
 * A headless Chromium page whose console errors and page errors are collected in `problems`.
 * Every browser test launches through here: Debian's Chromium, never a downloaded browser.
 */
export async function launchPage(opts: LaunchOptions = {}): Promise<{ browser: Browser; page: Page; problems: string[] }> {
  assert.ok(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM}: install it (Debian: apt-get install -y chromium) or set SWITCHYARD_CHROMIUM; the tests do not download browsers`);
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...CHROMIUM_ARGS, ...(opts.args ?? [])], timeout: 30_000 });
  const page = await (await browser.newContext(opts.context)).newPage();
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  return { browser, page, problems };
}

/** `launchPage`, then the dashboard at `adminUrl` connected with the test token. */
export async function openDashboard(adminUrl: string, viewport = { width: 1280, height: 900 }): Promise<{ browser: Browser; page: Page; problems: string[] }> {
  const opened = await launchPage({ context: { viewport } });
  await opened.page.goto(adminUrl);
  await opened.page.fill('#token', TOKEN);
  await opened.page.click('#connect');
  return opened;
}
