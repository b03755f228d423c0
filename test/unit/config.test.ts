import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadConfig, parseConfig } from '../../src/config/load.ts';
import { parseDuration } from '../../src/config/duration.ts';
import { ConfigError } from '../../src/errors.ts';

const pools = { blue: { version: '1.0.0', targets: ['http://10.0.0.1:8080'] }, green: { version: '2.0.0', targets: ['http://10.0.0.3:8080'] } };
const minimal = () => ({ apps: [{ name: 'shop', hosts: ['shop.example.com'], pools: structuredClone(pools) }] });

function issuesOf(doc: unknown, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseConfig(doc, env);
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return [...err.issues];
  }
  assert.fail('expected a ConfigError');
}

describe('config', () => {
  it('fills the documented defaults', () => {
    const c = parseConfig(minimal());
    assert.deepEqual(c.listen, { host: '0.0.0.0', port: 8080, acceptors: 256, redirect: false, h2c: false });
    assert.equal(c.admin.port, 8081);
    assert.equal(c.store.kind, 'file');
    const app = c.apps[0]!;
    assert.deepEqual(app.timeouts, { connect: 5000, response: 60000, idle: 60000 });
    assert.equal(app.drain.timeout, 300000);
    assert.deepEqual(c.shutdown, { delay: 0, grace: 30000, hardStop: 60000, upgradeTimeout: 60000 });
    assert.ok(Object.isFrozen(c) && Object.isFrozen(app.pools));
  });

  it('names the key path of a bad target URL', () => {
    const doc = minimal();
    doc.apps[0]!.pools.green.targets.push('ftp://x');
    assert.deepEqual(issuesOf(doc), ['apps[0].pools.green.targets[1]: must be an http(s) URL with no path, like http://10.0.0.1:8080']);
  });

  it('rejects unknown keys at any depth', () => {
    const doc = { ...minimal(), listne: {} } as Record<string, unknown>;
    (doc['apps'] as Record<string, unknown>[])[0]!['drian'] = { timeout: '1m' };
    assert.deepEqual(issuesOf(doc).sort(), ['apps[0].drian: unknown key', 'listne: unknown key']);
  });

  it('parses durations and rejects bad ones with the path', () => {
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration('5s'), 5000);
    assert.equal(parseDuration('10m'), 600000);
    assert.equal(parseDuration('1h'), 3600000);
    assert.equal(parseDuration('5 parsecs'), undefined);
    const doc = { ...minimal(), shutdown: { grace: 'soon' } };
    assert.deepEqual(issuesOf(doc), ['shutdown.grace: must be a duration like 250ms, 5s, 10m or 1h']);
  });

  it('expands ${ENV} and ${ENV:-default}, and names the path of an unset variable', () => {
    const doc = { ...minimal(), admin: { tokens: [{ name: 'ci', token: '${TOKEN_CI}' }, { name: 'ops', token: '${TOKEN_OPS:-fallback-token-0123456}' }] } };
    const c = parseConfig(doc, { TOKEN_CI: 'from-the-environment-123' });
    assert.equal(c.admin.tokens[0]!.token, 'from-the-environment-123');
    assert.equal(c.admin.tokens[1]!.token, 'fallback-token-0123456');
    assert.deepEqual(issuesOf(doc, {}), ['admin.tokens[0].token: environment variable TOKEN_CI is not set']);
  });

  it('checks names, tokens, initial weights, hosts and the admin bind', () => {
    const doc = {
      admin: { host: '0.0.0.0' },
      apps: [
        { name: 'Shop!', hosts: ['a.example.com'], pools: structuredClone(pools), initial: { blue: 60, green: 50 } },
        { name: 'two', hosts: ['a.example.com'], pools: { only: pools.blue } },
      ],
    };
    assert.deepEqual(issuesOf(doc).sort(), [
      'admin.tokens: an admin listener on a non-loopback address needs tokens',
      'apps[0].initial: must sum to 100, got 110',
      'apps[0].name: must match [a-z0-9-]{1,63}',
      'apps[1].hosts[0]: host "a.example.com" already belongs to app "Shop!"',
      'apps[1].pools: an app needs two or more pools',
    ]);
    assert.deepEqual(issuesOf({ ...minimal(), admin: { tokens: [{ name: 'ci', token: 'short' }] } }), ['admin.tokens[0].token: must be at least 16 characters']);
  });

  it('reads YAML and JSON files', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'switchyard-config-'));
    t.after(async () => {
      await rm(dir, { recursive: true, force: true, maxRetries: 5 });
    });
    await writeFile(join(dir, 'a.yaml'), 'apps:\n  - name: shop\n    hosts: ["*"]\n    pools:\n      blue: { version: "1", targets: ["http://127.0.0.1:1"] }\n      green: { version: "2", targets: ["http://127.0.0.1:2"] }\n');
    await writeFile(join(dir, 'a.json'), JSON.stringify(minimal()));
    assert.equal((await loadConfig(join(dir, 'a.yaml'))).apps[0]!.name, 'shop');
    assert.equal((await loadConfig(join(dir, 'a.json'))).apps[0]!.name, 'shop');
    await assert.rejects(loadConfig(join(dir, 'missing.yaml')), /cannot read/);
  });

  it('the shipped config/switchyard.yaml is valid', async () => {
    const c = await loadConfig('config/switchyard.yaml', {});
    assert.equal(c.apps[0]!.name, 'shop');
  });

  it('`switchyard serve` exits 2 and names the key path on a bad config', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'switchyard-config-'));
    t.after(async () => {
      await rm(dir, { recursive: true, force: true, maxRetries: 5 });
    });
    const doc = minimal();
    doc.apps[0]!.pools.green.targets.push('nope');
    await writeFile(join(dir, 'bad.json'), JSON.stringify(doc));
    const r = spawnSync(process.execPath, ['src/main.ts', 'serve', '--config', join(dir, 'bad.json')], { encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /apps\[0\]\.pools\.green\.targets\[1\]: must be an http\(s\) URL/);
  });
});

