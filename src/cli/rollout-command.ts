import { EXIT, fail, PROGRESS_MS } from './exit-codes.ts';
import { parseDuration } from '../config/duration.ts';
import type { RolloutView } from '../rollout/view.ts';
import type { ApiCommand, CommandContext } from './commands.ts';
import { humanDuration, pct } from './format.ts';
import { addGateFlags, fileBody, GATE_ONLY, GATE_OPTIONS, gateLines } from './rollout-gates.ts';
import { UsageError } from './usage-error.ts';

const VERBS = ['start', 'status', 'pause', 'resume', 'promote', 'abort', 'approve'] as const;
type Verb = (typeof VERBS)[number];
const START_ONLY = ['to', 'preset', 'steps', 'max-error-rate', 'max-p99', 'min-requests', 'on-failure', 'no-analysis', ...GATE_ONLY] as const;
const WAIT_ONLY = ['timeout', 'interval'] as const;
/** The states a rollout ends in; `--wait` exits 0 on the first, 1 on the others. */
const ENDED: Readonly<Record<string, number>> = { succeeded: EXIT.ok, 'rolled-back': EXIT.rolledBack, aborted: EXIT.rolledBack };

/** `10:5m,50:5m,100` into API steps. */
export function parseStepsArg(arg: string): { weight: number; pause?: string }[] {
  return arg.split(',').map((part) => {
    const m = /^(\d{1,3}(?:\.\d{1,2})?)%?(?::(\d+(?:\.\d+)?(?:ms|s|m|h|d)))?$/.exec(part.trim());
    if (m === null) throw new UsageError(`bad step "${part}": expected PCT[:PAUSE], like 10:5m or 100`);
    return m[2] === undefined ? { weight: Number(m[1]) } : { weight: Number(m[1]), pause: m[2] };
  });
}

function numberOption(ctx: CommandContext, name: string, check: (n: number) => boolean, what: string, percent = false): number | undefined {
  const raw = ctx.values[name];
  if (raw === undefined) return undefined;
  // `1%` is 0.01: the dashboard asks for a percentage, the API takes a fraction; both spellings work here
  const pctForm = percent && typeof raw === 'string' && raw.trim().endsWith('%');
  const text = typeof raw === 'string' ? (pctForm ? raw.trim().slice(0, -1) : raw) : '';
  const n = text.trim() !== '' ? Number(text) / (pctForm ? 100 : 1) : NaN;
  if (!Number.isFinite(n) || !check(n)) throw new UsageError(`--${name} must be ${what}, got "${String(raw)}"`);
  return n;
}

/** The body of `POST /v1/apps/:app/rollouts` from the command line. */
export function startBody(ctx: CommandContext, file: Record<string, unknown> | null = null): Record<string, unknown> {
  const to = ctx.values.to ?? file?.to;
  if (typeof to !== 'string') throw new UsageError('start needs --to POOL (or -f rollout.json)');
  const preset = ctx.values.preset;
  const steps = ctx.values.steps;
  const fromFile = file !== null && (file.steps !== undefined || file.preset !== undefined);
  if (preset !== undefined && steps !== undefined) throw new UsageError('start takes one of --preset NAME and --steps 10:5m,50:5m,100, not both');
  if (!fromFile && preset === undefined && steps === undefined) throw new UsageError('start needs exactly one of --preset NAME (canary10-5m, linear10-every-1m, all-at-once…) and --steps 10:5m,50:5m,100');
  const body: Record<string, unknown> = { ...file, to };
  if (preset !== undefined || steps !== undefined) {
    delete body.steps;
    delete body.preset;
  }
  if (typeof preset === 'string') body.preset = preset;
  if (typeof steps === 'string') body.steps = parseStepsArg(steps);
  const maxErrorRate = numberOption(ctx, 'max-error-rate', (n) => n >= 0 && n <= 1, 'a fraction from 0 to 1 or a percentage (0.01 and 1% are the same)', true);
  const maxP99Ms = numberOption(ctx, 'max-p99', (n) => n > 0, 'milliseconds above 0');
  const minRequests = numberOption(ctx, 'min-requests', (n) => Number.isInteger(n) && n >= 1, 'a whole number from 1');
  const analysis = { ...(maxErrorRate === undefined ? {} : { maxErrorRate }), ...(maxP99Ms === undefined ? {} : { maxP99Ms }), ...(minRequests === undefined ? {} : { minRequests }) };
  if (ctx.values['no-analysis'] === true) {
    if (Object.keys(analysis).length > 0) throw new UsageError('--no-analysis cannot go with --max-error-rate, --max-p99 or --min-requests');
    body.analysis = null;
  } else if (Object.keys(analysis).length > 0) body.analysis = { ...((body.analysis as Record<string, unknown> | null | undefined) ?? {}), ...analysis };
  addGateFlags(ctx, body);
  const onFailure = ctx.values['on-failure'];
  if (onFailure !== undefined) {
    if (onFailure !== 'rollback' && onFailure !== 'pause') throw new UsageError(`--on-failure must be rollback or pause, got "${String(onFailure)}"`);
    body.onFailure = onFailure;
  }
  if (typeof ctx.values.reason === 'string') body.reason = ctx.values.reason;
  return body;
}

