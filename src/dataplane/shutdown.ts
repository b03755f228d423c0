import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import { ProxyHandler } from './forward.ts';
import type { Runtime } from './runtime.ts';
import type { DataPlane } from './server.ts';

/** What a data plane's graceful stop did, for the log and `switchyard_shutdown_cut_total`. */
export interface StopReport {
  /** requests still waiting for an upstream's response head at `grace`, answered 503 GOING_AWAY */
  readonly answered: number;
  /** requests and connections still open at `hardStop`, cut */
  readonly cut: number;
}

export interface StopOptions {
  readonly dataPlane: DataPlane;
  readonly runtime: Runtime;
  readonly shutdown: Config['shutdown'];
  readonly logger: Logger;
  readonly now: () => number;
  /**
   * ms after the listeners stop during which no connection is closed as idle: after a hand-over
   * (src/upgrade) a connection accepted just before may not have had its request read yet, and
   * closing it would reset a request the client already sent. @default 0
   */
  readonly settleMs?: number;
  /** another listener feeding the same data plane (the TLS port, src/edge): stopped and closed alongside it */
  readonly listener?: { stopListening(): void; closeIdle(): void; closeAll(): void } | null;
}

/** How often the drain loop looks at what is still in flight (and closes connections gone idle). */
const POLL_MS = 25;

const inflight = (runtime: Runtime): number => runtime.allPools().reduce((n, p) => n + p.inflight + p.upgraded, 0);

/**
 * The data plane's graceful stop, Traefik's two phases (graceTimeOut, then force), every
 * deadline counted from SIGTERM:
 * - at once: `/readyz` is 503 (the caller's flag) and every response carries `Connection: close`;
 * - at `delay`: new connections are refused, idle keep-alive connections are closed (and every
 *   other one as its response ends), WebSockets get close 1001;
 * - at `grace`: every request still waiting for an upstream's response head is answered 503
 *   (`GOING_AWAY`, retryable: nothing was answered) and its upstream request aborted; responses
 *   already streaming keep going, since a status line already out cannot be replaced;
 * - at `hardStop`: whatever still runs (streams, slow readers, WebSockets that did not close) is
 *   cut and counted.
 */
export async function stopDataPlane(o: StopOptions): Promise<StopReport> {
  const { dataPlane, runtime, logger, now } = o;
  const { delay, grace, hardStop } = o.shutdown;
  const started = now();
  dataPlane.closing = true;
  // keep accepting for `delay` so a load balancer notices readyz before connections are refused
  if (delay > 0) await sleep(delay);
  dataPlane.stopListening();
  o.listener?.stopListening();
  if ((o.settleMs ?? 0) > 0) await sleep(o.settleMs);
  o.listener?.closeIdle();
  dataPlane.closeIdleConnections();
  for (const p of runtime.allPools()) for (const c of p.open) if ((c as { upgraded?: boolean }).upgraded === true) c.cut('shutdown');
  await drainUntil(o, started + grace);
  let answered = 0;
  if (inflight(runtime) > 0) {
    for (const p of runtime.allPools()) {
      for (const c of p.open) {
        if (c instanceof ProxyHandler && !c.res.headersSent) {
          c.cut('shutdown');
          answered++;
        }
      }
    }
    const streaming = inflight(runtime);
    logger.warn({ answered, streaming, hardStop }, `shutdown grace passed: ${answered} requests still waiting for an upstream answered 503; ${streaming} still open until hardStop`);
    await drainUntil(o, started + hardStop);
  }
  const cut = inflight(runtime);
  if (cut > 0) {
    for (const p of runtime.allPools()) for (const c of p.open) c.cut('shutdown');
    logger.warn({ cut }, 'hard stop: cut connections still open');
  }
  // connections with no request (a slow client still sending its head) are cut too, uncounted: nothing was accepted on them
  dataPlane.closeAllConnections();
  o.listener?.closeAll();
  return { answered, cut };
}

/** Waits until nothing is in flight or `deadline`, closing keep-alive connections as they go idle. */
async function drainUntil(o: StopOptions, deadline: number): Promise<void> {
  while (inflight(o.runtime) > 0 && o.now() < deadline) {
    o.dataPlane.closeIdleConnections();
    await sleep(Math.min(POLL_MS, Math.max(1, deadline - o.now())));
  }
}
