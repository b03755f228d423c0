import { once } from 'node:events';
import { createConnection, createServer, type AddressInfo, type Socket } from 'node:net';

/** A TCP proxy in front of a server (Redis) that can hold the bytes of either direction for a while. */
export interface DelayProxy {
  readonly port: number;
  /** `redis://127.0.0.1:PORT`: the proxy's address as a Redis URL */
  readonly url: string;
  /**
   * Holds the bytes of `direction` (`replies`: server → client, `requests`: client → server) for
   * `ms` on the connections open now — and on those opened meanwhile with `newConnections` —
   * then delivers them in order. Connections opened later (without it) are not held: a fresh
   * connection gets through while the old one is stuck.
   */
  hold(direction: 'replies' | 'requests', ms: number, opts?: { readonly newConnections?: boolean }): void;
  close(): Promise<void>;
}

interface Leg {
  holdUntil: number;
  queue: Buffer[];
  timer: NodeJS.Timeout | null;
}

/** Pipes `from` into `to` through `leg`: chunks wait while the leg is held, order kept. */
function pipeLeg(from: Socket, to: Socket, leg: Leg): void {
  const flush = (): void => {
    leg.timer = null;
    const wait = leg.holdUntil - Date.now();
    if (wait > 0) {
      leg.timer = setTimeout(flush, wait);
      return;
    }
    for (const chunk of leg.queue.splice(0)) if (!to.destroyed) to.write(chunk);
  };
  from.on('data', (chunk: Buffer) => {
    if (leg.queue.length === 0 && Date.now() >= leg.holdUntil) {
      to.write(chunk);
      return;
    }
    leg.queue.push(chunk);
    leg.timer ??= setTimeout(flush, Math.max(0, leg.holdUntil - Date.now()));
  });
}

export async function startDelayProxy(targetPort: number): Promise<DelayProxy> {
  const pairs = new Set<{ client: Socket; server: Socket; replies: Leg; requests: Leg }>();
  const heldNew = { replies: 0, requests: 0 };
  const srv = createServer((client) => {
    const server = createConnection({ port: targetPort, host: '127.0.0.1' });
    const pair = { client, server, replies: { holdUntil: heldNew.replies, queue: [], timer: null } as Leg, requests: { holdUntil: heldNew.requests, queue: [], timer: null } as Leg };
    pairs.add(pair);
    pipeLeg(server, client, pair.replies);
    pipeLeg(client, server, pair.requests);
    const end = (): void => {
      client.destroy();
      server.destroy();
      for (const leg of [pair.replies, pair.requests]) if (leg.timer !== null) clearTimeout(leg.timer);
      pairs.delete(pair);
    };
    client.on('close', end).on('error', end);
    server.on('close', end).on('error', end);
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address() as AddressInfo;
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    hold(direction, ms, opts = {}) {
      const until = Date.now() + ms;
      for (const pair of pairs) pair[direction].holdUntil = until;
      if (opts.newConnections === true) heldNew[direction] = until;
    },
    async close() {
      for (const pair of [...pairs]) {
        pair.client.destroy();
        pair.server.destroy();
      }
      srv.close();
      await once(srv, 'close');
    },
  };
}