describe('config: discover and discovery (DNS discovery)', () => {
  const withBlue = (blue: Record<string, unknown>, top: Record<string, unknown> = {}) => {
    const doc = minimal() as { apps: { pools: Record<string, unknown> }[] } & Record<string, unknown>;
    doc.apps[0]!.pools['blue'] = { version: '1.0.0', ...blue };
    return { ...doc, ...top };
  };

  it('a pool may have discover instead of targets (targets default to none) or beside them', () => {
    const c = parseConfig(withBlue({ discover: { dns: 'web.default.svc.cluster.local', port: 8080 } }));
    assert.deepEqual(c.apps[0]!.pools['blue'], { version: '1.0.0', targets: [], discover: { dns: 'web.default.svc.cluster.local', port: 8080, scheme: 'http', interval: 10_000, maxTargets: 256 } });
    const both = parseConfig(withBlue({ targets: ['http://10.0.0.9:80'], discover: { srv: '_http._tcp.web.service.consul', interval: '30s' } }));
    assert.deepEqual(both.apps[0]!.pools['blue']!.targets, ['http://10.0.0.9:80']);
    assert.equal(both.apps[0]!.pools['blue']!.discover?.interval, 30_000);
    assert.deepEqual(c.discovery, { timeout: 2000 });
  });

  it('names the key path of a pool with neither targets nor discover, and of a bad discover', () => {
    assert.deepEqual(issuesOf(withBlue({})), ['apps[0].pools.blue: needs targets or discover (or both)']);
    assert.deepEqual(issuesOf(withBlue({ discover: { dns: 'web.test' } })), ["apps[0].pools.blue.discover.port: required with dns (the targets' port)"]);
    assert.deepEqual(issuesOf(withBlue({ discover: { dns: 'web.test', srv: '_http._tcp.web.test', port: 80 } })), ['apps[0].pools.blue.discover: needs exactly one of dns or srv']);
    assert.deepEqual(issuesOf(withBlue({ discover: { srv: '_http._tcp.web.test', port: 80 } })), ['apps[0].pools.blue.discover.port: not used with srv: each SRV record names its port']);
    assert.deepEqual(issuesOf(withBlue({ discover: { dns: 'web test', port: 80, interval: 'often' } })).sort(), [
      'apps[0].pools.blue.discover.dns: must be a DNS name like web.default.svc.cluster.local',
      'apps[0].pools.blue.discover.interval: must be a duration like 250ms, 5s, 10m or 1h',
    ]);
    assert.deepEqual(issuesOf(withBlue({ discover: { dns: 'web.test', port: 80, ttl: 5 } })), ['apps[0].pools.blue.discover.ttl: unknown key']);
  });

  it('discovery.servers takes addresses with optional ports, as Resolver#setServers does, and names a bad one', () => {
    const c = parseConfig(withBlue({ targets: ['http://10.0.0.9:80'] }, { discovery: { servers: ['10.0.0.2:53', '10.0.0.3', '[fd00::2]:5353', 'fd00::3'] } }));
    assert.deepEqual(c.discovery.servers, ['10.0.0.2:53', '10.0.0.3', '[fd00::2]:5353', 'fd00::3']);
    assert.deepEqual(issuesOf(withBlue({ targets: ['http://10.0.0.9:80'] }, { discovery: { servers: ['10.0.0.2:53', 'dns.example.com:53', '10.0.0.2:99999'] } })), [
      'discovery.servers[1]: must be an IP address with an optional port, like 10.0.0.2:53 or [fd00::2]:53',
      'discovery.servers[2]: must be an IP address with an optional port, like 10.0.0.2:53 or [fd00::2]:53',
    ]);
    assert.deepEqual(issuesOf(withBlue({ targets: ['http://10.0.0.9:80'] }, { discovery: { servers: [] } })), ['discovery.servers: needs at least one server']);
  });
  it('store.replicas waits under the command timeout: replicaTimeout must be shorter, named by its key path; defaults 0, 500ms and unaccountedWindow 10m', () => {
    const redis = (more: Record<string, unknown>) => ({ ...minimal(), store: { kind: 'redis', url: 'redis://127.0.0.1:6379/0', ...more } });
    const c = parseConfig(redis({}));
    assert.ok(c.store.kind === 'redis');
    assert.deepEqual([c.store.replicas, c.store.replicaTimeout, c.store.unaccountedWindow], [0, 500, 600_000]);
    assert.deepEqual(issuesOf(redis({ replicas: 1, replicaTimeout: '2s', commandTimeout: '2s' })), ['store.replicaTimeout: must be shorter than store.commandTimeout (the WAIT runs under it)']);
    assert.equal(issuesOf(redis({ replicas: -1 }))[0]?.startsWith('store.replicas:'), true);
  });
});
