import type { RollbackPlan, Routing } from '../control/rollback-plan.ts';
import type { SwitchyardError } from '../errors.ts';
import { bpToPct, ownOf } from '../config/weights.ts';

/** One pool in a rollback's dry run: its weight and version now and in the routing it restores. */
export interface RollbackPoolView {
  weight: { now: number; then: number };
  /** `then` is null when the history did not record it (entries written before versions were) */
  version: { now: string | null; then: string | null };
}

/**
 * `POST /v1/apps/:app/rollback?dryRun=true`: what a rollback would write, nothing written; and,
 * as `rollback` in the answer of the write itself, what it wrote (`dryRun: false`).
 */
export interface RollbackDryRun {
  dryRun: boolean;
  app: string;
  /** the revision routed on now */
  revision: number;
  /** the revision whose (stable) routing is restored, and the first revision of the release undone */
  restores: { revision: number; at: string; releaseFrom: number };
  /** what would be written: percentages, rules, mirror */
  weights: Record<string, number>;
  rules: unknown[];
  mirror: unknown;
  pools: Record<string, RollbackPoolView>;
  /** pools it would send traffic to that run another version now than then */
  versionChanged: string[];
  /** what the write itself would answer, or null: VERSION_CHANGED unless it is sent with force */
  refused: { code: string; message: string } | null;
}

/** The dry-run answer for a plan, pools in the app's order (then any the routing restored still names). */
export function rollbackDryRun(app: string, plan: RollbackPlan, poolOrder: readonly string[], refusal: SwitchyardError | null, dryRun = true): RollbackDryRun {
  const names = [...poolOrder, ...Object.keys(plan.pools).filter((p) => !poolOrder.includes(p))];
  const pools: Record<string, RollbackPoolView> = {};
  for (const p of names) {
    const x = plan.pools[p];
    if (x === undefined) continue;
    pools[p] = { weight: { now: bpToPct(x.weightNow), then: bpToPct(x.weightThen) }, version: { now: x.versionNow, then: x.versionThen } };
  }
  const to: Routing = plan.to.routing;
  return {
    dryRun,
    app,
    revision: plan.from.revision,
    restores: { revision: plan.to.revision, at: plan.to.at, releaseFrom: plan.releaseFrom },
    weights: Object.fromEntries(poolOrder.map((p) => [p, bpToPct(ownOf(to.weights, p) ?? 0)])),
    rules: [...(to.rules ?? [])],
    mirror: to.mirror ?? null,
    pools,
    versionChanged: [...plan.versionChanged],
    refused: refusal === null ? null : { code: refusal.code, message: refusal.message },
  };
}
