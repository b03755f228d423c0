import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { expandEnv, loadConfig } from '../../src/config/load.ts';
import type { Config } from '../../src/config/schema.ts';
import { startProxy, TOKEN, type TestProxy } from '../helpers/proxy.ts';
import { startRedis, type RedisServer } from '../helpers/redis-server.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- Kubernetes objects are walked loosely, each field asserted where used
type K8s = Record<string, any>;

const DIR = new URL('../../deploy/kubernetes/', import.meta.url);

/** Every object the kustomization lists, parsed with the `yaml` package (a parse error fails). */
async function manifests(): Promise<K8s[]> {
  const kustomization = parseYaml(await readFile(new URL('kustomization.yaml', DIR), 'utf8')) as { resources: string[]; namespace: string };
  const out: K8s[] = [];
  for (const file of kustomization.resources) {
    for (const doc of parseAllDocuments(await readFile(new URL(file, DIR), 'utf8'))) {
      assert.deepEqual(doc.errors, [], `${file} parses`);
      const obj = doc.toJS() as K8s | null;
      if (obj !== null) out.push(obj);
    }
  }
  return out;
}

const one = (objs: K8s[], kind: string, name?: string): K8s => {
  const hits = objs.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  assert.equal(hits.length, 1, `one ${kind}${name === undefined ? '' : ` ${name}`}`);
  return hits[0] as K8s;
};

const selects = (selector: Record<string, string>, labels: Record<string, string>): boolean => Object.entries(selector).every(([k, v]) => labels[k] === v);

