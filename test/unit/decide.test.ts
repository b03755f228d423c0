import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parseDefinition } from '../../src/config/definition.ts';
import { parseConfig } from '../../src/config/load.ts';
import { initialState } from '../../src/control/next-state.ts';
import { decide, mirrorFor, type Serving } from '../../src/routing/decide.ts';
import { stickyBucket } from '../../src/routing/choose.ts';
import type { RequestFacts } from '../../src/routing/rules.ts';
import { buildAppRoute, previewSignature, type AppRoute, type PoolRoute } from '../../src/routing/snapshot.ts';

const POOLS = { blue: { version: '1', targets: ['http://127.0.0.1:1'] }, green: { version: '2', targets: ['http://127.0.0.1:2'] }, red: { version: '3', targets: ['http://127.0.0.1:3'] } };

function app(extra: Record<string, unknown>, weights: Record<string, number> = { blue: 10_000, green: 0, red: 0 }): AppRoute {
  const cfg = parseConfig({ apps: [{ name: 'shop', hosts: ['*'], pools: POOLS, ...extra }] }).apps[0]!;
  return buildAppRoute(0, cfg, { ...initialState('shop', weights, Date.parse('2026-01-01T00:00:00Z')), salt: 'fixed-salt' });
}

function facts(f: { headers?: Record<string, string>; cookies?: Record<string, string>; query?: Record<string, string>; path?: string; method?: string; ip?: string }): RequestFacts {
  return {
    header: (n) => f.headers?.[n],
    cookie: (n) => f.cookies?.[n],
    query: (n) => f.query?.[n],
    path: () => f.path ?? '/',
    method: f.method ?? 'GET',
    clientIp: f.ip ?? '10.0.0.1',
  };
}

const ALL_UP: Serving = { serves: () => true };
const downs = (...names: string[]): Serving => ({ serves: (p: PoolRoute) => !names.includes(p.name) });

