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
  /** Ends every hold now (also one of `ms` Infinity: held until released) and delivers what was held, in order. */
  release(): void;
  /** bytes still held, both directions, all connections */
  readonly heldBytes: number;
  /** held requests delivered to the server and answered by it (a reply chunk after them on their connection) */
  readonly heldAnswered: number;
  close(): Promise<void>;
}

interface Leg {
  holdUntil: number;
  queue: Buffer[];
  timer: NodeJS.Timeout | null;
  /** delivers the queue if the hold is over, else re-arms (no timer for a hold until released) */
  flush: () => void;
  /** called after a chunk went through, `held` when it had been held */
  onChunk: (held: boolean) => void;
}

/** Pipes `from` into `to` through `leg`: chunks wait while the leg is held, order kept. */
function pipeLeg(from: Socket, to: Socket, leg: Leg): void {
  const arm = (): void => {
    const wait = leg.holdUntil - Date.now();
    if (leg.timer === null && Number.isFinite(wait)) leg.timer = setTimeout(leg.flush, Math.max(0, wait));
  };
  leg.flush = (): void => {
    if (leg.timer !== null) clearTimeout(leg.timer);
    leg.timer = null;
    if (leg.holdUntil > Date.now()) {
      arm();
      return;
    }
    const chunks = leg.queue.splice(0);
    for (const chunk of chunks) if (!to.destroyed) to.write(chunk);
    if (chunks.length > 0 && !to.destroyed) leg.onChunk(true);
  };
  from.on('data', (chunk: Buffer) => {
    if (leg.queue.length === 0 && Date.now() >= leg.holdUntil) {
      to.write(chunk);
      leg.onChunk(false);
      return;
    }
    leg.queue.push(chunk);
    arm();
  });
}

export async function startDelayProxy(targetPort: number): Promise<DelayProxy> {
  const pairs = new Set<{ client: Socket; server: Socket; replies: Leg; requests: Leg }>();
  const heldNew = { replies: 0, requests: 0 };
  let heldAnswered = 0;
  const srv = createServer((client) => {
    const server = createConnection({ port: targetPort, host: '127.0.0.1' });
    let awaitingAnswer = false;
    const leg = (holdUntil: number, onChunk: Leg['onChunk']): Leg => ({ holdUntil, queue: [], timer: null, flush: () => undefined, onChunk });
    const pair = {
      client,
      server,
      replies: leg(heldNew.replies, () => {
        if (awaitingAnswer) heldAnswered++;
        awaitingAnswer = false;
      }),
      requests: leg(heldNew.requests, (held) => {
        if (held) awaitingAnswer = true;
      }),
    };
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
    release() {
      heldNew.replies = heldNew.requests = 0;
      for (const pair of pairs) {
        for (const leg of [pair.requests, pair.replies]) {
          leg.holdUntil = 0;
          leg.flush();
        }
      }
    },
    get heldBytes() {
      let n = 0;
      for (const pair of pairs) for (const leg of [pair.requests, pair.replies]) for (const chunk of leg.queue) n += chunk.length;
      return n;
    },
    get heldAnswered() {
      return heldAnswered;
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
