import { once } from 'node:events';
import { after, before } from 'node:test';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Upstream {
  readonly server: Server;
  readonly url: string;
  readonly port: number;
  /** requests seen, with their headers */
  readonly seen: { method: string; url: string; headers: IncomingMessage['headers']; rawHeaders: string[] }[];
  close(): Promise<void>;
}

export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * A real HTTP upstream on port 0 that says who it is (`name`) unless given its own handler.
 * `at`: another loopback address or a fixed port (DNS discovery tests give several the same port).
 */
export async function startUpstream(name: string, handler?: Handler, at: { host?: string; port?: number } = {}): Promise<Upstream> {
  const seen: Upstream['seen'] = [];
  const server = createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders });
    if (handler) return handler(req, res);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ pool: name, method: req.method, url: req.url, body }));
    });
  });
  const host = at.host ?? '127.0.0.1';
  server.listen(at.port ?? 0, host);
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    url: `http://${host}:${port}`,
    seen,
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close').catch(() => undefined);
    },
  };
}

/**
 * Upstreams named `names` for the enclosing `describe`: started before its tests, closed after.
 * Read them in the tests (they exist once `before` ran): `const up = useUpstreams('blue', 'green')`, `up.blue.url`.
 */
export function useUpstreams<N extends string>(...names: N[]): Record<N, Upstream> {
  const ups = {} as Record<N, Upstream>;
  before(async () => {
    const started = await Promise.all(names.map((n) => startUpstream(n)));
    names.forEach((n, i) => (ups[n] = started[i] as Upstream));
  });
  after(async () => {
    await Promise.all(Object.values<Upstream>(ups).map((u) => u.close()));
  });
  return ups;
}
