import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { startProxy } from '../helpers/proxy.ts';
import { useUpstreams } from '../helpers/upstream.ts';

/**
 * Property on real sockets: for any rules (header, cookie, query, path, method conditions with
 * shares) and any request, the pool the data plane serves is the one `whereis` names, with the
 * app sticky so that no random draw is involved.
 */
describe('whereis and the data plane agree', () => {
  const up = useUpstreams('blue', 'green', 'red');

  it('for generated rules and requests, the served pool is whereis\' pool', async (t) => {
    const p = await startProxy({
      apps: [
        {
          name: 'shop',
          hosts: ['*'],
          pools: { blue: { version: '1', targets: [up.blue.url] }, green: { version: '2', targets: [up.green.url] }, red: { version: '3', targets: [up.red.url] } },
          initial: { blue: 70, green: 30 },
          sticky: { key: ['header:x-user-id'] },
        },
      ],
    });
    t.after(() => p.close());
    const value = fc.constantFrom('a', 'b', 'ab');
    const condition = fc.oneof(value, fc.record({ prefix: value }), fc.record({ regex: fc.constantFrom('^a', 'b$', '^(a|b)+$') }), fc.record({ present: fc.boolean() }));
    const rule = fc.record({
      to: fc.constantFrom('blue', 'green', 'red'),
      share: fc.constantFrom(100, 50, 12.5),
      // one or two kinds of condition per rule, so that generated requests meet them often
      match: fc.oneof(
        fc.record({ header: fc.record({ 'x-a': condition }) }),
        fc.record({ cookie: fc.record({ c: condition }) }),
        fc.record({ query: fc.record({ q: condition }) }),
        fc.record({ path: condition }),
        fc.record({ header: fc.record({ 'x-a': condition }), cookie: fc.record({ c: condition }) }),
      ),
    });
    const maybe = fc.option(value, { nil: undefined, freq: 4 });
    const req = fc.record({ user: fc.constantFrom('u1', 'u2', 'u3', 'u4', 'u5'), xa: maybe, c: maybe, q: maybe, path: fc.constantFrom('/', '/a', '/ab', '/b') });
    await fc.assert(
      fc.asyncProperty(fc.array(rule, { maxLength: 4 }), fc.array(req, { minLength: 1, maxLength: 4 }), async (rules, reqs) => {
        const named = rules.map((r, i) => ({ ...r, name: `r${i}` }));
        const put = await p.admin('PUT', '/v1/apps/shop/rules', { rules: named });
        assert.equal(put.status, 200, JSON.stringify(put.body));
        for (const r of reqs) {
          const path = r.q === undefined ? r.path : `${r.path}?q=${r.q}`;
          const headers: Record<string, string> = { 'x-user-id': r.user };
          const q = new URLSearchParams({ key: r.user, path });
          if (r.xa !== undefined) {
            headers['x-a'] = r.xa;
            q.append('header', `x-a:${r.xa}`);
          }
          if (r.c !== undefined) {
            headers.cookie = `c=${r.c}`;
            q.append('cookie', `c=${r.c}`);
          }
          const served = (await p.get(path, headers)).servedBy?.split('@')[0];
          const where = await p.admin('GET', `/v1/apps/shop/whereis?${q}`);
          assert.equal(where.body.pool, served, `rules ${JSON.stringify(named)}; request ${JSON.stringify(r)}; whereis ${JSON.stringify(where.body)}`);
        }
      }),
      { seed: 2525, numRuns: 60 },
    );
  });
});