const ms = (n: number | null) => (n === null ? '-' : `${n}ms`);
const rate = (n: number) => pct(n * 100);

/** The human rendering of a rollout, one string per line. */
export function rolloutLines(r: RolloutView): string[] {
  const head = `rollout ${r.id} of ${r.app} to ${r.to}: ${r.state}, step ${r.step}/${r.steps.length} (${r.to} ${pct(r.weight)})`;
  const when = r.nextInMs === null ? '' : r.step < r.steps.length ? `, next step in ${humanDuration(r.nextInMs)}` : `, done in ${humanDuration(r.nextInMs)}`;
  const lines = [head + when];
  lines.push(`  steps: ${r.steps.map((s) => (s.approval === true ? `approval${s.timeout ? ` (timeout ${s.timeout})` : ''}` : s.pause === null ? pct(s.weight) : `${pct(s.weight)} ${s.pause}`)).join(' → ')}`);
  lines.push(`  from: ${Object.entries(r.from).map(([p, w]) => `${p} ${pct(w)}`).join(' · ')}`);
  if (r.remainingMs !== null) lines.push(`  paused with ${humanDuration(r.remainingMs)} of the step left`);
  const a = r.analysis;
  if (a === null) lines.push('  analysis: off');
  else {
    const limits = [`errors ≤ ${rate(a.maxErrorRate)}`, ...(a.maxP99Ms === undefined ? [] : [`p99 ≤ ${a.maxP99Ms}ms`]), `after ${a.minRequests} requests`, `on failure: ${r.onFailure}`].join(', ');
    lines.push(`  analysis: ${limits}`);
  }
  const l = r.lastAnalysis;
  if (l !== null) {
    lines.push(`  ${l.window}: ${r.to} ${l.to.requests} requests, ${rate(l.to.errorRate)} errors, p99 ${ms(l.to.p99)} · others ${l.others.requests} requests, ${rate(l.others.errorRate)} errors, p99 ${ms(l.others.p99)} → ${l.verdict}`);
  }
  lines.push(...gateLines(r));
  if (r.reason !== null) lines.push(`  reason: ${r.reason}`);
  lines.push(`  started ${r.startedAt} by ${r.by}${r.endedAt === null ? '' : `, ended ${r.endedAt}`}${r.driver ? `; driven by ${r.driver}` : ''}`);
  return lines;
}

/** `--timeout`/`--interval` of `--wait` in milliseconds (the same duration syntax as the config). */
function waitMs(ctx: CommandContext, name: (typeof WAIT_ONLY)[number], fallback: string): number {
  const raw = ctx.values[name] ?? fallback;
  const n = typeof raw === 'string' ? parseDuration(raw) : undefined;
  if (n === undefined || n <= 0) throw new UsageError(`--${name} must be a duration like 30s, 10m or 1h, got "${String(raw)}"`);
  return n;
}

/**
 * `--wait`: polls the rollout until it ends, printing each change of state or step, for a
 * pipeline to gate on: 0 succeeded, 1 rolled back or aborted (or still running at `--timeout`).
 * A paused rollout is waited on: resuming, promoting or aborting it is an operator's call.
 */
async function waitForEnd(ctx: CommandContext, path: string, first: RolloutView, { timeout, interval }: { timeout: number; interval: number }): Promise<number> {
  const deadline = ctx.now() + timeout;
  let r = first;
  let seen = '';
  let printedAt = 0;
  for (;;) {
    const key = `${r.id}/${r.state}/${r.step}`;
    const left = Math.max(0, deadline - ctx.now());
    if (key !== seen) {
      seen = key;
      printedAt = ctx.now();
      if (ctx.json) ctx.out(JSON.stringify(r));
      else for (const line of rolloutLines(r)) ctx.out(line);
    } else if (ctx.now() - printedAt >= PROGRESS_MS) {
      // nothing changed: still a line, so a pipeline's log shows the wait is alive and how long it may last
      printedAt = ctx.now();
      const next = r.nextInMs === null ? '' : `, ${r.step < r.steps.length ? 'next step' : 'done'} in ${humanDuration(r.nextInMs)}`;
      ctx.out(
        ctx.json
          ? JSON.stringify({ id: r.id, state: r.state, step: r.step, steps: r.steps.length, weight: r.weight, nextInMs: r.nextInMs, leftMs: left })
          : `rollout ${r.id}: ${r.state} at step ${r.step}/${r.steps.length} (${r.to} ${pct(r.weight)})${next}  (still waiting, ${humanDuration(left)} left)`,
      );
    }
    const code = ENDED[r.state];
    if (code !== undefined) {
      const why = r.lastAnalysis?.why;
      if (code !== 0) return fail(ctx, code, r.state === 'aborted' ? 'ROLLOUT_ABORTED' : 'ROLLOUT_ROLLED_BACK', `rollout ${r.id} of ${r.app} ${r.state}${why === undefined ? '' : `: ${why}`}`);
      return code;
    }
    if (left <= 0) {
      return fail(ctx, EXIT.waitTimedOut, 'WAIT_TIMED_OUT', `rollout ${r.id} still ${r.state} at step ${r.step}/${r.steps.length} after ${humanDuration(timeout)}`);
    }
    await ctx.sleep(Math.min(interval, left, PROGRESS_MS));
    r = await ctx.client.get<RolloutView>(path);
  }
}

