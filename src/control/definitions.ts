import { hostConflicts, parseDefinition, type AppDefinition, type KeyPathIssue } from '../config/definition.ts';
import type { AppConfig } from '../config/schema.ts';
import { SwitchyardError } from '../errors.ts';
import type { RoutingState } from '../state/types.ts';
import { ownOf, TOTAL_BP, type Weights } from '../config/weights.ts';
import type { Controller, WriteOptions } from './controller.ts';
import { routingHolds } from '../routing/rules.ts';
import { drainVerdict, type CountsSource } from './counts.ts';
import { initialState } from './next-state.ts';
import { initialWeights } from './seed.ts';

/**
 * The definition writes of docs/definitions.md §2 — a pool's version and targets, a target added or
 * removed, a whole app defined or deleted — each one compare-and-set of the app's one document
 * (Controller.change), so they share the revision, If-Match, history and audit of weight writes.
 * Every new definition goes through the config file's schema (parseDefinition).
 */
export interface DefinitionDeps {
  readonly controller: Controller;
  /** fleet-wide in-flight figures, for the "not drained" refusals */
  readonly counts: CountsSource;
  readonly now: () => number;
}

function poolsOf(def: AppDefinition): Record<string, Record<string, unknown>> {
  return { ...(def.pools as Record<string, Record<string, unknown>>) };
}

/** A 400 naming each key path, as the config loader names them. */
function badDefinition(issues: readonly KeyPathIssue[]): SwitchyardError {
  return new SwitchyardError('BAD_REQUEST', issues.map((i) => `${i.path}: ${i.message}`).join('; '), { details: issues });
}

/**
 * Checks a changed definition with the config's schema. `within`: issues under this key path
 * prefix (`pools.green.`) are named relative to it, as the body's fields (`targets[1]`).
 */
/** `field`: what the body calls the value at `within` itself (`url` for an added target), so an issue never names an empty path. */
function checked(app: string, def: AppDefinition, within = '', field = ''): AppDefinition {
  const r = parseDefinition(def, app);
  if (r.ok) return r.definition;
  throw badDefinition(r.issues.map((i) => (within !== '' && i.path.startsWith(within) ? { ...i, path: i.path.slice(within.length) || field || within } : i)));
}

function unknownPool(app: string, pool: string, cfg: AppConfig): SwitchyardError {
  return new SwitchyardError('UNKNOWN_POOL', `app "${app}" has no pool "${pool}"`, { details: [{ path: 'pool', message: `unknown pool (pools: ${Object.keys(cfg.pools).join(', ')})` }] });
}

/**
 * `PUT /v1/apps/:app/pools/:pool`: sets a pool's version and targets. A new pool is appended
 * after the existing ones at weight 0, so no sticky bucket of the others moves; a pool whose
 * version changes keeps its weight. Other keys of the pool's entry are kept.
 */
export function putPool(deps: DefinitionDeps, app: string, pool: string, body: { version: string; targets: readonly string[] }, opts: WriteOptions): Promise<RoutingState> {
  return deps.controller.change(app, 'pool', (cur) => {
    const def = deps.controller.definition(app);
    const pools = poolsOf(def);
    pools[pool] = { ...(pools[pool] ?? {}), version: body.version, targets: [...body.targets] };
    return { weights: cur.weights, definition: checked(app, { ...def, pools }, `pools.${pool}.`) };
  }, opts);
}

/**
 * `DELETE /v1/apps/:app/pools/:pool`: refused (409 POOL_IN_USE) while the pool has weight or is
 * not drained, unless `force`: then its weight goes to the other pools in proportion (all of it to
 * the first when they are all at 0). An app keeps at least two pools (409, force or not).
 */
