import { DEFAULT_HOOK_TIMEOUT_MS, type GateCheck, type GatePhase, type Gates, type PrometheusSource, type WebhookSpec } from './gate-model.ts';
import type { AnalysisFigures } from './model.ts';
import { call, maskUrl } from './outbound.ts';
import { runQuery } from './prometheus.ts';

/** What a webhook gate or hook receives (docs/gates.md §3), plus which round it is. */
export interface GateBody {
  readonly app: string;
  readonly rollout: string;
  readonly step: number;
  readonly to: string;
  readonly version: string;
  /** percentages, as the admin API shows them */
  readonly weights: Readonly<Record<string, number>>;
  /** the proxy's own figures of `to` and the other pools over the live window (null: not judged yet) */
  readonly figures: { readonly to: AnalysisFigures; readonly others: AnalysisFigures } | null;
  /** which gate is asking: `preRollout`, `preStep`, `analysis`, `postRollout`, `onRollback` */
  readonly phase: GatePhase | 'preRollout' | 'postRollout' | 'onRollback';
  /** per step and phase, 1, 2, …: the same (rollout, step, phase, round) is never sent twice by a driver */
  readonly round: number;
  readonly state?: string | undefined;
  readonly reason?: string | null | undefined;
}

/**
 * A webhook gate's verdict: 2xx passes; any other status, or no answer within the timeout,
 * fails; an endpoint that cannot be reached at all (refused, no such host) is inconclusive, as
 * a Prometheus that is down: no evidence either way.
 */
export async function callWebhook(kind: GateCheck['kind'], name: string, url: string, timeoutMs: number, body: GateBody, signal?: AbortSignal): Promise<GateCheck> {
  const answer = await call(url, { method: 'POST', body: JSON.stringify(body), headers: { 'x-switchyard-gate': `${body.rollout}/${body.step}/${body.phase}/${body.round}` }, timeoutMs, signal });
  if (answer.status !== null) {
    const ok = answer.status >= 200 && answer.status < 300;
    return ok ? { kind, name, verdict: 'pass', status: answer.status, ms: answer.ms } : { kind, name, verdict: 'fail', status: answer.status, why: `HTTP ${answer.status}${snippet(answer.body)}`, ms: answer.ms };
  }
  if (answer.timedOut) return { kind, name, verdict: 'fail', status: null, why: answer.error, ms: answer.ms };
  return { kind, name, verdict: 'inconclusive', status: null, why: `unreachable: ${answer.error ?? 'no answer'}`, ms: answer.ms };
}

/** The start of a failing answer's body, which usually says why (a smoke test's summary). */
function snippet(body: string): string {
  const text = body.replace(/\s+/g, ' ').trim().slice(0, 200);
  return text === '' ? '' : `: ${text}`;
}

/** The queries and webhook gates of one analysis round, all at once. */
export function runEvidence(g: Gates, prometheus: PrometheusSource | null, body: GateBody, signal?: AbortSignal): Promise<GateCheck[]> {
  const vars = { app: body.app, pool: body.to, version: body.version };
  return Promise.all([
    ...g.queries.map((q) =>
      prometheus === null
        ? Promise.resolve<GateCheck>({ kind: 'query', name: q.name, verdict: 'inconclusive', value: null, why: 'no Prometheus configured (analysis.prometheus)', ms: 0 })
        : runQuery(prometheus, q, vars, signal),
    ),
    ...g.webhooks.map((w: WebhookSpec) => callWebhook('webhook', w.name, w.url, w.timeoutMs, body, signal)),
  ]);
}

/** Hooks (preRollout, preStep), each named by its masked URL. */
export function runHooks(urls: readonly string[], body: GateBody, signal?: AbortSignal): Promise<GateCheck[]> {
  return Promise.all(urls.map((url, i) => callWebhook('hook', `${body.phase}[${i}] ${maskUrl(url)}`, url, DEFAULT_HOOK_TIMEOUT_MS, body, signal)));
}

/** How long a round may take at most: its slowest call's deadline (calls run at once). */
export function roundTimeoutMs(g: Gates, phase: GatePhase, queryTimeoutMs: number): number {
  if (phase === 'preStep') return DEFAULT_HOOK_TIMEOUT_MS;
  return Math.max(g.queries.length > 0 ? queryTimeoutMs : 0, ...g.webhooks.map((w) => w.timeoutMs), 0);
}
