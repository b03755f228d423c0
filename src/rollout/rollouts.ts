import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Controller } from '../control/controller.ts';
import { SwitchyardError } from '../errors.ts';
import type { RoutingState } from '../state/types.ts';
import { TOTAL_BP } from '../config/weights.ts';
import type { StatsSource } from './analysis.ts';
import { RolloutCore, type Patch } from './core.ts';
import { RolloutDriver } from './driver.ts';
import { realScheduler, type Lease, type Scheduler } from '../state/lease.ts';
import type { PrometheusSource } from './gate-model.ts';
import { gateBody } from './gate-keeper.ts';
import { runHooks } from './gates.ts';
import { firstStep, isActive, stepWeights, type Rollout } from './model.ts';
import { Notifier, type NotifierOptions } from './notify.ts';
import type { RolloutSpec } from './spec.ts';
import type { RolloutStore } from './store.ts';
import type { RolloutView } from './view.ts';

export interface RolloutsOptions {
  readonly controller: Controller;
  /** fleet-wide live stats (`telemetry.stats`) */
  readonly stats: StatsSource;
  readonly store: RolloutStore;
  /** who drives: LocalLease on the file store, RedisLease in a fleet */
  readonly lease: Lease;
  readonly logger: Logger;
  /** where `switchyard_rollouts_total` is registered (the telemetry registry); omitted: not counted */
  readonly registry?: Registry | undefined;
  /** @default Date.now */
  readonly now?: (() => number) | undefined;
  /** @default setTimeout, unref'd */
  readonly schedule?: Scheduler | undefined;
  /** ms between the driver's rounds (analysis, due steps). @default 1000 */
  readonly tickMs?: number | undefined;
  /** @default `r-` and 8 random hex digits */
  readonly newId?: (() => string) | undefined;
  /** this instance (gate rounds record who called them) @default "local" */
  readonly instanceId?: string | undefined;
  /** the process config's `analysis.prometheus`: queries of rollouts that name none go there */
  readonly prometheus?: PrometheusSource | null | undefined;
  /** retries and deadlines of notifications (tests shorten them) */
  readonly notify?: Partial<Omit<NotifierOptions, 'logger' | 'registry'>> | undefined;
}

export type Command = 'pause' | 'resume' | 'promote' | 'abort' | 'approve';

export interface CommandOptions {
  readonly by: string;
  readonly reason?: string | null | undefined;
  /** promote and abort: pass the health gate for the weights they write */
  readonly force?: boolean | undefined;
}

const ENDED_WORDS: Record<Rollout['state'], string> = { running: 'is running', paused: 'is paused', succeeded: 'succeeded', 'rolled-back': 'been rolled back', aborted: 'been aborted' };

/**
 * Progressive rollouts of every app: the admin API's commands, which any instance answers, and
 * the driver (driver.ts), which runs on the lease holder only.
 *
 * A command writes the record first (compare-and-set on its version) and the weights after,
 * putting the record back when the weights are refused; the driver does the opposite. Either
 * way the last weights written are the ones the record's state stands for.
 */
export class Rollouts {
  readonly #core: RolloutCore;
  readonly #driver: RolloutDriver;
  readonly #lease: Lease;
  readonly #newId: () => string;
  readonly #prometheus: PrometheusSource | null;
  readonly #onApplied = (state: RoutingState): void => {
    // a manual write aborts a rollout at once rather than at the next round
    if (state.action !== 'rollout' && this.#lease.held()) this.#driver.kick();
  };

  constructor(opts: RolloutsOptions) {
    const notifier = new Notifier({ logger: opts.logger, registry: opts.registry, ...opts.notify });
    this.#core = new RolloutCore({ controller: opts.controller, stats: opts.stats, store: opts.store, logger: opts.logger, now: opts.now ?? Date.now, registry: opts.registry, notifier });
    this.#lease = opts.lease;
    this.#prometheus = opts.prometheus ?? null;
    const prometheus = (): PrometheusSource | null => this.#prometheus;
    this.#driver = new RolloutDriver({ core: this.#core, lease: opts.lease, schedule: opts.schedule ?? realScheduler, tickMs: opts.tickMs ?? 1000, id: opts.instanceId ?? 'local', prometheus });
    this.#newId = opts.newId ?? (() => `r-${randomBytes(4).toString('hex')}`);
  }

  /** The process config's `analysis.prometheus` (null: none), which a rollout's queries may rely on. */
  get prometheus(): PrometheusSource | null {
    return this.#prometheus;
  }

