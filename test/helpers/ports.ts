import { once } from 'node:events';
import { createServer } from 'node:net';

// Below Linux's ephemeral range (/proc/sys/net/ipv4/ip_local_port_range, 32768–60999 by default),
// from which the kernel picks every `listen(0)` and every outgoing connection's local port.
const LOW = 20_000;
const HIGH = 32_767;

/**
 * A TCP port free on 127.0.0.1 now, for what must be told its port before it binds it (a config
 * with fixed ports, redis-server, pebble). Taken at random below the ephemeral range, so that no
 * `listen(0)` or outgoing connection of the suite's other files can take it between this check
 * and the bind (the kernel hands those out of the ephemeral range only), as one picked by
 * `listen(0)` could: a test file running beside this one failed its start with the port taken.
 * `pick`: the candidate ports (random by default; a test gives its own).
 */
export async function freePort(pick: () => number = () => LOW + Math.floor(Math.random() * (HIGH - LOW + 1))): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const port = pick();
    const srv = createServer();
    srv.listen(port, '127.0.0.1');
    // not events.once: its 'listening' promise rejects on 'error', which made a taken port throw
    // EADDRINUSE out of here instead of trying another (CI, signals.test.ts, 2026-12-06)
    const free = await new Promise<boolean>((resolve) => {
      srv.once('listening', () => resolve(true));
      srv.once('error', () => resolve(false));
    });
    if (free) {
      srv.close();
      await once(srv, 'close');
      return port;
    }
    if (attempt >= 50) throw new Error(`no free port found in ${LOW}–${HIGH} after ${attempt + 1} tries`);
  }
}

/**
 * A port that refuses connections (nothing listens on it), for a dead target. Picked as freePort
 * picks, below the ephemeral range: one taken by `listen(0)` and closed again could be handed to
 * the next `listen(0)` — the proxy under test's own listener included, which made the "dead"
 * target the proxy itself, a forwarding loop that ran the test process out of file descriptors
 * (metrics.test.ts, 2026-12-06).
 */
export async function closedPort(): Promise<number> {
  return freePort();
}
