import type { Registry } from 'prom-client';
import type { Config } from '../config/schema.ts';
import type { PoolCounts } from '../control/counts.ts';
import type { StatsExport } from '../metrics/stats.ts';
import type { RoutingState } from '../state/types.ts';
import type { ListenerInfo, ListenHandle } from '../upgrade/handles.ts';

/**
 * The messages between the primary and its workers (node:cluster's IPC channel, JSON). Both
 * ends run the same code and the same config, so apps, pools and targets are addressed by
 * their index in the config, as the snapshot and the Runtime index them.
 */

/** What the primary's health checks say of one target: the fields the data plane reads. */
export interface TargetHealth {
  readonly healthy: boolean;
  /** epoch ms until which passive checks (of any worker) left it out */
  readonly ejectedUntil: number;
}

/**
 * Every target's health, `[app][pool][target URL]`: by name, not position, since apps, pools
 * and targets come and go while the processes run (live definitions) and a worker started later
 * may number them otherwise.
 */
export type HealthTable = Readonly<Record<string, Readonly<Record<string, Readonly<Record<string, TargetHealth>>>>>>;

/** A worker's figures, sent every `reportInterval` and summed by the primary. */
export interface WorkerReport {
  /** app → revision the worker routes on */
  readonly applied: Readonly<Record<string, number>>;
  /** app → pool → live counts */
  readonly pools: Readonly<Record<string, Readonly<Record<string, PoolCounts>>>>;
  /** its live stats windows (`LiveStats.exportWindows`) */
  readonly stats: StatsExport;
  /** requests it finished since it started */
  readonly served: number;
  /** epoch ms when the worker made this report (readyz shows it: a test waits for the next report) */
  readonly at: number;
}

/** `Registry.getMetricsAsJSON()`, what `AggregatorRegistry.aggregate` merges */
export type PrometheusJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

/** One pool's discovered targets (Runtime.setDiscoveredTargets): the primary resolves, its workers follow. */
export interface DiscoveredTargets {
  readonly app: string;
  readonly pool: string;
  readonly urls: readonly string[];
}

/** An ACME certificate as PEM, for a worker to serve (the primary orders and reads the store). */
export interface AcmePem {
  readonly host: string;
  readonly cert: string;
  readonly key: string;
}

/** Primary → worker. */
export type ToWorker =
  /** the answer to `hello`: everything a worker needs to serve */
  | { readonly type: 'sy:init'; readonly slot: number; readonly config: Config; readonly states: readonly RoutingState[]; readonly health: HealthTable; readonly discovered: readonly DiscoveredTargets[]; readonly acme?: readonly AcmePem[] }
  /** a routing state the primary applied */
  | { readonly type: 'sy:state'; readonly state: RoutingState }
  | { readonly type: 'sy:health'; readonly health: HealthTable }
  /** the targets the primary's DNS discovery found for a pool (src/discovery/): sent before the health table that names them */
  | ({ readonly type: 'sy:discovered' } & DiscoveredTargets)
  /** a `/metrics` scrape: answer with the registry as JSON */
  | { readonly type: 'sy:metrics'; readonly id: number }
  /** run the graceful shutdown (delay, grace, hardStop) and exit; `handedOver`: a new process accepts on the sockets, no delay */
  | { readonly type: 'sy:shutdown'; readonly handedOver?: boolean }
  /** a listening socket handed over from the previous Switchyard (the handle rides with it), sent before `init` */
  | ({ readonly type: 'sy:listener' } & ListenerInfo)
  /** an upgrade: send every listening socket (`sy:socket` each, then `sy:sockets-done`) */
  | { readonly type: 'sy:sockets' }
  /** SIGHUP: a new log level, and/or read the certificate files again */
  | { readonly type: 'sy:reload'; readonly level?: Config['log']['level']; readonly certificates?: boolean }
  /** an upgrade handed the sockets over: stop accepting now (the drain follows with `sy:shutdown`) */
  | { readonly type: 'sy:stop-accepting' }
  /** an ACME certificate the primary loaded or got issued: serve it (replacing the host's previous one) */
  | ({ readonly type: 'sy:acme-cert' } & AcmePem)
  /** a TLS-ALPN-01 challenge certificate to answer the CA with, or (cert null) its end */
  | { readonly type: 'sy:acme-alpn'; readonly host: string; readonly cert: string | null; readonly key: string | null }
  /** the answer to a worker's `sy:http01`: the key authorization, null when unknown; `failed`: the store did not answer */
  | { readonly type: 'sy:http01'; readonly id: number; readonly keyAuthorization: string | null; readonly failed: boolean };

/** Worker → primary. */
export type ToPrimary =
  /** its message listener is in place (a message sent earlier could be lost while modules load) */
  | { readonly type: 'sy:hello' }
  /** listening (`listen` says how), routing on `applied` */
  | { readonly type: 'sy:ready'; readonly pid: number; readonly listen: ListenMode; readonly applied: Readonly<Record<string, number>> }
  /** sent at once after applying a state, so a write can wait for every worker */
  | { readonly type: 'sy:applied'; readonly applied: Readonly<Record<string, number>> }
  | { readonly type: 'sy:report'; readonly report: WorkerReport }
  /** its passive checks ejected a target: the primary tells the others */
  | { readonly type: 'sy:ejected'; readonly app: string; readonly pool: string; readonly target: string; readonly until: number }
  | { readonly type: 'sy:metrics'; readonly id: number; readonly metrics: PrometheusJson }
  /** the graceful shutdown is done; `cut` connections were still open at hardStop */
  | { readonly type: 'sy:stopped'; readonly cut: number }
  /** an HTTP-01 challenge reached this worker's plain port: the primary looks the token up */
  | { readonly type: 'sy:http01'; readonly id: number; readonly token: string }
  /** one of its listening sockets (the handle rides with it), for an upgrade */
  | ({ readonly type: 'sy:socket' } & ListenerInfo)
  | { readonly type: 'sy:sockets-done'; readonly count: number }
  /** it could not start (e.g. the port is taken); it exits 1 next */
  | { readonly type: 'sy:fatal'; readonly message: string };

/**
 * `reuseport`: the worker has a listening socket of its own (SO_REUSEPORT) and the kernel spreads
 * connections; `shared`: node:cluster's default, the primary accepts and hands sockets over.
 */
export type ListenMode = 'reuseport' | 'shared' | 'inherited';

/** How a worker talks to its primary; main.ts makes one from `process` (only it touches process). */
export interface WorkerChannel {
  /** `handle`: a listening socket that travels with the message (src/upgrade) */
  send(msg: ToPrimary, handle?: ListenHandle): void;
  onMessage(fn: (msg: ToWorker, handle: ListenHandle | undefined) => void): void;
  /** the primary went away (it died, or closed the channel) */
  onDisconnect(fn: () => void): void;
}

/** Our messages only: node:cluster's own and prom-client's travel on the same channel. */
export function isOurs<T extends { readonly type: string }>(msg: unknown): msg is T {
  return typeof msg === 'object' && msg !== null && typeof (msg as { type?: unknown }).type === 'string' && (msg as { type: string }).type.startsWith('sy:');
}
