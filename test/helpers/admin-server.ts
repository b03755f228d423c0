import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { request } from 'undici';
import { createAdminServer, type AdminServerDeps } from '../../src/admin/server.ts';
import { parseConfig } from '../../src/config/load.ts';
import { Controller } from '../../src/control/controller.ts';
import type { CountsSource, PoolCounts } from '../../src/control/counts.ts';
import { SwitchyardError } from '../../src/errors.ts';
import { FileStore } from '../../src/state/file-store.ts';
import type { RoutingState, StateStore } from '../../src/state/types.ts';

/** An admin listener alone (no data plane) on a real socket, for the admin API's integration tests. */
export const TOKEN = 'ci-token-0123456789abcdef';
const pools = { blue: { version: '1.0.0', targets: ['http://127.0.0.1:9001'] }, green: { version: '2.0.0', targets: ['http://127.0.0.1:9002'] } };

/** Counts the test sets by hand: `app/pool` → counts. */
export function fakeCounts(): CountsSource & { set(app: string, pool: string, c: Partial<PoolCounts>): void } {
  const table = new Map<string, PoolCounts>();
  const get = (app: string, pool: string): PoolCounts => table.get(`${app}/${pool}`) ?? { inflight: 0, upgraded: 0, pinned: 0 };
  return {
    set: (app, pool, c) => table.set(`${app}/${pool}`, { ...get(app, pool), ...c }),
    poolCounts: get,
    poolCountsByInstance: (app, pool) => ({ 'instance-a': get(app, pool) }),
    instances: () => ({ applied: 1, total: 1 }),
  };
}

/** A FileStore whose writes can be made to fail like an unreachable Redis. */
export function flaky(inner: StateStore): StateStore & { failWrites: boolean } {
  return {
    kind: inner.kind,
    failWrites: false,
    get: (app) => inner.get(app),
    getMany: (apps) => inner.getMany(apps),
    listApps: () => inner.listApps(),
    history: (app, limit, offset) => inner.history(app, limit, offset),
    watch: (l) => inner.watch(l),
    close: () => inner.close(),
    compareAndSet(next: RoutingState, expected: number | null) {
      if (this.failWrites) return Promise.reject(new SwitchyardError('STORE_UNAVAILABLE', 'the store is down'));
      return inner.compareAndSet(next, expected);
    },
  };
}

export async function startAdmin(admin: Record<string, unknown>, extra: Partial<AdminServerDeps> = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'switchyard-admin-'));
  const config = parseConfig({
    admin,
    store: { kind: 'file', path: join(dir, 'state.json') },
    apps: [
      { name: 'shop', hosts: ['shop.example.com'], pools, drain: { timeout: '5m' } },
      { name: 'blog', hosts: ['blog.example.com'], pools },
    ],
  });
  const logger = pino({ level: 'silent' });
  const store = flaky(await FileStore.open({ path: join(dir, 'state.json'), historyLimit: 100 }));
  const controller = await Controller.start({ config, store, logger });
  const counts = fakeCounts();
  let ready = true;
  const server: Server = createAdminServer({ config, controller, counts, logger, ready: () => ready, readyDetails: () => ({ apps: 2 }), ...extra });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    base, controller, counts, store,
    setReady: (v: boolean) => (ready = v),
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await controller.close();
      await store.close();
      await rm(dir, { recursive: true, force: true, maxRetries: 5 });
    },
  };
}

export interface CallOptions { token?: string | null; body?: unknown; raw?: string | Buffer; headers?: Record<string, string> }

export async function call(base: string, method: string, path: string, opts: CallOptions = {}) {
  const headers: Record<string, string> = { ...opts.headers };
  const token = opts.token === undefined ? TOKEN : opts.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  let body: string | Buffer | undefined = opts.raw;
  if (opts.body !== undefined) {
    body = JSON.stringify(opts.body);
    headers['content-type'] ??= 'application/json';
  }
  const res = await request(`${base}${path}`, { method: method as 'GET', headers, body: body ?? null });
  const text = await res.body.text();
  const json = text === '' || !String(res.headers['content-type']).includes('json') ? text : JSON.parse(text);
  return { status: res.statusCode, headers: res.headers, json };
}

