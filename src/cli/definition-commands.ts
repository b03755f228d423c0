import { EXIT } from './exit-codes.ts';
import { readFile } from 'node:fs/promises';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import type { AppStateView } from '../admin/views.ts';
import { compileDefinition, configDefinitions, definitionChanges, formatChange, type AppDefinition } from '../config/definition.ts';
import { parseConfig } from '../config/load.ts';
import { ConfigError } from '../errors.ts';
import { ApiError } from './client.ts';
import { appPath, printJson, printState, writeFields, writeOptions } from './command-kit.ts';
import type { ApiCommand, CommandContext } from './commands.ts';
import { UsageError } from './usage-error.ts';

// The release commands of live definitions (docs/definitions.md §5): pool, targets, deploy, apply, export.

const enc = encodeURIComponent;

function targetsOption(ctx: CommandContext): string[] {
  const raw = ctx.values.targets;
  if (typeof raw !== 'string' || raw.trim() === '') throw new UsageError('--targets is required: URL[,URL…], like http://10.0.0.5:8080,http://10.0.0.6:8080');
  return raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
}

function versionOption(ctx: CommandContext): string {
  const v = ctx.values.version;
  if (typeof v !== 'string' || v === '') throw new UsageError('--version is required, like --version 2.1.0');
  return v;
}

const poolOptions = { ...writeOptions, version: { type: 'string' }, targets: { type: 'string' } } as const;

/**
 * `deploy`: the pool to deploy to — `--pool`, or the idle one (weight 0). Refuses (exit 1) a pool
 * with weight unless `--force`: the seed practice is deploy to the idle side, test, then switch.
 */
function idlePool(ctx: CommandContext, state: AppStateView): string {
  const named = ctx.values.pool;
  if (typeof named === 'string') {
    if (!Object.hasOwn(state.pools, named)) throw new ApiError(404, 'UNKNOWN_POOL', `app "${state.app}" has no pool "${named}" (pools: ${Object.keys(state.pools).join(', ')})`);
    return named;
  }
  const idle = Object.entries(state.weights).filter(([, w]) => w === 0).map(([p]) => p);
  if (idle.length === 0) throw new ApiError(409, 'NO_IDLE_POOL', `app "${state.app}" has no idle pool (every pool has weight: ${Object.entries(state.weights).map(([p, w]) => `${p} ${w}%`).join(', ')}); name one with --pool`);
  if (idle.length > 1) throw new UsageError(`app "${state.app}" has more than one idle pool (${idle.join(', ')}); name one with --pool`);
  return idle[0] as string;
}

async function readApplyFile(ctx: CommandContext, file: string): Promise<Map<string, AppDefinition>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new UsageError(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  try {
    // the whole config file is checked (the same loader as `serve`); only its apps are applied
    return configDefinitions(parseConfig(parseYaml(text), ctx.env as NodeJS.ProcessEnv));
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(`${file}: ${err.message}`);
    throw new UsageError(`${file}: not valid YAML or JSON: ${(err as Error).message.split('\n')[0]}`);
  }
}

interface Plan {
  readonly app: string;
  readonly definition: AppDefinition;
  /** the app's revision in the store, or null for a new app */
  readonly revision: number | null;
  readonly lines: string[];
  readonly changes: readonly { path: string; from: unknown; to: unknown }[];
}

