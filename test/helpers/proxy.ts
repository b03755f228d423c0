import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { request } from 'undici';
import { build, type BuildDeps, type Switchyard } from '../../src/app.ts';
import { parseConfig } from '../../src/config/load.ts';

export const TOKEN = 'test-token-0123456789abcdef';

export interface TestProxy {
  readonly sy: Switchyard;
  readonly dir: string;
  readonly proxyUrl: string;
  readonly adminUrl: string;
  /** an admin API call with the test token; JSON in, JSON out */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests assert on whatever JSON the API answers
  admin(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any; headers: Record<string, unknown> }>;
  /** a proxied request; returns status, X-Served-By and the body text */
  get(path?: string, headers?: Record<string, string>): Promise<{ status: number; servedBy: string | undefined; body: string; headers: Record<string, unknown> }>;
  close(): Promise<void>;
}

/** A two-pool app `shop` on the given upstream URLs (blue first), for `startProxy`. */
export function twoPools(blue: string | string[], green: string | string[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: 'shop',
    hosts: ['*'],
    pools: {
      blue: { version: '1.0.0', targets: Array.isArray(blue) ? blue : [blue] },
      green: { version: '2.0.0', targets: Array.isArray(green) ? green : [green] },
    },
    ...extra,
  };
}

/**
 * A whole Switchyard built in-process on ports 0 with a file store in a temp dir.
 * `doc` is merged into a minimal config; `dir` reuses a store directory (restart tests).
 */
export async function startProxy(doc: Record<string, unknown>, deps: Partial<BuildDeps> & { dir?: string } = {}): Promise<TestProxy> {
  const dir = deps.dir ?? (await mkdtemp(join(tmpdir(), 'switchyard-test-')));
  const config = parseConfig({
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0, tokens: [{ name: 'tester', token: TOKEN }] },
    store: { kind: 'file', path: join(dir, 'state.json') },
    log: { level: 'silent' },
    ...doc,
  });
  const sy = await build(config, { logger: pino({ level: 'silent' }), ...deps });
  const { proxyPort, adminPort } = await sy.listen().catch(async (err: unknown) => {
    await sy.close();
    throw err;
  });
  const proxyUrl = `http://127.0.0.1:${proxyPort}`;
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  return {
    sy,
    dir,
    proxyUrl,
    adminUrl,
    async admin(method, path, body, headers = {}) {
      const r = await request(adminUrl + path, {
        method: method as 'GET',
        headers: { authorization: `Bearer ${TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await r.body.text();
      return { status: r.statusCode, body: text === '' ? null : JSON.parse(text), headers: r.headers };
    },
    async get(path = '/', headers = {}) {
      const r = await request(proxyUrl + path, { headers });
      const body = await r.body.text();
      const sb = r.headers['x-served-by'];
      return { status: r.statusCode, servedBy: typeof sb === 'string' ? sb : undefined, body, headers: r.headers };
    },
    async close() {
      await sy.close();
      if (deps.dir === undefined) await rm(dir, { recursive: true, force: true, maxRetries: 5 });
    },
  };
}
