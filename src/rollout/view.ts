import { formatDuration } from '../config/duration.ts';
import { bpToPct, weightsToPct } from '../config/weights.ts';
import { NO_GATES, type Approval, type GateCall, type GateRound, type Gates } from './gate-model.ts';
import type { Analysis, AnalysisFigures, AnalysisResult, OnFailure, Rollout, RolloutState } from './model.ts';
import { maskHeaders, maskUrl } from './outbound.ts';

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
  steps: StepView[];
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
  /** docs/gates.md §5: queries, webhooks, hooks, notify targets, every judgement; URLs and headers masked */
  gates: GatesView;
}

export interface StepView {
  weight: number;
  pause: string | null;
  approval?: true;
  /** an approval step's timeout (null: none) */
  timeout?: string | null;
  /** a mirror step: the share mirrored to `to` */
  mirror?: number;
}

export interface GatesView {
  config: Gates;
  /** the newest judgement rounds, newest last, with ISO times */
  rounds: (Omit<GateRound, 'at'> & { at: string })[];
  /** a round in flight */
  calling: (Omit<GateCall, 'at' | 'deadline'> & { at: string; deadline: string }) | null;
  inconclusive: number;
  approvals: (Omit<Approval, 'at'> & { at: string })[];
  /** the step in effect holds for an approval not given yet */
  waitingApproval: boolean;
}

const iso = (ms: number): string => new Date(ms).toISOString();

export function analysisView(a: AnalysisResult): AnalysisView {
  return { at: iso(a.at), window: `${a.window}s`, verdict: a.verdict, to: a.to, others: a.others, ...(a.why === undefined ? {} : { why: a.why }) };
}

/** The gates with every secret masked: hook, webhook and notify URLs, Prometheus headers and user info. */
export function maskedGates(g: Gates): Gates {
  return {
    ...g,
    prometheus: g.prometheus === null ? null : { url: stripUserInfo(g.prometheus.url), headers: maskHeaders(g.prometheus.headers) },
    webhooks: g.webhooks.map((w) => ({ ...w, url: maskUrl(w.url) })),
    hooks: { preRollout: g.hooks.preRollout.map(maskUrl), preStep: g.hooks.preStep.map(maskUrl), postRollout: g.hooks.postRollout.map(maskUrl), onRollback: g.hooks.onRollback.map(maskUrl) },
    notify: g.notify.map((n) => ({ ...n, url: maskUrl(n.url) })),
  };
}

function stripUserInfo(url: string): string {
  try {
    const u = new URL(url);
    if (u.username === '' && u.password === '') return url;
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return '…';
  }
}

function gatesView(r: Rollout): GatesView {
  const step = r.steps[r.step - 1];
  const approvals = r.approvals ?? [];
  const call = r.gateCall ?? null;
  return {
    config: maskedGates(r.gates ?? NO_GATES),
    rounds: (r.rounds ?? []).map((x) => ({ ...x, at: iso(x.at) })),
    calling: call === null ? null : { ...call, at: iso(call.at), deadline: iso(call.deadline) },
    inconclusive: r.inconclusive ?? 0,
    approvals: approvals.map((a) => ({ ...a, at: iso(a.at) })),
    waitingApproval: (r.state === 'running' || r.state === 'paused') && step?.approval !== undefined && !approvals.some((a) => a.step === r.step),
  };
}

export function rolloutView(r: Rollout, pools: readonly string[], now: number, live?: AnalysisResult | null, driver?: string | null): RolloutView {
  const analysis = live ?? r.lastAnalysis;
  return {
    id: r.id,
    app: r.app,
    to: r.to,
    state: r.state,
    step: r.step,
    steps: r.steps.map((s): StepView => ({ weight: bpToPct(s.weight), pause: s.pauseMs > 0 ? formatDuration(s.pauseMs) : null, ...(s.approval === undefined ? {} : { approval: true, timeout: s.approval.timeoutMs === null ? null : formatDuration(s.approval.timeoutMs) }), ...(s.mirror === undefined ? {} : { mirror: s.mirror.share }) })),
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
    gates: gatesView(r),
  };
}