export const definitionCommands: Readonly<Record<string, ApiCommand>> = {
  pool: {
    usage: 'pool APP POOL --version V --targets URL[,URL…] [--reason R]',
    summary: "set a pool's version and targets (a new pool is added at weight 0)",
    args: [2, 2],
    options: poolOptions,
    async run(ctx) {
      const [app, pool] = ctx.args as [string, string];
      const body = { version: versionOption(ctx), targets: targetsOption(ctx), ...writeFields(ctx) };
      delete (body as { force?: true }).force;
      return printState(ctx, await ctx.client.put<AppStateView>(`${appPath(app)}/pools/${enc(pool)}`, body));
    },
  },
  targets: {
    usage: 'targets add|remove APP POOL URL [--reason R] [--force]',
    summary: 'add a target to a pool, or remove one (what it carries finishes there)',
    args: [4, 4],
    options: writeOptions,
    async run(ctx) {
      const [verb, app, pool, url] = ctx.args as [string, string, string, string];
      const path = `${appPath(app)}/pools/${enc(pool)}/targets`;
      if (verb === 'add') return printState(ctx, await ctx.client.post<AppStateView>(path, { url, ...(typeof ctx.values.reason === 'string' ? { reason: ctx.values.reason } : {}) }));
      if (verb !== 'remove') throw new UsageError(`unknown targets command "${verb}": add or remove`);
      const query = new URLSearchParams({ url });
      if (ctx.values.force === true) query.set('force', 'true');
      if (typeof ctx.values.reason === 'string') query.set('reason', ctx.values.reason);
      return printState(ctx, await ctx.client.delete<AppStateView>(`${path}?${query}`));
    },
  },
  deploy: {
    usage: 'deploy APP --version V --targets URL[,URL…] [--pool POOL] [--force] [--reason R]',
    summary: 'put a new version on the idle pool (weight 0), or --pool; refused for a pool with weight unless --force',
    args: [1, 1],
    options: { ...poolOptions, pool: { type: 'string' } },
    async run(ctx) {
      const [app] = ctx.args as [string];
      const version = versionOption(ctx);
      const targets = targetsOption(ctx);
      const state = await ctx.client.get<AppStateView>(appPath(app));
      const pool = idlePool(ctx, state);
      const weight = state.weights[pool] ?? 0;
      if (weight > 0 && ctx.values.force !== true) {
        ctx.err(`error: pool ${pool} of ${app} has weight ${weight}% (it is live); deploy to the idle pool, or pass --force to change a live pool`);
        return 1;
      }
      const body = { version, targets, reason: typeof ctx.values.reason === 'string' ? ctx.values.reason : `deploy ${version}` };
      // If-Match: a switch that lands between the read and this write makes it a 412, never a deploy onto a pool gone live
      const next = await ctx.client.send<AppStateView>('PUT', `${appPath(app)}/pools/${enc(pool)}`, body, { 'if-match': `"${state.revision}"` });
      if (ctx.json) printJson(ctx, next);
      else {
        ctx.out(`deployed ${version} to ${app}/${pool} (${targets.join(', ')}) at revision ${next.revision}; ${pool} has weight ${next.weights[pool] ?? 0}%`);
        ctx.out(`next: switchyard preview-header ${app} ${pool}  ·  switchyard weights ${app} ${pool}=1 …  ·  switchyard switch ${app} ${pool} --expect-version ${version}`);
      }
      return 0;
    },
  },
  apply: {
    usage: 'apply -f FILE [--dry-run] [--exit-code] [--reason R]',
    summary: "make the apps of a config file live: prints each app's changes as key paths (old → new), then writes them with If-Match",
    args: [0, 0],
    options: { file: { type: 'string', short: 'f' }, 'dry-run': { type: 'boolean' }, 'exit-code': { type: 'boolean' }, reason: { type: 'string' } },
    async run(ctx) {
      const file = ctx.values.file;
      if (typeof file !== 'string') throw new UsageError('-f FILE is required');
      const wanted = await readApplyFile(ctx, file);
      const live = (await ctx.client.get<{ apps: AppDefinition[] }>('/v1/config')).apps;
      const liveByName = new Map(live.map((d) => [String(d.name), d]));
      const plans: Plan[] = [];
      for (const [app, definition] of wanted) {
        const current = liveByName.get(app);
        if (current === undefined) {
          plans.push({ app, definition, revision: null, lines: [`${app}: new app`], changes: [{ path: '(app)', from: null, to: 'defined in the file' }] });
          continue;
        }
        const changes = definitionChanges(compileDefinition(current, app), compileDefinition(definition, app));
        if (changes.length === 0) continue;
        const { revision } = await ctx.client.get<AppStateView>(appPath(app));
        plans.push({ app, definition, revision, lines: changes.map((c) => `${app}: ${formatChange(c)}`), changes });
      }
      const untouched = [...liveByName.keys()].filter((a) => !wanted.has(a));
      // `diff`: the same changes, machine-readable (key path, old value, new value)
      if (ctx.json) printJson(ctx, { changes: Object.fromEntries(plans.map((p) => [p.app, p.lines])), diff: Object.fromEntries(plans.map((p) => [p.app, p.changes])), differs: plans.length > 0, notInFile: untouched, dryRun: ctx.values['dry-run'] === true });
      else {
        for (const p of plans) for (const line of p.lines) ctx.out(line);
        for (const a of untouched) ctx.out(`${a}: not in ${file}; left as it is`);
        if (plans.length === 0) ctx.out('no changes: the store matches the file');
      }
      if (ctx.values['dry-run'] === true) {
        if (!ctx.json && plans.length > 0) ctx.out('(dry run: nothing written)');
        // like `git diff --exit-code`: 1 when the store differs from the file
        return ctx.values['exit-code'] === true && plans.length > 0 ? EXIT.refused : EXIT.ok;
      }
      const reason = typeof ctx.values.reason === 'string' ? ctx.values.reason : `switchyard apply -f ${file}`;
      for (const p of plans) {
        const ifMatch: Record<string, string> = p.revision === null ? {} : { 'if-match': `"${p.revision}"` };
        const state = await ctx.client.send<AppStateView>('PUT', appPath(p.app), { definition: p.definition, reason }, ifMatch);
        if (!ctx.json) ctx.out(`${p.app}: applied at revision ${state.revision}`);
      }
      return 0;
    },
  },
  export: {
    usage: 'export',
    summary: 'print every app\'s live definition as YAML (the shape `apply -f` reads)',
    args: [0, 0],
    async run(ctx) {
      const config = await ctx.client.get<{ apps: AppDefinition[] }>('/v1/config');
      if (ctx.json) printJson(ctx, config);
      else ctx.out(stringifyYaml(config).trimEnd());
      return 0;
    },
  },
};
