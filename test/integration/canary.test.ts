import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { previewSignature } from '../../src/routing/snapshot.ts';
import { startProxy, TOKEN, twoPools } from '../helpers/proxy.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

const PREVIEW_SECRET = 'preview-secret-0123456789';
const AFFINITY_SECRET = 'affinity-secret-0123456789';

describe('canary cohorts', () => {
  let blue: Upstream;
  let green: Upstream;
  before(async () => {
    blue = await startUpstream('blue');
    green = await startUpstream('green');
  });
  after(async () => {
    await blue.close();
    await green.close();
  });

  const sticky = () => twoPools(blue.url, green.url, { sticky: { key: ['header:x-user-id', 'cookie:session', 'ip'] } });

  it('keeps each user on one version across requests and across a restart, and whereis agrees', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'switchyard-sticky-'));
    try {
      const p = await startProxy({ apps: [sticky()] }, { dir });
      const w = await p.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 70, green: 30 } });
      assert.equal(w.status, 200);
      const first = new Map<string, string>();
      for (let i = 0; i < 200; i++) first.set(`user-${i}`, (await p.get('/', { 'x-user-id': `user-${i}` })).servedBy ?? '');
      const greens = [...first.values()].filter((s) => s.startsWith('green')).length;
      assert.ok(greens > 30 && greens < 90, `${greens} of 200 users on green at 30 %`);
      for (let i = 0; i < 200; i += 7) assert.equal((await p.get('/', { 'x-user-id': `user-${i}` })).servedBy, first.get(`user-${i}`));
      for (let i = 0; i < 50; i++) {
        const where = await p.admin('GET', `/v1/apps/shop/whereis?key=user-${i}`);
        assert.equal(where.status, 200);
        assert.ok(where.body.bucket >= 0 && where.body.bucket < 10000);
        assert.equal(`${where.body.pool}@${where.body.pool === 'blue' ? '1.0.0' : '2.0.0'}`, first.get(`user-${i}`));
      }
      await p.close();
      const q = await startProxy({ apps: [sticky()] }, { dir });
      try {
        for (let i = 0; i < 200; i += 3) assert.equal((await q.get('/', { 'x-user-id': `user-${i}` })).servedBy, first.get(`user-${i}`));
        // the cookie source is used when the header is absent
        const c = await q.get('/', { cookie: 'theme=dark; session=user-5' });
        assert.equal(c.servedBy, first.get('user-5'));
      } finally {
        await q.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true, maxRetries: 5 });
    }
  });

  it('a ramp 5 → 25 → 100 never moves a green user back to blue', async (t) => {
    const p = await startProxy({ apps: [sticky()] });
    t.after(async () => {
      await p.close();
    });
    const onGreen = new Set<number>();
    for (const pct of [5, 25, 60, 100]) {
      await p.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 100 - pct, green: pct } });
      for (let i = 0; i < 300; i++) {
        const green = (await p.get('/', { 'x-user-id': `u${i}` })).servedBy?.startsWith('green') === true;
        if (onGreen.has(i)) assert.ok(green, `user u${i} moved back to blue at ${pct} %`);
        if (green) onGreen.add(i);
      }
    }
    assert.equal(onGreen.size, 300);
  });

  it('accepts weights down to 0.01 % and names the field of a bad one', async (t) => {
    const p = await startProxy({ apps: [sticky()] });
    t.after(async () => {
      await p.close();
    });
    const ok = await p.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 99.99, green: 0.01 } });
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.body.weights, { blue: 99.99, green: 0.01 });
    const bad = await p.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 99.999, green: 0.001 } });
    assert.equal(bad.status, 400);
    assert.match(bad.body.error.message, /weights\.blue: at most two decimals/);
    const sum = await p.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 90, green: 20 } });
    assert.equal(sum.status, 400);
    assert.match(sum.body.error.message, /weights: must sum to 100, got 110/);
    const where = await p.admin('GET', '/v1/apps/shop/whereis');
    assert.equal(where.status, 400);
  });
});

