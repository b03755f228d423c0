import { canonicalJson } from '../state/digest.ts';
import type { HistoryEntry, RevertKind } from '../state/types.ts';
import { ownOf, TOTAL_BP, type Weights } from '../config/weights.ts';

// What `rollback` restores (docs/cohorts.md §6), as a pure function of the app's history: no store, no
// clock. "Back to the last known-good routing": the stable routing in force before the current
// release began, never the revision before the current one (which walked toward the failure).

/** A cohort rule, as far as rollback cares: the pool it sends to. */
export interface RoutingRule {
  readonly name?: string;
  readonly to: string;
}

/**
 * The routing of an app: its weights (basis points) and, where the app has them, its cohort
 * `rules` and its `mirror`. Compared and restored as one value.
 */
export interface Routing {
  readonly weights: Weights;
  readonly rules?: readonly RoutingRule[] | undefined;
  readonly mirror?: { readonly to: string } | null | undefined;
}

/** A history entry as the plan reads it: its routing, what it did, and each pool's version then. */
export type RevisionRecord = Pick<HistoryEntry, 'revision' | 'action' | 'reason' | 'at' | 'pools' | 'revert'> & Routing;

/** The routing an entry put in force (rules and mirror when it carries them). */
export function routingOf(e: Routing): Routing {
  return { weights: e.weights, rules: e.rules ?? [], mirror: e.mirror ?? null };
}

function sameRouting(a: Routing, b: Routing): boolean {
  return canonicalJson(nonZero(a.weights)) === canonicalJson(nonZero(b.weights)) && canonicalJson(a.rules ?? []) === canonicalJson(b.rules ?? []) && canonicalJson(a.mirror ?? null) === canonicalJson(b.mirror ?? null);
}

/** Weights without the pools at 0: a pool added at 0 since does not make a routing different. */
function nonZero(w: Weights): Record<string, number> {
  return Object.fromEntries(Object.entries(w).filter(([, bp]) => bp > 0));
}

/**
 * The pool a stable routing sends everything to, or null: a routing is stable when one pool has
 * 100 % and no rule or mirror points elsewhere.
 */
export function stablePool(r: Routing): string | null {
  const full = Object.entries(r.weights).find(([, bp]) => bp === TOTAL_BP)?.[0];
  if (full === undefined) return null;
  if ((r.rules ?? []).some((rule) => rule.to !== full)) return null;
  if (r.mirror != null && r.mirror.to !== full) return null;
  return full;
}

export function isStable(r: Routing): boolean {
  return stablePool(r) !== null;
}

/** Every pool the routing sends traffic (or copies of it) to. */
export function poolsServing(r: Routing): string[] {
  const out = new Set(Object.entries(r.weights).filter(([, bp]) => bp > 0).map(([p]) => p));
  for (const rule of r.rules ?? []) out.add(rule.to);
  if (r.mirror != null) out.add(r.mirror.to);
  return [...out];
}

/**
 * Whether an entry took traffic back (a rollback, a rollout's automatic rollback, an abort): from
 * its `revert` mark, or, for entries written before there was one, from the words the rollouts
 * have always put in the reason.
 */
export function revertOf(e: Pick<HistoryEntry, 'action' | 'reason' | 'revert'>): RevertKind | null {
  if (e.revert !== undefined) return e.revert;
  if (e.action === 'rollback') return 'rollback';
  if (e.action === 'rollout' && e.reason !== null) {
    if (/^rollout \S+ rolled back: /.test(e.reason)) return 'analysis';
    if (/^rollout \S+ aborted by /.test(e.reason)) return 'abort';
  }
  return null;
}

/** The revision of the first routing change newer than entries[at] (entries newest first). */
function firstChangeAfter(entries: readonly RevisionRecord[], at: number): number {
  const target = entries[at] as RevisionRecord;
  for (let i = at - 1; i >= 0; i--) if (!sameRouting(entries[i] as RevisionRecord, target)) return (entries[i] as RevisionRecord).revision;
  return (entries[0] as RevisionRecord).revision;
}

const REVERT_WORDS: Record<RevertKind, string> = { rollback: 'a rollback', analysis: "a rollout's automatic rollback", abort: 'an aborted rollout' };

