import { collectDefaultMetrics, Counter, Gauge, Registry, type Aggregator, type Metric } from 'prom-client';
import type { Config } from '../config/schema.ts';
import { GUARD_PLACES } from '../dataplane/guard.ts';
import { LIMIT_EVENTS, type Limits } from '../dataplane/limits.ts';
import { grpcClass } from '../dataplane/grpc.ts';
import type { MirrorRecord, RequestRecord } from '../dataplane/types.ts';
import type { Runtime } from '../dataplane/runtime.ts';
import type { RoutingState } from '../state/types.ts';
import type { AppRoute, PoolRoute, Snapshot } from '../routing/snapshot.ts';

/**
 * The Prometheus metrics of one proxy, in its own registry (several proxies can live in one
 * process, e.g. in tests). Label values come from the definitions only (app and pool names, fixed
 * status classes and error codes), never from requests, so cardinality is bounded by the apps and
 * pools defined (a removed pool's series stays until restart, as Prometheus counters should).
 *
 * The per-request series do not go through prom-client's `labels().inc()`, which hashes the
 * label values and allocates on every call: `record()` bumps preallocated typed arrays indexed by
 * the snapshot's app and pool indexes (O(1), no allocation), and the registry reads them at scrape
 * time through small collector objects. Gauges are computed at scrape time the same way.
 */

/** `class` label values; proxy-made errors (502/503/504 the proxy answered itself, broken responses) are `error`. */
export const STATUS_CLASSES = ['2xx', '3xx', '4xx', '5xx', 'error'] as const;
const ERROR_CLASS = 4;
/** ms between two samples of the event loop delay (`nodejs_eventloop_lag_*`); prom-client's default is 10 */
const EVENT_LOOP_SAMPLE_MS = 100;
/** `code` label values of switchyard_proxy_errors_total (the data plane's error codes) */
export const PROXY_ERROR_CODES = ['UPSTREAM_ERROR', 'NO_TARGET', 'UPSTREAM_TIMEOUT', 'QUEUE_TIMEOUT'] as const;
/** Time-to-head buckets in seconds: from 1 ms to the default response timeout and beyond. */
export const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] as const;
/** Stream-duration buckets in seconds: most responses end with their head; streams run for minutes or hours. */
export const STREAM_BUCKETS = [0.001, 0.01, 0.1, 1, 10, 60, 300, 1800, 3600] as const;

/** Non-cumulative bucket counts (the last one is +Inf), sum and count of one histogram series. */
class Buckets {
  readonly counts: Float64Array;
  readonly bounds: readonly number[];
  sum = 0;
  count = 0;
  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }
  observe(seconds: number): void {
    let b = 0;
    while (b < this.bounds.length && seconds > (this.bounds[b] as number)) b++;
    this.counts[b] = (this.counts[b] as number) + 1;
    this.sum += seconds;
    this.count++;
  }
}

export interface MetricsDeps {
  readonly config: Config;
  /** routing state and snapshot (the Controller) */
  readonly controller: { readonly snapshot: Snapshot; allStates(): RoutingState[] };
  readonly runtime: Runtime;
  /** the state store: a `connected` boolean is read when it has one (Redis), otherwise it counts as connected */
  readonly store: object;
  /** @default Date.now */
  readonly now?: () => number;
  /** register prom-client's process and Node.js metrics @default true */
  readonly defaultMetrics?: boolean;
}

/** One app and pool's request counters, bumped on the hot path. */
class PoolSeries {
  readonly labels: { readonly app: string; readonly pool: string };
  readonly classes = new Float64Array(STATUS_CLASSES.length);
  readonly errors = new Float64Array(PROXY_ERROR_CODES.length);
  /** time to the response head */
  readonly head = new Buckets(DURATION_BUCKETS);
  /** response head to its end */
  readonly stream = new Buckets(STREAM_BUCKETS);
  constructor(app: string, pool: string) {
    this.labels = { app, pool };
  }
}

type Sample = { labels: Record<string, string | number>; value: number; metricName?: string };

/**
 * A metric whose samples are computed at scrape time from our own counters. It implements the
 * part of prom-client's metric interface the registry uses (`name`, `get()`).
 */
