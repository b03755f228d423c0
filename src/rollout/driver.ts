import { SwitchyardError } from '../errors.ts';
import type { RoutingState } from '../state/types.ts';
import { RepeatedWarning } from '../repeated-warning.ts';
import { analyse } from './analysis.ts';
import { hasMirrorSteps, type RolloutCore } from './core.ts';
import type { Lease, Scheduler } from '../state/lease.ts';
import { formatDuration } from '../config/duration.ts';
import { hasEvidence, roundText, type GateRound, type Gates } from './gate-model.ts';
import { GateKeeper, latestRound, roundDue } from './gate-keeper.ts';
import { DEFAULT_MAX_WAIT_MS, isActive, sameWeights, type AnalysisResult, type Rollout, type Step } from './model.ts';

/** How many history entries the driver reads to see whether a newer revision was a manual change. */
const HISTORY_LOOKBACK = 50;
/** How the history entry of a rollback by the analysis begins (the driver recognises it by this). */
function rolledBackPrefix(r: Rollout): string {
  return `rollout ${r.id} rolled back: `;
}

/** A rollout whose start never finished (its first step written, the record not told) is picked up after this. */
export const START_GRACE_MS = 10_000;

export interface DriverOptions {
  readonly core: RolloutCore;
  readonly lease: Lease;
  readonly schedule: Scheduler;
  /** ms between rounds when nothing is due sooner */
  readonly tickMs: number;
  /** this instance, as gate rounds record who called them */
  readonly id: string;
  /** the process config's `analysis.prometheus`, for rollouts that name none */
  readonly prometheus: () => Gates['prometheus'];
}

/**
 * Moves every app's rollout on, on the lease holder only: each round reads the records from the
 * store (so a new driver continues exactly where the old one stopped), aborts a rollout that a
 * manual write overtook, judges the analysis, and writes the next step when its pause is over.
 * Rounds run one at a time, every `tickMs` or sooner when a step is due.
 *
 * The driver writes weights first, with If-Match on the revision the record last saw, and the
 * record after; commands do the opposite (rollouts.ts). So a command's weights either land after
 * the driver's or make its write stale, and the record never disagrees with the routing for long.
 */
export class RolloutDriver {
  readonly #core: RolloutCore;
  readonly #lease: Lease;
  readonly #schedule: Scheduler;
  readonly #tickMs: number;
  readonly #gates: GateKeeper;
  #cancel: (() => void) | null = null;
  #running: Promise<void> | null = null;
  #again = false;
  #closed = false;
  /** the last record read per app: put back if the store comes back empty (a Redis restarted without persistence) */
  readonly #seen = new Map<string, Rollout>();
  /** a round fails every tick while the store is down: one line when it starts, then one a minute */
  readonly #roundFailures: RepeatedWarning;

  constructor(opts: DriverOptions) {
    this.#core = opts.core;
    this.#lease = opts.lease;
    this.#schedule = opts.schedule;
    this.#tickMs = opts.tickMs;
    this.#gates = new GateKeeper(opts.core, opts.id, opts.prometheus, () => this.kick());
    this.#roundFailures = new RepeatedWarning(opts.core.logger, { now: opts.core.now });
  }

