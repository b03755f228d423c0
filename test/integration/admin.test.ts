import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { Authenticator } from '../../src/admin/auth.ts';
import { call, startAdmin, TOKEN, type CallOptions } from '../helpers/admin-server.ts';

describe('admin API', () => {
  let t: Awaited<ReturnType<typeof startAdmin>>;
  const api = (method: string, path: string, opts?: CallOptions) => call(t.base, method, path, opts);
  before(async () => {
    t = await startAdmin({ tokens: [{ name: 'ci', token: TOKEN }] }, {
      metrics: { contentType: 'text/plain; version=0.0.4', render: async () => 'switchyard_up 1\n' },
      routes: [
        { method: 'GET', path: '/v1/apps/:app/echo', handler: (ctx) => ({ json: { app: ctx.params.app, actor: ctx.actor } }) },
        { method: 'GET', path: '/v1/boom', handler: () => { throw new Error('kaput'); } },
      ],
      fallback: (_req, res, url) => {
        if (url.pathname !== '/') return false;
        res.writeHead(200, { 'content-type': 'text/html' }).end('<h1>switchyard</h1>');
        return true;
      },
    });
  });
  after(() => t.close());

  it('answers healthz and readyz without a token, readyz 503 when not ready', async () => {
    assert.deepEqual((await api('GET', '/healthz', { token: null })).json, { status: 'ok' });
    const ready = await api('GET', '/readyz', { token: null });
    assert.deepEqual([ready.status, ready.json], [200, { status: 'ready', details: { apps: 2 } }]);
    t.setReady(false);
    assert.equal((await api('GET', '/readyz', { token: null })).status, 503);
    t.setReady(true);
  });

  it('lists every app in config order with its pools, counts and instances', async () => {
    t.counts.set('shop', 'blue', { inflight: 3, upgraded: 1 });
    const { status, json } = await api('GET', '/v1/apps');
    assert.equal(status, 200);
    assert.deepEqual(json.apps.map((a: { app: string }) => a.app), ['shop', 'blog']);
    const shop = json.apps[0];
    assert.deepEqual(Object.keys(shop.pools), ['blue', 'green']);
    assert.deepEqual(shop.pools.blue, { version: '1.0.0', targets: ['http://127.0.0.1:9001'], weight: 100, inflight: 3, upgraded: 1, pinned: 0, drained: false });
    assert.deepEqual(shop.pools.green, { version: '2.0.0', targets: ['http://127.0.0.1:9002'], weight: 0, inflight: 0, upgraded: 0, pinned: 0, drained: true });
    assert.deepEqual([shop.weights, shop.active, shop.instances], [{ blue: 100, green: 0 }, 'blue', { applied: 1, total: 1 }]);
    t.counts.set('shop', 'blue', { inflight: 0, upgraded: 0 });
  });

  it('serves one app with its revision as ETag and answers 304 to a matching If-None-Match', async () => {
    const first = await api('GET', '/v1/apps/shop');
    assert.equal(first.headers.etag, `"${first.json.revision}"`);
    const same = await api('GET', '/v1/apps/shop', { headers: { 'if-none-match': first.headers.etag as string } });
    assert.deepEqual([same.status, same.json], [304, '']);
    assert.equal((await api('GET', '/v1/apps/shop', { headers: { 'if-none-match': '"999"' } })).status, 200);
  });

  it('switches all traffic to a pool and answers the new state with its ETag', async () => {
    const before = (await api('GET', '/v1/apps/shop')).json;
    const { status, headers, json } = await api('POST', '/v1/apps/shop/switch', { body: { to: 'green', reason: 'release 2.0.0' } });
    assert.equal(status, 200);
    assert.deepEqual([json.revision, json.weights, json.active, json.updatedBy, json.reason], [before.revision + 1, { blue: 0, green: 100 }, 'green', 'ci', 'release 2.0.0']);
    assert.equal(headers.etag, `"${json.revision}"`);
  });

  it('sets a canary split with two-decimal weights', async () => {
    const { status, json } = await api('PUT', '/v1/apps/shop/weights', { body: { weights: { blue: 99.95, green: 0.05 }, reason: 'canary' } });
    assert.deepEqual([status, json.weights, json.active], [200, { blue: 99.95, green: 0.05 }, null]);
  });

  it('rejects bad bodies with 400 details naming the field', async () => {
    const cases: [string, string, unknown, { path: string; message: RegExp }][] = [
      ['PUT', 'weights', { weights: { blue: 90, green: 20 } }, { path: 'weights', message: /^must sum to 100, got 110$/ }],
      ['PUT', 'weights', { weights: { blue: 89.995, green: 10.005 } }, { path: 'weights.blue', message: /^at most two decimals$/ }],
      ['PUT', 'weights', { weights: { blue: 100, purple: 0 } }, { path: 'weights.purple', message: /unknown pool/ }],
      ['PUT', 'weights', { weights: { blue: '100' } }, { path: 'weights.blue', message: /expected number/ }],
      ['POST', 'switch', { to: 'green', colour: 'red' }, { path: 'colour', message: /^unknown field$/ }],
      ['POST', 'switch', { to: 7 }, { path: 'to', message: /expected string/ }],
      ['POST', 'switch', { to: 'green', force: 'yes' }, { path: 'force', message: /expected boolean/ }],
      ['POST', 'rollback', [], { path: '(root)', message: /expected object/ }],
    ];
    for (const [method, action, body, want] of cases) {
      const { status, json } = await api(method, `/v1/apps/shop/${action}`, { body });
      assert.equal(status, 400, JSON.stringify(body));
      assert.equal(json.error.code, 'BAD_REQUEST');
      assert.equal(json.error.details[0].path, want.path, JSON.stringify(json));
      assert.match(json.error.details[0].message, want.message);
    }
    const weights = await api('PUT', '/v1/apps/shop/weights', { body: { weights: { blue: 90, green: 20 } } });
    assert.equal(weights.json.error.message, 'weights: must sum to 100, got 110');
    const badJson = await api('POST', '/v1/apps/shop/switch', { raw: '{"to": ', headers: { 'content-type': 'application/json' } });
    assert.deepEqual([badJson.status, badJson.json.error.code], [400, 'BAD_REQUEST']);
  });

  it('refuses a missing or unknown token with 401 and a malformed If-Match with 400', async () => {
    const missing = await api('GET', '/v1/apps', { token: null });
    assert.deepEqual([missing.status, missing.json.error.code, missing.headers['www-authenticate']], [401, 'UNAUTHORIZED', 'Bearer realm="switchyard"']);
    assert.equal((await api('GET', '/v1/apps', { token: 'not-a-token-of-ours-xxxxxxxx' })).status, 401);
    assert.equal((await api('GET', '/v1/nowhere', { token: null })).status, 401, 'unknown /v1 paths are not revealed before auth');
    const ifMatch = await api('POST', '/v1/apps/shop/switch', { body: { to: 'blue' }, headers: { 'if-match': 'W/"3"' } });
    assert.deepEqual([ifMatch.status, ifMatch.json.error.details[0].path], [400, 'If-Match']);
  });

  it('answers 404 for an unknown app, pool or path and 405 for a wrong method', async () => {
    const codes = async (method: string, path: string, body?: unknown) => {
      const r = await api(method, path, body === undefined ? {} : { body });
      return [r.status, r.json.error?.code];
    };
    assert.deepEqual(await codes('GET', '/v1/apps/nope'), [404, 'UNKNOWN_APP']);
    assert.deepEqual(await codes('POST', '/v1/apps/nope/switch', { to: 'green' }), [404, 'UNKNOWN_APP']);
    assert.deepEqual(await codes('POST', '/v1/apps/shop/switch', { to: 'purple' }), [404, 'UNKNOWN_POOL']);
    assert.deepEqual(await codes('GET', '/v1/apps/shop/pools/purple/drain'), [404, 'UNKNOWN_POOL']);
    assert.deepEqual(await codes('GET', '/v1/nowhere'), [404, 'NOT_FOUND']);
    assert.deepEqual(await codes('GET', '/nowhere'), [404, 'NOT_FOUND']);
    const wrong = await api('PATCH', '/v1/apps/shop');
    assert.deepEqual([wrong.status, wrong.json.error.code, wrong.headers.allow], [405, 'METHOD_NOT_ALLOWED', 'GET, HEAD, PUT, DELETE']);
  });

  it('answers 409 to a rollback with no earlier revision', async () => {
    const { status, json } = await api('POST', '/v1/apps/blog/rollback', { body: {} });
    assert.deepEqual([status, json.error.code], [409, 'NO_EARLIER_REVISION']);
  });

  it('answers 412 with the current state to a stale If-Match, and writes on a matching one', async () => {
    const current = (await api('GET', '/v1/apps/shop')).json;
    const stale = await api('POST', '/v1/apps/shop/switch', { body: { to: 'blue' }, headers: { 'if-match': `"${current.revision - 1}"` } });
    assert.deepEqual([stale.status, stale.json.error.code, stale.headers.etag], [412, 'STALE_REVISION', `"${current.revision}"`]);
    assert.equal(stale.json.error.details.currentRevision, current.revision);
    assert.deepEqual(stale.json.error.details.current.weights, current.weights);
    const fresh = await api('POST', '/v1/apps/shop/switch', { body: { to: 'blue' }, headers: { 'if-match': String(current.revision) } });
    assert.deepEqual([fresh.status, fresh.json.revision], [200, current.revision + 1]);
  });

  it('refuses a body over 64 KiB with 413 and a write that is not JSON with 415', async () => {
    const big = await api('PUT', '/v1/apps/shop/weights', { raw: `{"reason":"${'x'.repeat(70 * 1024)}"}`, headers: { 'content-type': 'application/json' } });
    assert.deepEqual([big.status, big.json.error.code], [413, 'BODY_TOO_LARGE']);
    const text = await api('POST', '/v1/apps/shop/switch', { raw: 'to=green', headers: { 'content-type': 'text/plain' } });
    assert.deepEqual([text.status, text.json.error.code], [415, 'UNSUPPORTED_MEDIA_TYPE']);
    const charset = await api('POST', '/v1/apps/shop/switch', { body: { to: 'blue' }, headers: { 'content-type': 'application/json; charset=utf-8' } });
    assert.equal(charset.status, 200);
  });

  it('answers 503 when the store cannot be written and keeps routing on the last state', async () => {
    const before = (await api('GET', '/v1/apps/shop')).json;
    const snapshot = t.controller.snapshot;
    t.store.failWrites = true;
    try {
      const { status, json } = await api('PUT', '/v1/apps/shop/weights', { body: { weights: { blue: 50, green: 50 } } });
      assert.deepEqual([status, json.error.code], [503, 'STORE_UNAVAILABLE']);
    } finally {
      t.store.failWrites = false;
    }
    assert.equal(t.controller.snapshot, snapshot);
    const after = (await api('GET', '/v1/apps/shop')).json;
    assert.deepEqual([after.revision, after.weights], [before.revision, before.weights]);
  });

  it('rolls back to the stable routing before the release as a new revision, and lists history newest first', async () => {
    await api('PUT', '/v1/apps/shop/weights', { body: { weights: { blue: 80, green: 20 } } });
    const canary = (await api('PUT', '/v1/apps/shop/weights', { body: { weights: { blue: 60, green: 40 } } })).json;
    const { status, json } = await api('POST', '/v1/apps/shop/rollback', { body: { reason: 'errors' } });
    assert.deepEqual([status, json.revision, json.weights, json.reason], [200, canary.revision + 1, { blue: 100, green: 0 }, 'errors']);
    assert.deepEqual(json.rollback.pools.green, { weight: { now: 40, then: 0 }, version: { now: '2.0.0', then: '2.0.0' } });
    const history = await api('GET', '/v1/apps/shop/history?limit=3');
    assert.equal(history.status, 200);
    assert.deepEqual(history.json.entries.map((e: { revision: number }) => e.revision), [json.revision, json.revision - 1, json.revision - 2]);
    assert.deepEqual(history.json.entries[0], { revision: json.revision, weights: { blue: 100, green: 0 }, action: 'rollback', by: 'ci', reason: 'errors', at: json.updatedAt, summary: 'rollback: blue 100 %, green 0 %', pools: { blue: { version: '1.0.0', targets: 1 }, green: { version: '2.0.0', targets: 1 } }, revert: 'rollback' });
    for (const limit of ['0', '100001', 'ten', '-1']) {
      const bad = await api('GET', `/v1/apps/shop/history?limit=${limit}`);
      assert.deepEqual([bad.status, bad.json.error.details[0].path], [400, 'limit'], limit);
    }
    // paged: the answer names the offset of the next page, null after the last
    assert.equal(history.json.next, 3);
    const page = await api('GET', '/v1/apps/shop/history?limit=2&offset=1');
    assert.deepEqual(page.json.entries.map((e: { revision: number }) => e.revision), [json.revision - 1, json.revision - 2]);
    const rest = await api('GET', `/v1/apps/shop/history?limit=100000&offset=${page.json.next}`);
    assert.equal(rest.json.next, null);
    assert.equal(rest.json.entries.at(-1).action, 'initial');
    assert.equal((await api('GET', '/v1/apps/shop/history?offset=x')).json.error.details[0].path, 'offset');
    const all = await api('GET', '/v1/apps/shop/history');
    assert.equal(all.json.entries.at(-1).action, 'initial');
  });

  it('reports drain figures with the drain deadline, and drained once weight and counts are 0', async () => {
    const state = (await api('POST', '/v1/apps/shop/switch', { body: { to: 'green' } })).json;
    t.counts.set('shop', 'blue', { inflight: 2, upgraded: 1, pinned: 4 });
    const busy = await api('GET', '/v1/apps/shop/pools/blue/drain?instances=1');
    assert.equal(busy.status, 200);
    assert.deepEqual({ ...busy.json, remainingMs: undefined }, {
      pool: 'blue', weight: 0, inflight: 2, upgraded: 1, pinned: 4, drainingSince: state.updatedAt,
      deadline: new Date(Date.parse(state.updatedAt) + 5 * 60_000).toISOString(), remainingMs: undefined, drained: false, reason: '2 request(s) in flight; 1 upgraded connection(s) open',
      blockedBy: { by: 'drain-timeout', until: new Date(Date.parse(state.updatedAt) + 5 * 60_000).toISOString(), remainingMs: busy.json.remainingMs },
      instances: { 'instance-a': { inflight: 2, upgraded: 1, pinned: 4 } },
    });
    t.counts.set('shop', 'blue', { inflight: 0, upgraded: 0, pinned: 0 });
    assert.equal((await api('GET', '/v1/apps/shop/pools/blue/drain')).json.drained, true);
    const live = (await api('GET', '/v1/apps/shop/pools/green/drain')).json;
    assert.deepEqual([live.weight, live.drainingSince, live.deadline, live.drained, live.reason], [100, null, null, false, 'weight 100%']);
  });

  it('serves /metrics without a token by default', async () => {
    const { status, headers, json } = await api('GET', '/metrics', { token: null });
    assert.deepEqual([status, headers['content-type'], json], [200, 'text/plain; version=0.0.4', 'switchyard_up 1\n']);
  });

  it('plugs in extra routes behind auth, a fallback before the 404, and turns a throw into a 500', async () => {
    assert.deepEqual((await api('GET', '/v1/apps/shop/echo')).json, { app: 'shop', actor: 'ci' });
    assert.equal((await api('GET', '/v1/apps/shop/echo', { token: null })).status, 401);
    assert.equal((await api('GET', '/', { token: null })).json, '<h1>switchyard</h1>');
    const boom = await api('GET', '/v1/boom');
    assert.deepEqual([boom.status, boom.json], [500, { error: { code: 'INTERNAL', message: 'internal error' } }]);
    assert.equal((await api('GET', '/healthz')).status, 200);
  });
});