class ComputedMetric {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'histogram';
  readonly aggregator = 'sum' as const;
  private readonly samples: () => Sample[];
  constructor(name: string, help: string, type: 'counter' | 'histogram', samples: () => Sample[]) {
    this.name = name;
    this.help = help;
    this.type = type;
    this.samples = samples;
  }
  async get(): Promise<{ name: string; help: string; type: string; aggregator: 'sum'; values: Sample[] }> {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.samples() };
  }
  reset(): void {}
}

export class Metrics {
  readonly registry = new Registry();
  readonly contentType: string = this.registry.contentType;
  /** [app slot][pool slot] (AppRoute.index, PoolRoute.index); grows as apps and pools are added live */
  private readonly series: PoolSeries[][];
  private readonly previewRejectedByApp: Counter.Internal[];
  private readonly rejected: Counter;
  private readonly cuts: Counter;
  private readonly ruleRequests: Counter;
  private readonly mirrorCopies: Counter;
  private readonly mirrorCompared: Counter;
  private readonly mirrorMismatches: Counter;

  constructor(deps: MetricsDeps) {
    const { controller, runtime } = deps;
    const registry = this.registry;
    const now = deps.now ?? Date.now;
    // slots: the snapshot's (config order at start), so the hot path indexes them like the Runtime
    const series: PoolSeries[][] = [];
    for (const a of controller.snapshot.apps) series[a.index] = a.pools.reduce<PoolSeries[]>((row, p) => ((row[p.index] = new PoolSeries(a.name, p.name)), row), []);
    this.series = series;
    const all = (): PoolSeries[] => series.flat();

    const add = (m: ComputedMetric): void => registry.registerMetric(m as unknown as Metric);
    add(
      new ComputedMetric('switchyard_requests_total', 'Proxied requests by app, pool and status class (error: the proxy answered 502/503/504 itself or the upstream broke the response).', 'counter', () =>
        all().flatMap((s) => STATUS_CLASSES.map((c, i) => ({ labels: { ...s.labels, class: c }, value: s.classes[i] as number }))),
      ),
    );
    add(
      new ComputedMetric('switchyard_proxy_errors_total', 'Responses the proxy made itself or cut, by app, pool and error code.', 'counter', () =>
        all().flatMap((s) => PROXY_ERROR_CODES.map((code, i) => ({ labels: { ...s.labels, code }, value: s.errors[i] as number }))),
      ),
    );
    const histogram = (name: string, help: string, of: (s: PoolSeries) => Buckets): ComputedMetric =>
      new ComputedMetric(name, help, 'histogram', () =>
        all().flatMap((s) => {
          const h = of(s);
          const out: Sample[] = [];
          let acc = 0;
          h.bounds.forEach((le, i) => {
            acc += h.counts[i] as number;
            out.push({ metricName: `${name}_bucket`, labels: { ...s.labels, le }, value: acc });
          });
          out.push({ metricName: `${name}_bucket`, labels: { ...s.labels, le: '+Inf' }, value: h.count });
          out.push({ metricName: `${name}_sum`, labels: { ...s.labels }, value: h.sum });
          out.push({ metricName: `${name}_count`, labels: { ...s.labels }, value: h.count });
          return out;
        }),
      );
    // latency is the time to the response head: a stream open for minutes is not a slow response
    add(histogram('switchyard_response_head_seconds', 'Latency: time from routing a request to its response head going to the client (or the proxy\'s own answer), by app and pool. Upgrades are not counted.', (s) => s.head));
    add(histogram('switchyard_stream_duration_seconds', 'How long responses stayed open after their head (streams, downloads; to their last byte or a cut), by app and pool. Upgrades are not counted.', (s) => s.stream));

    // `aggregator`: how `workers: N` (src/cluster/group-metrics.ts) merges the primary's value,
    // listed first, with the workers': counts are summed, routing state has one value per instance
    const poolGauge = (name: string, help: string, value: (app: number, pool: number, s: PoolSeries) => number, aggregator: Aggregator = 'sum'): void => {
      new Gauge({
        name,
        help,
        labelNames: ['app', 'pool'],
        registers: [registry],
        aggregator,
        collect() {
          this.reset();
          series.forEach((pools, a) => pools.forEach((s, p) => this.set(s.labels, value(a, p, s))));
        },
      });
    };
    poolGauge('switchyard_inflight_requests', 'Requests (and open streams) being proxied to the pool by this instance.', (a, p) => runtime.apps[a]?.pools[p]?.inflight ?? 0);
    poolGauge('switchyard_upgraded_connections', 'Upgraded (WebSocket) connections open to the pool on this instance.', (a, p) => runtime.apps[a]?.pools[p]?.upgraded ?? 0);
    poolGauge('switchyard_pool_weight_ratio', 'Share of new requests routed to the pool by weight, 0 to 1.', (_a, _p, s) => (controller.snapshot.byName.get(s.labels.app)?.poolsByName.get(s.labels.pool)?.weight ?? 0) / 10_000, 'first');

    const appGauge = (name: string, help: string, value: (s: RoutingState) => number, aggregator: Aggregator): void => {
      new Gauge({
        name,
        help,
        labelNames: ['app'],
        registers: [registry],
        aggregator,
        collect() {
          this.reset();
          for (const s of controller.allStates()) this.set({ app: s.app }, value(s));
        },
      });
    };
    appGauge('switchyard_routing_revision', 'Revision of the routing state this instance routes on.', (s) => s.revision, 'min');
    appGauge('switchyard_routing_state_age_seconds', 'Seconds since the routing state this instance routes on was written.', (s) => Math.max(0, (now() - Date.parse(s.updatedAt)) / 1000), 'max');

    const store = deps.store as { connected?: unknown };
    new Gauge({
      name: 'switchyard_store_connected',
      // only the primary holds the store
      aggregator: 'first',
      help: 'Whether the state store is reachable (1) or not (0); the file store is always 1.',
      registers: [registry],
      collect() {
        this.set(typeof store.connected === 'boolean' ? Number(store.connected) : 1);
      },
    });

    const writable = deps.store as { writable?: unknown };
    new Gauge({
      name: 'switchyard_store_writable',
      aggregator: 'first',
      help: 'Whether the state store takes writes now (1) or not (0): the file store by its last write or probe (a read-only or full filesystem), Redis by its connection.',
      registers: [registry],
      collect() {
        this.set(typeof writable.writable === 'boolean' ? Number(writable.writable) : typeof store.connected === 'boolean' ? Number(store.connected) : 1);
      },
    });

    const rejected = new Counter({ name: 'switchyard_preview_rejected_total', help: 'Requests whose preview header carried a bad signature (routed as if it were absent).', labelNames: ['app'], registers: [registry] });
    this.rejected = rejected;
    this.previewRejectedByApp = [];
    for (const a of controller.snapshot.apps) (this.previewRejectedByApp[a.index] = rejected.labels(a.name)).inc(0);
    // rules and mirrors: label values from definitions (rule and pool names) and fixed outcomes
    this.ruleRequests = new Counter({ name: 'switchyard_rule_requests_total', help: 'Requests routed by a cohort rule, by app, rule and pool.', labelNames: ['app', 'rule', 'pool'], registers: [registry] });
    this.mirrorCopies = new Counter({ name: 'switchyard_mirror_requests_total', help: 'Mirrored copies by app, mirror pool and outcome: the copy\'s status class, error (failed, timed out, no target up), skipped_body or skipped_busy.', labelNames: ['app', 'pool', 'outcome'], registers: [registry] });
    this.mirrorCompared = new Counter({ name: 'switchyard_mirror_compared_total', help: 'With mirror compare: (live, copy) status-class pairs, by app, mirror pool, live class and copy class.', labelNames: ['app', 'pool', 'live', 'mirror'], registers: [registry] });
    this.mirrorMismatches = new Counter({ name: 'switchyard_mirror_mismatches_total', help: 'With mirror compare: pairs whose live and copy status classes differed, by app and mirror pool.', labelNames: ['app', 'pool'], registers: [registry] });
    this.cuts = new Counter({ name: 'switchyard_shutdown_cut_total', help: 'Connections still open at the shutdown hard stop, and cut.', registers: [registry] });

    // prom-client samples the event loop delay with a libuv timer every 10 ms by default: 100
    // wake-ups a second of an otherwise idle process (0.4 % of a core per instance here, 20 % of a
    // core for a fleet of 50 on one host). Every 100 ms still gives ~150 samples per 15 s scrape.
    if (deps.defaultMetrics !== false) collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  }

