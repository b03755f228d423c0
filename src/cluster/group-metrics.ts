import { AggregatorRegistry, type Registry } from 'prom-client';
import type { PrometheusJson, ToWorker } from './ipc.ts';

interface Scrape {
  readonly waiting: Set<number>;
  readonly results: PrometheusJson[];
  readonly done: () => void;
}

export interface GroupMetricsOptions {
  /** the primary's registry: routing, store, health and rollout figures, and its process metrics */
  readonly registry: Registry;
  /** sends to every listening worker; returns their slots */
  readonly sendReady: (msg: ToWorker) => number[];
  /** ms a scrape waits for the workers; a late one is left out of that scrape @default 1000 */
  readonly timeoutMs?: number;
}

/**
 * `/metrics` of a process group: on each scrape every worker sends its registry as JSON over
 * IPC, and prom-client's `AggregatorRegistry.aggregate` merges them with the primary's by each
 * metric's `aggregator` — request counters, histograms and in-flight gauges are summed; gauges
 * that describe routing state say which value stands for the group (metrics.ts), the primary's
 * listed first. prom-client's own cluster scrape (`clusterMetrics`) is not used: it reads the
 * global registry, leaves the primary's metrics out and fails the whole scrape when one worker
 * is slow; here a late worker is left out of that scrape and a missing one is just absent.
 */
export class GroupMetrics {
  readonly contentType: string;
  private readonly opts: GroupMetricsOptions;
  private readonly scrapes = new Map<number, Scrape>();
  private nextId = 0;

  constructor(opts: GroupMetricsOptions) {
    this.opts = opts;
    this.contentType = opts.registry.contentType;
  }

  async render(): Promise<string> {
    const [own, workers] = await Promise.all([this.opts.registry.getMetricsAsJSON(), this.collect()]);
    return AggregatorRegistry.aggregate([own, ...workers]).metrics();
  }

  /** A worker's answer to scrape `id`. */
  answer(slot: number, id: number, metrics: PrometheusJson): void {
    const s = this.scrapes.get(id);
    if (s === undefined || !s.waiting.delete(slot)) return;
    s.results.push(metrics);
    if (s.waiting.size === 0) s.done();
  }

  /** A worker went away: no scrape waits for it. */
  forget(slot: number): void {
    for (const s of this.scrapes.values()) if (s.waiting.delete(slot) && s.waiting.size === 0) s.done();
  }

  private collect(): Promise<PrometheusJson[]> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      const results: PrometheusJson[] = [];
      const waiting = new Set<number>();
      const done = (): void => {
        clearTimeout(timer);
        this.scrapes.delete(id);
        resolve(results);
      };
      const timer = setTimeout(done, this.opts.timeoutMs ?? 1_000);
      this.scrapes.set(id, { waiting, results, done });
      for (const slot of this.opts.sendReady({ type: 'sy:metrics', id })) waiting.add(slot);
      if (waiting.size === 0) done();
    });
  }
}
