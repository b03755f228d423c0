import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { nextSecond } from '../helpers/clock.ts';
import { HOSTILE_REQUESTS } from '../fixtures/hostile-requests.ts';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { rawRequest, statusesOf } from '../helpers/raw.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

// listen.h2c puts a preface check in front of HTTP/1.1 (src/dataplane/h2c.ts): the corpus must get the same answers through it
for (const h2c of [false, true])
describe(`hostile requests corpus (test/fixtures/hostile-requests.ts)${h2c ? ', listen.h2c on' : ''}`, () => {
  let vh: Upstream;
  let internal: Upstream;
  let p: TestProxy;
  /** what the upstreams received after `mark` (their request counts then), the active checks' probes left out */
  const since = (mark: readonly number[]): Upstream['seen'] =>
    [vh, internal].flatMap((u, i) => u.seen.slice(mark[i])).filter((s) => s.url !== '/healthz');
  before(async () => {
    vh = await startUpstream('vh');
    internal = await startUpstream('internal');
    // passive health ejects after 3 failures: any refusal counted against a target would show
    const health = { interval: '1m', passive: { failures: 3, ejectFor: '1m' } };
    p = await startProxy({
      listen: { host: '127.0.0.1', port: 0, h2c },
      apps: [
        { ...twoPools(vh.url, vh.url), name: 'vh', hosts: ['vh.test'], health },
        { ...twoPools(internal.url, internal.url), name: 'internal', hosts: ['internal.test'], health },
      ],
    });
  });
  after(async () => {
    await p.close();
    await vh.close();
    await internal.close();
  });

  for (const c of HOSTILE_REQUESTS) {
    it(`${c.name}: ${c.status}, ${c.upstream === 0 ? 'nothing reaches' : 'forwarded to'} the upstream`, async () => {
      const mark = [vh.seen.length, internal.seen.length];
      const reply = await rawRequest(Number(new URL(p.proxyUrl).port), c.raw, 500);
      const got = statusesOf(reply);
      assert.equal(got.at(-1), c.status, reply);
      if (c.interim !== undefined) assert.equal(got[0], c.interim, reply);
      const seen = since(mark);
      assert.equal(seen.length, c.upstream, JSON.stringify(seen));
      if (c.seen !== undefined) {
        assert.equal(seen[0]?.url, c.seen.url);
        assert.equal(seen[0]?.headers.host, c.seen.host);
      }
    });
  }

  it('counts none of it against a target or a pool', async () => {
    await nextSecond();
    for (const app of ['vh', 'internal']) {
      for (const target of p.sy.runtime.pool(app, 'blue')?.targets ?? []) assert.equal(target.ejections, 0, `${app} target ejected`);
      const window = p.sy.telemetry.stats.window(app, 60);
      assert.ok((window.blue?.requests ?? 0) > 0, `${app} saw requests`);
      for (const [pool, s] of Object.entries(window)) assert.equal(s.errors, 0, `${app}/${pool} errors`);
    }
  });
});