  /** Hot path: one finished proxied request. */
  record(rec: RequestRecord): void {
    const s = this.series[rec.app.index]?.[rec.pool.index] ?? this.grow(rec.app, rec.pool);
    const { status, error, startedAt, headAt, endedAt, grpc } = rec.outcome;
    let cls: number;
    if (error !== null) {
      cls = ERROR_CLASS;
      const e = error === 'UPSTREAM_ERROR' ? 0 : error === 'NO_TARGET' ? 1 : error === 'UPSTREAM_TIMEOUT' ? 2 : error === 'QUEUE_TIMEOUT' ? 3 : -1;
      if (e >= 0) s.errors[e] = (s.errors[e] as number) + 1;
    } else if (grpc !== undefined && grpc > 0) {
      // a gRPC call's status decides its class (answered 200 whatever happened): the server's fault 5xx, the caller's 4xx
      cls = grpcClass(grpc) === 'server' ? 3 : 2;
    } else cls = status < 300 ? 0 : status < 400 ? 1 : status < 500 ? 2 : 3;
    s.classes[cls] = (s.classes[cls] as number) + 1;
    // `rule:NAME` (the other values are preview, pin and weights)
    if (rec.by.charCodeAt(0) === 114 /* r */) this.ruleRequests.labels(rec.app.name, rec.by.slice(5), rec.pool.name).inc();
    // an upgraded connection's life is neither a response time nor a stream
    if (status === 101) return;
    s.head.observe(Math.max(0, headAt - startedAt) / 1000);
    s.stream.observe(Math.max(0, endedAt - headAt) / 1000);
  }

