import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { Controller } from '../control/controller.ts';
import { SwitchyardError } from '../errors.ts';
import type { RoutingState } from '../state/types.ts';
import type { WriteOptions } from '../control/controller.ts';
import { checked, withRouting } from '../control/routing-writes.ts';
import { bpToPct } from '../config/weights.ts';
import { analyse, type StatsSource } from './analysis.ts';
import { isActive, ROLLOUT_RESULTS, sameWeights, stepWeights, type Rollout, type RolloutResult } from './model.ts';
import { roundText, type NotifyEvent } from './gate-model.ts';
import { gateBody, latestRound } from './gate-keeper.ts';
import type { Notifier } from './notify.ts';
import type { RolloutStore } from './store.ts';
import { rolloutView, type RolloutView } from './view.ts';

/** What let step `n` be written, for its history entry: the approval and passed rounds of the step left, the preStep hooks of `n`. */
export function evidenceNote(r: Rollout, n: number): string {
  const parts: string[] = [];
  const left = n - 1;
  const approval = (r.approvals ?? []).find((a) => a.step === left);
  if (approval !== undefined) parts.push(`approved by ${approval.by}${approval.reason ? `: ${approval.reason}` : ''}`);
  const analysis = latestRound(r, 'analysis', left);
  if (analysis?.verdict === 'pass') parts.push(roundText(analysis));
  const pre = latestRound(r, 'preStep', n);
  if (pre?.verdict === 'pass') parts.push(`preStep ${pre.checks.map((c) => c.status).join(', ')}`);
  return parts.join('; ');
}

/** The mirror step `n` of a rollout puts in force (copies to `to`, compared), or null. */
export function stepMirror(r: Rollout, n: number): { to: string; share: number; compare: true } | null {
  const m = r.steps[n - 1]?.mirror;
  return m === undefined ? null : { to: r.to, share: m.share, compare: true };
}

/** Only a rollout with a mirror step touches the app's mirror. */
export function hasMirrorSteps(r: Rollout): boolean {
  return r.steps.some((s) => s.mirror !== undefined);
}

/** A record update: the fields to change, or null to leave the record as it is. */
export type Patch = (r: Rollout) => Partial<Rollout> | null;

export interface RolloutCoreOptions {
  readonly controller: Controller;
  readonly stats: StatsSource;
  readonly store: RolloutStore;
  readonly logger: Logger;
  readonly now: () => number;
  /** where `switchyard_rollouts_total` is registered; omitted: not counted */
  readonly registry?: Registry | undefined;
  /** notifications and after-the-fact hooks */
  readonly notifier: Notifier;
}

const CAS_RETRIES = 5;

/** What the commands (rollouts.ts) and the driver (driver.ts) share: the record, the weights, the count. */
export class RolloutCore {
  readonly controller: Controller;
  readonly stats: StatsSource;
  readonly store: RolloutStore;
  readonly logger: Logger;
  readonly now: () => number;
  readonly notifier: Notifier;
  readonly #counter: Counter | null;

  constructor(opts: RolloutCoreOptions) {
    this.controller = opts.controller;
    this.stats = opts.stats;
    this.store = opts.store;
    this.logger = opts.logger;
    this.now = opts.now;
    this.notifier = opts.notifier;
    this.#counter = opts.registry === undefined ? null : new Counter({ name: 'switchyard_rollouts_total', help: 'Rollouts that ended, by app and result (succeeded, rolled-back, aborted).', labelNames: ['app', 'result'], registers: [opts.registry] });
    for (const app of this.controller.appNames()) for (const result of ROLLOUT_RESULTS) this.#counter?.labels(app, result).inc(0);
  }

  pools(app: string): string[] {
    return Object.keys(this.controller.appConfig(app).pools);
  }

  /**
   * Read, patch, compare-and-set, retried while others write in between. Returns the written
   * record, or null when the patch said no change or the app's record is another rollout's.
   * With `strict`, a replaced record is a 409 too; a patch may throw (409) either way.
   */
  async update(app: string, id: string, patch: Patch, strict = false): Promise<Rollout | null> {
    for (let attempt = 0; attempt < CAS_RETRIES; attempt++) {
      const cur = await this.store.get(app);
      if (cur === null || cur.id !== id) {
        if (strict) throw new SwitchyardError('CONFLICT', `rollout ${id} of app "${app}" was replaced meanwhile`);
        return null;
      }
      const change = patch(cur);
      if (change === null) return null;
      const next: Rollout = { ...cur, ...change, version: cur.version + 1, updatedAt: this.now() };
      const put = await this.store.put(next, cur.version);
      if (put.ok) return put.rollout;
    }
    throw new SwitchyardError('CONFLICT', `the rollout of app "${app}" kept changing under this write; try again`);
  }