describe('routing/decide', () => {
  it('a pool at 0 that a rule or the mirror still sends to has no drain deadline: nothing open on it is cut; released, it has one', () => {
    const drainingSince = { green: '2026-01-01T00:00:00.000Z', red: '2026-01-01T00:00:00.000Z' };
    const cfg = parseConfig({ apps: [{ name: 'shop', hosts: ['*'], pools: POOLS, rules: [{ name: 'beta', match: { header: { 'x-beta': '1' } }, to: 'green' }], mirror: { to: 'red', share: 10 } }] }).apps[0]!;
    const held = buildAppRoute(0, cfg, { ...initialState('shop', { blue: 10_000, green: 0, red: 0 }, Date.parse('2026-01-01T00:00:00Z')), drainingSince });
    assert.deepEqual(held.pools.map((p) => [p.name, p.drainDeadline]), [['blue', null], ['green', null], ['red', null]]);
    const plain = parseConfig({ apps: [{ name: 'shop', hosts: ['*'], pools: POOLS }] }).apps[0]!;
    const released = buildAppRoute(0, plain, { ...initialState('shop', { blue: 10_000, green: 0, red: 0 }, Date.parse('2026-01-01T00:00:00Z')), drainingSince });
    assert.equal(released.pools.find((p) => p.name === 'green')?.drainDeadline, Date.parse(drainingSince.green) + plain.drain.timeout);
  });

  it('matches header, cookie, query, path and method conditions: exact, prefix, regex, present', () => {
    const a = app({
      rules: [
        { name: 'beta', match: { header: { 'X-Beta': '1' } }, to: 'green' },
        { name: 'staff', match: { cookie: { team: { regex: '^(qa|dev)$' } }, path: { prefix: '/api/' }, method: ['GET', 'POST'] }, to: 'red' },
        { name: 'flag', match: { query: { canary: { present: true } } }, to: 'green' },
      ],
    });
    const by = (f: Parameters<typeof facts>[0]) => {
      const d = decide(a, facts(f), 0.5, 0, ALL_UP);
      return `${d.pool.name} ${d.by}`;
    };
    assert.equal(by({ headers: { 'x-beta': '1' } }), 'green rule:beta');
    assert.equal(by({ headers: { 'x-beta': '2' } }), 'blue weights');
    assert.equal(by({ cookies: { team: 'qa' }, path: '/api/cart' }), 'red rule:staff');
    assert.equal(by({ cookies: { team: 'qa' }, path: '/api/cart', method: 'DELETE' }), 'blue weights');
    assert.equal(by({ cookies: { team: 'qa' }, path: '/web' }), 'blue weights');
    assert.equal(by({ cookies: { team: 'qa-lead' }, path: '/api/' }), 'blue weights');
    assert.equal(by({ query: { canary: '' } }), 'green rule:flag');
    // first match wins, in order
    assert.equal(by({ headers: { 'x-beta': '1' }, cookies: { team: 'dev' }, path: '/api/x' }), 'green rule:beta');
  });

  it('skips a rule whose pool has no target up, and never routes a pin or rule to it', () => {
    const a = app({ rules: [{ name: 'beta', match: { header: { 'x-beta': '1' } }, to: 'green' }, { name: 'beta2', match: { header: { 'x-beta': '1' } }, to: 'red' }] });
    assert.equal(decide(a, facts({ headers: { 'x-beta': '1' } }), 0.5, 0, downs('green')).by, 'rule:beta2');
    assert.equal(decide(a, facts({ headers: { 'x-beta': '1' } }), 0.5, 0, downs('green', 'red')).by, 'weights');
  });

  it('a valid preview header goes first, a forged one is reported and routing goes on', () => {
    const a = app({ preview: { secret: 'preview-secret-0123456789' }, rules: [{ name: 'all', match: {}, to: 'red' }] });
    const good = `green.${previewSignature('preview-secret-0123456789', 'shop', 'green')}`;
    const d = decide(a, facts({ headers: { 'x-switchyard-preview': good } }), 0.5, 0, ALL_UP);
    assert.deepEqual([d.pool.name, d.by, d.previewRejected], ['green', 'preview', false]);
    const bad = decide(a, facts({ headers: { 'x-switchyard-preview': 'green.00' } }), 0.5, 0, ALL_UP);
    assert.deepEqual([bad.pool.name, bad.by, bad.previewRejected], ['red', 'rule:all', true]);
  });

  it('property: the first matching rule whose pool serves wins, whatever the others', () => {
    const names = ['a', 'b', 'c', 'd'];
    fc.assert(
      fc.property(fc.array(fc.record({ name: fc.constantFrom(...names), to: fc.constantFrom('blue', 'green', 'red'), value: fc.constantFrom('1', '2') }), { minLength: 1, maxLength: 4 }), fc.constantFrom('1', '2'), fc.subarray(['blue', 'green', 'red']), fc.double({ min: 0, max: 0.9999, noNaN: true }), (specs, value, down, rand) => {
        const unique = specs.filter((s, i) => specs.findIndex((t) => t.name === s.name) === i);
        const a = app({ rules: unique.map((s) => ({ name: s.name, match: { header: { 'x-h': s.value } }, to: s.to })) });
        const d = decide(a, facts({ headers: { 'x-h': value } }), rand, 0, downs(...down));
        const first = unique.find((s) => s.value === value && !down.includes(s.to));
        if (first === undefined) assert.equal(d.by, 'weights');
        else assert.deepEqual([d.by, d.pool.name], [`rule:${first.name}`, first.to]);
      }),
      { seed: 25, numRuns: 300 },
    );
  });

  it('property: a rule\'s share takes exactly that share of evenly spread draws, and the rest split by the weights exactly', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 99 }), fc.integer({ min: 0, max: 100 }), (share, blue) => {
        const a = app({ rules: [{ name: 'half', match: { header: { 'x-beta': '1' } }, to: 'red', share }] }, { blue: blue * 100, green: (100 - blue) * 100, red: 0 });
        const n = 10_000;
        const counts: Record<string, number> = { blue: 0, green: 0, red: 0 };
        // the middle of each of n even slices of [0, 1): no draw sits on a boundary by float rounding
        for (let i = 0; i < n; i++) counts[decide(a, facts({ headers: { 'x-beta': '1' } }), (i + 0.5) / n, 0, ALL_UP).pool.name]!++;
        assert.equal(counts.red, share * 100);
        const rest = n - share * 100;
        // the requests the rule leaves are spread over the whole bucket range again: the weights split them as their own
        assert.ok(Math.abs(counts.blue! - (rest * blue) / 100) <= 1, `blue ${counts.blue} of ${rest} at ${blue}%`);
      }),
      { seed: 25, numRuns: 60 },
    );
  });

  it('property: with sticky, a key always lands on the same pool, the rule share is by its sticky bucket, and a weights ramp only moves keys toward the growing pool', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 40 }), fc.integer({ min: 1, max: 99 }), fc.integer({ min: 0, max: 99 }), fc.integer({ min: 1, max: 100 }), (keys, share, w1, step) => {
        const w2 = Math.min(100, w1 + step);
        const rules = [{ name: 'staff', match: { header: { 'x-staff': '1' } }, to: 'red', share }];
        const before = app({ sticky: { key: ['header:x-user-id'] }, rules }, { blue: (100 - w1) * 100, green: w1 * 100, red: 0 });
        const after = app({ sticky: { key: ['header:x-user-id'] }, rules }, { blue: (100 - w2) * 100, green: w2 * 100, red: 0 });
        for (const key of keys) {
          for (const staff of ['1', '0']) {
            const f = facts({ headers: { 'x-user-id': key, 'x-staff': staff } });
            const d1 = decide(before, f, 0.1, 0, ALL_UP);
            assert.equal(decide(before, f, 0.9, 0, ALL_UP).pool, d1.pool, 'the random draw never moves a sticky key');
            if (staff === '1') assert.equal(d1.pool.name === 'red', stickyBucket(before, key) < share * 100, 'the share is the sticky bucket');
            const d2 = decide(after, f, 0.5, 0, ALL_UP);
            if (d1.pool.name === 'green' || d1.pool.name === 'red') assert.equal(d2.pool.name, d1.pool.name, `${key} moved away from ${d1.pool.name} on a ramp`);
          }
        }
      }),
      { seed: 25, numRuns: 100 },
    );
  });

  it('a request that meets no rule keeps its own sticky bucket (whereis and old users unaffected by rules)', () => {
    const plain = app({ sticky: { key: ['header:x-user-id'] } }, { blue: 5000, green: 5000, red: 0 });
    const ruled = app({ sticky: { key: ['header:x-user-id'] }, rules: [{ name: 'r', match: { header: { 'x-beta': '1' } }, to: 'red', share: 30 }] }, { blue: 5000, green: 5000, red: 0 });
    for (let i = 0; i < 200; i++) {
      const f = facts({ headers: { 'x-user-id': `u${i}` } });
      assert.equal(decide(ruled, f, 0, 0, ALL_UP).pool.name, decide(plain, f, 0, 0, ALL_UP).pool.name);
      assert.equal(decide(ruled, f, 0, 0, ALL_UP).bucket, stickyBucket(plain, `u${i}`));
    }
  });

  it('mirrors only other pools\' requests with a mirrored method, inside the share', () => {
    const a = app({ mirror: { to: 'green', share: 10 } });
    const blue = a.poolsByName.get('blue')!;
    assert.notEqual(mirrorFor(a, blue, 'GET', 0.05), null);
    assert.equal(mirrorFor(a, blue, 'GET', 0.15), null);
    assert.equal(mirrorFor(a, blue, 'POST', 0.05), null);
    assert.equal(mirrorFor(a, a.poolsByName.get('green')!, 'GET', 0.05), null);
    assert.equal(a.mirror?.maxBody, 1024 * 1024);
    assert.equal(a.mirror?.maxInflight, 100);
  });
});