  /** A mirrored copy's end or skip, or a compared pair (off the request path). */
  mirror(rec: MirrorRecord): void {
    if (rec.kind === 'copy') {
      this.mirrorCopies.labels(rec.app.name, rec.pool.name, rec.outcome).inc();
      return;
    }
    this.mirrorCompared.labels(rec.app.name, rec.pool.name, rec.live, rec.mirror).inc();
    const mismatches = this.mirrorMismatches.labels(rec.app.name, rec.pool.name);
    if (rec.live !== rec.mirror) mismatches.inc();
    else mismatches.inc(0);
  }

  previewRejected(app: AppRoute): void {
    (this.previewRejectedByApp[app.index] ??= this.rejected.labels(app.name)).inc();
  }

  /** The series of an app or pool added while the process runs (its first request). */
  private grow(app: AppRoute, pool: PoolRoute): PoolSeries {
    const row = (this.series[app.index] ??= []);
    return (row[pool.index] = new PoolSeries(app.name, pool.name));
  }

  /** The connection limits of the data plane (src/dataplane/limits.ts): read at scrape time. */
  addLimits(limits: Limits): void {
    const registry = this.registry;
    new Gauge({ name: 'switchyard_client_connections', help: 'Client connections open on the proxy listeners of this process.', registers: [registry], collect() {
      this.set(limits.open);
    } });
    new Gauge({ name: 'switchyard_client_connections_max', help: 'The connection cap, limits.maxConnections of each process (summed over workers); beyond it new connections are closed at accept.', registers: [registry], collect() {
      this.set(limits.max);
    } });
    new Gauge({ name: 'switchyard_fd_limit', help: 'The open-file limit (RLIMIT_NOFILE) of a data-plane process; absent when unknown.', aggregator: 'min', registers: [registry], collect() {
      this.reset();
      if (limits.fdLimit !== null) this.set(limits.fdLimit);
    } });
    new Counter({ name: 'switchyard_limit_enforced_total', help: 'Connections and requests closed by a limit: header, body, send or queue timeout, or refused over the connection cap.', labelNames: ['limit'], registers: [registry], collect() {
      this.reset();
      for (const k of LIMIT_EVENTS) this.inc({ limit: k }, limits.counts[k]);
    } });
    new Counter({ name: 'switchyard_request_exceptions_total', help: 'Exceptions caught while handling a request or a client connection (each ended that request, never the process): a bug, by where it was caught.', labelNames: ['place'], registers: [registry], collect() {
      this.reset();
      for (const k of GUARD_PLACES) this.inc({ place: k }, limits.guard.counts[k]);
    } });
  }

  /** Connections cut at the shutdown hard stop. */
  shutdownCut(n: number): void {
    if (n > 0) this.cuts.inc(n);
  }

  /** The Prometheus text exposition. */
  render(): Promise<string> {
    return this.registry.metrics();
  }
}