/** `switchyard rollout APP start|status|pause|resume|promote|abort` */
export const rolloutCommand: ApiCommand = {
  usage: 'rollout APP start|status|pause|resume|promote|abort|approve [options] [--wait [--timeout D] [--interval D]]',
  summary:
    'progressive rollout with automatic analysis and rollback — start --to POOL (--preset canary10-5m | --steps 10:5m,50:5m,100) [--max-error-rate 0.01|1%] [--max-p99 MS] [--min-requests 100] [--on-failure rollback|pause] [--no-analysis] [--query NAME=PROMQL --min N --max N] [--prometheus URL] [--webhook [NAME=]URL] [--approval-after STEP] [--notify URL] [-f rollout.json] [--reason R]; status; approve [--reason R] (an approval step); pause; resume; promote (100 % now) and abort (starting weights back) [--reason R] [--force]; start and status take --wait [--timeout 1h] [--interval 2s]: wait until it ends, exit 0 succeeded, 5 rolled back or aborted, 3 timed out',
  args: [2, 2],
  options: {
    to: { type: 'string' },
    preset: { type: 'string' },
    steps: { type: 'string' },
    'max-error-rate': { type: 'string' },
    'max-p99': { type: 'string' },
    'min-requests': { type: 'string' },
    'on-failure': { type: 'string' },
    'no-analysis': { type: 'boolean' },
    reason: { type: 'string' },
    force: { type: 'boolean' },
    wait: { type: 'boolean' },
    timeout: { type: 'string' },
    interval: { type: 'string' },
    ...GATE_OPTIONS,
  },
  async run(ctx) {
    const [app, verb] = ctx.args as [string, string];
    if (!(VERBS as readonly string[]).includes(verb)) throw new UsageError(`unknown rollout action "${verb}" (${VERBS.join(', ')})`);
    const v = verb as Verb;
    if (v !== 'start') {
      const misplaced = START_ONLY.find((o) => ctx.values[o] !== undefined);
      if (misplaced !== undefined) throw new UsageError(`--${misplaced} goes with start only`);
    }
    if (ctx.values.force !== undefined && v !== 'promote' && v !== 'abort') throw new UsageError('--force goes with promote or abort only');
    const wait = ctx.values.wait === true;
    if (wait && v !== 'start' && v !== 'status') throw new UsageError('--wait goes with start or status only');
    const misplacedWait = WAIT_ONLY.find((o) => ctx.values[o] !== undefined);
    if (!wait && misplacedWait !== undefined) throw new UsageError(`--${misplacedWait} goes with --wait only`);
    // read before anything is started: a bad --timeout is a bad call (2), not a started rollout
    const limits = wait ? { timeout: waitMs(ctx, 'timeout', '1h'), interval: waitMs(ctx, 'interval', '2s') } : null;
    const base = `/v1/apps/${encodeURIComponent(app)}/rollouts`;
    let r: RolloutView;
    if (v === 'start') r = await ctx.client.post<RolloutView>(base, startBody(ctx, await fileBody(ctx)));
    else if (v === 'status') r = await ctx.client.get<RolloutView>(`${base}/current`);
    else {
      const body: Record<string, unknown> = {};
      if (typeof ctx.values.reason === 'string') body.reason = ctx.values.reason;
      if (ctx.values.force === true) body.force = true;
      r = await ctx.client.post<RolloutView>(`${base}/current/${v}`, body);
    }
    if (limits !== null) return waitForEnd(ctx, `${base}/current`, r, limits);
    if (ctx.json) ctx.out(JSON.stringify(r, null, 2));
    else for (const line of rolloutLines(r)) ctx.out(line);
    return 0;
  },
};
