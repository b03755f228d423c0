import { EXIT, fail, PROGRESS_MS } from './exit-codes.ts';
import { upgradeCommand } from './upgrade-command.ts';
import type { ParseArgsOptionsConfig } from 'node:util';
import type { AppStateView, DrainView, HistoryEntryView } from '../admin/views.ts';
import { parseDuration } from '../config/duration.ts';
import type { AdminClient } from './client.ts';
import type { StatsView } from '../metrics/stats.ts';
import { appDetail, appLine, drainLine, historyLines, humanDuration, pct, table } from './format.ts';
import { appPath, printJson, printState, writeFields, writeOptions } from './command-kit.ts';
import { definitionCommands } from './definition-commands.ts';
import { blockWords } from '../control/drain-deadline.ts';
import { rollbackCommand } from './rollback-command.ts';
import { routingCommands } from './routing-commands.ts';
import { rolloutCommand } from './rollout-command.ts';
import { UsageError } from './usage-error.ts';

export { UsageError };

export interface CommandContext {
  /** positionals after the command name */
  readonly args: readonly string[];
  readonly values: Readonly<Record<string, string | boolean | undefined>>;
  /** the admin API client (commands marked `local` get none) */
  readonly client: AdminClient;
  /** `--json`: print the API's JSON instead of the human rendering */
  readonly json: boolean;
  out(line: string): void;
  err(line: string): void;
  now(): number;
  sleep(ms: number): Promise<void>;
  /** the environment (`${VAR}` in a file `apply` reads) */
  readonly env: Readonly<Record<string, string | undefined>>;
}

interface CommandBase {
  /** `switch APP POOL [--reason R] [--force]` */
  readonly usage: string;
  readonly summary: string;
}

/** A command that talks to the admin API; its options are parsed strictly with the global ones. */
export interface ApiCommand extends CommandBase {
  /** positionals: at least `min`, at most `max` (Infinity for a list) */
  readonly args: readonly [min: number, max: number];
  readonly options?: ParseArgsOptionsConfig;
  run(ctx: CommandContext): Promise<number>;
}

/** A command that takes its arguments unparsed and needs no admin API (serve). */
export interface RawCommand extends CommandBase {
  /** `io`: where to print (the CLI's own streams; absent: the process's) */
  raw(argv: string[], io?: { out(line: string): void; err(line: string): void }): Promise<number>;
}

export type Command = ApiCommand | RawCommand;

const enc = encodeURIComponent;

/** App → how the instance's config file differs from the store (`/readyz` `drift`); empty when it cannot be read. */
async function drift(ctx: CommandContext): Promise<Record<string, string[]>> {
  try {
    const r = await ctx.client.get<{ details?: { drift?: Record<string, string[]> } }>('/readyz');
    return r.details?.drift ?? {};
  } catch {
    return {};
  }
}

/** `drift shop: … differs …: pools.green.version, pools.green.targets` and the command that makes the file win */
function driftLines(drifts: Record<string, string[]>, apps: readonly string[]): string[] {
  const lines: string[] = [];
  for (const app of apps) {
    const d = drifts[app];
    if (d === undefined || d.length === 0) continue;
    lines.push(`drift ${app}: the instance's config file differs from the store, which is served, at ${d.join(', ')}`);
    lines.push(`  see the values: switchyard apply -f CONFIG_FILE --dry-run; make the file win: switchyard apply -f CONFIG_FILE (or serve --apply-config)`);
  }
  return lines;
}

/** `green=10` or `green=0.05%` into `{ green: 10 }`. */
export function parseWeightArgs(args: readonly string[]): Record<string, number> {
  const weights: Record<string, number> = {};
  for (const arg of args) {
    const m = /^([a-z0-9-]{1,63})=(\d{1,3}(?:\.\d+)?)%?$/.exec(arg);
    if (m === null) throw new UsageError(`bad weight "${arg}": expected POOL=PCT, like green=10 or green=0.5`);
    const [, pool, value] = m as unknown as [string, string, string];
    if (Object.hasOwn(weights, pool)) throw new UsageError(`pool "${pool}" is given twice`);
    weights[pool] = Number(value);
  }
  return weights;
}

function durationOption(ctx: CommandContext, name: string, fallback: string): number {
  const raw = ctx.values[name];
  const ms = parseDuration(typeof raw === 'string' ? raw : fallback);
  if (ms === undefined || ms <= 0) throw new UsageError(`--${name} must be a duration like 500ms, 30s or 10m, got "${String(raw)}"`);
  return ms;
}

