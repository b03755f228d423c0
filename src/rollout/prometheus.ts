import { DEFAULT_QUERY_TIMEOUT_MS, type GateCheck, type PrometheusSource, type QuerySpec } from './gate-model.ts';
import { call } from './outbound.ts';

/** What `{{app}}`, `{{pool}}` and `{{version}}` stand for in a query. */
export interface QueryVars {
  readonly app: string;
  readonly pool: string;
  readonly version: string;
}

/** Escaped for a PromQL double-quoted string, where the placeholders usually sit (`version="{{version}}"`). */
const escape = (s: string): string => s.replaceAll('\\', '\\\\').replaceAll('"', '\\"');

export function substitute(promql: string, vars: QueryVars): string {
  return promql.replace(/\{\{\s*(app|pool|version)\s*\}\}/g, (_m, k: keyof QueryVars) => escape(vars[k]));
}

/** The value of an instant query's answer, or why there is none. */
export type QueryValue = { readonly value: number } | { readonly value: null; readonly why: string };

/**
 * Reads Prometheus's `/api/v1/query` answer: a scalar, or a vector of exactly one series. An
 * empty vector, several series, NaN or ±Inf is no value (with why): never a number to judge.
 */
export function readAnswer(status: number, body: string): QueryValue {
  let doc: { status?: string; error?: string; errorType?: string; data?: { resultType?: string; result?: unknown } };
  try {
    doc = JSON.parse(body) as typeof doc;
  } catch {
    return { value: null, why: `HTTP ${status}, not a Prometheus answer` };
  }
  if (doc.status !== 'success') return { value: null, why: `query error${doc.errorType ? ` (${doc.errorType})` : ''}: ${doc.error ?? `HTTP ${status}`}` };
  const data = doc.data ?? {};
  let raw: unknown;
  if (data.resultType === 'scalar') raw = (data.result as unknown[] | undefined)?.[1];
  else if (data.resultType === 'vector') {
    const series = Array.isArray(data.result) ? (data.result as { value?: unknown[] }[]) : [];
    if (series.length === 0) return { value: null, why: 'no data (empty result)' };
    if (series.length > 1) return { value: null, why: `${series.length} series; the query must come down to one (sum, avg, max…)` };
    raw = series[0]?.value?.[1];
  } else return { value: null, why: `a ${String(data.resultType)} result; the query must be a scalar or an instant vector` };
  // Prometheus writes infinities as "+Inf"/"-Inf", which Number() does not read
  const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : typeof raw === 'string' ? Number(raw) : NaN;
  if (Number.isNaN(value)) return { value: null, why: 'NaN (no data behind a ratio?)' };
  if (!Number.isFinite(value)) return { value: null, why: `${value > 0 ? '+' : '-'}Inf` };
  return { value };
}

/** Judges a value against the query's bounds (pure). */
export function judgeValue(q: QuerySpec, v: QueryValue, ms: number): GateCheck {
  if (v.value === null) return { kind: 'query', name: q.name, verdict: 'inconclusive', value: null, why: v.why, ms };
  const out: string[] = [];
  if (q.min !== undefined && v.value < q.min) out.push(`below min ${q.min}`);
  if (q.max !== undefined && v.value > q.max) out.push(`above max ${q.max}`);
  return out.length === 0 ? { kind: 'query', name: q.name, verdict: 'pass', value: v.value, ms } : { kind: 'query', name: q.name, verdict: 'fail', value: v.value, why: out.join(' and '), ms };
}

/** Runs one query (with its deadline) and judges it: a Prometheus that cannot be reached is inconclusive, never a pass. */
export async function runQuery(src: PrometheusSource, q: QuerySpec, vars: QueryVars, signal?: AbortSignal): Promise<GateCheck> {
  const url = new URL('api/v1/query', src.url.endsWith('/') ? src.url : `${src.url}/`);
  url.searchParams.set('query', substitute(q.prometheus, vars));
  const answer = await call(url.toString(), { method: 'GET', headers: src.headers, timeoutMs: DEFAULT_QUERY_TIMEOUT_MS, signal });
  if (answer.status === null) return { kind: 'query', name: q.name, verdict: 'inconclusive', value: null, why: `Prometheus unreachable: ${answer.error ?? 'no answer'}`, ms: answer.ms };
  return judgeValue(q, readAnswer(answer.status, answer.body), answer.ms);
}
