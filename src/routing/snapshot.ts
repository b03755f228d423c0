import { createHmac } from 'node:crypto';
import type { AppConfig } from '../config/schema.ts';
import type { RoutingState } from '../state/types.ts';
import { ownOf, TOTAL_BP } from '../config/weights.ts';
import { compileMirror, compileRules, routingHolds, type CompiledRule, type MirrorRoute } from './rules.ts';
import { SwitchyardError } from '../errors.ts';

/**
 * The immutable routing snapshot the data plane reads. The control plane builds a whole new
 * one for every state change and swaps the reference; nothing in here is mutated afterwards
 * (it is frozen), so a request always sees one consistent revision.
 */
export interface PoolRoute {
  /**
   * the pool's slot: its index in the order the process first saw the app's pools (the order of
   * the definition, new pools appended), never reused, so runtime counters and metrics series
   * keep their place when pools are added or removed
   */
  readonly index: number;
  readonly name: string;
  readonly version: string;
  /** `POOL@VERSION`, precomputed for the X-Served-By header */
  readonly servedBy: string;
  /** basis points */
  readonly weight: number;
  /** buckets [lo, hi) belong to this pool */
  readonly lo: number;
  readonly hi: number;
  /** epoch ms the pool's weight became 0, or null while it has weight */
  readonly drainingSince: number | null;
  /** drainingSince + drain.timeout, or null */
  readonly drainDeadline: number | null;
  /** drainingSince + affinity.window (pins honoured until then), or null */
  readonly pinDeadline: number | null;
  /** the full preview header value that selects this pool (`POOL.SIG`), when preview is configured */
  readonly previewValue: string | null;
}

export type StickySource = { readonly kind: 'header'; readonly name: string } | { readonly kind: 'cookie'; readonly name: string } | { readonly kind: 'ip' };

export interface AppRoute {
  /** the app's slot (see PoolRoute.index), in the order the process first saw the apps */
  readonly index: number;
  readonly name: string;
  readonly config: AppConfig;
  readonly revision: number;
  readonly salt: string;
  readonly pools: readonly PoolRoute[];
  readonly poolsByName: ReadonlyMap<string, PoolRoute>;
  /** pools with weight > 0, in bucket order, for the weighted pick */
  readonly weighted: readonly PoolRoute[];
  readonly sticky: readonly StickySource[] | null;
  /** cohort rules, in order (routing/decide.ts) */
  readonly rules: readonly CompiledRule[];
  /** shadow traffic, or null */
  readonly mirror: MirrorRoute | null;
}

export interface Snapshot {
  readonly apps: readonly AppRoute[];
  readonly byName: ReadonlyMap<string, AppRoute>;
  readonly exactHosts: ReadonlyMap<string, AppRoute>;
  /** `[".shop.example.com", app]`, longest suffix first */
  readonly wildcards: readonly (readonly [string, AppRoute])[];
  readonly fallback: AppRoute | null;
}

export function previewSignature(secret: string, app: string, pool: string): string {
  return createHmac('sha256', secret).update(`${app}:${pool}`).digest('hex');
}

function parseSticky(keys: readonly string[] | undefined): StickySource[] | null {
  if (keys === undefined) return null;
  return keys.map((k) => {
    if (k === 'ip') return { kind: 'ip' } as const;
    const i = k.indexOf(':');
    const kind = k.slice(0, i) as 'header' | 'cookie';
    const name = k.slice(i + 1);
    return { kind, name: kind === 'header' ? name.toLowerCase() : name };
  });
}

/** `poolSlot`: each pool's slot (PoolRoute.index) @default its position in the definition */
export function buildAppRoute(index: number, config: AppConfig, state: RoutingState, poolSlot: (pool: string, position: number) => number = (_p, i) => i): AppRoute {
  const names = Object.keys(config.pools);
  let lo = 0;
  const pools: PoolRoute[] = names.map((name, position) => {
    const i = poolSlot(name, position);
    const pc = config.pools[name] as AppConfig['pools'][string];
    const weight = ownOf(state.weights, name) ?? 0;
    const since = ownOf(state.drainingSince, name);
    const drainingSince = weight === 0 && since !== undefined ? Date.parse(since) : null;
    const route: PoolRoute = {
      index: i,
      name,
      version: pc.version,
      servedBy: `${name}@${pc.version}`,
      weight,
      lo,
      hi: lo + weight,
      drainingSince,
      // a pool a rule or the mirror still sends to is not draining: nothing open on it is cut (docs/cohorts.md §3)
      drainDeadline: drainingSince === null || routingHolds(config, name).length > 0 ? null : drainingSince + config.drain.timeout,
      // a pool a rollback drained holds no pins: its version is bad (RoutingState.unpinned)
      pinDeadline: drainingSince === null || config.affinity === undefined || state.unpinned?.includes(name) === true ? null : drainingSince + config.affinity.window,
      previewValue: config.preview === undefined ? null : `${name}.${previewSignature(config.preview.secret, config.name, name)}`,
    };
    lo += weight;
    return Object.freeze(route);
  });
  if (lo !== TOTAL_BP) throw new SwitchyardError('INVALID_STATE', `app ${config.name}: weights of revision ${state.revision} sum to ${lo} bp, not ${TOTAL_BP}`);
  return Object.freeze({
    index,
    name: config.name,
    config,
    revision: state.revision,
    salt: state.salt,
    pools: Object.freeze(pools),
    poolsByName: new Map(pools.map((p) => [p.name, p])),
    weighted: Object.freeze(pools.filter((p) => p.weight > 0)),
    sticky: parseSticky(config.sticky?.key),
    rules: compileRules(config),
    mirror: compileMirror(config),
  });
}

export function buildSnapshot(apps: readonly AppRoute[]): Snapshot {
  const exactHosts = new Map<string, AppRoute>();
  const wildcards: [string, AppRoute][] = [];
  let fallback: AppRoute | null = null;
  for (const app of apps) {
    for (const host of app.config.hosts) {
      if (host === '*') fallback = app;
      else if (host.startsWith('*.')) wildcards.push([host.slice(1), app]);
      else exactHosts.set(host, app);
    }
  }
  wildcards.sort((a, b) => b[0].length - a[0].length);
  return Object.freeze({
    apps: Object.freeze([...apps]),
    byName: new Map(apps.map((a) => [a.name, a])),
    exactHosts,
    wildcards: Object.freeze(wildcards),
    fallback,
  });
}

/** Host header → app: exact name, then the longest wildcard, then "*". Ports are ignored unless a pattern names one. */
export function findApp(snapshot: Snapshot, hostHeader: string | undefined): AppRoute | null {
  if (hostHeader === undefined || hostHeader === '') return snapshot.fallback;
  let host = hostHeader.toLowerCase();
  let app = snapshot.exactHosts.get(host);
  if (app !== undefined) return app;
  const colon = host.lastIndexOf(':');
  if (colon > 0 && host.indexOf(']') < colon) host = host.slice(0, colon);
  // `shop.test.` is the same name as `shop.test` (a fully qualified one), as nginx takes it
  if (host.endsWith('.')) host = host.slice(0, -1);
  app = snapshot.exactHosts.get(host);
  if (app !== undefined) return app;
  for (const [suffix, a] of snapshot.wildcards) {
    if (host.length > suffix.length && host.endsWith(suffix)) return a;
  }
  return snapshot.fallback;
}
