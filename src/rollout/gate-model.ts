/**
 * Release gates and external evidence (docs/gates.md §5) as a rollout record keeps them: the
 * Prometheus queries and webhook gates judged every `interval`, the hooks around the rollout,
 * the notification targets, and every judgement made. Times are epoch ms, durations ms.
 */

/** Where queries go: the rollout's own `analysis.prometheus`, or null for the process config's. */
export interface PrometheusSource {
  readonly url: string;
  /** sent with every query (an `Authorization`, a tenant header): secrets, masked in every answer */
  readonly headers: Readonly<Record<string, string>>;
}

export interface QuerySpec {
  readonly name: string;
  /** PromQL with `{{app}}`, `{{pool}}` and `{{version}}` (the `to` pool's) */
  readonly prometheus: string;
  readonly min?: number | undefined;
  readonly max?: number | undefined;
}

export interface WebhookSpec {
  readonly name: string;
  readonly url: string;
  readonly timeoutMs: number;
}

export const NOTIFY_EVENTS = ['started', 'step', 'waiting-approval', 'approved', 'paused', 'resumed', 'succeeded', 'rolled-back', 'aborted'] as const;
export type NotifyEvent = (typeof NOTIFY_EVENTS)[number];

export interface NotifySpec {
  readonly url: string;
  readonly format: 'json' | 'slack';
  readonly events: readonly NotifyEvent[];
}

export interface Hooks {
  /** called by the instance answering the start; any failure refuses it (409, nothing written) */
  readonly preRollout: readonly string[];
  /** called by the driver before it writes each step after the first; a failure applies onFailure */
  readonly preStep: readonly string[];
  /** after the fact, never blocking */
  readonly postRollout: readonly string[];
  readonly onRollback: readonly string[];
}

export interface Gates {
  /** ms between judgement rounds of the queries and webhooks while a step holds */
  readonly intervalMs: number;
  /** inconclusive rounds in a row before `onInconclusive` applies */
  readonly inconclusiveLimit: number;
  readonly onInconclusive: 'pause' | 'rollback';
  readonly prometheus: PrometheusSource | null;
  readonly queries: readonly QuerySpec[];
  readonly webhooks: readonly WebhookSpec[];
  readonly hooks: Hooks;
  readonly notify: readonly NotifySpec[];
}

export type Verdict = 'pass' | 'fail' | 'inconclusive';

/** One piece of evidence of a round: a query's value or a webhook's status. */
export interface GateCheck {
  readonly kind: 'query' | 'webhook' | 'hook';
  readonly name: string;
  readonly verdict: Verdict;
  /** a query's value (null: none) */
  readonly value?: number | null | undefined;
  /** a webhook's HTTP status (null: no answer) */
  readonly status?: number | null | undefined;
  /** why it failed or was inconclusive */
  readonly why?: string | undefined;
  readonly ms: number;
}

/** `analysis`: the queries and webhooks judged while a step holds; `preStep`: the hooks before a step is written. */
export type GatePhase = 'analysis' | 'preStep';

/** One round of gate calls, kept in the record (the newest `MAX_ROUNDS`). */
export interface GateRound {
  readonly step: number;
  readonly phase: GatePhase;
  /** 1, 2, … per step and phase: a round is called once, by one driver */
  readonly round: number;
  readonly at: number;
  readonly verdict: Verdict;
  readonly checks: readonly GateCheck[];
  /** the instance that made the calls */
  readonly by: string;
  /** a round whose driver stopped before recording its answers: never counted as evidence */
  readonly lost?: boolean | undefined;
}

/** A round claimed and in flight: a driver taking over waits for `deadline` and records it as lost. */
export interface GateCall {
  readonly step: number;
  readonly phase: GatePhase;
  readonly round: number;
  readonly at: number;
  readonly deadline: number;
  readonly by: string;
}

export interface Approval {
  readonly step: number;
  /** the approving token's name */
  readonly by: string;
  readonly reason: string | null;
  readonly at: number;
}

/** How many rounds a record keeps (the newest). */
export const MAX_ROUNDS = 30;

export const DEFAULT_INTERVAL_MS = 30_000;
export const DEFAULT_INCONCLUSIVE_LIMIT = 3;
/** A webhook gate or hook with no `timeout`. */
export const DEFAULT_HOOK_TIMEOUT_MS = 10_000;
/** A Prometheus query's deadline. */
export const DEFAULT_QUERY_TIMEOUT_MS = 10_000;

export const NO_GATES: Gates = Object.freeze({
  intervalMs: DEFAULT_INTERVAL_MS,
  inconclusiveLimit: DEFAULT_INCONCLUSIVE_LIMIT,
  onInconclusive: 'pause',
  prometheus: null,
  queries: [],
  webhooks: [],
  hooks: { preRollout: [], preStep: [], postRollout: [], onRollback: [] },
  notify: [],
} as Gates);

/** Whether the step holds on queries or webhooks (judged every interval). */
export function hasEvidence(g: Gates | null | undefined): g is Gates {
  return g !== null && g !== undefined && (g.queries.length > 0 || g.webhooks.length > 0);
}

/** The round verdict: any fail fails, else any inconclusive is inconclusive, else pass. */
export function roundVerdict(checks: readonly GateCheck[]): Verdict {
  if (checks.some((c) => c.verdict === 'fail')) return 'fail';
  if (checks.some((c) => c.verdict === 'inconclusive')) return 'inconclusive';
  return 'pass';
}

/** `checkout-ok 0.995`, `smoke 200`, `smoke no answer (…)`: a check in one phrase, for reasons and the history. */
export function checkText(c: GateCheck): string {
  const what = c.kind === 'query' ? `${c.name} ${c.value === null || c.value === undefined ? 'no value' : String(Number(c.value.toPrecision(6)))}` : `${c.name} ${c.status === null || c.status === undefined ? 'no answer' : String(c.status)}`;
  return c.why === undefined ? what : `${what} (${c.why})`;
}

/** The checks of a round that decided it, as one phrase. */
export function roundText(r: GateRound): string {
  const deciding = r.verdict === 'pass' ? r.checks : r.checks.filter((c) => c.verdict === r.verdict);
  return deciding.map(checkText).join('; ');
}