/** A remark on stderr that is not an error: with `--json` one JSON line (`{"note":"…"}`), so stderr stays machine-readable. */
function note(ctx: CommandContext, message: string): void {
  ctx.err(ctx.json ? JSON.stringify({ note: message }) : `note: ${message}`);
}

async function drainWait(ctx: CommandContext, path: string): Promise<number> {
  const timeout = durationOption(ctx, 'timeout', '10m');
  const interval = durationOption(ctx, 'interval', '1s');
  const deadline = ctx.now() + timeout;
  let last = '';
  let printedAt = 0;
  let warned = false;
  let noted = false;
  for (;;) {
    const v = await ctx.client.get<DrainView>(path);
    const key = [v.weight, v.inflight, v.upgraded, v.pinned, v.drained, v.unknown].join('/');
    // a line on every change, and at least every PROGRESS_MS while nothing changes: a pipeline's log shows it is alive
    if (key !== last) {
      ctx.out(ctx.json ? JSON.stringify(v) : drainLine(v));
      last = key;
      printedAt = ctx.now();
    } else if (ctx.now() - printedAt >= PROGRESS_MS) {
      const left = Math.max(0, deadline - ctx.now());
      ctx.out(ctx.json ? JSON.stringify({ ...v, leftMs: left }) : `${drainLine(v)}  (still waiting, ${humanDuration(left)} left)`);
      printedAt = ctx.now();
    }
    if (v.drained) {
      if (!ctx.json) ctx.out(`${v.pool} is drained`);
      return 0;
    }
    if (v.weight > 0 && !warned) {
      note(ctx, `${v.pool} still gets ${pct(v.weight)} of the traffic; it drains only once its weight is 0`);
      warned = true;
    }
    const left = deadline - ctx.now();
    const block = v.blockedBy;
    // pins make the window's end a floor (it cannot drain sooner); the drain timeout is only a ceiling
    if (!noted && block?.by === 'affinity' && block.remainingMs !== null && block.remainingMs > left) {
      // say at once that this wait cannot succeed, and what to wait for instead
      note(ctx, `${v.pool} cannot be drained before ${blockWords(block)}, ${humanDuration(block.remainingMs)} from now; --timeout ${humanDuration(timeout)} ends first (use --timeout ${humanDuration(Math.ceil(block.remainingMs / 60_000) * 60_000 + 60_000)})`);
      noted = true;
    }
    if (left <= 0) {
      // the reason already names the affinity window's end; the drain timeout it does not
      const waits = block?.by === 'drain-timeout' ? `; ${blockWords(block)}` : '';
      return fail(ctx, EXIT.drainTimedOut, 'WAIT_TIMED_OUT', `${v.pool} not drained after ${humanDuration(timeout)}: ${v.reason ?? `${v.inflight} in flight, ${v.upgraded} upgraded, weight ${pct(v.weight)}`}${waits}`);
    }
    await ctx.sleep(Math.min(interval, left, PROGRESS_MS));
  }
}

