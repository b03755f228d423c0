import type { Pool } from 'undici';
// Only the Pool class (./engine/internals.ts): the package index also loads fetch, WebSocket,
// caches and a second copy of its parser, ~14 MB of RSS a proxy never uses (measured: 29 MB vs
// 15 MB on import)
import { undiciPool } from './engine/internals.ts';
import type { AppConfig } from '../config/schema.ts';
import { pinServerName, targetConnector } from './engine/tls-name.ts';
import { createH2Client, H2_SESSIONS, H2_STREAMS, type PoolProtocol } from './engine/h2-client.ts';
import { Http1Pool } from './engine/http1-pool.ts';
import type { EngineKind, Upstream } from './engine/upstream.ts';

/** How long a target that refused a connection is skipped when its pool has another one up. */
export const REFUSED_BACKOFF_MS = 1000;

/**
 * One upstream `http://host:port`: its undici connection pool and whether it is believed up.
 * Long-lived: created when it joins a pool's definition, shared by every snapshot until it leaves.
 */
export class Target {
  readonly url: string;
  readonly origin: string;
  /** replaced by `renewPool()` after a burst; a request keeps the pool it was dispatched on */
  dispatcher: Upstream;
  /** pools replaced by `renewPool()` still finishing their requests */
  private readonly retiring = new Set<Upstream>();
  private readonly poolOptions: Pool.Options;
  /** the forwarding engine of this target (config `engine`; https targets always go through undici) */
  readonly engine: EngineKind;
  /** epoch ms until which a refused target is skipped */
  downUntil = 0;
  /** the active health checks' verdict (src/health/active.ts); up until `fall` checks fail, as HAProxy */
  healthy = true;
  /** epoch ms until which passive checks left it out (src/health/passive.ts) */
  ejectedUntil = 0;
  /** consecutive 5xx responses and upstream errors; any other response resets it */
  consecutiveFailures = 0;
  /** a non-5xx response came since the passive checks' last stall sweep looked (src/health/passive.ts) */
  answered = false;
  /** times passive checks ejected it (a counter for metrics) */
  ejections = 0;
  /** what its health endpoint last reported with `health.versionFrom`, or null */
  reportedVersion: string | null = null;
  /** the passive checks of its pool, or null when the app has none */
  outlier: Outlier | null = null;
  inflight = 0;
  /** the app's `maxConnections`, or Infinity: with more requests than this in flight, the rest queue (limits.queueTimeout) */
  readonly maxConnections: number;
  /** `h2`: its engine is the HTTP/2 client (src/dataplane/engine/h2-client.ts), whatever `engine` says */
  readonly protocol: PoolProtocol;

  constructor(url: string, timeouts: AppConfig['timeouts'], maxConnections: number | null = null, engine: EngineKind = 'native', protocol: PoolProtocol = 'http1') {
    const u = new URL(url);
    this.engine = u.protocol === 'http:' && protocol === 'http1' ? engine : 'undici';
    this.protocol = protocol;
    this.url = url;
    // h2: sessions × streams may be in flight before requests queue
    this.maxConnections = protocol === 'h2' ? (maxConnections ?? H2_SESSIONS) * H2_STREAMS : (maxConnections ?? Infinity);
    this.origin = u.origin;
    this.poolOptions = {
      connect: { timeout: timeouts.connect },
      headersTimeout: timeouts.response,
      bodyTimeout: timeouts.idle,
      keepAliveTimeout: 4_000,
      keepAliveMaxTimeout: timeouts.idle,
      // null: as many connections as requests in flight; a cap queues the rest inside undici
      connections: maxConnections,
      pipelining: 1,
    };
    this.dispatcher = this.newPool();
  }

  private newPool(): Upstream {
    return pinServerName(this.origin, this.newEngine());
  }

  private newEngine(): Upstream {
    const o = this.poolOptions;
    const connectTimeout = (o.connect as { timeout: number }).timeout;
    if (this.protocol === 'h2') return createH2Client(this.origin, { connectTimeout, headersTimeout: o.headersTimeout as number, bodyTimeout: o.bodyTimeout as number, sessions: o.connections ?? null });
    // https: the certificate is checked for the target's own name (./engine/tls-name.ts)
    if (this.engine === 'undici') return new (undiciPool().Pool)(this.origin, this.origin.startsWith('https:') ? { ...o, connect: targetConnector({ timeout: connectTimeout, allowH2: false }) } : o);
    return new Http1Pool(this.origin, {
      connectTimeout,
      headersTimeout: o.headersTimeout as number,
      bodyTimeout: o.bodyTimeout as number,
      keepAliveTimeout: o.keepAliveTimeout as number,
      keepAliveMaxTimeout: o.keepAliveMaxTimeout as number,
      connections: o.connections ?? null,
    });
  }

  /**
   * Swaps in a fresh connection pool and closes the old one once its requests are done. Why:
   * an undici Pool keeps every Client it ever created (one per connection at the busiest moment)
   * and has no way to drop idle ones, so after a burst of 8,000 requests 4,600 Clients and their
   * buffers stayed in the heap for good (measured with v8.queryObjects). Called when a burst of
   * connections is over; the next requests open new connections.
   */
  renewPool(): void {
    const old = this.dispatcher;
    this.dispatcher = this.newPool();
    this.retiring.add(old);
    old.close().then(
      () => this.retiring.delete(old),
      () => this.retiring.delete(old),
    );
  }

  /** Destroys its pools, the retiring ones too (runtime close). */
  destroy(): Promise<unknown> {
    return Promise.all([this.dispatcher, ...this.retiring].map((d) => d.destroy().catch(() => undefined)));
  }

  isUp(now: number): boolean {
    return this.healthy && this.downUntil <= now && this.ejectedUntil <= now;
  }

  /** Passive health, once per upstream response or failure: O(1), no allocation until a failure streak. */
  recordResult(ok: boolean): void {
    if (ok) {
      this.consecutiveFailures = 0;
      this.answered = true;
      return;
    }
    this.consecutiveFailures++;
    this.outlier?.failed(this);
  }
}

/** Decides whether a failing target is ejected (src/health/passive.ts). */
export interface Outlier {
  failed(target: Target): void;
}
