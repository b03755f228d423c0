import { TOTAL_BP, type Weights } from '../config/weights.ts';
import type { Approval, GateCall, GateRound, Gates } from './gate-model.ts';

/**
 * A progressive rollout as the store keeps it. Weights are basis points (config/weights.ts) and
 * times epoch milliseconds; the admin API renders percentages and ISO times (view.ts).
 */
export interface Rollout {
  readonly id: string;
  readonly app: string;
  /** the pool being rolled out */
  readonly to: string;
  /** the weights when the rollout started: what a rollback or an abort restores */
  readonly from: Weights;
  readonly steps: readonly Step[];
  /** the step in effect, 1-based (its weights are written) */
  readonly step: number;
  readonly state: RolloutState;
  readonly startedAt: number;
  readonly stepStartedAt: number;
  /** when the next step is due (or, on the last step, when the rollout succeeds); null unless running */
  readonly nextAt: number | null;
  /** while paused: what was left of the step's pause */
  readonly remainingMs: number | null;
  /** the analysis judges no window reaching back before this (set on resume) */
  readonly judgeFrom: number;
  /** null: no analysis, the steps just follow their pauses */
  readonly analysis: Analysis | null;
  readonly onFailure: OnFailure;
  /** why it is in its state (the operator's reason at start, the failed figures, who aborted…) */
  readonly reason: string | null;
  /** the figures of the judgement that ended or paused it (live figures are computed on read) */
  readonly lastAnalysis: AnalysisResult | null;
  /** token name of whoever started it */
  readonly by: string;
  /** the routing revision this rollout wrote last (or started on): a newer manual one aborts it */
  readonly revision: number;
  /** compare-and-set counter of the record itself, +1 on every write */
  readonly version: number;
  readonly updatedAt: number;
  readonly endedAt: number | null;
  // docs/gates.md §5; optional: records written before gates existed have none
  /** queries, webhooks, hooks and notify targets (secrets: masked in every answer) */
  readonly gates?: Gates | null | undefined;
  /** the newest judgement rounds of queries, webhooks and preStep hooks (at most MAX_ROUNDS) */
  readonly rounds?: readonly GateRound[] | undefined;
  /** the round claimed and in flight, so a driver taking over neither skips nor repeats it */
  readonly gateCall?: GateCall | null | undefined;
  /** inconclusive rounds in a row (reset by a conclusive one and by resume) */
  readonly inconclusive?: number | undefined;
  /** every approval given, oldest first */
  readonly approvals?: readonly Approval[] | undefined;
  /** the highest step whose preStep hooks passed */
  readonly preStepPassed?: number | undefined;
}

export type RolloutState = 'running' | 'paused' | 'succeeded' | 'rolled-back' | 'aborted';
export type OnFailure = 'rollback' | 'pause';
/** the `result` label of switchyard_rollouts_total */
export type RolloutResult = 'succeeded' | 'rolled-back' | 'aborted';
export const ROLLOUT_RESULTS: readonly RolloutResult[] = ['succeeded', 'rolled-back', 'aborted'];

export interface Step {
  /** `to`'s weight in basis points */
  readonly weight: number;
  /** how long the step holds before the next one, in ms (0: go on at once) */
  readonly pauseMs: number;
  /** an approval step: holds (at the weight of the step before) until approved; past `timeoutMs` (null: never), onFailure */
  readonly approval?: { readonly timeoutMs: number | null } | undefined;
  /** a mirror step: holds at the weight of the step before while `share` % (of the requests the other pools serve) is copied to `to`; its analysis judges the copies */
  readonly mirror?: { readonly share: number } | undefined;
}

export interface Analysis {
  /** 0..1: `to`'s share of failed requests (5xx and proxy errors) above this fails the step */
  readonly maxErrorRate: number;
  /** `to`'s p99 above this fails the step; omitted: latency is not judged */
  readonly maxP99Ms?: number | undefined;
  /** `to` must have served this many requests in the window before anything is judged */
  readonly minRequests: number;
  /**
   * How long past a step's pause the rollout holds, waiting for `minRequests`, before it gives
   * up and fails (then `onFailure` applies). A step is never left unjudged. Records written
   * before this option existed have none: `DEFAULT_MAX_WAIT_MS` then. @default 600000 (10 min)
   */
  readonly maxWaitMs?: number | undefined;
}

/** `analysis.maxWait` when a rollout names none: 10 minutes. */
export const DEFAULT_MAX_WAIT_MS = 600_000;

/** The figures of one pool or group of pools over the analysis window. */
export interface AnalysisFigures {
  readonly requests: number;
  readonly errors: number;
  /** errors / requests, 0 without requests */
  readonly errorRate: number;
  /** ms; null without requests (for `others`, the highest p99 of the other pools) */
  readonly p99: number | null;
}

