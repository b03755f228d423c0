import { weightsToPct } from '../config/weights.ts';
import { analyse } from './analysis.ts';
import type { RolloutCore } from './core.ts';
import { DEFAULT_QUERY_TIMEOUT_MS, hasEvidence, MAX_ROUNDS, roundText, roundVerdict, type GateCheck, type GatePhase, type GateRound, type Gates } from './gate-model.ts';
import { roundTimeoutMs, runEvidence, runHooks, type GateBody } from './gates.ts';
import type { Rollout } from './model.ts';

/** Past a round's slowest deadline, how long a driver taking over still waits for its answer to be recorded. */
const CLAIM_GRACE_MS = 2000;

/** The rounds of a step and phase that count: those since the step began and since the last resume. */
export function roundsOf(r: Rollout, phase: GatePhase, step: number): GateRound[] {
  return (r.rounds ?? []).filter((x) => x.phase === phase && x.step === step && x.at >= r.judgeFrom && x.at >= (phase === 'preStep' ? 0 : r.stepStartedAt));
}

/** The newest counting round that is not lost (a lost round is no evidence). */
export function latestRound(r: Rollout, phase: GatePhase, step: number): GateRound | undefined {
  return roundsOf(r, phase, step)
    .filter((x) => x.lost !== true)
    .at(-1);
}

/**
 * When the next analysis round of the step in effect is due: `interval` after the last one, the
 * first `interval` into the step (or at the end of its pause, if that is sooner, so a short step
 * is still judged). Steps at 0 % are not judged: `to` serves no one there.
 */
export function evidenceDue(r: Rollout, g: Gates): number {
  const last = roundsOf(r, 'analysis', r.step).at(-1);
  if (last !== undefined) return last.at + g.intervalMs;
  const first = Math.max(r.stepStartedAt, r.judgeFrom) + g.intervalMs;
  return r.nextAt === null ? first : Math.min(first, r.nextAt);
}

/** Whether a round of `phase` for `step` is due on this record at `now`. */
export function roundDue(r: Rollout, phase: GatePhase, step: number, now: number): boolean {
  const g = r.gates;
  if (g === null || g === undefined) return false;
  if (phase === 'analysis') return hasEvidence(g) && now >= evidenceDue(r, g);
  if ((r.preStepPassed ?? 0) >= step) return false;
  const last = roundsOf(r, 'preStep', step).at(-1);
  return last === undefined || now >= last.at + g.intervalMs;
}

/** What a webhook receives about the rollout now. */
export function gateBody(core: RolloutCore, r: Rollout, phase: GateBody['phase'], step: number, round: number): GateBody {
  const pools = core.pools(r.app);
  const a = r.analysis === null ? null : analyse(r, core.stats, core.now());
  return {
    app: r.app,
    rollout: r.id,
    step,
    to: r.to,
    version: core.controller.appConfig(r.app).pools[r.to]?.version ?? '',
    weights: weightsToPct(core.controller.state(r.app).weights, pools),
    figures: a === null ? null : { to: a.to, others: a.others },
    phase,
    round,
  };
}

/**
 * Makes the gate calls of the driver: one round at a time per app, claimed in the record before
 * any call (compare-and-set), so of two drivers only one calls, and a driver that takes over
 * from a dead one waits out the claim, records that round as lost and calls the next one: a
 * round is never called twice, and a step is never left without a round that passed. The
 * calls run in the background, so a slow webhook never holds another app's rollout.
 */
export class GateKeeper {
  readonly #core: RolloutCore;
  readonly #id: string;
  readonly #prometheus: () => Gates['prometheus'];
  readonly #done: () => void;
  readonly #inflight = new Map<string, Promise<void>>();
  readonly #stop = new AbortController();

  /** `done` is called when a round's answers are recorded (the driver looks at them at once). */
  constructor(core: RolloutCore, id: string, processPrometheus: () => Gates['prometheus'], done: () => void) {
    this.#core = core;
    this.#id = id;
    this.#prometheus = processPrometheus;
    this.#done = done;
  }

