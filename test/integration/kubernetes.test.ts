import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
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

interface Kustomization {
  readonly namespace: string;
  readonly resources: string[];
  readonly configMapGenerator?: { name: string; files: string[]; options?: { labels?: Record<string, string> } }[];
}

/**
 * Every object the kustomization makes, parsed with the `yaml` package (a parse error fails): its
 * resources, and the ConfigMaps of its configMapGenerator under their names as written (kustomize
 * adds a hash of the content to the name and to every reference; `kubectl kustomize` is checked
 * against this below).
 */
async function manifests(): Promise<K8s[]> {
  const kustomization = parseYaml(await readFile(new URL('kustomization.yaml', DIR), 'utf8')) as Kustomization;
  const out: K8s[] = [];
  for (const file of kustomization.resources) {
    for (const doc of parseAllDocuments(await readFile(new URL(file, DIR), 'utf8'))) {
      assert.deepEqual(doc.errors, [], `${file} parses`);
      const obj = doc.toJS() as K8s | null;
      if (obj !== null) out.push(obj);
    }
  }
  for (const gen of kustomization.configMapGenerator ?? []) {
    const data: Record<string, string> = {};
    // `files: [KEY=]PATH`: the key is the file's name unless given
    for (const entry of gen.files) {
      const [key, path] = entry.includes('=') ? (entry.split('=', 2) as [string, string]) : [posix.basename(entry), entry];
      data[key] = await readFile(new URL(path, DIR), 'utf8');
    }
    out.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: gen.name, labels: gen.options?.labels ?? {} }, data });
  }
  return out;
}

/** A container's environment as the kubelet builds it: literal values (with `$(VAR)` of the variables before), and Secret keys. */
function containerEnv(objs: K8s[], container: K8s): Record<string, string> {
  const secrets = objs.filter((o) => o.kind === 'Secret');
  const env: Record<string, string> = {};
  for (const e of (container.env ?? []) as K8s[]) {
    if (e.value !== undefined) env[e.name] = String(e.value).replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (whole, name: string) => env[name] ?? whole);
    else {
      const ref = e.valueFrom.secretKeyRef;
      const secret = secrets.find((s) => s.metadata.name === ref.name);
      assert.ok(secret, `${e.name}: the Secret ${ref.name} is in the manifests`);
      const value = secret.stringData?.[ref.key] ?? (secret.data?.[ref.key] === undefined ? undefined : Buffer.from(secret.data[ref.key], 'base64').toString());
      assert.ok(value !== undefined, `${e.name}: the Secret ${ref.name} has the key ${ref.key}`);
      env[e.name] = value;
    }
  }
  return env;
}

/** `$(VAR)` in a container's args, as the kubelet expands them. */
const expandArgs = (args: readonly string[], env: Record<string, string>): string[] => args.map((a) => a.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (whole, name: string) => env[name] ?? whole));

