import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { launchPage } from '../helpers/browser.ts';
import { createTestCa, type TestCa } from '../helpers/certs.ts';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

describe('Chromium loads a page over https from the TLS port', () => {
  let ca: TestCa;
  let blue: Upstream;
  let p: TestProxy;
  let browser: Browser;
  let page: Page;
  let tlsPort: number;

  before(async () => {
    ca = createTestCa();
    const shop = ca.issue('shop', ['shop.test']);
    blue = await startUpstream('blue', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', connection: 'keep-alive', 'keep-alive': 'timeout=5' });
      res.end('<!doctype html><title>shop</title><h1 id="v">blue 1.0.0</h1>');
    });
    p = await startProxy({ listen: { host: '127.0.0.1', port: 0, tls: { port: 0, certs: [{ cert: shop.cert, key: shop.key }] } }, apps: [twoPools(blue.url, blue.url)] });
    tlsPort = (p.sy.edge?.listener.server.address() as { port: number }).port;
    // the test CA is not in the browser's store: its errors are ignored by the page's context
    ({ browser, page } = await launchPage({ args: ['--host-resolver-rules=MAP shop.test 127.0.0.1'], context: { ignoreHTTPSErrors: true } }));
  });

  after(async () => {
    await browser?.close();
    await p?.close();
    await blue?.close();
    ca?.close();
  });

  it('gets the page over h2 with the upstream told https', async () => {
    const res = await page.goto(`https://shop.test:${tlsPort}/`);
    assert.equal(res?.status(), 200);
    assert.equal(await page.textContent('#v'), 'blue 1.0.0');
    const protocol = await page.evaluate('performance.getEntriesByType("navigation")[0].nextHopProtocol');
    assert.equal(protocol, 'h2');
    assert.equal(blue.seen.at(-1)?.headers['x-forwarded-proto'], 'https');
    assert.equal((await res?.allHeaders())?.['x-served-by'], 'blue@1.0.0');
  });
});