  busy(app: string): boolean {
    return this.#inflight.has(app);
  }

  /** Starts a round of `phase` for `step` unless one is in flight; returns the record as claimed (or as it stands). */
  async start(r: Rollout, phase: GatePhase, step: number): Promise<Rollout> {
    const core = this.#core;
    const g = r.gates;
    if (g === null || g === undefined || this.busy(r.app)) return r;
    if (phase === 'analysis' && !hasEvidence(g)) return r;
    const now = core.now();
    const timeout = roundTimeoutMs(g, phase, DEFAULT_QUERY_TIMEOUT_MS);
    let claimed: GateRound['round'] = 0;
    const updated = await core.update(r.app, r.id, (x) => {
      // judged on the record as it is now: a round answered since `r` was read makes this one unneeded
      if (x.state !== 'running' || x.step !== r.step || !roundDue(x, phase, step, now)) return null;
      const held = x.gateCall ?? null;
      if (held !== null && held.deadline > now) return null;
      const rounds = [...(x.rounds ?? [])];
      if (held !== null) rounds.push({ step: held.step, phase: held.phase, round: held.round, at: held.at, verdict: 'inconclusive', checks: [], by: held.by, lost: true });
      claimed = 1 + Math.max(0, ...rounds.filter((y) => y.step === step && y.phase === phase).map((y) => y.round));
      return { gateCall: { step, phase, round: claimed, at: now, deadline: now + timeout + CLAIM_GRACE_MS, by: this.#id }, rounds: rounds.slice(-MAX_ROUNDS) };
    });
    if (updated === null) return (await core.store.get(r.app)) ?? r;
    if (updated.gateCall?.by !== this.#id || updated.gateCall.round !== claimed) return updated;
    const round = claimed;
    const run = this.#run(updated, phase, step, round, now)
      .catch((err: unknown) => core.logger.warn({ err, app: r.app, rollout: r.id }, `rollout ${r.id} of ${r.app}: recording gate round ${round} failed; the claim runs out and the next round is called`))
      .finally(() => {
        this.#inflight.delete(r.app);
        this.#done();
      });
    this.#inflight.set(r.app, run);
    return updated;
  }

  async #run(r: Rollout, phase: GatePhase, step: number, round: number, at: number): Promise<void> {
    const core = this.#core;
    const g = r.gates as Gates;
    const body = gateBody(core, r, phase, step, round);
    const checks: GateCheck[] = phase === 'analysis' ? await runEvidence(g, g.prometheus ?? this.#prometheus(), body, this.#stop.signal) : await runHooks(g.hooks.preStep, body, this.#stop.signal);
    if (this.#stop.signal.aborted) return; // closing: the claim runs out, the next driver calls the next round
    const verdict = roundVerdict(checks);
    const result: GateRound = { step, phase, round, at, verdict, checks, by: this.#id };
    const written = await core.update(r.app, r.id, (x) => {
      const c = x.gateCall;
      if (c === null || c === undefined || c.by !== this.#id || c.round !== round || c.step !== step || c.phase !== phase) return null;
      return {
        gateCall: null,
        rounds: [...(x.rounds ?? []), result].slice(-MAX_ROUNDS),
        inconclusive: verdict === 'inconclusive' ? (x.inconclusive ?? 0) + 1 : 0,
        ...(phase === 'preStep' && verdict === 'pass' ? { preStepPassed: Math.max(step, x.preStepPassed ?? 0) } : {}),
      };
    });
    const level = verdict === 'pass' ? 'info' : 'warn';
    if (written !== null) core.logger[level]({ app: r.app, rollout: r.id, step, phase, round, verdict, checks }, `rollout ${r.id} of ${r.app}: step ${step} ${phase} round ${round} ${verdict}: ${roundText(result)}`);
  }

  /** Aborts the calls in flight (their claims run out; a driver taking over calls the next round). */
  async close(): Promise<void> {
    this.#stop.abort();
    await Promise.allSettled([...this.#inflight.values()]);
  }
}