export function deletePool(deps: DefinitionDeps, app: string, pool: string, opts: WriteOptions): Promise<RoutingState> {
  return deps.controller.change(app, 'pool', (cur, cfg) => {
    if (!Object.hasOwn(cfg.pools, pool)) throw unknownPool(app, pool, cfg);
    const names = Object.keys(cfg.pools);
    if (names.length <= 2) throw new SwitchyardError('DEFINITION_IN_USE', `app "${app}" has ${names.length} pools; an app keeps at least two`);
    // the routing still names it: removing the pool would leave a rule or the mirror pointing nowhere
    const holds = routingHolds(cfg, pool);
    if (holds.length > 0) throw new SwitchyardError('POOL_IN_USE', `pool "${pool}" of app "${app}" is still named by its routing (${holds.join(', ')}); remove those first (PUT …/rules, PUT …/mirror) or replace the whole definition without them`, { details: { pool, reason: holds.join('; '), holds } });
    const bp = ownOf(cur.weights, pool) ?? 0;
    const found = drainVerdict({ weightBp: bp, counts: deps.counts.poolCounts(app, pool), pinsUntil: null, now: deps.now() });
    // an instance that has not applied the revision that emptied the pool, or went silent (fleet.ts),
    // may still send requests there: the pool is as much in use as `…/drain` says (its absence proves nothing)
    const held = deps.counts.drainUnknown?.(app, pool) ?? [];
    const verdict = held.length === 0 ? found : { drained: false, reason: [...(found.reason === null ? [] : [found.reason]), ...held].join('; ') };
    if (!verdict.drained && opts.force !== true) {
      throw new SwitchyardError('POOL_IN_USE', `pool "${pool}" of app "${app}" is in use (${verdict.reason}); switch away and wait for it to drain, or send force: true`, { details: { pool, reason: verdict.reason } });
    }
    const def = deps.controller.definition(app);
    const pools = poolsOf(def);
    delete pools[pool];
    return { weights: redistribute(cur.weights, pool, names.filter((p) => p !== pool)), definition: checked(app, { ...def, pools }) };
  }, opts);
}

/** `pool`'s weight spread over `rest` in proportion to theirs (to the first when they are all 0), summing to 10 000 bp. */
function redistribute(weights: Weights, pool: string, rest: readonly string[]): Weights {
  const freed = ownOf(weights, pool) ?? 0;
  const out: Record<string, number> = {};
  let total = 0;
  for (const p of rest) total += out[p] = ownOf(weights, p) ?? 0;
  if (freed === 0) return out;
  if (total === 0) {
    out[rest[0] as string] = TOTAL_BP;
    return out;
  }
  let given = 0;
  for (const p of rest) {
    const share = Math.floor((freed * (out[p] as number)) / total);
    out[p] = (out[p] as number) + share;
    given += share;
  }
  // the rounding remainder to the heaviest pool
  const heaviest = rest.reduce((a, b) => ((out[b] as number) > (out[a] as number) ? b : a));
  out[heaviest] = (out[heaviest] as number) + freed - given;
  return out;
}

/** `POST …/pools/:pool/targets`: adds a target; one already there writes nothing (200, same revision). */
export function addTarget(deps: DefinitionDeps, app: string, pool: string, url: string, opts: WriteOptions): Promise<RoutingState> {
  return deps.controller.change(app, 'targets', (cur, cfg) => {
    const p = cfg.pools[pool];
    if (p === undefined || !Object.hasOwn(cfg.pools, pool)) throw unknownPool(app, pool, cfg);
    if (p.targets.includes(url)) return { weights: cur.weights };
    const def = deps.controller.definition(app);
    const pools = poolsOf(def);
    pools[pool] = { ...pools[pool], targets: [...p.targets, url] };
    return { weights: cur.weights, definition: checked(app, { ...def, pools }, `pools.${pool}.targets[${p.targets.length}]`, 'url') };
  }, opts);
}

/**
 * `DELETE …/pools/:pool/targets?url=URL`: no new request goes to it from the moment the new
 * snapshot is in place; what it carries finishes there (Runtime retires it). 404 when it is not a
 * target; 409 for the last target of a pool with weight, unless `force`.
 */