  /** Writes step `n`'s weights (unless they are already in place) with If-Match `revision`. */
  async writeStep(r: Rollout, n: number, revision: number, pools: readonly string[]): Promise<RoutingState> {
    const step = r.steps[n - 1] as { weight: number };
    const weights = stepWeights(r.from, r.to, step.weight, pools);
    const current = this.controller.state(r.app);
    const mirror = stepMirror(r, n);
    if (current.revision === revision && sameWeights(current.weights, weights) && (!hasMirrorSteps(r) || this.mirrorInForce(r) === (mirror !== null))) return current;
    const evidence = evidenceNote(r, n);
    const what = mirror === null ? `${r.to} ${bpToPct(step.weight)}%` : `mirror ${mirror.share}% to ${r.to} (weights kept)`;
    const reason = `rollout ${r.id} step ${n}/${r.steps.length}: ${what}${r.reason ? ` (${r.reason})` : ''}${evidence === '' ? '' : `; ${evidence}`}`;
    return this.writeRouting(r, weights, mirror, { by: r.by, reason, expectedRevision: revision });
  }

  /** Whether the app's mirror is the one a mirror step writes (to the rollout's pool). */
  mirrorInForce(r: Rollout): boolean {
    const m = this.controller.definition(r.app).mirror as { to?: unknown } | undefined;
    return m !== undefined && m !== null && m.to === r.to;
  }

  /**
   * Writes `weights` and, for a rollout with a mirror step, its mirror (`mirror`, or none: the
   * step's copies end when the rollout leaves it, by a step, a rollback, promote or abort), in one
   * revision (history action `rollout`, so the driver does not take it for a manual change).
   */
  writeRouting(r: Rollout, weights: Record<string, number>, mirror: ReturnType<typeof stepMirror>, opts: WriteOptions): Promise<RoutingState> {
    if (!hasMirrorSteps(r) || (mirror === null && !this.mirrorInForce(r))) return this.controller.setWeights(r.app, weights, opts, 'rollout');
    return this.controller.change(
      r.app,
      'rollout',
      () => {
        const def = this.controller.definition(r.app);
        return { weights, definition: checked(r.app, withRouting(def, (def.rules as readonly unknown[] | undefined) ?? [], mirror)) };
      },
      opts,
    );
  }

  /** The fields of a record that just ended. */
  ended(state: RolloutResult, reason: string): Partial<Rollout> {
    return { state, reason, nextAt: null, remainingMs: null, endedAt: this.now() };
  }

  count(app: string, result: RolloutResult): void {
    this.#counter?.labels(app, result).inc();
  }

  /**
   * Tells the rollout's notify targets of `event`, from the record the transition just wrote
   * (so a message never carries stale state). Only the instance whose write made the transition
   * calls this, so each event is sent once. An ended rollout also calls its postRollout or
   * onRollback hooks.
   */
  announce(r: Rollout, event: NotifyEvent): void {
    const g = r.gates;
    if (g === null || g === undefined) return;
    try {
      const version = this.controller.appConfig(r.app).pools[r.to]?.version ?? '';
      this.notifier.notify(g.notify, r, event, version, this.now());
      const hooks = event === 'succeeded' ? g.hooks.postRollout : event === 'rolled-back' ? g.hooks.onRollback : [];
      if (hooks.length > 0) this.notifier.hook(event === 'succeeded' ? 'postRollout' : 'onRollback', hooks, { ...gateBody(this, r, event === 'succeeded' ? 'postRollout' : 'onRollback', r.step, 1), state: r.state, reason: r.reason });
    } catch (err) {
      // an app deleted meanwhile: nothing to tell, and never a reason to fail the transition
      this.logger.warn({ err, app: r.app, rollout: r.id }, `rollout ${r.id}: could not send ${event}`);
    }
  }

  /** The API's view, with live analysis figures while the rollout runs or is paused. */
  view(r: Rollout, pools: readonly string[], driver?: string | null): RolloutView {
    const now = this.now();
    const live = isActive(r) && r.analysis !== null ? analyse(r, this.stats, now) : null;
    return rolloutView(r, pools, now, live, driver);
  }
}
