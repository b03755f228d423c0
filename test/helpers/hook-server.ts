import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface HookCall {
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests assert on whatever JSON was posted
  readonly body: any;
  readonly at: number;
}

/** How to answer one call: a status (and body), or nothing at all (`hang`: the caller's deadline decides). */
export type Reply = { status: number; body?: string; delayMs?: number } | 'hang';

export interface HookServer {
  readonly url: string;
  readonly server: Server;
  readonly calls: HookCall[];
  /** calls to one path */
  on(path: string): HookCall[];
  /** how the next calls to `path` are answered (default 200) */
  reply(path: string, fn: (call: HookCall, n: number) => Reply): void;
  close(): Promise<void>;
}

/** A real HTTP server on port 0 that records every POST (webhook gates, hooks, notifications) and answers as told. */
export async function startHookServer(): Promise<HookServer> {
  const calls: HookCall[] = [];
  const replies = new Map<string, (call: HookCall, n: number) => Reply>();
  const hanging = new Set<ServerResponse>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString();
      const path = req.url ?? '/';
      const call: HookCall = { path, headers: req.headers, body: text === '' ? null : JSON.parse(text), at: Date.now() };
      calls.push(call);
      const reply = replies.get(path)?.(call, calls.filter((c) => c.path === path).length) ?? { status: 200 };
      if (reply === 'hang') {
        hanging.add(res);
        res.on('close', () => hanging.delete(res));
        return;
      }
      const send = (): void => {
        res.writeHead(reply.status, { 'content-type': 'text/plain' });
        res.end(reply.body ?? '');
      };
      if (reply.delayMs === undefined) send();
      else setTimeout(send, reply.delayMs);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    server,
    calls,
    on: (path) => calls.filter((c) => c.path === path),
    reply: (path, fn) => void replies.set(path, fn),
    close: async () => {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      server.close();
      await once(server, 'close').catch(() => undefined);
    },
  };
}