describe('preview', () => {
  it('a signed header reaches a pool at 0 %; a forged one routes normally', async (t) => {
    const blue = await startUpstream('blue');
    const green = await startUpstream('green');
    const p = await startProxy({ apps: [twoPools(blue.url, green.url, { preview: { secret: PREVIEW_SECRET } })] });
    t.after(async () => {
      await p.close();
      await blue.close();
      await green.close();
    });
    const good = `green.${previewSignature(PREVIEW_SECRET, 'shop', 'green')}`;
    assert.equal((await p.get('/', { 'x-switchyard-preview': good })).servedBy, 'green@2.0.0');
    assert.equal((await p.get('/', { 'x-switchyard-preview': `green.${'ab'.repeat(32)}` })).servedBy, 'blue@1.0.0');
    assert.equal((await p.get('/', { 'x-switchyard-preview': 'green' })).servedBy, 'blue@1.0.0');
    assert.equal((await p.get('/')).servedBy, 'blue@1.0.0');
  });
});

describe('affinity', () => {
  it('keeps a session on blue after a switch until the window ends, then moves it', async (t) => {
    const blue = await startUpstream('blue');
    const green = await startUpstream('green');
    let clock = Date.parse('2026-06-01T12:00:00Z');
    const p = await startProxy({ apps: [twoPools(blue.url, green.url, { affinity: { secret: AFFINITY_SECRET, window: '10m' } })] }, { now: () => clock });
    t.after(async () => {
      await p.close();
      await blue.close();
      await green.close();
    });
    const first = await p.get('/');
    assert.equal(first.servedBy, 'blue@1.0.0');
    const setCookie = String(first.headers['set-cookie']);
    assert.match(setCookie, /^sy_pin=blue\.1\.\d+\.[\w-]+; Path=\/; Max-Age=\d+; HttpOnly; SameSite=Lax$/);
    const pin = setCookie.split(';')[0] as string;

    clock += 1000;
    assert.equal((await p.admin('POST', '/v1/apps/shop/switch', { to: 'green' })).status, 200);
    clock += 60_000;
    const held = await p.get('/', { cookie: pin });
    assert.equal(held.servedBy, 'blue@1.0.0');
    assert.equal(held.headers['set-cookie'], undefined, 'a pinned response keeps its pin');
    assert.equal((await p.get('/')).servedBy, 'green@2.0.0');
    assert.equal(p.sy.runtime.pool('shop', 'blue')?.counts(clock).pinned, 1);

    // forged pins are ignored and replaced
    const forged = await p.get('/', { cookie: pin.slice(0, -3) + 'AAA' });
    assert.equal(forged.servedBy, 'green@2.0.0');
    assert.match(String(forged.headers['set-cookie']), /^sy_pin=green\./);

    clock += 10 * 60_000;
    const moved = await p.get('/', { cookie: pin });
    assert.equal(moved.servedBy, 'green@2.0.0');
    assert.match(String(moved.headers['set-cookie']), /^sy_pin=green\.2\./);
  });
});

