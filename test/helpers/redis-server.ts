import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis, type RedisOptions } from 'ioredis';

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** whether the process is running */
  readonly running: boolean;
  /** SIGTERM and wait for the exit */
  stop(): Promise<void>;
  /** SIGKILL (a crash) and wait for the exit */
  kill(): Promise<void>;
  /** SIGSTOP: the process stays, its sockets stay open, nothing is answered (a stalled server) */
  pause(): void;
  /** SIGCONT after `pause`: everything sent meanwhile is run now */
  resume(): void;
  /** starts again on the same port, empty (no persistence), once it answers PING */
  restart(): Promise<void>;
  /** stops it and deletes its directory */
  cleanup(): Promise<void>;
}

/**
 * A plain ioredis client for a test's own reads and writes (an "admin" beside the instances),
 * with its `error` event handled: a test that stops, pauses or kills Redis makes the client's
 * reconnects fail, and ioredis prints every such error as "Unhandled error event" when nobody
 * listens. A command still rejects as usual.
 */
export function redisClient(target: string | RedisOptions): Redis {
  const client = typeof target === 'string' ? new Redis(target) : new Redis(target);
  client.on('error', () => undefined);
  return client;
}

import { freePort } from './ports.ts';

/**
 * Resolves once the redis-server with process id `pid` answers on `port`. Checking the pid, not
 * just a PONG, matters: between finding a free port and binding it another test's server may
 * take it, and ours then exits while theirs answers.
 */
async function waitForRedis(port: number, pid: number, password: string | undefined, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = await new Promise<number | null>((resolve) => {
      const sock = createConnection({ port, host: '127.0.0.1' });
      let buf = '';
      sock.setTimeout(500, () => sock.destroy());
      sock.on('connect', () => sock.write(`${password === undefined ? '' : `AUTH ${password}\r\n`}INFO server\r\n`));
      sock.on('data', (d) => {
        buf += d.toString();
        const m = /process_id:(\d+)\r\n/.exec(buf);
        if (m !== null || buf.includes('-ERR') || buf.includes('-NOAUTH')) {
          sock.destroy();
          resolve(m === null ? -1 : Number(m[1]));
        }
      });
      sock.on('error', () => resolve(null));
      sock.on('close', () => resolve(null));
    });
    if (found === pid) return;
    if (found !== null) throw new Error(`port ${port} is answered by another process (${found})`);
    if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not answer within ${timeoutMs} ms`);
    await sleep(20);
  }
}

export interface RedisServerOptions {
  /** more `redis-server` arguments, e.g. `['--requirepass', 'secret']` */
  readonly args?: readonly string[];
  /** run as a Sentinel watching this master (`sentinel monitor NAME 127.0.0.1 PORT 1`) */
  readonly sentinelOf?: { readonly name: string; readonly port: number; readonly password?: string; readonly quorum?: number; readonly settings?: readonly string[] };
}

/**
 * A real `redis-server` on a free loopback port, in its own temp directory, with persistence
 * off (so a restart comes back empty, as a cache node without persistence would).
 */
export async function startRedis(opts: RedisServerOptions = {}): Promise<RedisServer> {
  const dir = await mkdtemp(join(tmpdir(), 'switchyard-redis-'));
  let port = 0;
  let child: ChildProcess | null = null;

  async function spawnOn(p: number): Promise<void> {
    const args = ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning', ...(opts.args ?? [])];
    const s = opts.sentinelOf;
    if (s !== undefined) {
      // a sentinel insists on a config file it can rewrite
      const conf = join(dir, 'sentinel.conf');
      await writeFile(conf, [`sentinel monitor ${s.name} 127.0.0.1 ${s.port} ${s.quorum ?? 1}`, ...(s.password === undefined ? [] : [`sentinel auth-pass ${s.name} ${s.password}`]), ...(s.settings ?? []).map((line) => `sentinel ${line.replace('NAME', s.name)}`), ''].join('\n'));
      args.unshift(conf, '--sentinel');
      args.splice(args.indexOf('--save'), 4); // not sentinel options
    }
    const proc = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child = proc;
    const exited = once(proc, 'exit').then(() => {
      throw new Error(`redis-server on port ${p} exited at start: ${stderr}`);
    });
    exited.catch(() => undefined); // the race below reports it; later exits (stop, kill) are expected
    const password = opts.args?.includes('--requirepass') ? opts.args[opts.args.indexOf('--requirepass') + 1] : undefined;
    await Promise.race([waitForRedis(p, proc.pid ?? -1, password), exited]);
  }

  async function signal(sig: NodeJS.Signals): Promise<void> {
    const proc = child;
    if (proc === null || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = once(proc, 'exit');
    if (sig === 'SIGTERM') proc.kill('SIGCONT'); // a paused server would hold SIGTERM until resumed
    proc.kill(sig);
    await exited;
  }

  // a port found free can be taken before redis binds it: try a few
  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    try {
      await spawnOn(port);
      break;
    } catch (err) {
      await signal('SIGKILL');
      if (attempt >= 4) throw err;
    }
  }

  return {
    get port() {
      return port;
    },
    get url() {
      return `redis://127.0.0.1:${port}`;
    },
    get running() {
      return child !== null && child.exitCode === null && child.signalCode === null;
    },
    stop: () => signal('SIGTERM'),
    pause: () => void (child as ChildProcess | null)?.kill('SIGSTOP'),
    resume: () => void (child as ChildProcess | null)?.kill('SIGCONT'),
    kill: () => signal('SIGKILL'),
    restart: async () => {
      await signal('SIGTERM');
      await spawnOn(port);
    },
    cleanup: async () => {
      await signal('SIGKILL');
      await rm(dir, { recursive: true, force: true, maxRetries: 5 });
    },
  };
}
