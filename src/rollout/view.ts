import { formatDuration } from '../config/duration.ts';
import { bpToPct, weightsToPct } from '../state/weights.ts';
import type { Analysis, AnalysisFigures, AnalysisResult, OnFailure, Rollout, RolloutState } from './model.ts';

export interface AnalysisView {
  at: string;
  /** `10s` or `60s`: the fleet-wide stats window judged */
  window: string;
  verdict: AnalysisResult['verdict'];
  to: AnalysisFigures;
  others: AnalysisFigures;
  why?: string;
}

/** `GET /v1/apps/:app/rollouts/current` and every rollout answer (percentages, ISO times). */
export interface RolloutView {
  id: string;
  app: string;
  to: string;
  state: RolloutState;
  /** the step in effect, 1-based, of `steps.length` */
  step: number;
  steps: { weight: number; pause: string | null }[];
  /** `to`'s weight in the step in effect */
  weight: number;
  /** the weights when it started: what rollback and abort restore */
  from: Record<string, number>;
  startedAt: string;
  stepStartedAt: string;
  /** when the next step is due (on the last step: when it succeeds); null unless running */
  nextAt: string | null;
  nextInMs: number | null;
  /** while paused: what is left of the step's pause */
  remainingMs: number | null;
  endedAt: string | null;
  analysis: Analysis | null;
  onFailure: OnFailure;
  reason: string | null;
  /** live figures while it runs or is paused; the deciding ones once it ended */
  lastAnalysis: AnalysisView | null;
  by: string;
  revision: number;
  /** the instance driving it (fleet lease holder), when known */
  driver?: string | null;
}

const iso = (ms: number): string => new Date(ms).toISOString();

export function analysisView(a: AnalysisResult): AnalysisView {
  return { at: iso(a.at), window: `${a.window}s`, verdict: a.verdict, to: a.to, others: a.others, ...(a.why === undefined ? {} : { why: a.why }) };
}

export function rolloutView(r: Rollout, pools: readonly string[], now: number, live?: AnalysisResult | null, driver?: string | null): RolloutView {
  const analysis = live ?? r.lastAnalysis;
  return {
    id: r.id,
    app: r.app,
    to: r.to,
    state: r.state,
    step: r.step,
    steps: r.steps.map((s) => ({ weight: bpToPct(s.weight), pause: s.pauseMs > 0 ? formatDuration(s.pauseMs) : null })),
    weight: bpToPct(r.steps[r.step - 1]?.weight ?? 0),
    from: weightsToPct(r.from, pools),
    startedAt: iso(r.startedAt),
    stepStartedAt: iso(r.stepStartedAt),
    nextAt: r.state === 'running' && r.nextAt !== null ? iso(r.nextAt) : null,
    nextInMs: r.state === 'running' && r.nextAt !== null ? Math.max(0, r.nextAt - now) : null,
    remainingMs: r.state === 'paused' ? r.remainingMs : null,
    endedAt: r.endedAt === null ? null : iso(r.endedAt),
    analysis: r.analysis,
    onFailure: r.onFailure,
    reason: r.reason,
    lastAnalysis: analysis === null ? null : analysisView(analysis),
    by: r.by,
    revision: r.revision,
    ...(driver === undefined ? {} : { driver }),
  };
}