describe('affinity never bends the weights', () => {
  let blue: Upstream;
  let green: Upstream;
  before(async () => {
    blue = await startUpstream('blue');
    green = await startUpstream('green');
  });
  after(async () => {
    await blue.close();
    await green.close();
  });

  /** A browser: keeps its session cookie and whatever pin the proxy sets. */
  const browser = (session: string) => {
    let pin = '';
    return async (p: Awaited<ReturnType<typeof startProxy>>) => {
      const r = await p.get('/', { cookie: `session=${session}${pin === '' ? '' : `; ${pin}`}` });
      const set = r.headers['set-cookie'];
      if (typeof set === 'string') pin = set.split(';')[0] as string;
      return r;
    };
  };

  it('at 50/50 with sticky, cookie-keeping browsers pinned to blue go where whereis says, and half of them reach green', async (t) => {
    const p = await startProxy({ apps: [twoPools(blue.url, green.url, { sticky: { key: ['cookie:session'] }, affinity: { secret: AFFINITY_SECRET, window: '10m' } })] });
    t.after(async () => {
      await p.close();
    });
    // 40 browsers: the salt is random, so the count on green is binomial (40, ½); outside 8..32 about once in 24,000 runs (20 browsers in 4..16: once in 360)
    const browsers = Array.from({ length: 40 }, (_, i) => ({ key: `browser-${i}`, get: browser(`browser-${i}`) }));
    for (const b of browsers) assert.equal((await b.get(p)).servedBy, 'blue@1.0.0'); // every one now holds a blue pin
    assert.equal((await p.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 50, green: 50 } })).status, 200);
    let onGreen = 0;
    let whereGreen = 0;
    for (const b of browsers) {
      const where = (await p.admin('GET', `/v1/apps/shop/whereis?key=${b.key}`)).body.pool as string;
      if (where === 'green') whereGreen++;
      for (let k = 0; k < 3; k++) {
        const r = await b.get(p);
        assert.equal(r.servedBy?.split('@')[0], where, `${b.key}: whereis says ${where}`);
      }
      if (where === 'green') onGreen++;
    }
    assert.equal(onGreen, whereGreen);
    assert.ok(onGreen >= 8 && onGreen <= 32, `${onGreen} of 40 browsers on green at 50 %`);
    assert.equal(p.sy.runtime.pool('shop', 'blue')?.counts(Date.now()).pinned, 0, 'no request was routed by a pin');
  });

  it('a pin to a draining pool whose targets are all down falls back to the weights, never a 503', async (t) => {
    const doomed = await startUpstream('blue');
    const p = await startProxy({ apps: [twoPools(doomed.url, green.url, { affinity: { secret: AFFINITY_SECRET, window: '10m' }, health: { interval: '100ms', timeout: '2s', fall: 2, rise: 1 } })] });
    // blue is taken down by closing it (refused at once: two checks); green, healthy, is never
    // flagged by a slow check on a loaded machine (a 100 ms timeout and one miss could)
    t.after(async () => {
      await p.close();
    });
    const b = browser('x');
    await p.admin('GET', '/v1/apps/shop'); // the first health round
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await b(p)).servedBy, 'blue@1.0.0');
    assert.equal((await p.admin('POST', '/v1/apps/shop/switch', { to: 'green' })).status, 200);
    assert.equal((await b(p)).servedBy, 'blue@1.0.0', 'the session finishes on blue while blue can serve');
    await doomed.close(); // blue retired
    for (let i = 0; ; i++) {
      const s = await p.admin('GET', '/v1/apps/shop');
      if (s.body.pools.blue.targetStates?.[0]?.state === 'down') break;
      assert.ok(i < 100, 'blue never seen down');
      await new Promise((r) => setTimeout(r, 50));
    }
    for (let i = 0; i < 5; i++) {
      const r = await b(p);
      assert.equal(r.status, 200);
      assert.equal(r.servedBy, 'green@2.0.0');
    }
  });

  it('drain says not drained while pins to the pool can still route, with the pinned figure and why, and drained once the window closes', async (t) => {
    let clock = Date.parse('2026-06-01T12:00:00Z');
    const p = await startProxy({ apps: [twoPools(blue.url, green.url, { affinity: { secret: AFFINITY_SECRET, window: '10m' } })] }, { now: () => clock });
    t.after(async () => {
      await p.close();
    });
    const b = browser('y');
    assert.equal((await b(p)).servedBy, 'blue@1.0.0');
    clock += 1000;
    assert.equal((await p.admin('POST', '/v1/apps/shop/switch', { to: 'green' })).status, 200);
    clock += 1000;
    for (let i = 0; i < 7; i++) assert.equal((await b(p)).servedBy, 'blue@1.0.0');
    const d = (await p.admin('GET', '/v1/apps/shop/pools/blue/drain')).body;
    assert.equal(d.inflight, 0);
    assert.equal(d.upgraded, 0);
    assert.equal(d.pinned, 7);
    assert.equal(d.drained, false, 'blue still serves pinned sessions');
    assert.match(d.reason, /affinity pins are honoured until 2026-06-01T12:10:01\.000Z/);
    assert.equal(typeof (await p.admin('GET', '/v1/apps/shop')).body.pools.blue.pinned, 'number');
    // the playbook's `drain --wait` does not say drained while pins can still route there
    const { runCli } = await import('../../src/cli/main.ts');
    let stderr = '';
    const code = await runCli(['drain', 'shop', 'blue', '--wait', '--interval', '50ms', '--timeout', '200ms'], { stdout: { write: () => true }, stderr: { write: (x: string) => ((stderr += x), true) }, env: { SWITCHYARD_ADMIN_URL: p.adminUrl, SWITCHYARD_TOKEN: TOKEN } });
    assert.equal(code, 1);
    // it says at once that the window's end, not its --timeout, decides (issue 23), then times out naming it
    assert.match(stderr, /^note: blue cannot be drained before the affinity window \(sessions pinned to it are still routed there\) until 2026-06-01T12:10:01\.000Z, 9m59s from now; --timeout 200ms ends first \(use --timeout 11m0s\)\nerror: blue not drained after 200ms: affinity pins are honoured until 2026-06-01T12:10:01\.000Z \(7 pinned request\(s\) in the last 60 s\)\n$/);
    clock += 10 * 60_000;
    const after = (await p.admin('GET', '/v1/apps/shop/pools/blue/drain')).body;
    assert.equal(after.drained, true);
    assert.equal(after.reason, null);
    assert.equal((await b(p)).servedBy, 'green@2.0.0');
  });

  it('after a rollback, browsers pinned to the pool it drained go by weight at once and the pool reads drained; after a switch, pins hold again', async (t) => {
    let clock = Date.parse('2026-06-01T12:00:00Z');
    const p = await startProxy({ apps: [twoPools(blue.url, green.url, { affinity: { secret: AFFINITY_SECRET, window: '10m' } })] }, { now: () => clock });
    t.after(async () => {
      await p.close();
    });
    const early = browser('early');
    assert.equal((await early(p)).servedBy, 'blue@1.0.0');
    clock += 1000;
    assert.equal((await p.admin('POST', '/v1/apps/shop/switch', { to: 'green', reason: 'release 2.0.0' })).status, 200);
    clock += 1000;
    const late = browser('late');
    for (let i = 0; i < 3; i++) assert.equal((await late(p)).servedBy, 'green@2.0.0');
    clock += 1000;
    // green is bad: roll back. Its pinned browsers do not stay on it for the window
    const back = await p.admin('POST', '/v1/apps/shop/rollback', { reason: 'green is broken' });
    assert.deepEqual([back.status, back.body.weights], [200, { blue: 100, green: 0 }]);
    clock += 1000;
    assert.equal((await late(p)).servedBy, 'blue@1.0.0', 'a pin to the pool a rollback drained does not hold');
    const d = (await p.admin('GET', '/v1/apps/shop/pools/green/drain')).body;
    assert.deepEqual([d.weight, d.inflight, d.upgraded, d.drained, d.reason], [0, 0, 0, true, null]);
    assert.ok(d.deadline !== null, 'the drain deadline for upgraded connections still runs');
    assert.equal((await p.admin('GET', '/v1/apps/shop')).body.pools.green.drained, true);
    // a later ordinary switch keeps its pins: browsers on blue finish there
    clock += 1000;
    assert.equal((await early(p)).servedBy, 'blue@1.0.0');
    clock += 1000;
    assert.equal((await p.admin('POST', '/v1/apps/shop/switch', { to: 'green', reason: 'fixed 2.0.1' })).status, 200);
    clock += 1000;
    assert.equal((await early(p)).servedBy, 'blue@1.0.0', 'pins after an ordinary switch hold');
    assert.equal((await p.admin('GET', '/v1/apps/shop/pools/blue/drain')).body.drained, false);
  });
});

