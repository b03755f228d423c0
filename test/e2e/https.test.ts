import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser } from 'playwright-core';
import { createTestCa, type TestCa } from '../helpers/certs.ts';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

const CHROMIUM = process.env['SWITCHYARD_CHROMIUM'] ?? '/usr/bin/chromium';

describe('Chromium loads a page over https from the TLS port', () => {
  let ca: TestCa;
  let blue: Upstream;
  let p: TestProxy;
  let browser: Browser;
  let tlsPort: number;

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM}: install it (Debian: apt-get install -y chromium) or set SWITCHYARD_CHROMIUM; this test does not download browsers`);
    ca = createTestCa();
    const shop = ca.issue('shop', ['shop.test']);
    blue = await startUpstream('blue', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', connection: 'keep-alive', 'keep-alive': 'timeout=5' });
      res.end('<!doctype html><title>shop</title><h1 id="v">blue 1.0.0</h1>');
    });
    p = await startProxy({ listen: { host: '127.0.0.1', port: 0, tls: { port: 0, certs: [{ cert: shop.cert, key: shop.key }] } }, apps: [twoPools(blue.url, blue.url)] });
    tlsPort = (p.sy.edge?.listener.server.address() as { port: number }).port;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // the test CA is not in the browser's store: its errors are ignored by the context below
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', `--host-resolver-rules=MAP shop.test 127.0.0.1`],
      timeout: 30_000,
    });
  });

  after(async () => {
    await browser?.close();
    await p?.close();
    await blue?.close();
    ca?.close();
  });

  it('gets the page over h2 with the upstream told https', async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    const res = await page.goto(`https://shop.test:${tlsPort}/`);
    assert.equal(res?.status(), 200);
    assert.equal(await page.textContent('#v'), 'blue 1.0.0');
    const protocol = await page.evaluate('performance.getEntriesByType("navigation")[0].nextHopProtocol');
    assert.equal(protocol, 'h2');
    assert.equal(blue.seen.at(-1)?.headers['x-forwarded-proto'], 'https');
    assert.equal((await res?.allHeaders())?.['x-served-by'], 'blue@1.0.0');
    await context.close();
  });
});