describe('admin API login limits and metrics auth', () => {
  let t: Awaited<ReturnType<typeof startAdmin>>;
  let clock = Date.parse('2030-01-01T00:00:00Z');
  before(async () => {
    t = await startAdmin({ tokens: [{ name: 'ci', token: TOKEN }], maxFailedLogins: 3, metricsAuth: true }, { now: () => clock, metrics: { contentType: 'text/plain', render: async () => 'up 1\n' } });
  });
  after(() => t.close());

  it('asks for a token on /metrics when metricsAuth is set', async () => {
    assert.equal((await call(t.base, 'GET', '/metrics', { token: null })).status, 401);
    assert.equal((await call(t.base, 'GET', '/metrics')).status, 200);
  });

  it('answers 429 with Retry-After once an address has more than maxFailedLogins failures in a sliding minute', async () => {
    const wrong = () => call(t.base, 'GET', '/v1/apps', { token: 'wrong-token-xxxxxxxxxxxx' });
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await wrong()).status);
    assert.deepEqual(statuses, [401, 401, 401, 429]);
    const blocked = await call(t.base, 'GET', '/v1/apps', { token: null });
    assert.deepEqual([blocked.status, blocked.json.error.code, blocked.headers['retry-after']], [429, 'TOO_MANY_FAILED_LOGINS', '60']);
    assert.equal((await call(t.base, 'GET', '/healthz', { token: null })).status, 200, 'unauthenticated paths stay open');
    clock += 30_000;
    assert.equal((await wrong()).headers['retry-after'], '30');
    clock += 30_001;
    assert.equal((await wrong()).status, 401, 'the failures have left the window');
  });

  it('still lets a valid token in from an address the failed-login limit throttles, so a local process cannot lock operators out', async () => {
    clock += 120_000;
    const wrong = () => call(t.base, 'GET', '/v1/apps', { token: 'wrong-token-xxxxxxxxxxxx' });
    for (let i = 0; i < 6; i++) await wrong();
    assert.equal((await wrong()).status, 429, 'the address is throttled');
    const read = await call(t.base, 'GET', '/v1/apps');
    assert.deepEqual([read.status, read.json.apps.length], [200, 2]);
    const write = await call(t.base, 'POST', '/v1/apps/shop/switch', { body: { to: 'green' } });
    assert.deepEqual([write.status, write.json.updatedBy], [200, 'ci']);
    assert.equal((await wrong()).status, 429, 'failures are still throttled after a valid login');
  });

  it('keeps the failed-login memory bounded however many addresses fail', () => {
    const auth = new Authenticator({ tokens: [{ name: 'ci', token: TOKEN }], maxFailedLogins: 3, maxTracked: 100 });
    for (let i = 0; i < 1000; i++) {
      auth.authenticate({ socket: { remoteAddress: `10.0.${i >> 8}.${i & 255}` }, headers: { authorization: 'Bearer nope' } } as unknown as IncomingMessage);
    }
    assert.ok(auth.tracked <= 100, String(auth.tracked));
  });
});