export function removeTarget(deps: DefinitionDeps, app: string, pool: string, url: string, opts: WriteOptions): Promise<RoutingState> {
  return deps.controller.change(app, 'targets', (cur, cfg) => {
    const p = cfg.pools[pool];
    if (p === undefined || !Object.hasOwn(cfg.pools, pool)) throw unknownPool(app, pool, cfg);
    if (!p.targets.includes(url)) throw new SwitchyardError('UNKNOWN_TARGET', `${url} is not a target of pool "${pool}" of app "${app}"`, { details: { pool, targets: p.targets } });
    if (p.targets.length === 1 && (ownOf(cur.weights, pool) ?? 0) > 0 && opts.force !== true) {
      throw new SwitchyardError('DEFINITION_IN_USE', `${url} is the last target of pool "${pool}", which has weight ${(ownOf(cur.weights, pool) ?? 0) / 100}%; switch away first or send force=true`, { details: { pool } });
    }
    const def = deps.controller.definition(app);
    const pools = poolsOf(def);
    pools[pool] = { ...pools[pool], targets: p.targets.filter((t) => t !== url) };
    return { weights: cur.weights, definition: checked(app, { ...def, pools }) };
  }, opts);
}

/**
 * `PUT /v1/apps/:app`: creates the app (weights from `initial`; `created: true`) or replaces its
 * definition (weights kept over the pools that remain; a removed pool must be at 0). 400 names the
 * key paths under `definition`; 409 HOST_CONFLICT when a host belongs to another app.
 */
export async function defineApp(deps: DefinitionDeps, app: string, input: unknown, opts: WriteOptions): Promise<{ state: RoutingState; created: boolean }> {
  const { controller } = deps;
  const parsed = parseDefinition(input, app, ['definition']);
  if (!parsed.ok) throw badDefinition(parsed.issues);
  const others = controller.appNames().filter((a) => a !== app).map((a) => controller.appConfig(a));
  const conflicts = hostConflicts(parsed.config, others, ['definition']);
  if (conflicts.length > 0) throw new SwitchyardError('HOST_CONFLICT', conflicts.map((c) => `${c.path}: ${c.message}`).join('; '), { details: conflicts });
  for (;;) {
    if (!controller.has(app)) {
      const first = { ...initialState(app, initialWeights(parsed.config), deps.now(), parsed.definition), action: 'define' as const, updatedBy: opts.by, reason: opts.reason ?? null };
      const created = await controller.create(first, opts);
      if (created !== null) return { state: created, created: true };
      continue; // created meanwhile by another writer: replace it
    }
    const state = await controller.change(app, 'define', (cur) => {
      const pools = Object.keys(parsed.config.pools);
      const dropped = Object.entries(cur.weights).filter(([p, bp]) => !pools.includes(p) && bp > 0).map(([p]) => p);
      if (dropped.length > 0) throw new SwitchyardError('POOL_IN_USE', `the new definition drops pool(s) ${dropped.join(', ')} that still have weight; switch away from them first`, { details: { pools: dropped } });
      return { weights: cur.weights, definition: parsed.definition };
    }, opts);
    return { state, created: false };
  }
}

/** `DELETE /v1/apps/:app`: 409 while requests are in flight on any of its pools (fleet-wide), unless `force`. */
export function deleteApp(deps: DefinitionDeps, app: string, opts: WriteOptions): Promise<RoutingState> {
  return deps.controller.change(app, 'delete', (cur, cfg) => {
    if (opts.force !== true) {
      const busy = Object.keys(cfg.pools).map((p) => [p, deps.counts.poolCounts(app, p)] as const).filter(([, c]) => c.inflight + c.upgraded > 0);
      if (busy.length > 0) throw new SwitchyardError('DEFINITION_IN_USE', `app "${app}" has requests in flight (${busy.map(([p, c]) => `${p}: ${c.inflight} in flight, ${c.upgraded} upgraded`).join('; ')}); send force: true to delete it anyway`, { details: Object.fromEntries(busy) });
    }
    return { weights: cur.weights, deleted: true };
  }, opts);
}