/** A placeholder in the Secret as shipped, made a real value (as an operator does): the same placeholder, the same value. */
function filledIn(secrets: K8s[]): K8s[] {
  const values = new Map<string, string>();
  return secrets.map((s) => ({
    ...s,
    stringData: Object.fromEntries(Object.entries((s.stringData ?? {}) as Record<string, string>).map(([k, v]) => {
      if (!/REPLACE-?ME/i.test(v)) return [k, v];
      if (!values.has(v)) values.set(v, randomBytes(24).toString('hex'));
      return [k, values.get(v)];
    })),
  }));
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
  /** the manifests with the Secret's placeholders filled in */
  let filled: K8s[];

  /** a container port by name, or the number itself */
  const portOf = (p: string | number): number => (typeof p === 'number' ? p : (container.ports.find((c: K8s) => c.name === p)?.containerPort as number));

  before(async () => {
    objs = await manifests();
    const deployment = one(objs, 'Deployment', 'switchyard');
    pod = deployment.spec.template;
    container = pod.spec.containers[0];
    // the pod's environment as the kubelet builds it, with the Secret as shipped (placeholders) and as an operator fills it in
    unedited = containerEnv(objs, container);
    filled = [...objs.filter((o) => o.kind !== 'Secret'), ...filledIn(objs.filter((o) => o.kind === 'Secret'))];
    env = containerEnv(filled, container);
    // the file the container reads: args' --config, mounted from the ConfigMap
    const file = container.args[container.args.indexOf('--config') + 1] as string;
    const mount = container.volumeMounts.find((m: K8s) => posix.dirname(file) === m.mountPath);
    assert.ok(mount, `${file} is on a mounted volume`);
    const volume = pod.spec.volumes.find((v: K8s) => v.name === mount.name);
    const item = volume.configMap.items.find((i: K8s) => i.path === posix.basename(file));
    configText = one(objs, 'ConfigMap', volume.configMap.name).data[item.key];
    tmp = await mkdtemp(join(tmpdir(), 'switchyard-k8s-'));
    await writeFile(join(tmp, 'switchyard.yaml'), configText);
    // the project's own loader, as `switchyard serve --config` runs it in the pod
    config = await loadConfig(join(tmp, 'switchyard.yaml'), env);
  });
  after(() => rm(tmp, { recursive: true, force: true }));

  it('refuses to start with the Secret as shipped: a placeholder is not a token, nor a Redis password', async () => {
    const refused = await loadConfig(join(tmp, 'switchyard.yaml'), unedited).then(() => assert.fail('started with placeholders'), (err: Error) => err.message);
    assert.match(refused, /admin\.tokens\[0\]\.token: is a placeholder \(REPLACE-ME…\), not a secret/);
    assert.match(refused, /store\.url: holds a placeholder \(REPLACE-ME…\), not a password/);
  });

  it('makes the ConfigMap with configMapGenerator: kubectl kustomize names it by its content and the Deployment mounts that name', async () => {
    const kustomization = parseYaml(await readFile(new URL('kustomization.yaml', DIR), 'utf8')) as Kustomization;
    assert.deepEqual(kustomization.configMapGenerator?.map((g) => g.name), ['switchyard-config'], 'the config is generated, not a hand-kept ConfigMap');
    assert.ok(!Object.keys(pod.metadata.annotations ?? {}).some((k) => /config-revision|checksum/.test(k)), 'no hand-bumped annotation');
    const kubectl = spawnSync('kubectl', ['kustomize', new URL('.', DIR).pathname], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(kubectl.error, undefined, `this test needs kubectl (the Debian package "kubectl"; .ci/run installs it): ${kubectl.error?.message}`);
    assert.equal(kubectl.status, 0, kubectl.stderr);
    const built = parseAllDocuments(kubectl.stdout).map((d) => d.toJS() as K8s);
    const generated = built.filter((o) => o.kind === 'ConfigMap');
    assert.equal(generated.length, 1);
    const cm = generated[0] as K8s;
    assert.match(cm.metadata.name, /^switchyard-config-[a-z0-9]{10}$/, 'a name with the content\'s hash: a changed config is a new ConfigMap');
    assert.equal(cm.data['switchyard.yaml'], configText, 'the ConfigMap holds switchyard.yaml as it is');
    const deployment = one(built, 'Deployment');
    assert.ok(deployment.spec.template.spec.volumes.some((v: K8s) => v.configMap?.name === cm.metadata.name), 'the pods mount the hashed name: a new config rolls them');
    // everything else is what this test reads, in the namespace of the kustomization
    const names = (objs: K8s[]): string[] => objs.map((o) => `${o.kind}/${o.kind === 'ConfigMap' ? 'switchyard-config' : o.metadata.name}`).sort();
    assert.deepEqual(names(built), names(objs));
    assert.ok(built.every((o) => o.kind === 'Namespace' || o.metadata.namespace === kustomization.namespace));
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
    const services = objs.filter((o) => o.kind === 'Service' && o.metadata.labels['app.kubernetes.io/name'] === 'switchyard');
    const podLabels = pod.metadata.labels as Record<string, string>;
    for (const s of services) assert.ok(selects(s.spec.selector, podLabels), `${s.metadata.name} selects the pods`);
    const admin = services.filter((s) => s.spec.ports.some((p: K8s) => portOf(p.targetPort) === config.admin.port));
    assert.deepEqual(admin.map((s) => s.spec.type ?? 'ClusterIP'), ['ClusterIP'], 'the admin port is on one ClusterIP Service');
    assert.ok(admin.every((s) => s.spec.ports.every((p: K8s) => portOf(p.targetPort) === config.admin.port)), 'and it carries nothing else');
    const publicOnes = services.filter((s) => s.spec.type === 'LoadBalancer' || s.spec.type === 'NodePort');
    assert.ok(publicOnes.length > 0);
    for (const s of publicOnes) assert.deepEqual(s.spec.ports.map((p: K8s) => portOf(p.targetPort)), [config.listen.port]);
    const policy = one(objs, 'NetworkPolicy', 'switchyard');
    const adminRule = policy.spec.ingress.find((r: K8s) => r.ports.some((p: K8s) => portOf(p.port) === config.admin.port));
    assert.ok(adminRule?.from?.length > 0, 'the admin port admits named clients only');
  });

  it('has a Redis for the fleet: the password of the Secret on both sides, its data on a volume, nothing evicted, reachable only from the proxy pods', () => {
    const redis = one(objs, 'StatefulSet', 'redis');
    const spec = redis.spec.template.spec;
    const c = spec.containers[0];
    assert.equal(spec.automountServiceAccountToken, false);
    const redisEnv = containerEnv(filled, c);
    const args = expandArgs(c.args, redisEnv);
    const password = args[args.indexOf('--requirepass') + 1];
    assert.ok(password !== undefined && password.length >= 16 && !password.includes('$('), 'a password from the Secret');
    assert.equal(new URL(env['SWITCHYARD_REDIS_URL'] as string).password, password, 'Switchyard\'s URL carries the same password');
    assert.equal(args[args.indexOf('--maxmemory-policy') + 1], 'noeviction', 'routing state is never evicted');
    assert.equal(args[args.indexOf('--appendonly') + 1], 'yes');
    assert.ok(c.volumeMounts.some((m: K8s) => m.mountPath === '/data' && redis.spec.volumeClaimTemplates.some((v: K8s) => v.metadata.name === m.name)), 'the AOF on a persistent volume');
    const service = one(objs, 'Service', 'redis');
    assert.ok(selects(service.spec.selector, redis.spec.template.metadata.labels));
    const url = new URL(env['SWITCHYARD_REDIS_URL'] as string);
    const ns = one(objs, 'Namespace').metadata.name as string;
    assert.equal(url.hostname, `${service.metadata.name}.${ns}.svc`, 'the URL names the Service');
    assert.equal(Number(url.port), service.spec.ports[0].port);
    const policy = one(objs, 'NetworkPolicy', 'redis');
    assert.ok(selects(policy.spec.podSelector.matchLabels, redis.spec.template.metadata.labels));
    const from = policy.spec.ingress.flatMap((r: K8s) => r.from ?? [null]);
    assert.ok(from.length > 0 && from.every((f: K8s | null) => f !== null && f.namespaceSelector === undefined && selects(f.podSelector.matchLabels, pod.metadata.labels)), 'only the proxy pods of this namespace');
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
      // redis-server with the StatefulSet's arguments (the password of the Secret); Switchyard with the Deployment's URL, at its address
      const rc = one(objs, 'StatefulSet', 'redis').spec.template.spec.containers[0];
      [redis, blue, green] = await Promise.all([startRedis({ args: expandArgs(rc.args, containerEnv(filled, rc)) }), startUpstream('blue'), startUpstream('green')]);
      const url = new URL(env['SWITCHYARD_REDIS_URL'] as string);
      url.hostname = '127.0.0.1';
      url.port = String(redis.port);
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
        store: { ...doc.store, url: url.href, cachePath: join(tmp, 'redis-cache.json') },
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
