import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { useUpstreams } from '../helpers/upstream.ts';

/**
 * docs/cohorts.md §6: rollback restores the whole routing (weights, cohort rules, mirror) of the last
 * stable revision, in one write, and "stable" reads the real rules and mirror: one pool at 100 %
 * with a rule or a mirror pointing at another pool is a release under way.
 */

const served = (r: { servedBy: string | undefined }): string | undefined => r.servedBy?.split('@')[0];
const beta = [{ name: 'beta', match: { header: { 'x-beta': '1' } }, to: 'green' }];

describe('rollback restores weights, rules and mirror together', () => {
  const up = useUpstreams('blue', 'green');

  async function proxy(t: TestContext): Promise<TestProxy> {
    const p = await startProxy({ apps: [twoPools(up.blue.url, up.green.url)] });
    t.after(() => p.close());
    return p;
  }

  async function ok(p: TestProxy, method: string, path: string, body: unknown): Promise<Record<string, unknown>> {
    const r = await p.admin(method, path, body);
    assert.equal(r.status, 200, `${method} ${path}: ${JSON.stringify(r.body)}`);
    return r.body as Record<string, unknown>;
  }

  it('a cohort rule and a mirror to green, then a ramp: rollback goes back to blue 100 % with no rule or mirror pointing at green, in one revision', async (t) => {
    const p = await proxy(t);
    await ok(p, 'PUT', '/v1/apps/shop/rules', { rules: beta, reason: 'beta cohort' });
    await ok(p, 'PUT', '/v1/apps/shop/mirror', { mirror: { to: 'green', share: 100 } });
    // blue is still at 100 % here: were rules and mirror ignored, this revision would count as stable
    const ramp = await ok(p, 'PUT', '/v1/apps/shop/weights', { weights: { blue: 90, green: 10 } });
    assert.equal(served(await p.get('/', { 'x-beta': '1' })), 'green', 'the rule routes before the rollback');

    const dry = await ok(p, 'POST', '/v1/apps/shop/rollback?dryRun=true', {});
    assert.deepEqual([dry.weights, dry.rules, dry.mirror, (dry.restores as { revision: number }).revision], [{ blue: 100, green: 0 }, [], null, 1]);
    assert.equal((await p.admin('GET', '/v1/apps/shop')).body.revision, ramp.revision, 'a dry run writes nothing');

    const back = await ok(p, 'POST', '/v1/apps/shop/rollback', { reason: 'green misbehaves' });
    assert.equal(back.revision, (ramp.revision as number) + 1, 'one write, one revision');
    assert.deepEqual([back.weights, back.rules, back.mirror], [{ blue: 100, green: 0 }, [], null]);
    const rb = back.rollback as { rules: unknown[]; mirror: unknown; weights: unknown };
    assert.deepEqual([rb.weights, rb.rules, rb.mirror], [{ blue: 100, green: 0 }, [], null]);

    const history = (await p.admin('GET', '/v1/apps/shop/history?limit=1')).body.entries[0];
    assert.equal(history.action, 'rollback');
    assert.equal(history.revision, back.revision);
    assert.equal(history.rules, undefined, 'the history entry carries no rules');
    assert.equal(history.mirror, undefined, 'nor a mirror');
    assert.deepEqual((await p.admin('GET', '/v1/config')).body.apps[0].rules, undefined, 'the live definition lost the rule');

    // the data plane follows: the cohort goes to blue, and green gets no copies
    const greenBefore = up.green.seen.length;
    for (let i = 0; i < 5; i++) assert.equal(served(await p.get(`/after-${i}`, { 'x-beta': '1' })), 'blue');
    assert.equal(up.green.seen.length, greenBefore, 'no mirrored copy reached green');
    const where = (await p.admin('GET', '/v1/apps/shop/whereis?header=x-beta:1')).body;
    assert.deepEqual([where.pool, where.by], ['blue', 'weights']);

    // and the revert is final: a second rollback moves nothing
    const again = await p.admin('POST', '/v1/apps/shop/rollback', {});
    assert.equal(again.status, 409);
    assert.equal(again.body.error.code, 'NOTHING_TO_ROLL_BACK');
  });

  it('stable to stable: green at 100 % and a rule to green rolls back to green at 100 % without the rule', async (t) => {
    const p = await proxy(t);
    const switched = await ok(p, 'POST', '/v1/apps/shop/switch', { to: 'green' });
    // everything still goes to green: stable, but another routing than the revision before
    const ruled = await ok(p, 'PUT', '/v1/apps/shop/rules', { rules: beta });
    const back = await ok(p, 'POST', '/v1/apps/shop/rollback', {});
    assert.equal(back.revision, (ruled.revision as number) + 1);
    assert.deepEqual([back.weights, back.rules, back.mirror], [{ blue: 0, green: 100 }, [], null]);
    assert.equal((back.rollback as { restores: { revision: number } }).restores.revision, switched.revision);
  });
});
