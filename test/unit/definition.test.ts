import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { compileDefinition, configDefinitions, definitionChanges, formatChange, parseDefinition } from '../../src/config/definition.ts';
import { parseConfig } from '../../src/config/load.ts';
import { initialState, nextState } from '../../src/control/next-state.ts';
import { Runtime } from '../../src/dataplane/runtime.ts';
import { RoutingTable } from '../../src/routing/routing-table.ts';
import { stateDigest } from '../../src/state/digest.ts';

const def = (extra: Record<string, unknown> = {}) => ({
  name: 'shop',
  hosts: ['shop.test'],
  pools: { blue: { version: '1.0.0', targets: ['http://127.0.0.1:9001'] }, green: { version: '2.0.0', targets: ['http://127.0.0.1:9002'] } },
  ...extra,
});

describe('app definitions', () => {
  it('the config file\'s apps are kept as written (durations, ${ENV} expanded), and compile to what the loader gives', () => {
    const config = parseConfig({ apps: [def({ drain: { timeout: '${DRAIN}' } })] }, { DRAIN: '2m' });
    const d = configDefinitions(config).get('shop');
    assert.deepEqual(d?.drain, { timeout: '2m' });
    assert.deepEqual(compileDefinition(d!, 'shop'), config.apps[0]);
  });

  it('names key paths under a prefix, and the name must be the app\'s', () => {
    const r = parseDefinition(def({ pools: { blue: { version: '1', targets: ['nope'] }, green: { version: '2', targets: [], extra: 1 } } }), 'shop', ['definition']);
    assert.equal(r.ok, false);
    assert.deepEqual(!r.ok && r.issues.map((i) => i.path).sort(), ['definition.pools.blue.targets[0]', 'definition.pools.green.extra']);
    const named = parseDefinition(def({ name: 'blog' }), 'shop', ['definition']);
    assert.deepEqual(!named.ok && named.issues, [{ path: 'definition.name', message: 'must be "shop", the app\'s name (or left out)' }]);
  });

  it('changes are key paths of the compiled form (5m equals 300s); a secret\'s value is never shown', () => {
    const a = compileDefinition(def({ drain: { timeout: '5m' }, preview: { secret: 'old-secret-0123456789' } }), 'shop');
    const b = compileDefinition(def({ drain: { timeout: '300s' }, preview: { secret: 'new-secret-0123456789' }, pools: { blue: { version: '1.0.1', targets: ['http://127.0.0.1:9001'] }, green: { version: '2.0.0', targets: ['http://127.0.0.1:9002'] } } }), 'shop');
    const changes = definitionChanges(a, b);
    assert.deepEqual(changes.map(formatChange), ['pools.blue.version: "1.0.0" → "1.0.1"', 'preview.secret: (secret) → (secret)']);
  });

  it('the heartbeat digest tells two definitions at one revision apart', () => {
    const s = initialState('shop', { blue: 10_000, green: 0 }, 0, def());
    const other = { ...s, definition: def({ hosts: ['other.test'] }) };
    assert.notEqual(stateDigest(s), stateDigest(other));
    // key order does not matter
    const reordered = { ...s, definition: { pools: def().pools, hosts: ['shop.test'], name: 'shop' } };
    assert.equal(stateDigest(s), stateDigest(reordered));
  });
});

describe('the routing table follows definitions; the runtime follows the table', () => {
  it('a new pool and a new app get new slots, a removed pool keeps its slot, and targets retire', () => {
    const runtime = new Runtime();
    const first = initialState('shop', { blue: 10_000, green: 0 }, 0, def());
    const table = new RoutingTable([first], { onSnapshot: (s) => runtime.sync(s) });
    const blue = runtime.pool('shop', 'blue')!;
    const oldTarget = blue.targets[0]!;
    oldTarget.inflight = 1; // a request in flight on it
    const withPurple = def({ pools: { ...def().pools, blue: { version: '1.0.0', targets: ['http://127.0.0.1:9003'] }, purple: { version: '3', targets: ['http://127.0.0.1:9004'] } } });
    const second = nextState(first, { weights: { blue: 10_000, green: 0, purple: 0 }, action: 'pool', by: 't', reason: null, now: 1, definition: withPurple });
    assert.deepEqual(table.apply(second), { previous: first });
    const route = table.snapshot.byName.get('shop')!;
    assert.deepEqual(route.pools.map((p) => [p.name, p.index]), [['blue', 0], ['green', 1], ['purple', 2]]);
    assert.equal(runtime.apps[0]!.pools[2], runtime.pool('shop', 'purple'));
    assert.deepEqual(blue.targets.map((t) => t.url), ['http://127.0.0.1:9003']);
    assert.deepEqual([...runtime.retiring].map((r) => r.target), [oldTarget], 'the removed target retires, it is not closed');
    runtime.retireRound();
    assert.equal(runtime.retiring.size, 1, 'not while a request is in flight on it');
    oldTarget.inflight = 0;
    runtime.retireRound();
    assert.equal(runtime.retiring.size, 0, 'closed once empty');
    // purple removed, then added back: the same slot
    const third = nextState(second, { weights: { blue: 10_000, green: 0 }, action: 'pool', by: 't', reason: null, now: 2, definition: def() });
    table.apply(third);
    const fourth = nextState(third, { weights: { blue: 10_000, green: 0, purple: 0 }, action: 'pool', by: 't', reason: null, now: 3, definition: withPurple });
    table.apply(fourth);
    assert.equal(table.snapshot.byName.get('shop')!.poolsByName.get('purple')!.index, 2);
    const blog = initialState('blog', { blue: 10_000, green: 0 }, 0, def({ name: 'blog', hosts: ['blog.test'] }));
    assert.deepEqual(table.apply(blog), { previous: null });
    assert.equal(table.snapshot.byName.get('blog')!.index, 1);
    assert.equal(runtime.apps[1]!.name, 'blog');
    void runtime.close();
  });

  it('a state without a definition (an older version wrote it) keeps the app\'s definition; a tombstone removes the app', () => {
    const table = new RoutingTable([initialState('shop', { blue: 10_000, green: 0 }, 0, def())]);
    const { definition: _d, ...bare } = nextState(initialState('shop', { blue: 10_000, green: 0 }, 0, def()), { weights: { blue: 0, green: 10_000 }, action: 'switch', by: 't', reason: null, now: 1 });
    assert.notEqual(table.apply(bare), null);
    assert.equal(table.snapshot.byName.get('shop')!.weighted[0]!.name, 'green');
    assert.equal(table.state('shop'), bare, 'kept as written (its digest matches the store\'s)');
    const tomb = { ...bare, revision: 3, deleted: true };
    assert.notEqual(table.applyOrRefuse(tomb, pino({ level: 'silent' })), null);
    assert.equal(table.snapshot.byName.has('shop'), false);
    assert.equal(table.state('shop'), undefined);
  });
});
