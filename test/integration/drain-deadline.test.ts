import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { drainBlock } from '../../src/control/drain-deadline.ts';
import { runCliCaptured } from '../helpers/cli.ts';
import { startProxy, twoPools, TOKEN, type TestProxy } from '../helpers/proxy.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

describe('drain names the deadline it waits for', () => {
  it('picks the later of the affinity window and the drain timeout, and only what applies', () => {
    const counts = (inflight: number) => ({ inflight, upgraded: 0, pinned: 0 });
    const now = 1_000_000;
    assert.deepEqual(drainBlock({ weightBp: 500, counts: counts(0), pinsUntil: null, drainDeadline: null, now }), { by: 'weight', until: null, remainingMs: null });
    assert.equal(drainBlock({ weightBp: 0, counts: counts(0), pinsUntil: null, drainDeadline: now + 300_000, now }), null, 'nothing open, no pins: nothing to wait for');
    assert.deepEqual(drainBlock({ weightBp: 0, counts: counts(0), pinsUntil: now + 600_000, drainDeadline: now + 300_000, now }), { by: 'affinity', until: new Date(now + 600_000).toISOString(), remainingMs: 600_000 });
    assert.deepEqual(drainBlock({ weightBp: 0, counts: counts(2), pinsUntil: now + 60_000, drainDeadline: now + 300_000, now }), { by: 'drain-timeout', until: new Date(now + 300_000).toISOString(), remainingMs: 300_000 });
    assert.equal(drainBlock({ weightBp: 0, counts: counts(0), pinsUntil: now - 1, drainDeadline: now + 300_000, now }), null, 'a window that has passed holds nothing');
  });

  describe('with an affinity window longer than the drain timeout', () => {
    let blue: Upstream;
    let green: Upstream;
    let p: TestProxy;
    before(async () => {
      blue = await startUpstream('blue');
      green = await startUpstream('green');
      p = await startProxy({ apps: [twoPools(blue.url, green.url, { affinity: { cookie: 'sy_pin', window: '10m', secret: 'affinity-secret-0123456789' }, drain: { timeout: '5m' } })] });
    });
    after(async () => {
      await p.close();
      await blue.close();
      await green.close();
    });
    const cli = (...argv: string[]) => runCliCaptured(argv, { SWITCHYARD_ADMIN_URL: p.adminUrl, SWITCHYARD_TOKEN: TOKEN, NO_COLOR: '1' });

    it('the API, drain and drain --wait name the affinity window and when it ends, not the drain timeout', async () => {
      const switched = (await p.admin('POST', '/v1/apps/shop/switch', { to: 'green' })).body;
      const v = (await p.admin('GET', '/v1/apps/shop/pools/blue/drain')).body;
      const windowEnd = new Date(Date.parse(switched.updatedAt) + 600_000).toISOString();
      assert.equal(v.drained, false);
      assert.equal(v.blockedBy.by, 'affinity');
      assert.equal(v.blockedBy.until, windowEnd);
      assert.ok(v.blockedBy.remainingMs > 590_000 && v.blockedBy.remainingMs <= 600_000);
      assert.equal(v.deadline, new Date(Date.parse(switched.updatedAt) + 300_000).toISOString(), 'the drain timeout is still shown as the deadline for streams');

      const line = await cli('drain', 'shop', 'blue');
      assert.equal(line.code, 0);
      assert.match(line.stdout, new RegExp(`pins honoured until ${windowEnd.replace(/\./g, '\\.')} \\(in (9m5\\ds|10m0s)\\) \\(affinity window\\); drain timeout `));

      // regression: the Quick start's `drain --wait --timeout 1m` under a 10m window could only fail, saying so only at the end
      const wait = await cli('drain', 'shop', 'blue', '--wait', '--timeout', '300ms', '--interval', '100ms');
      assert.equal(wait.code, 1);
      assert.match(wait.stderr, /^note: blue cannot be drained before the affinity window \(sessions pinned to it are still routed there\) until \S+, (9m5\ds|10m0s) from now; --timeout 300ms ends first \(use --timeout 11m0s\)\n/);
      assert.match(wait.stderr, /\nerror: blue not drained after 300ms: affinity pins are honoured until \S+ \(0 pinned request\(s\) in the last 60 s\)\n$/);
    });
  });
});
