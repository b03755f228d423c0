import type { Server } from 'node:net';
import { LISTEN_BACKLOG, listenOn, REUSEPORT_UNSUPPORTED } from '../dataplane/server.ts';
import type { ListenMode } from './ipc.ts';

/**
 * Binds a worker's proxy listener. With `reusePort` (Linux ≥ 3.9, Node ≥ 22.12) every worker
 * has listening sockets of its own on the same port (its first one here, then `listen.acceptors`
 * more, see DataPlane.addAcceptors) and the kernel spreads incoming
 * connections between them: nothing passes through the primary. For a proxy that beats
 * node:cluster's default, where the primary accepts every connection and hands it to a worker
 * over IPC (a syscall and a message per connection, and the primary's event loop, busy with
 * health checks and the admin API, on every client's path), and its "shared handle" mode, where
 * the workers race for one accept queue and the busiest often wins.
 *
 * Falls back to node:cluster's own distribution (round robin through the primary, except on
 * Windows) where SO_REUSEPORT is missing, and for port 0: there each reuse-port socket would get a
 * port of its own, while cluster hands every worker the same one.
 */
export async function listenWorker(server: Server, host: string, port: number): Promise<ListenMode> {
  if (port !== 0) {
    try {
      await listenOn(server, { host, port, reusePort: true, backlog: LISTEN_BACKLOG });
      return 'reuseport';
    } catch (err) {
      if (!REUSEPORT_UNSUPPORTED.has((err as { code?: string }).code ?? '')) throw err;
    }
  }
  await listenOn(server, { host, port, backlog: LISTEN_BACKLOG });
  return 'shared';
}