describe('the Kubernetes manifests (deploy/kubernetes)', () => {
  let objs: K8s[];
  let pod: K8s;
  let container: K8s;
  let config: Config;
  let configText: string;
  let env: Record<string, string>;
  let tmp: string;
  let unedited: Record<string, string>;

  /** a container port by name, or the number itself */
  const portOf = (p: string | number): number => (typeof p === 'number' ? p : (container.ports.find((c: K8s) => c.name === p)?.containerPort as number));

  before(async () => {
    objs = await manifests();
    const deployment = one(objs, 'Deployment', 'switchyard');
    pod = deployment.spec.template;
    container = pod.spec.containers[0];
    // the pod's environment as the kubelet builds it: literal values and the Secret's keys
    const secrets = objs.filter((o) => o.kind === 'Secret');
    env = {};
    for (const e of container.env as K8s[]) {
      if (e.value !== undefined) env[e.name] = e.value;
      else {
        const ref = e.valueFrom.secretKeyRef;
        const secret = secrets.find((s) => s.metadata.name === ref.name);
        assert.ok(secret, `${e.name}: the Secret ${ref.name} is in the manifests`);
        const value = secret.stringData?.[ref.key] ?? (secret.data?.[ref.key] === undefined ? undefined : Buffer.from(secret.data[ref.key], 'base64').toString());
        assert.ok(value !== undefined, `${e.name}: the Secret ${ref.name} has the key ${ref.key}`);
        env[e.name] = value;
      }
    }
    // the file the container reads: args' --config, mounted from the ConfigMap
    const file = container.args[container.args.indexOf('--config') + 1] as string;
    const mount = container.volumeMounts.find((m: K8s) => posix.dirname(file) === m.mountPath);
    assert.ok(mount, `${file} is on a mounted volume`);
    const volume = pod.spec.volumes.find((v: K8s) => v.name === mount.name);
    const item = volume.configMap.items.find((i: K8s) => i.path === posix.basename(file));
    configText = one(objs, 'ConfigMap', volume.configMap.name).data[item.key];
    tmp = await mkdtemp(join(tmpdir(), 'switchyard-k8s-'));
    await writeFile(join(tmp, 'switchyard.yaml'), configText);
    // the Secret as shipped holds placeholders, which the loader refuses (the next test); an operator puts real values in
    unedited = { ...env };
    for (const [k, v] of Object.entries(env)) if (/REPLACE-?ME/i.test(v)) env[k] = randomBytes(24).toString('hex');
    // the project's own loader, as `switchyard serve --config` runs it in the pod
    config = await loadConfig(join(tmp, 'switchyard.yaml'), env);
  });
  after(() => rm(tmp, { recursive: true, force: true }));

  it('refuses to start with the Secret as shipped: a placeholder is not a token', async () => {
    await assert.rejects(loadConfig(join(tmp, 'switchyard.yaml'), unedited), /is a placeholder \(REPLACE-ME…\), not a secret/);
  });

  it('mounts no service-account token and requests at least the memory a busy pod was measured to use', () => {
    assert.equal(pod.spec.automountServiceAccountToken, false);
    const request = String(container.resources.requests.memory);
    assert.ok(Number(/^(\d+)Mi$/.exec(request)?.[1]) >= 170, `memory request ${request} covers 1,000 clients (160–170 MB, README Performance)`);
  });

  it('configures a fleet on Redis whose tokens and secrets all come from the Secret', () => {
    assert.equal(config.store.kind, 'redis');
    assert.ok(config.admin.tokens.length > 0);
    for (const name of ['SWITCHYARD_TOKEN_CI', 'SWITCHYARD_TOKEN_OPS', 'SWITCHYARD_REDIS_URL']) assert.match(configText, new RegExp(`\\$\\{${name}\\}`), `${name} is read from the environment`);
    assert.doesNotMatch(configText, /token: "(?!\$\{)/, 'no token written in the ConfigMap');
    assert.ok(one(objs, 'Deployment').spec.replicas >= 2, 'a fleet');
  });

  it('probes readiness on /readyz and liveness on /healthz at the admin port of the config', () => {
    assert.equal(container.readinessProbe.httpGet.path, '/readyz');
    assert.equal(container.livenessProbe.httpGet.path, '/healthz');
    for (const probe of [container.readinessProbe, container.livenessProbe, container.startupProbe]) assert.equal(portOf(probe.httpGet.port), config.admin.port);
    assert.equal(portOf('proxy'), config.listen.port);
    assert.notEqual(config.admin.host, '127.0.0.1', 'the kubelet probes the pod address');
    const scrape = pod.metadata.annotations as Record<string, string>;
    assert.equal(Number(scrape['prometheus.io/port']), config.admin.port, 'Prometheus scrapes /metrics on the admin port');
    assert.equal(scrape['prometheus.io/path'], '/metrics');
    assert.equal(config.admin.metricsAuth, false, 'without a token');
  });

  it('keeps accepting after SIGTERM until readiness has failed, and drains within the grace period', () => {
    const r = container.readinessProbe;
    assert.ok(config.shutdown.delay >= r.periodSeconds * r.failureThreshold * 1000, `shutdown.delay ${config.shutdown.delay} ms covers ${r.failureThreshold} failed readiness probes ${r.periodSeconds} s apart`);
    assert.ok(pod.spec.terminationGracePeriodSeconds * 1000 > config.shutdown.hardStop, 'the kubelet does not kill a drain before hardStop');
    assert.equal(container.lifecycle?.preStop, undefined, 'shutdown.delay does what a preStop sleep would');
    // a read-only root: the Redis cache file is on a writable volume
    assert.ok(config.store.kind === 'redis' && container.volumeMounts.some((m: K8s) => !m.readOnly && config.store.kind === 'redis' && config.store.cachePath.startsWith(`${m.mountPath}/`)));
  });

  it('exposes the proxy port publicly and the admin port only on a ClusterIP Service', () => {
    const services = objs.filter((o) => o.kind === 'Service');
    const podLabels = pod.metadata.labels as Record<string, string>;
    for (const s of services) assert.ok(selects(s.spec.selector, podLabels), `${s.metadata.name} selects the pods`);
    const admin = services.filter((s) => s.spec.ports.some((p: K8s) => portOf(p.targetPort) === config.admin.port));
    assert.deepEqual(admin.map((s) => s.spec.type ?? 'ClusterIP'), ['ClusterIP'], 'the admin port is on one ClusterIP Service');
    assert.ok(admin.every((s) => s.spec.ports.every((p: K8s) => portOf(p.targetPort) === config.admin.port)), 'and it carries nothing else');
    const publicOnes = services.filter((s) => s.spec.type === 'LoadBalancer' || s.spec.type === 'NodePort');
    assert.ok(publicOnes.length > 0);
    for (const s of publicOnes) assert.deepEqual(s.spec.ports.map((p: K8s) => portOf(p.targetPort)), [config.listen.port]);
    const policy = one(objs, 'NetworkPolicy');
    const adminRule = policy.spec.ingress.find((r: K8s) => r.ports.some((p: K8s) => portOf(p.port) === config.admin.port));
    assert.ok(adminRule?.from?.length > 0, 'the admin port admits named clients only');
  });

  it('has a PodDisruptionBudget over the same pods that keeps all but one up', () => {
    const pdb = one(objs, 'PodDisruptionBudget');
    assert.ok(selects(pdb.spec.selector.matchLabels, pod.metadata.labels));
    assert.equal(pdb.spec.maxUnavailable, 1);
    assert.equal(one(objs, 'Deployment').spec.strategy.rollingUpdate.maxUnavailable, 0);
  });

  describe('the ConfigMap config, started on a real Redis', () => {
    let redis: RedisServer;
    let blue: Upstream;
    let green: Upstream;
    let p: TestProxy;

    before(async () => {
      [redis, blue, green] = await Promise.all([startRedis(), startUpstream('blue'), startUpstream('green')]);
      // the manifests' config as it is, but for what only a cluster has: addresses and the cache path
      const doc = expandEnv(parseYaml(configText), env) as K8s;
      const app = doc.apps[0];
      app.pools.blue.targets = [blue.url];
      app.pools.green.targets = [green.url];
      app.health.path = '/';
      p = await startProxy({
        ...doc,
        listen: { ...doc.listen, host: '127.0.0.1', port: 0 },
        admin: { ...doc.admin, host: '127.0.0.1', port: 0, tokens: [...doc.admin.tokens, { name: 'tester', token: TOKEN }] },
        store: { ...doc.store, url: redis.url, cachePath: join(tmp, 'redis-cache.json') },
        log: { level: 'silent' },
      });
    });
    after(async () => {
      await p?.close();
      await Promise.all([redis?.cleanup(), blue?.close(), green?.close()]);
    });

    it('answers the probes at their paths and routes the configured host', async () => {
      for (const probe of [container.readinessProbe, container.livenessProbe]) {
        const r = await request(`${p.adminUrl}${probe.httpGet.path}`);
        assert.equal(r.statusCode, 200, probe.httpGet.path);
        await r.body.dump();
      }
      const r = await p.get('/', { host: 'shop.example.com' });
      assert.equal(r.servedBy, 'blue@1.0.0');
      const ci = await request(`${p.adminUrl}/v1/apps/shop`, { headers: { authorization: `Bearer ${env['SWITCHYARD_TOKEN_CI']}` } });
      assert.equal(ci.statusCode, 200, 'the Secret\'s CI token is an admin token');
      await ci.body.dump();
    });

    it('answers the admin Service by its in-cluster DNS names (the admin API refuses other Host names)', async () => {
      const service = one(objs, 'Service', 'switchyard-admin');
      const ns = (await manifests()).find((o) => o.kind === 'Namespace')?.metadata.name as string;
      const port = (service.spec.ports as K8s[])[0]!.port as number;
      for (const name of [service.metadata.name, `${service.metadata.name}.${ns}`, `${service.metadata.name}.${ns}.svc`, `${service.metadata.name}.${ns}.svc.cluster.local`]) {
        const r = await request(`${p.adminUrl}/v1/apps/shop`, { headers: { host: `${name}:${port}`, authorization: `Bearer ${env['SWITCHYARD_TOKEN_CI']}` } });
        assert.equal(r.statusCode, 200, `Host ${name}`);
        await r.body.dump();
      }
    });
  });
});