  /** Starts acquiring the lease and driving; the first round runs at once. */
  start(): void {
    this.#core.controller.on('applied', this.#onApplied);
    this.#lease.start((held) => {
      if (held) this.#driver.kick();
    });
    this.#driver.kick();
  }

  /** One driver round now (tests with a hand-moved clock); a no-op without the lease. */
  tick(): Promise<void> {
    return this.#driver.round();
  }

  /**
   * Starts a rollout and writes its first step at once, so the caller hears of a health-gate
   * 409 or a stale If-Match now (the rollout is then recorded as aborted, with why).
   * 409 CONFLICT while another one runs or is paused, or when `to` already has 100 %.
   */
  async begin(app: string, spec: RolloutSpec, opts: { by: string; expectedRevision?: number | undefined }): Promise<RolloutView> {
    const core = this.#core;
    const pools = core.pools(app);
    const state = core.controller.state(app);
    if (opts.expectedRevision !== undefined && opts.expectedRevision !== state.revision) {
      throw new SwitchyardError('STALE_REVISION', `revision ${opts.expectedRevision} is stale; the current revision is ${state.revision}`, { details: { currentRevision: state.revision } });
    }
    const current = await core.store.get(app);
    if (current !== null && isActive(current)) throw new SwitchyardError('CONFLICT', `app "${app}" already has a rollout that ${ENDED_WORDS[current.state]}: ${current.id} to ${current.to}; pause, promote or abort it first`, { details: { id: current.id, state: current.state } });
    if ((state.weights[spec.to] ?? 0) === TOTAL_BP) throw new SwitchyardError('CONFLICT', `pool "${spec.to}" of app "${app}" already has 100 %`);
    // a mirror step writes the app's mirror and removes it on leaving: it must not take over one set by hand
    const mirror = core.controller.definition(app).mirror as { to?: unknown } | undefined;
    if (spec.steps.some((s) => s.mirror !== undefined) && mirror !== undefined && mirror !== null) throw new SwitchyardError('CONFLICT', `app "${app}" already has a mirror (to ${String(mirror.to)}); a rollout with a mirror step writes its own: remove it first (PUT /v1/apps/${app}/mirror with null)`, { details: { path: 'steps', mirror } });
    const id = this.#newId();
    await this.#preRollout(app, id, spec);
    const now = core.now();
    // steps below `to`'s weight now are skipped: a rollout never moves sticky users back
    const first = firstStep(spec.steps, state.weights[spec.to] ?? 0);
    const record: Rollout = {
      id,
      app,
      to: spec.to,
      from: { ...state.weights },
      steps: spec.steps,
      step: first,
      state: 'running',
      startedAt: now,
      stepStartedAt: now,
      // not due before the first step is written and recorded: the driver leaves it alone until then
      nextAt: null,
      remainingMs: null,
      judgeFrom: 0,
      analysis: spec.analysis,
      onFailure: spec.onFailure,
      reason: spec.reason,
      lastAnalysis: null,
      by: opts.by,
      revision: state.revision,
      version: (current?.version ?? 0) + 1,
      updatedAt: now,
      endedAt: null,
      gates: spec.gates,
      rounds: [],
      gateCall: null,
      inconclusive: 0,
      approvals: [],
      preStepPassed: first,
    };
    const put = await core.store.put(record, current?.version ?? 0);
    if (!put.ok) throw new SwitchyardError('CONFLICT', `another rollout of app "${app}" was started at the same time${put.current === null ? '' : `: ${put.current.id}`}`);
    let written: RoutingState;
    try {
      written = await core.writeStep(record, first, state.revision, pools);
    } catch (err) {
      await core.update(app, record.id, (r) => (isActive(r) ? core.ended('aborted', `step ${first} was refused: ${err instanceof Error ? err.message : String(err)}`) : null)).catch(() => null);
      throw err;
    }
    const pause = (spec.steps[first - 1] as { pauseMs: number }).pauseMs;
    const done = first === spec.steps.length && pause === 0;
    const updated = await core.update(app, record.id, (r) => {
      if (!isActive(r)) return null;
      const revision = Math.max(r.revision, written.revision);
      if (r.state === 'paused') return { revision, remainingMs: Math.max(0, r.stepStartedAt + pause - core.now()) };
      return done ? { revision, ...core.ended('succeeded', `${spec.to} reached 100%`) } : { revision, nextAt: r.stepStartedAt + pause };
    });
    const told = updated ?? record;
    core.announce(told, 'started');
    if (updated?.state === 'succeeded') {
      core.count(app, 'succeeded');
      core.announce(updated, 'succeeded');
    } else if (spec.steps[first - 1]?.approval !== undefined) core.announce(told, 'waiting-approval');
    core.logger.info({ app, rollout: record.id, to: spec.to, steps: spec.steps.length, first, by: opts.by }, `rollout ${record.id} of ${app} to ${spec.to} started${first > 1 ? ` at step ${first} (the steps below ${spec.to}'s current weight are skipped)` : ''}`);
    this.#driver.kick();
    return core.view(updated ?? (await core.store.get(app)) ?? record, pools);
  }

  /**
   * The preRollout hooks, before anything is written: a hook that fails, times out or cannot be
   * reached refuses the start with 409 (a start needs its evidence), naming the hook masked.
   */
  async #preRollout(app: string, id: string, spec: RolloutSpec): Promise<void> {
    const urls = spec.gates.hooks.preRollout;
    if (urls.length === 0) return;
    const core = this.#core;
    const probe: Rollout = { id, app, to: spec.to, analysis: spec.analysis, judgeFrom: 0, startedAt: core.now(), steps: spec.steps, step: 0 } as Rollout;
    const checks = await runHooks(urls, gateBody(core, probe, 'preRollout', 0, 1));
    const failed = checks.filter((c) => c.verdict !== 'pass');
    if (failed.length === 0) return;
    const why = failed.map((c) => `${c.name}: ${c.status ?? 'no answer'}${c.why === undefined ? '' : ` (${c.why})`}`).join('; ');
    core.logger.warn({ app, rollout: id, checks }, `rollout of ${app} to ${spec.to} refused by its preRollout hook: ${why}`);
    throw new SwitchyardError('CONFLICT', `the preRollout hook refused the rollout: ${why}`, { details: { gate: 'preRollout', checks } });
  }

  /** The running rollout, or the last one; 404 when the app never had one. */
  async current(app: string): Promise<RolloutView> {
    const pools = this.#core.pools(app);
    const r = await this.#core.store.get(app);
    if (r === null) throw new SwitchyardError('NOT_FOUND', `app "${app}" has no rollout`);
    return this.#core.view(r, pools, await this.#lease.holder());
  }

  /**
   * pause and resume change only the record (both idempotent); promote writes `to` at 100 % and
   * abort the starting weights, after marking the record, which is put back if the weights are
   * refused (health gate, store). 409 CONFLICT once the rollout has ended.
   */
  async command(app: string, command: Command, opts: CommandOptions): Promise<RolloutView> {
    const core = this.#core;
    const pools = core.pools(app);
    const first = await core.store.get(app);
    if (first === null) throw new SwitchyardError('NOT_FOUND', `app "${app}" has no rollout`);
    const why = opts.reason ? `: ${opts.reason}` : '';
    /** the record as it was right before this command changed it */
    let before: Rollout = first;
    const patch: Patch = (r) => {
      before = r;
      if (!isActive(r)) throw new SwitchyardError('CONFLICT', `rollout ${r.id} of app "${app}" has ${ENDED_WORDS[r.state]}; nothing to ${command}`, { details: { id: r.id, state: r.state } });
      const now = core.now();
      switch (command) {
        case 'pause':
          return r.state === 'paused' ? null : { state: 'paused', remainingMs: r.nextAt === null ? null : Math.max(0, r.nextAt - now), nextAt: null, reason: `paused by ${opts.by}${why}` };
        case 'resume':
          return r.state === 'running' ? null : { state: 'running', nextAt: now + (r.remainingMs ?? 0), remainingMs: null, judgeFrom: now, inconclusive: 0, reason: `resumed by ${opts.by}${why}` };
        case 'approve': {
          const step = r.steps[r.step - 1];
          if (step?.approval === undefined) throw new SwitchyardError('CONFLICT', `step ${r.step} of rollout ${r.id} is not an approval step; nothing to approve`, { details: { id: r.id, step: r.step } });
          if ((r.approvals ?? []).some((a) => a.step === r.step)) return null;
          return { approvals: [...(r.approvals ?? []), { step: r.step, by: opts.by, reason: opts.reason ?? null, at: now }] };
        }
        case 'promote':
          return { ...core.ended('succeeded', `promoted by ${opts.by}${why}`), step: r.steps.length };
        case 'abort':
          return core.ended('aborted', `aborted by ${opts.by}${why}`);
      }
    };
    const written = await core.update(app, first.id, patch, true);
    if (written === null) return core.view(before, pools); // pause of a paused one, resume of a running one
    if (command === 'promote' || command === 'abort') {
      const weights = command === 'promote' ? stepWeights(written.from, written.to, TOTAL_BP, pools) : written.from;
      const reason = command === 'promote' ? `rollout ${written.id} promoted by ${opts.by}: ${written.to} 100%${why}` : `rollout ${written.id} aborted by ${opts.by}${why}`;
      try {
        await core.writeRouting(written, weights, null, { by: opts.by, reason, force: opts.force, ...(command === 'abort' ? { revert: 'abort' as const } : {}) });
      } catch (err) {
        // the weights stay as they were: so does the rollout
        const { state, step, nextAt, remainingMs, reason: was, endedAt } = before;
        await core.update(app, written.id, (r) => (r.version === written.version ? { state, step, nextAt, remainingMs, reason: was, endedAt } : null)).catch(() => null);
        throw err;
      }
      core.count(app, command === 'promote' ? 'succeeded' : 'aborted');
    }
    core.announce(written, ({ pause: 'paused', resume: 'resumed', promote: 'succeeded', abort: 'aborted', approve: 'approved' } as const)[command]);
    core.logger.info({ app, rollout: written.id, by: opts.by }, `rollout ${written.id} of ${app}: ${command} by ${opts.by}`);
    this.#driver.kick();
    return core.view(written, pools);
  }

  /** Stops driving and gives the lease up (another instance takes over at once). */
  async close(): Promise<void> {
    this.#core.controller.off('applied', this.#onApplied);
    await this.#driver.close();
    await this.#core.notifier.close();
    await this.#lease.close();
  }
}