/** Every `switchyard` command; adding one is one entry here. */
export const COMMANDS: Readonly<Record<string, Command>> = {
  serve: {
    usage: 'serve [--config FILE] [--apply-config] [--pid-file FILE]',
    summary: 'run the proxy and the admin API; --pid-file: its pid, re-written by a hand-over (`upgrade`) before the old process exits, for systemd\'s PIDFile=',
    async raw(argv) {
      await (await import('../main.ts')).serve(argv);
      return 0;
    },
  },
  upgrade: upgradeCommand,
  status: {
    usage: 'status [APP]',
    summary: 'routing state of every app, or of one in detail',
    args: [0, 1],
    async run(ctx) {
      const [app] = ctx.args;
      if (app !== undefined) {
        const state = await ctx.client.get<AppStateView>(appPath(app));
        if (ctx.json) printJson(ctx, state);
        else for (const line of [...appDetail(state), ...driftLines(await drift(ctx), [app])]) ctx.out(line);
        return 0;
      }
      const { apps } = await ctx.client.get<{ apps: AppStateView[] }>('/v1/apps');
      if (ctx.json) printJson(ctx, { apps });
      else {
        const width = Math.max(0, ...apps.map((a) => a.app.length));
        for (const a of apps) ctx.out(appLine(a, width));
        for (const line of driftLines(await drift(ctx), apps.map((a) => a.app))) ctx.out(line);
      }
      return 0;
    },
  },
  switch: {
    usage: 'switch APP POOL [--reason R] [--force] [--expect-version V]',
    summary: 'send all traffic of APP to POOL (--expect-version: only if POOL\'s targets report version V)',
    args: [2, 2],
    options: { ...writeOptions, 'expect-version': { type: 'string' } },
    async run(ctx) {
      const [app, to] = ctx.args as [string, string];
      const expect = ctx.values['expect-version'];
      const body = { to, ...writeFields(ctx), ...(typeof expect === 'string' ? { expectVersion: expect } : {}) };
      return printState(ctx, await ctx.client.post<AppStateView>(`${appPath(app)}/switch`, body));
    },
  },
  weights: {
    usage: 'weights APP POOL=PCT… [--reason R] [--force]',
    summary: 'split traffic by percentages (pools left out get 0)',
    args: [2, Infinity],
    options: writeOptions,
    async run(ctx) {
      const [app, ...pairs] = ctx.args as [string, ...string[]];
      const weights = parseWeightArgs(pairs);
      return printState(ctx, await ctx.client.put<AppStateView>(`${appPath(app)}/weights`, { weights, ...writeFields(ctx) }));
    },
  },
  rollback: rollbackCommand,
  history: {
    usage: 'history APP [--limit N] [--offset N]',
    summary: 'the audit history of APP, newest first; --offset skips that many (pages: the note on stderr says the next one)',
    args: [1, 1],
    options: { limit: { type: 'string' }, offset: { type: 'string' } },
    async run(ctx) {
      const [app] = ctx.args as [string];
      const query = new URLSearchParams();
      for (const name of ['limit', 'offset'] as const) {
        const v = ctx.values[name];
        if (v === undefined) continue;
        if (typeof v !== 'string' || !/^\d+$/.test(v)) throw new UsageError(`--${name} must be a whole number, got "${String(v)}"`);
        query.set(name, v);
      }
      const q = query.toString();
      const body = await ctx.client.get<{ entries: HistoryEntryView[]; next?: number | null }>(`${appPath(app)}/history${q === '' ? '' : `?${q}`}`);
      if (ctx.json) printJson(ctx, body);
      else {
        for (const line of historyLines(body.entries)) ctx.out(line);
        if (typeof body.next === 'number') ctx.err(`note: older entries follow: --offset ${body.next}`);
      }
      return 0;
    },
  },
  drain: {
    usage: 'drain APP POOL [--wait] [--timeout D] [--interval D]',
    summary: 'in-flight and upgraded connections left on POOL; --wait until it is drained (exit 1 on timeout, default 10m)',
    args: [2, 2],
    options: { wait: { type: 'boolean' }, timeout: { type: 'string' }, interval: { type: 'string' } },
    async run(ctx) {
      const [app, pool] = ctx.args as [string, string];
      const path = `${appPath(app)}/pools/${enc(pool)}/drain`;
      if (ctx.values.wait === true) return drainWait(ctx, path);
      const v = await ctx.client.get<DrainView>(path);
      if (ctx.json) printJson(ctx, v);
      else ctx.out(drainLine(v));
      return 0;
    },
  },
  'preview-header': {
    usage: 'preview-header APP POOL',
    summary: 'the signed header that sends a request to POOL whatever its weight (for testers)',
    args: [2, 2],
    async run(ctx) {
      const [app, pool] = ctx.args as [string, string];
      const v = await ctx.client.get<{ header: string; value: string }>(`${appPath(app)}/pools/${enc(pool)}/preview-header`);
      if (ctx.json) printJson(ctx, v);
      else ctx.out(`${v.header}: ${v.value}`);
      return 0;
    },
  },
  stats: {
    usage: 'stats APP',
    summary: 'per pool over the last 10 s and 60 s: requests/s, error rate, p50/p95/p99 latency (time to the response head) and how long responses stayed open (open p99)',
    args: [1, 1],
    async run(ctx) {
      const [app] = ctx.args as [string];
      const v = await ctx.client.get<StatsView>(`${appPath(app)}/stats`);
      if (ctx.json) {
        printJson(ctx, v);
        return 0;
      }
      const ms = (n: number | null) => (n === null ? '-' : `${n}ms`);
      // p50…p99: time to the response head; `open p99`: how long responses stayed open after it (streams)
      const rows = [['window', 'pool', 'requests', 'req/s', 'errors', 'p50', 'p95', 'p99', 'open p99']];
      for (const [w, pools] of Object.entries(v.windows)) for (const [pool, s] of Object.entries(pools)) rows.push([w, pool, String(s.requests), String(s.rps), pct(s.errorRate * 100), ms(s.p50), ms(s.p95), ms(s.p99), ms(s.streamP99 ?? null)]);
      for (const line of table(rows)) ctx.out(line);
      if (v.fleet) ctx.out(`summed over ${v.instances} instance(s)`);
      return 0;
    },
  },
  rollout: rolloutCommand,
  ...definitionCommands,
  ...routingCommands,
};
