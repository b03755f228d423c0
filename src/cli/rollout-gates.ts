import { readFile } from 'node:fs/promises';
import type { ParseArgsOptionsConfig } from 'node:util';
import type { RolloutView } from '../rollout/view.ts';
import type { CommandContext } from './commands.ts';
import { UsageError } from './usage-error.ts';

/** `rollout start`'s gate flags (docs/gates.md §6); `--query`, `--min`, `--max`, `--webhook` and `--notify` may repeat. */
export const GATE_OPTIONS: ParseArgsOptionsConfig = {
  file: { type: 'string', short: 'f' },
  query: { type: 'string', multiple: true },
  min: { type: 'string', multiple: true },
  max: { type: 'string', multiple: true },
  prometheus: { type: 'string' },
  webhook: { type: 'string', multiple: true },
  'approval-after': { type: 'string' },
  notify: { type: 'string', multiple: true },
};
export const GATE_ONLY = Object.keys(GATE_OPTIONS);

function list(ctx: CommandContext, name: string): string[] {
  const v = (ctx.values as Readonly<Record<string, unknown>>)[name];
  return Array.isArray(v) ? (v as string[]) : typeof v === 'string' ? [v] : [];
}

function num(name: string, raw: string): number {
  const n = raw.trim() === '' ? NaN : Number(raw);
  if (!Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got "${raw}"`);
  return n;
}

/** `-f rollout.json`: the whole start body, which the other flags then add to. */
export async function fileBody(ctx: CommandContext): Promise<Record<string, unknown> | null> {
  const file = ctx.values.file;
  if (typeof file !== 'string') return null;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new UsageError(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  try {
    const doc = JSON.parse(text) as unknown;
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new Error('not a JSON object');
    return doc as Record<string, unknown>;
  } catch (err) {
    throw new UsageError(`${file}: not a rollout body in JSON: ${(err as Error).message}`);
  }
}

/**
 * Adds the gate flags to a start body: `--query NAME=PROMQL` with the i-th `--min`/`--max`,
 * `--prometheus URL`, `--webhook [NAME=]URL`, `--approval-after STEP` (an approval step after
 * step STEP of `steps`), `--notify URL` (Slack's shape for hooks.slack.com, JSON otherwise).
 */
export function addGateFlags(ctx: CommandContext, body: Record<string, unknown>): void {
  const queries = list(ctx, 'query').map((q) => {
    const eq = q.indexOf('=');
    if (eq <= 0) throw new UsageError(`--query must be NAME=PROMQL, got "${q}"`);
    return { name: q.slice(0, eq), prometheus: q.slice(eq + 1) } as Record<string, unknown>;
  });
  const mins = list(ctx, 'min');
  const maxs = list(ctx, 'max');
  if (mins.length > queries.length || maxs.length > queries.length) throw new UsageError('each --min and --max goes with a --query (the i-th with the i-th)');
  mins.forEach((m, i) => ((queries[i] as Record<string, unknown>).min = num('min', m)));
  maxs.forEach((m, i) => ((queries[i] as Record<string, unknown>).max = num('max', m)));
  const webhooks = list(ctx, 'webhook').map((w, i) => {
    const m = /^([a-z0-9][a-z0-9._-]{0,62})=(https?:\/\/.+)$/.exec(w);
    return m === null ? { name: `webhook-${i + 1}`, url: w } : { name: m[1], url: m[2] };
  });
  const prometheus = ctx.values.prometheus;
  if (queries.length > 0 || webhooks.length > 0 || typeof prometheus === 'string') {
    if (body.analysis === null) throw new UsageError('--no-analysis cannot go with --query, --webhook or --prometheus');
    const analysis = { ...((body.analysis as Record<string, unknown> | undefined) ?? {}) };
    if (queries.length > 0) analysis.queries = [...((analysis.queries as unknown[] | undefined) ?? []), ...queries];
    if (webhooks.length > 0) analysis.webhooks = [...((analysis.webhooks as unknown[] | undefined) ?? []), ...webhooks];
    if (typeof prometheus === 'string') analysis.prometheus = { url: prometheus };
    body.analysis = analysis;
  }
  const after = ctx.values['approval-after'];
  if (typeof after === 'string') {
    const n = Number(after);
    const steps = body.steps as unknown[] | undefined;
    if (!Array.isArray(steps)) throw new UsageError('--approval-after needs --steps (or steps in -f FILE)');
    if (!Number.isInteger(n) || n < 1 || n > steps.length) throw new UsageError(`--approval-after must be a step number from 1 to ${steps.length}, got "${after}"`);
    body.steps = [...steps.slice(0, n), { approval: true }, ...steps.slice(n)];
  }
  const notify = list(ctx, 'notify').map((url) => ({ url, format: /^https:\/\/hooks\.slack\.com\//.test(url) ? 'slack' : 'json' }));
  if (notify.length > 0) body.notify = [...((body.notify as unknown[] | undefined) ?? []), ...notify];
}

/** The gates of a rollout, one string per line: config, approvals, the last rounds' evidence. */
export function gateLines(r: RolloutView): string[] {
  const g = r.gates;
  if (g === undefined) return [];
  const lines: string[] = [];
  const c = g.config;
  const parts = [
    ...c.queries.map((q) => `query ${q.name}${q.min === undefined ? '' : ` ≥ ${q.min}`}${q.max === undefined ? '' : ` ≤ ${q.max}`}`),
    ...c.webhooks.map((w) => `webhook ${w.name} ${w.url}`),
  ];
  if (parts.length > 0) lines.push(`  gates: ${parts.join(', ')}; every ${Math.round(c.intervalMs / 1000)}s, ${c.inconclusiveLimit} inconclusive in a row → ${c.onInconclusive}`);
  const hooks = Object.entries(c.hooks).filter(([, urls]) => urls.length > 0);
  if (hooks.length > 0) lines.push(`  hooks: ${hooks.map(([k, urls]) => `${k} ${urls.join(' ')}`).join(' · ')}`);
  if (c.notify.length > 0) lines.push(`  notify: ${c.notify.map((n) => `${n.url} (${n.format})`).join(' · ')}`);
  if (g.waitingApproval) lines.push(`  waiting for approval of step ${r.step}: switchyard rollout ${r.app} approve --reason R`);
  for (const a of g.approvals) lines.push(`  step ${a.step} approved by ${a.by} at ${a.at}${a.reason === null ? '' : `: ${a.reason}`}`);
  for (const x of g.rounds.slice(-5)) {
    const checks = x.checks.map((k) => `${k.name} ${k.kind === 'query' ? (k.value ?? 'no value') : (k.status ?? 'no answer')}${k.verdict === 'pass' ? '' : ` ${k.verdict}${k.why === undefined ? '' : ` (${k.why})`}`}`);
    lines.push(`  step ${x.step} ${x.phase} round ${x.round}: ${x.lost === true ? 'lost (its driver stopped before the answers were recorded)' : `${x.verdict} — ${checks.join('; ')}`}`);
  }
  if (g.calling !== null) lines.push(`  calling: step ${g.calling.step} ${g.calling.phase} round ${g.calling.round} (until ${g.calling.deadline})`);
  if (g.inconclusive > 0) lines.push(`  inconclusive rounds in a row: ${g.inconclusive} of ${c.inconclusiveLimit}`);
  return lines;
}