export interface AnalysisResult {
  readonly at: number;
  /** the stats window judged, in seconds */
  readonly window: number;
  /** `waiting`: `to` has not served `minRequests` in the window yet (or a resume is too recent) */
  readonly verdict: 'pass' | 'fail' | 'waiting';
  readonly to: AnalysisFigures;
  /** every other pool together: the baseline the operator compares with */
  readonly others: AnalysisFigures;
  /** on `fail`: what crossed which threshold */
  readonly why?: string | undefined;
}

export const ACTIVE_STATES: ReadonlySet<RolloutState> = new Set(['running', 'paused']);

/** running or paused: the app's rollout is not over */
export function isActive(r: Rollout): boolean {
  return ACTIVE_STATES.has(r.state);
}

/** The default analysis when a rollout names none (`analysis: null` turns it off). */
export const DEFAULT_ANALYSIS: Analysis = Object.freeze({ maxErrorRate: 0.01, minRequests: 100, maxWaitMs: DEFAULT_MAX_WAIT_MS });

/**
 * Presets after CodeDeploy's: `canaryP-D` (P % for D, then 100 %), `linearP-every-D` (+P % every
 * D up to 100 %), `all-at-once`. Any P (1–99, whole) and duration work: `canary25-30s`,
 * `linear20-every-2m`. Returns null for a name that is none of these.
 */
export function presetSteps(name: string, parseDuration: (s: string) => number | undefined): Step[] | null {
  if (name === 'all-at-once') return [{ weight: TOTAL_BP, pauseMs: 0 }];
  const canary = /^canary(\d{1,2})-(\w+)$/.exec(name);
  if (canary !== null) {
    const pct = Number(canary[1]);
    const pause = parseDuration(canary[2] as string);
    if (!(pct >= 1 && pct <= 99) || pause === undefined || pause <= 0) return null;
    return [{ weight: pct * 100, pauseMs: pause }, { weight: TOTAL_BP, pauseMs: 0 }];
  }
  const linear = /^linear(\d{1,2})-every-(\w+)$/.exec(name);
  if (linear !== null) {
    const pct = Number(linear[1]);
    const pause = parseDuration(linear[2] as string);
    if (!(pct >= 1 && pct <= 99) || pause === undefined || pause <= 0) return null;
    const steps: Step[] = [];
    for (let w = pct; w < 100; w += pct) steps.push({ weight: w * 100, pauseMs: pause });
    steps.push({ weight: TOTAL_BP, pauseMs: 0 });
    return steps;
  }
  return null;
}

/** The presets the docs and the 400 message name. */
export const PRESET_EXAMPLES = ['canary10-5m', 'canary10-15m', 'linear10-every-1m', 'linear10-every-3m', 'all-at-once'] as const;

/**
 * The weights of a step: `to` gets `bp`, and the other pools share the rest in the proportions
 * they had at the start (`from`), exactly, in basis points summing to 10 000. Shares are
 * floored and the few basis points left go to the largest remainders (ties: configured order),
 * so the split is deterministic and every step agrees on every instance. If the other pools had
 * nothing at the start (`to` was at 100 %), the rest is shared equally.
 */
export function stepWeights(from: Weights, to: string, bp: number, pools: readonly string[]): Record<string, number> {
  const others = pools.filter((p) => p !== to);
  const rest = TOTAL_BP - bp;
  let base = others.reduce((n, p) => n + (from[p] ?? 0), 0);
  const share = (p: string): number => (base > 0 ? (from[p] ?? 0) : 1);
  if (base === 0) base = others.length;
  const out: Record<string, number> = {};
  for (const p of pools) out[p] = 0;
  out[to] = bp;
  let given = 0;
  const remainders: { pool: string; frac: number; order: number }[] = [];
  others.forEach((p, order) => {
    const exact = (rest * share(p)) / base;
    const whole = Math.floor(exact);
    out[p] = whole;
    given += whole;
    remainders.push({ pool: p, frac: exact - whole, order });
  });
  remainders.sort((a, b) => b.frac - a.frac || a.order - b.order);
  for (let i = 0; given < rest; i++, given++) {
    const r = remainders[i % remainders.length] as { pool: string };
    out[r.pool] = (out[r.pool] as number) + 1;
  }
  return out;
}

/**
 * The step a rollout starts on: the first whose weight is not below `to`'s current weight, so a
 * rollout never lowers `to` (a ramp is monotonic: sticky users only ever move toward `to`).
 * 1-based; the last step (100 %) when every step is below.
 */
export function firstStep(steps: readonly Step[], currentBp: number): number {
  const i = steps.findIndex((s) => s.weight >= currentBp);
  return i === -1 ? steps.length : i + 1;
}

export function sameWeights(a: Weights, b: Weights): boolean {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const k of keys) if ((a[k] ?? 0) !== (b[k] ?? 0)) return false;
  return true;
}