describe('rules and mirror validation', () => {
  const def = (extra: Record<string, unknown>) => ({ hosts: ['*'], pools: POOLS, ...extra });
  const issues = (extra: Record<string, unknown>) => {
    const r = parseDefinition(def(extra), 'shop');
    return r.ok ? [] : r.issues.map((i) => `${i.path}: ${i.message}`);
  };

  it('refuses a regex the linear-time matcher cannot run, naming the field', () => {
    const out = issues({ rules: [{ name: 'x', match: { cookie: { team: { regex: '(a)\\1' } } }, to: 'green' }] });
    assert.equal(out.length, 1);
    assert.match(out[0]!, /^rules\[0\]\.match\.cookie\.team\.regex: not a pattern the linear-time matcher/);
  });

  it('matches a pattern that backtracks without bound elsewhere in linear time', () => {
    const a = app({ rules: [{ name: 'evil', match: { header: { 'x-v': { regex: '^(a+)+$' } } }, to: 'green' }] });
    const started = performance.now();
    const d = decide(a, facts({ headers: { 'x-v': `${'a'.repeat(10_000)}!` } }), 0.5, 0, ALL_UP);
    assert.equal(d.by, 'weights');
    // V8's backtracking engine takes longer than the universe on this input; RE2 a few ms
    assert.ok(performance.now() - started < 2000);
  });

  it('names unknown pools, duplicate rule names, bad shares and conditions', () => {
    assert.deepEqual(issues({ rules: [{ name: 'a', match: {}, to: 'purple' }] }), ['rules[0].to: unknown pool "purple" (pools: blue, green, red)']);
    assert.deepEqual(issues({ rules: [{ name: 'a', match: {}, to: 'green' }, { name: 'a', match: {}, to: 'green' }] }), ['rules[1].name: duplicate rule name "a"']);
    assert.match(issues({ rules: [{ name: 'a', match: {}, to: 'green', share: 0.001 }] })[0]!, /^rules\[0\]\.share: at most two decimals/);
    assert.match(issues({ rules: [{ name: 'a', match: { path: { exact: '/', prefix: '/' } }, to: 'green' }] })[0]!, /^rules\[0\]\.match\.path: needs exactly one of/);
    assert.deepEqual(issues({ mirror: { to: 'purple' } }), ['mirror.to: unknown pool "purple" (pools: blue, green, red)']);
    assert.match(issues({ mirror: { to: 'green', maxBody: 'lots' } })[0]!, /^mirror\.maxBody: must be a size/);
    assert.deepEqual(issues({ rules: [{ name: 'a', match: { header: { 'X-Beta': '1' } }, to: 'green', share: 50 }], mirror: { to: 'green', share: 10, maxBody: '64KiB', compare: true } }), []);
  });
});
