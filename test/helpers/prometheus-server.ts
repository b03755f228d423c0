import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './ports.ts';

export interface PrometheusServer {
  readonly url: string;
  readonly child: ChildProcess;
  /** the value of an instant query (null: no data yet) */
  value(promql: string): Promise<number | null>;
  stop(): Promise<void>;
}

/** The real `prometheus` binary: installed from Debian when missing (as redis-server is), or a clear failure naming it. */
export function ensurePrometheus(): string {
  const found = spawnSync('sh', ['-c', 'command -v prometheus'], { encoding: 'utf8' });
  if (found.status === 0) return found.stdout.trim();
  const install = spawnSync('sh', ['-c', 'DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus'], { encoding: 'utf8', stdio: 'pipe' });
  const again = spawnSync('sh', ['-c', 'command -v prometheus'], { encoding: 'utf8' });
  if (again.status !== 0) throw new Error(`these tests need the real Prometheus server: apt-get install prometheus (Debian) failed: ${install.stderr.slice(-500)}`);
  return again.stdout.trim();
}

/**
 * A real Prometheus on a free port, with its own TSDB in a temp dir, scraping `targets`
 * (host:port, path /metrics) every second. Resolves once it answers `/-/ready`.
 */
export async function startPrometheus(targets: readonly string[]): Promise<PrometheusServer> {
  const bin = ensurePrometheus();
  const dir = await mkdtemp(join(tmpdir(), 'switchyard-prometheus-'));
  const config = `global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: exporter\n    scrape_interval: 1s\n    static_configs:\n      - targets: [${targets.map((t) => `"${t}"`).join(', ')}]\n`;
  await writeFile(join(dir, 'prometheus.yml'), config);
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const child = spawn(bin, [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 60_000;
    let ready = false;
    while (Date.now() < deadline && child.exitCode === null) {
      const ok = await fetch(`${url}/-/ready`).then((r) => r.ok, () => false);
      if (ok) {
        ready = true;
        break;
      }
      await sleep(200);
    }
    if (!ready) {
      child.kill('SIGKILL');
      // a port taken between freePort and the bind: try another one
      if (attempt < 2 && /address already in use/.test(stderr)) continue;
      await rm(dir, { recursive: true, force: true });
      throw new Error(`prometheus did not become ready: ${stderr}`);
    }
    return {
      url,
      child,
      async value(promql) {
        const r = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(promql)}`);
        const doc = (await r.json()) as { data?: { result?: { value: [number, string] }[] } };
        const v = doc.data?.result?.[0]?.value[1];
        return v === undefined ? null : Number(v);
      },
      async stop() {
        if (child.exitCode === null) {
          child.kill('SIGTERM');
          // the 10 s guard is cancelled once the child has gone: a pending timer would keep the test process alive
          const guard = new AbortController();
          await Promise.race([once(child, 'exit'), sleep(10_000, undefined, { signal: guard.signal }).then(() => child.kill('SIGKILL'), () => undefined)]);
          guard.abort();
        }
        await rm(dir, { recursive: true, force: true, maxRetries: 5 });
      },
    };
  }
}