/** One pool in a plan: its weight and version now and in the routing restored (null: not recorded then). */
export interface PlanPool {
  readonly weightNow: number;
  readonly weightThen: number;
  readonly versionNow: string | null;
  readonly versionThen: string | null;
}

export interface RollbackPlan {
  /** the revision routed on now */
  readonly from: { readonly revision: number; readonly routing: Routing };
  /** the stable routing restored, and the revision that put it in force */
  readonly to: { readonly revision: number; readonly at: string; readonly routing: Routing };
  /** the first revision of the release undone (the change after `to`) */
  readonly releaseFrom: number;
  readonly pools: Readonly<Record<string, PlanPool>>;
  /** pools the restored routing sends traffic to that run another version now than then */
  readonly versionChanged: readonly string[];
}

export type PlanResult =
  | { readonly ok: true; readonly plan: RollbackPlan }
  | { readonly ok: false; readonly code: 'NOTHING_TO_ROLL_BACK' | 'NO_EARLIER_REVISION'; readonly message: string; readonly revision: number | null };

/**
 * The rollback of an app with `entries` (its history, newest first, the current revision
 * first) and `versionsNow` (each pool's version in the live definition):
 * - the routing changes are the entries whose routing differs from the one before (definition
 *   changes, which rollback never undoes, are not);
 * - when the last change took traffic back (rollback, automatic rollback, abort): nothing to roll
 *   back, naming it, so a rollback never walks back toward what was just left;
 * - current routing not stable (a release under way): back to the last stable routing;
 * - current routing stable: back to the stable routing before the change that made it so.
 */
export function planRollback(entries: readonly RevisionRecord[], versionsNow: Readonly<Record<string, string>>): PlanResult {
  const current = entries[0];
  if (current === undefined) return { ok: false, code: 'NO_EARLIER_REVISION', message: 'the app has no history', revision: null };
  // the newest entry whose routing differs from the one it followed: the last routing change
  let change = 0;
  while (change + 1 < entries.length && sameRouting(entries[change] as RevisionRecord, entries[change + 1] as RevisionRecord)) change++;
  const last = entries[change] as RevisionRecord;
  const revert = revertOf(last);
  if (revert !== null) {
    return { ok: false, code: 'NOTHING_TO_ROLL_BACK', revision: last.revision, message: `revision ${last.revision} was ${REVERT_WORDS[revert]}${last.reason ? ` (${last.reason})` : ''}: it already took traffic back from what it replaced, and rolling back never returns to that; to go forward, switch or start a rollout` };
  }
  // stable now: look before the change that made it so; mid-release: the last stable routing
  const from = isStable(current) ? change + 1 : 0;
  let at = -1;
  for (let i = from; i < entries.length; i++) {
    if (isStable(entries[i] as RevisionRecord)) {
      at = i;
      break;
    }
  }
  const target = entries[at];
  if (target === undefined) {
    return { ok: false, code: 'NO_EARLIER_REVISION', revision: null, message: `no stable routing (one pool at 100 %) before revision ${(entries[from - 1] ?? current).revision} in the history kept (${entries.length} entries)` };
  }
  if (sameRouting(target, current)) {
    return { ok: false, code: 'NOTHING_TO_ROLL_BACK', revision: last.revision, message: `the routing before revision ${last.revision}'s release was this one already (revision ${target.revision}); nothing to roll back` };
  }
  const pools: Record<string, PlanPool> = {};
  const names = new Set([...Object.keys(versionsNow), ...Object.keys(current.weights), ...Object.keys(target.weights)]);
  for (const p of names) {
    pools[p] = { weightNow: ownOf(current.weights, p) ?? 0, weightThen: ownOf(target.weights, p) ?? 0, versionNow: ownOf(versionsNow, p) ?? null, versionThen: target.pools === undefined ? null : (ownOf(target.pools, p)?.version ?? null) };
  }
  // a version not recorded then (history written before versions were) cannot be compared: shown as unknown
  const versionChanged = poolsServing(target).filter((p) => {
    const x = pools[p];
    return x !== undefined && x.versionThen !== null && x.versionThen !== x.versionNow;
  });
  return {
    ok: true,
    plan: {
      from: { revision: current.revision, routing: routingOf(current) },
      to: { revision: target.revision, at: target.at, routing: routingOf(target) },
      releaseFrom: firstChangeAfter(entries, at),
      pools,
      versionChanged,
    },
  };
}
