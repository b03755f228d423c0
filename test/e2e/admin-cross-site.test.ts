import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Browser, Page } from 'playwright-core';
import { launchPage } from '../helpers/browser.ts';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

/**
 * A tokenless admin API (the loopback default) and a hostile page in the same real browser: the
 * page tries what a web page can do without CORS (a no-cors fetch, a text/plain form post) and
 * a DNS-rebinding name pointed at the admin port. Nothing may change. See dashboard.test.ts for
 * the Chromium setup (no browser is downloaded).
 */
const REBIND = 'rebind.attacker.test';

describe('a page from another origin cannot drive a tokenless admin API', () => {
  let blue: Upstream;
  let green: Upstream;
  let evil: Upstream;
  let p: TestProxy;
  let browser: Browser;
  let page: Page;

  before(async () => {
    blue = await startUpstream('blue');
    green = await startUpstream('green');
    p = await startProxy({ admin: { host: '127.0.0.1', port: 0 }, apps: [twoPools(blue.url, green.url)] });
    // the attacker's page: another port of the same machine, so even "same-site"
    evil = await startUpstream('evil', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<!doctype html><title>evil</title><p>nothing to see</p>');
    });
    ({ browser, page } = await launchPage({ args: [`--host-resolver-rules=MAP ${REBIND} 127.0.0.1`] }));
  });

  after(async () => {
    await browser?.close();
    await p?.close();
    await blue?.close();
    await green?.close();
    await evil?.close();
  });

  it('refuses a no-cors fetch and a text/plain form post from another origin, and switches nothing', async () => {
    // an earlier revision to roll back to: a body-less POST …/rollback read as {} would write
    assert.equal((await p.admin('POST', '/v1/apps/shop/switch', { to: 'green' })).status, 200);
    const before = (await p.admin('GET', '/v1/apps/shop')).body.revision;
    await page.goto(evil.url);
    const admin = p.adminUrl;
    await page.evaluate(async (base) => {
      await fetch(`${base}/v1/apps/shop/switch`, { method: 'POST', mode: 'no-cors', body: '{"to":"blue"}' });
      await fetch(`${base}/v1/apps/shop/rollback`, { method: 'POST', mode: 'no-cors' });
    }, admin);
    // a form that posts JSON-looking text/plain, the classic CSRF shape
    await page.evaluate((base) => {
      const doc = (globalThis as unknown as { document: { createElement(t: string): Record<string, unknown> & { submit(): void }; body: { append(e: unknown): void } } }).document;
      const form = doc.createElement('form');
      form['method'] = 'POST';
      form['action'] = `${base}/v1/apps/shop/switch`;
      form['enctype'] = 'text/plain';
      const input = doc.createElement('input');
      input['name'] = '{"to":"blue","x":"';
      input['value'] = '"}';
      (form as unknown as { append(e: unknown): void }).append(input);
      doc.body.append(form);
      form.submit();
    }, admin);
    await page.waitForURL(`${admin}/v1/apps/shop/switch`);
    assert.match((await page.textContent('body')) ?? '', /CROSS_ORIGIN_REQUEST|UNSUPPORTED_MEDIA_TYPE/);
    // a bounded window after the refusal was shown, for a write that should not be there
    await sleep(200);
    const state = (await p.admin('GET', '/v1/apps/shop')).body;
    assert.deepEqual([state.revision, state.active], [before, 'green']);
  });

  it('answers nothing to a DNS-rebinding name pointed at the admin port', async () => {
    const port = new URL(p.adminUrl).port;
    const res = await page.goto(`http://${REBIND}:${port}/v1/apps`);
    assert.equal(res?.status(), 403);
    assert.match((await page.textContent('body')) ?? '', /HOST_NOT_ALLOWED/);
    // same origin as far as the browser knows, so its scripts could read the answer: there is none
    const write = await page.evaluate(async () => {
      const r = await fetch('/v1/apps/shop/switch', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"to":"blue"}' });
      return r.status;
    });
    assert.equal(write, 403);
    assert.equal((await p.admin('GET', '/v1/apps/shop')).body.active, 'green');
  });
});