  /** A round soon: now, or right after the one in progress. */
  kick(): void {
    if (this.#closed) return;
    if (this.#running !== null) {
      this.#again = true;
      return;
    }
    this.#cancel?.();
    this.#cancel = this.#schedule(() => void this.round(), 0);
  }

  /** One round (or joins the one in progress); resolves when it is done. */
  round(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    if (this.#running !== null) {
      this.#again = true;
      return this.#running;
    }
    this.#cancel?.();
    this.#cancel = null;
    let soonest = this.#tickMs;
    const run = async (): Promise<void> => {
      do {
        this.#again = false;
        if (!this.#lease.held()) {
          await this.#watch();
          break;
        }
        // the live apps (created and deleted while the process runs), not only the config file's
        for (const name of this.#core.controller.appNames()) {
          const app = { name };
          try {
            const r = await this.#driveOne(app.name);
            // a step held past its pause (waiting for minRequests) is looked at every tick, not in a tight loop
            const due = r?.state === 'running' && r.nextAt !== null ? r.nextAt - this.#core.now() : Infinity;
            if (due > 0) soonest = Math.min(soonest, due);
            this.#roundFailures.succeeded(app.name, { app: app.name }, 'rollout driver: rounds work again');
          } catch (err) {
            this.#roundFailures.failed(app.name, { err, app: app.name }, 'rollout driver: round failed; trying again at the next one');
          }
        }
      } while (this.#again && !this.#closed);
    };
    this.#running = run().finally(() => {
      this.#running = null;
      if (!this.#closed) this.#cancel = this.#schedule(() => void this.round(), soonest);
    });
    return this.#running;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#cancel?.();
    await this.#running?.catch(() => undefined);
    await this.#gates.close();
  }

  /** Drives one app's rollout one round on; returns the record as it stands after. */
  async #driveOne(app: string): Promise<Rollout | null> {
    const core = this.#core;
    let r = (await core.store.get(app)) ?? (await this.#reseed(app));
    if (r !== null) this.#seen.set(app, r);
    if (r === null || !isActive(r)) return r;
    const pools = core.pools(app);
    if (!pools.includes(r.to)) return this.#abort(r, `pool "${r.to}" is no longer in the config`);
    const state = core.controller.state(app);
    if (state.revision > r.revision) {
      const since = r.revision;
      const entries = await core.controller.history(app, Math.min(state.revision - since, HISTORY_LOOKBACK));
      const manual = entries.filter((e) => e.revision > since && e.action !== 'rollout' && e.action !== 'reseed').sort((a, b) => a.revision - b.revision)[0];
      if (manual !== undefined) return this.#abort(r, `manual change at revision ${manual.revision} (${manual.action} by ${manual.by})`);
      // another instance rolled it back and has not told the record yet: never take a step from there
      const prefix = rolledBackPrefix(r);
      const rollback = entries.find((e) => e.revision > since && e.reason?.startsWith(prefix) === true);
      if (rollback !== undefined) return this.#endRolledBack(r, (rollback.reason ?? '').slice(prefix.length), null, rollback.revision);
      // the rollout's own write, which a crash kept the record from hearing of
      r = (await core.update(app, r.id, (x) => (isActive(x) && x.revision < state.revision ? { revision: state.revision } : null))) ?? r;
      if (!isActive(r)) return r;
    }
    if (r.state === 'paused') return r;
    const now = core.now();
    const result = r.analysis === null ? null : analyse(r, core.stats, now);
    if (result?.verdict === 'fail') return this.#fail(r, result.why ?? 'analysis failed', result);
    if (r.nextAt === null) {
      // still starting (rollouts.ts `begin`); only a start that died half-way is taken over
      if (now - r.updatedAt < START_GRACE_MS) return r;
      const pause = (r.steps[r.step - 1] as { pauseMs: number }).pauseMs;
      r = (await core.update(app, r.id, (x) => (x.state === 'running' && x.nextAt === null ? { nextAt: x.stepStartedAt + pause } : null))) ?? r;
      return r;
    }
    const gates = r.gates ?? null;
    const step = r.steps[r.step - 1] as Step;
    // a step at 0 % (an approval before any traffic) serves no one: there is nothing to judge
    const judged = step.weight > 0 || step.mirror !== undefined;
    if (hasEvidence(gates) && judged) {
      // queries and webhooks, every interval while the step holds: no data is never a pass
      const last = latestRound(r, 'analysis', r.step);
      if (last?.verdict === 'fail') return this.#fail(r, roundText(last), result, 'gate failed');
      if ((r.inconclusive ?? 0) >= gates.inconclusiveLimit) return this.#inconclusive(r, gates, last);
      if (roundDue(r, 'analysis', r.step, now)) r = await this.#gates.start(r, 'analysis', r.step);
      if (r.state !== 'running' || r.nextAt === null) return r;
    }
    // an approval step's timeout runs whatever else holds the step (counted again from a resume)
    const waitingApproval = step.approval !== undefined && !(r.approvals ?? []).some((a) => a.step === r.step);
    const approvalTimeout = step.approval?.timeoutMs ?? null;
    if (waitingApproval && approvalTimeout !== null && now - Math.max(r.stepStartedAt, r.judgeFrom) >= approvalTimeout) return this.#fail(r, `step ${r.step} was not approved within ${formatDuration(approvalTimeout)}`, result, 'approval timed out');
    if (now < r.nextAt) return r;
    if (r.analysis !== null && result !== null && result.verdict !== 'pass' && judged) {
      // a step is left only once judged: hold until `to` has served minRequests, fail after maxWait
      const maxWait = r.analysis.maxWaitMs ?? DEFAULT_MAX_WAIT_MS;
      if (now - r.nextAt < maxWait) return r;
      return this.#fail(r, `${r.to} served ${result.to.requests} of the ${r.analysis.minRequests} requests needed to judge step ${r.step} within maxWait ${Math.round(maxWait / 1000)}s after its pause`, result);
    }
    // a step is left only once a round of its queries and webhooks passed (held otherwise; rounds go on)
    if (hasEvidence(gates) && judged && latestRound(r, 'analysis', r.step)?.verdict !== 'pass') return r;
    if (waitingApproval) return r;
    if (r.step < r.steps.length && gates !== null && gates.hooks.preStep.length > 0 && (r.preStepPassed ?? 0) < r.step + 1) return this.#preStep(r, gates, result);
    if (r.step >= r.steps.length) {
      const done = await core.update(app, r.id, (x) => (x.state === 'running' && x.step >= x.steps.length ? core.ended('succeeded', `${x.to} reached 100%`) : null));
      if (done !== null) this.#succeeded(done);
      return done;
    }
    return this.#advance(r, pools);
  }

  /** The preStep hooks of the next step: called (once per round) until they pass; a failure applies onFailure. */
  async #preStep(r: Rollout, gates: Gates, result: AnalysisResult | null): Promise<Rollout | null> {
    const next = r.step + 1;
    const last = latestRound(r, 'preStep', next);
    if (last?.verdict === 'fail') return this.#fail(r, `preStep of step ${next}: ${roundText(last)}`, result, 'gate failed');
    if ((r.inconclusive ?? 0) >= gates.inconclusiveLimit) return this.#inconclusive(r, gates, last);
    return roundDue(r, 'preStep', next, this.#core.now()) ? this.#gates.start(r, 'preStep', next) : r;
  }

  /** `inconclusiveLimit` rounds in a row without evidence: `onInconclusive` (pause by default, or rollback). */
  async #inconclusive(r: Rollout, gates: Gates, last: GateRound | undefined): Promise<Rollout | null> {
    const core = this.#core;
    const why = `${r.inconclusive ?? 0} inconclusive rounds in a row${last === undefined ? '' : `, the last: ${roundText(last)}`}`;
    if (gates.onInconclusive === 'rollback') return this.#fail(r, why, null, 'inconclusive');
    const now = core.now();
    const paused = await core.update(r.app, r.id, (x) => (x.state === 'running' ? { state: 'paused', nextAt: null, remainingMs: Math.max(0, (x.nextAt ?? now) - now), reason: `inconclusive: ${why}; paused (onInconclusive: pause), never promoted without evidence` } : null));
    if (paused !== null) {
      core.logger.warn({ app: r.app, rollout: r.id }, `rollout ${r.id} of ${r.app} paused: ${why}`);
      core.announce(paused, 'paused');
    }
    return paused;
  }