describe('canary CLI', () => {
  it('`whereis` agrees with routing and `preview-header` prints a header that reaches the pool', async (t) => {
    const { runCli } = await import('../../src/cli/main.ts');
    const blue = await startUpstream('blue');
    const green = await startUpstream('green');
    const p = await startProxy({ apps: [twoPools(blue.url, green.url, { sticky: { key: ['header:x-user-id'] }, preview: { secret: PREVIEW_SECRET } })] });
    const cli = async (...argv: string[]) => {
      let stdout = '';
      const code = await runCli(argv, { stdout: { write: (s: string) => ((stdout += s), true) }, stderr: { write: () => true }, env: { SWITCHYARD_ADMIN_URL: p.adminUrl, SWITCHYARD_TOKEN: (await import('../helpers/proxy.ts')).TOKEN } });
      return { code, stdout: stdout.trim() };
    };
    t.after(async () => {
      await p.close();
      await blue.close();
      await green.close();
    });
    await p.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 50, green: 50 } });
    for (const key of ['alice', 'bob', 'carol', 'dave']) {
      const w = await cli('whereis', 'shop', key);
      assert.equal(w.code, 0);
      const served = (await p.get('/', { 'x-user-id': key })).servedBy?.split('@')[0];
      assert.match(w.stdout, new RegExp(`^${key}: bucket \\d+ → ${served} `));
    }
    await p.admin('POST', '/v1/apps/shop/switch', { to: 'blue' });
    const h = await cli('preview-header', 'shop', 'green');
    assert.equal(h.code, 0);
    const [name, value] = h.stdout.split(': ') as [string, string];
    assert.equal(name, 'x-switchyard-preview');
    assert.equal((await p.get('/', { [name]: value })).servedBy, 'green@2.0.0');
    assert.equal((await cli('preview-header', 'shop', 'purple')).code, 1);
    assert.equal((await cli('whereis', 'shop')).code, 2);
  });
});
