import { z } from 'zod';
import { parseDuration } from '../config/duration.ts';
import { DEFAULT_HOOK_TIMEOUT_MS, DEFAULT_INCONCLUSIVE_LIMIT, DEFAULT_INTERVAL_MS, NOTIFY_EVENTS, type Gates, type PrometheusSource } from './gate-model.ts';

/** The parts of a rollout body (docs/gates.md §1, §2, §3, §4) that zod checks; `parseGates` checks the rest. */

const duration = z.union([z.string().max(20), z.number()]);
const httpUrl = z
  .string()
  .max(2000)
  .refine((s) => {
    try {
      const u = new URL(s);
      return u.protocol === 'http:' || u.protocol === 'https:';
    } catch {
      return false;
    }
  }, 'must be an http(s) URL');
const gateName = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'must match [a-z0-9][a-z0-9._-]{0,62}');

export const prometheusBody = z.strictObject({ url: httpUrl, headers: z.record(z.string().max(100), z.string().max(4000)).optional() });

/** What `analysis` takes beside the proxy's own figures. */
export const evidenceFields = {
  /** how often the queries and webhooks are judged while a step holds @default "30s" */
  interval: duration.optional(),
  inconclusiveLimit: z.number().int().min(1).max(1000).optional(),
  onInconclusive: z.enum(['pause', 'rollback']).optional(),
  prometheus: prometheusBody.optional(),
  queries: z
    .array(z.strictObject({ name: gateName, prometheus: z.string().min(1).max(4000), min: z.number().optional(), max: z.number().optional() }))
    .max(20)
    .optional(),
  webhooks: z.array(z.strictObject({ name: gateName, url: httpUrl, timeout: duration.optional() })).max(20).optional(),
};

const urls = z.array(httpUrl).max(10).optional();
export const hooksBody = z.strictObject({ preRollout: urls, preStep: urls, postRollout: urls, onRollback: urls });
export const notifyBody = z
  .array(z.strictObject({ url: httpUrl, format: z.enum(['json', 'slack']).optional(), events: z.array(z.enum(NOTIFY_EVENTS)).min(1).optional() }))
  .max(10);

type EvidenceInput = { [K in keyof typeof evidenceFields]?: z.infer<(typeof evidenceFields)[K]> };

export interface Issue {
  path: string;
  message: string;
}

/** The longest a single gate call may take: a step's judgement should not hang on one call for longer. */
const MAX_TIMEOUT_MS = 10 * 60_000;

function durationMs(value: string | number | undefined, fallback: number, path: string, issues: Issue[], min = 1, max = MAX_TIMEOUT_MS): number {
  if (value === undefined) return fallback;
  const ms = parseDuration(value);
  if (ms === undefined || ms < min) issues.push({ path, message: `must be a duration like 30s, 5m or 250ms (or milliseconds), at least ${min}ms` });
  else if (ms > max) issues.push({ path, message: `at most ${Math.round(max / 60_000)}m` });
  else return Math.round(ms);
  return fallback;
}

/**
 * The gates of a rollout from its body, checked against what zod cannot know: unique names,
 * `min` ≤ `max`, a query needs a Prometheus (the body's or the process config's), a query
 * needs a bound. Issues are pushed with their field path.
 */
export function parseGates(
  analysis: EvidenceInput | null | undefined,
  hooks: z.infer<typeof hooksBody> | undefined,
  notify: z.infer<typeof notifyBody> | undefined,
  processPrometheus: PrometheusSource | null,
  issues: Issue[],
): Gates {
  const a = analysis ?? {};
  const queries = a.queries ?? [];
  const webhooks = a.webhooks ?? [];
  const names = new Set<string>();
  queries.forEach((q, i) => {
    if (names.has(q.name)) issues.push({ path: `analysis.queries[${i}].name`, message: `"${q.name}" is used twice` });
    names.add(q.name);
    if (q.min === undefined && q.max === undefined) issues.push({ path: `analysis.queries[${i}]`, message: 'needs min or max (a query without a bound judges nothing)' });
    if (q.min !== undefined && q.max !== undefined && q.min > q.max) issues.push({ path: `analysis.queries[${i}].max`, message: `below min ${q.min}` });
  });
  if (queries.length > 0 && a.prometheus === undefined && processPrometheus === null) issues.push({ path: 'analysis.prometheus', message: 'required for queries (or set analysis.prometheus in the process config)' });
  const parsedWebhooks = webhooks.map((w, i) => {
    if (names.has(w.name)) issues.push({ path: `analysis.webhooks[${i}].name`, message: `"${w.name}" is used twice` });
    names.add(w.name);
    return { name: w.name, url: w.url, timeoutMs: durationMs(w.timeout, DEFAULT_HOOK_TIMEOUT_MS, `analysis.webhooks[${i}].timeout`, issues) };
  });
  return {
    intervalMs: durationMs(a.interval, DEFAULT_INTERVAL_MS, 'analysis.interval', issues, 100, 24 * 3_600_000),
    inconclusiveLimit: a.inconclusiveLimit ?? DEFAULT_INCONCLUSIVE_LIMIT,
    onInconclusive: a.onInconclusive ?? 'pause',
    prometheus: a.prometheus === undefined ? null : { url: a.prometheus.url, headers: a.prometheus.headers ?? {} },
    queries: queries.map((q) => ({ name: q.name, prometheus: q.prometheus, ...(q.min === undefined ? {} : { min: q.min }), ...(q.max === undefined ? {} : { max: q.max }) })),
    webhooks: parsedWebhooks,
    hooks: { preRollout: hooks?.preRollout ?? [], preStep: hooks?.preStep ?? [], postRollout: hooks?.postRollout ?? [], onRollback: hooks?.onRollback ?? [] },
    notify: (notify ?? []).map((n) => ({ url: n.url, format: n.format ?? 'json', events: n.events ?? [...NOTIFY_EVENTS] })),
  };
}