  async #advance(r: Rollout, pools: readonly string[]): Promise<Rollout | null> {
    const core = this.#core;
    const next = r.step + 1;
    let written: RoutingState;
    try {
      written = await core.writeStep(r, next, r.revision, pools);
    } catch (err) {
      if (err instanceof SwitchyardError && err.code === 'POOL_UNHEALTHY') return this.#fail(r, `step ${next} refused: ${err.message}`, null);
      // stale: the next round looks at what was written meanwhile; store down: it tries again
      throw err;
    }
    const pause = (r.steps[next - 1] as { pauseMs: number }).pauseMs;
    const now = core.now();
    const last = next === r.steps.length && pause === 0;
    const updated = await core.update(r.app, r.id, (x) => {
      if (!isActive(x) || x.step >= next) return null;
      const base = { step: next, stepStartedAt: now, revision: Math.max(x.revision, written.revision) };
      if (x.state === 'paused') return { ...base, remainingMs: pause };
      return last ? { ...base, ...core.ended('succeeded', `${x.to} reached 100%`) } : { ...base, nextAt: now + pause };
    });
    if (updated?.state === 'succeeded') this.#succeeded(updated);
    else if (updated !== null) {
      core.announce(updated, 'step');
      if (updated.steps[next - 1]?.approval !== undefined) core.announce(updated, 'waiting-approval');
    }
    return updated;
  }

  /** A failed analysis (or a refused step): back to the starting weights, or a pause. */
  async #fail(r: Rollout, why: string, result: AnalysisResult | null, label = 'analysis failed'): Promise<Rollout | null> {
    const core = this.#core;
    const reason = `${label}: ${why}`;
    const pause = (x: Rollout, note: string): Partial<Rollout> => ({ state: 'paused', nextAt: null, remainingMs: Math.max(0, (x.nextAt ?? core.now()) - core.now()), reason: `${reason}; ${note}`, lastAnalysis: result });
    if (r.onFailure === 'pause') {
      const paused = await core.update(r.app, r.id, (x) => (x.state === 'running' ? pause(x, 'paused (onFailure: pause)') : null));
      if (paused !== null) {
        core.logger.warn({ app: r.app, rollout: r.id, analysis: result }, `rollout ${r.id} of ${r.app} paused: ${reason}`);
        core.announce(paused, 'paused');
      }
      return paused;
    }
    try {
      const seen = core.controller.state(r.app);
      // an instance that has not yet applied the rollout's last write cannot tell whether the weights are back: it writes.
      // If-Match on the revision the record stands on: of the instances that see the failure at once (any instance
      // judges, see #watch), exactly one write lands; the others, and a step written meanwhile, are stale
      if (seen.revision < r.revision || !sameWeights(seen.weights, r.from) || (hasMirrorSteps(r) && core.mirrorInForce(r))) {
        await core.writeRouting(r, r.from, null, { by: 'switchyard', reason: `${rolledBackPrefix(r)}${why}`, expectedRevision: r.revision, unpinDrained: true, revert: 'analysis' });
      }
    } catch (err) {
      // another instance rolled back first (or a step landed: the next round judges again)
      if (err instanceof SwitchyardError && err.code === 'STALE_REVISION') return core.store.get(r.app);
      if (!(err instanceof SwitchyardError) || err.code !== 'POOL_UNHEALTHY') throw err;
      // the pools it came from have no healthy target either: hold here and let the operator decide
      const held = await core.update(r.app, r.id, (x) => (x.state === 'running' ? pause(x, `the rollback was refused (${err.message}), so it is paused`) : null));
      core.logger.error({ app: r.app, rollout: r.id, analysis: result }, `rollout ${r.id} of ${r.app}: ${reason}; the rollback was refused, paused instead`);
      if (held !== null) core.announce(held, 'paused');
      return held;
    }
    return this.#endRolledBack(r, why, result, core.controller.state(r.app).revision, label);
  }

  /** Marks the record rolled back (compare-and-set: one instance does, and counts and logs it, once). */
  async #endRolledBack(r: Rollout, why: string, result: AnalysisResult | null, revision: number, label = 'analysis failed'): Promise<Rollout | null> {
    const core = this.#core;
    const ended = await core.update(r.app, r.id, (x) => (isActive(x) ? { ...core.ended('rolled-back', `${label}: ${why}`), lastAnalysis: result ?? x.lastAnalysis, revision: Math.max(x.revision, revision) } : null));
    if (ended === null) return core.store.get(r.app);
    core.count(r.app, 'rolled-back');
    core.announce(ended, 'rolled-back');
    core.logger.warn({ app: r.app, rollout: r.id, analysis: result }, `rollout ${r.id} of ${r.app} rolled back: ${why}`);
    return ended;
  }

  /**
   * Off the lease: keep a copy of each record (for #reseed should this instance take over from
   * an empty store), and judge every running rollout's analysis too, so a failing canary is
   * rolled back by whichever instance sees it first, not only after the driver's lease moves.
   */
  async #watch(): Promise<void> {
    for (const name of this.#core.controller.appNames()) {
      const app = { name };
      const r = await this.#core.store.get(app.name).catch(() => null);
      if (r === null) continue;
      this.#seen.set(app.name, r);
      if (r.state !== 'running' || r.analysis === null || r.nextAt === null) continue;
      const result = analyse(r, this.#core.stats, this.#core.now());
      if (result.verdict === 'fail') await this.#fail(r, result.why ?? 'analysis failed', result).catch((err: unknown) => this.#core.logger.warn({ err, app: app.name }, 'rollout guard: the rollback failed; trying again at the next round'));
    }
  }

  /** The store lost the app's record while it ran (the fleet re-seeds the routing state the same way): write it back. */
  async #reseed(app: string): Promise<Rollout | null> {
    const mine = this.#seen.get(app);
    if (mine === undefined || !isActive(mine)) return null;
    const put = await this.#core.store.put({ ...mine, version: 1 }, 0);
    if (put.ok) this.#core.logger.warn({ app, rollout: mine.id }, `the store had lost rollout ${mine.id} of ${app}; written back from this driver's copy`);
    return put.ok ? put.rollout : put.current;
  }

  /** Ends a rollout as aborted, leaving the weights as they are (a manual write set them). */
  async #abort(r: Rollout, reason: string): Promise<Rollout | null> {
    const ended = await this.#core.update(r.app, r.id, (x) => (isActive(x) ? this.#core.ended('aborted', reason) : null));
    if (ended !== null) {
      this.#core.count(r.app, 'aborted');
      this.#core.announce(ended, 'aborted');
      this.#core.logger.warn({ app: r.app, rollout: r.id }, `rollout ${r.id} of ${r.app} aborted: ${reason}`);
    }
    return ended;
  }

  #succeeded(r: Rollout): void {
    this.#core.count(r.app, 'succeeded');
    this.#core.announce(r, 'succeeded');
    this.#core.logger.info({ app: r.app, rollout: r.id }, `rollout ${r.id} of ${r.app} succeeded`);
  }
}
