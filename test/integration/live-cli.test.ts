import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { runCliCaptured } from '../helpers/cli.ts';
import { startProxy, TOKEN, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

describe('the release commands: pool, targets, deploy, apply, export', () => {
  let blue: Upstream;
  let green: Upstream;
  let next: Upstream;
  let p: TestProxy;
  before(async () => {
    [blue, green, next] = await Promise.all([startUpstream('blue'), startUpstream('green'), startUpstream('next')]);
    p = await startProxy({ apps: [twoPools(blue.url, green.url)] });
  });
  after(async () => {
    await p?.close();
    await Promise.all([blue, green, next].map((u) => u?.close()));
  });

  const cli = (...argv: string[]) => runCliCaptured(argv, { SWITCHYARD_ADMIN_URL: p.adminUrl, SWITCHYARD_TOKEN: TOKEN, UPSTREAM_NEXT: next.url });

  it('deploy sets the idle pool and refuses the live one unless --force', async () => {
    const live = await cli('deploy', 'shop', '--version', '9.9.9', '--targets', next.url, '--pool', 'blue');
    assert.equal(live.code, 1);
    assert.match(live.stderr, /blue of shop has weight 100% \(it is live\).*--force/);
    assert.equal((await p.get('/')).servedBy, 'blue@1.0.0', 'nothing changed');
    const r = await cli('deploy', 'shop', '--version', '2.1.0', '--targets', next.url);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /deployed 2\.1\.0 to shop\/green/);
    const state = (await p.admin('GET', '/v1/apps/shop')).body;
    assert.deepEqual([state.pools.green.version, state.pools.green.targets, state.weights.green], ['2.1.0', [next.url], 0]);
    const h = (await p.admin('GET', '/v1/apps/shop/history?limit=1')).body.entries[0];
    assert.deepEqual([h.action, h.reason], ['pool', 'deploy 2.1.0']);
    // the instance's config file still says 2.0.0: status reports the drift and the fix
    const st = await cli('status', 'shop');
    assert.match(st.stdout, /drift shop: .*pools\.green\.version, pools\.green\.targets/);
    assert.match(st.stdout, /switchyard apply -f/);
  });

  it('pool and targets add|remove change the definition; bad calls exit 2', async () => {
    assert.equal((await cli('pool', 'shop', 'green', '--version', '2.2.0', '--targets', `${next.url},${green.url}`)).code, 0);
    assert.deepEqual((await p.admin('GET', '/v1/apps/shop')).body.pools.green.targets, [next.url, green.url]);
    assert.equal((await cli('targets', 'remove', 'shop', 'green', green.url, '--reason', 'retire')).code, 0);
    assert.deepEqual((await p.admin('GET', '/v1/apps/shop')).body.pools.green.targets, [next.url]);
    assert.equal((await cli('targets', 'add', 'shop', 'green', green.url)).code, 0);
    assert.deepEqual((await p.admin('GET', '/v1/apps/shop')).body.pools.green.targets, [next.url, green.url]);
    const unknown = await cli('targets', 'remove', 'shop', 'green', 'http://127.0.0.1:1');
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /UNKNOWN_TARGET/);
    assert.equal((await cli('targets', 'drop', 'shop', 'green', green.url)).code, 2);
    assert.equal((await cli('pool', 'shop', 'green', '--targets', green.url)).code, 2, '--version is required');
  });

  it('apply -f shows each change as a key path, --dry-run writes nothing, apply writes it; export prints the live config', async () => {
    const file = join(p.dir, 'apps.yaml');
    const apps = [
      twoPools(blue.url, '${UPSTREAM_NEXT}', { hosts: ['*'] }),
      { name: 'blog', hosts: ['blog.test'], pools: { blue: { version: '1', targets: [blue.url] }, green: { version: '2', targets: [green.url] } } },
    ];
    await writeFile(file, stringify({ apps }));
    const rev = (await p.admin('GET', '/v1/apps/shop')).body.revision;
    const dry = await cli('apply', '-f', file, '--dry-run');
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /shop: pools\.green\.version: "2\.2\.0" → "2\.0\.0"/);
    assert.match(dry.stdout, new RegExp(`shop: pools\\.green\\.targets: \\["${next.url}","${green.url}"\\] → \\["${next.url}"\\]`));
    assert.match(dry.stdout, /blog: new app/);
    assert.match(dry.stdout, /dry run: nothing written/);
    assert.equal((await p.admin('GET', '/v1/apps/shop')).body.revision, rev, '--dry-run changes nothing');
    assert.equal((await p.admin('GET', '/v1/apps/blog')).status, 404);
    // --exit-code: 1 when the store differs from the file (git diff --exit-code), the changes machine-readable
    const differs = await cli('apply', '-f', file, '--dry-run', '--exit-code', '--json');
    assert.equal(differs.code, 1, differs.stderr);
    const plan = JSON.parse(differs.stdout) as { differs: boolean; diff: Record<string, { path: string; from: unknown; to: unknown }[]> };
    assert.equal(plan.differs, true);
    assert.deepEqual(plan.diff['shop']?.find((c) => c.path === 'pools.green.version'), { path: 'pools.green.version', from: '2.2.0', to: '2.0.0' });
    assert.deepEqual(plan.diff['blog']?.map((c) => c.path), ['(app)']);

    const applied = await cli('apply', '-f', file);
    assert.equal(applied.code, 0, applied.stderr);
    assert.match(applied.stdout, /shop: applied at revision/);
    assert.equal((await p.admin('GET', '/v1/apps/shop')).body.pools.green.version, '2.0.0');
    assert.equal((await p.get('/', { host: 'blog.test' })).servedBy, 'blue@1');
    const again = await cli('apply', '-f', file);
    assert.match(again.stdout, /no changes/);
    const same = await cli('apply', '-f', file, '--dry-run', '--exit-code');
    assert.equal(same.code, 0, 'nothing differs: exit 0');

    const exported = await cli('export');
    assert.equal(exported.code, 0);
    await writeFile(file, exported.stdout);
    const round = await cli('apply', '-f', file, '--dry-run');
    assert.match(round.stdout, /no changes/, 'what export prints, apply reads back unchanged');
  });

  it('apply -f names a bad key path and writes nothing', async () => {
    const file = join(p.dir, 'bad.yaml');
    await writeFile(file, stringify({ apps: [twoPools(blue.url, 'not-a-url')] }));
    const r = await cli('apply', '-f', file);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /apps\[0\]\.pools\.green\.targets\[0\]: must be an http\(s\) URL/);
  });
});