describe('admin API without tokens (loopback only)', () => {
  let t: Awaited<ReturnType<typeof startAdmin>>;
  before(async () => {
    t = await startAdmin({});
  });
  after(() => t.close());

  it('accepts requests without a token as anonymous', async () => {
    const { status, json } = await call(t.base, 'POST', '/v1/apps/shop/switch', { token: null, body: { to: 'green' } });
    assert.deepEqual([status, json.updatedBy], [200, 'anonymous']);
  });

  it('refuses a body-less POST without a Content-Type (what a cross-site form can send) with 415, and takes an empty application/json body as {}', async () => {
    const bare = await call(t.base, 'POST', '/v1/apps/shop/rollback', { token: null });
    assert.deepEqual([bare.status, bare.json.error.code], [415, 'UNSUPPORTED_MEDIA_TYPE']);
    const json = await call(t.base, 'POST', '/v1/apps/shop/rollback', { token: null, raw: '', headers: { 'content-type': 'application/json' } });
    assert.deepEqual([json.status, json.json.weights.blue], [200, 100]);
  });

  it('answers 404 on /metrics when no metrics are wired', async () => {
    const { status, json } = await call(t.base, 'GET', '/metrics', { token: null });
    assert.deepEqual([status, json.error.code], [404, 'NOT_FOUND']);
  });
});
