import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import type { AppStateView } from '../admin/views.ts';
import { appPath, printJson, printState, writeFields, writeOptions } from './command-kit.ts';
import type { ApiCommand, CommandContext } from './commands.ts';
import { UsageError } from './usage-error.ts';

// The routing commands of docs/cohorts.md §8: rules, rule add|remove, mirror, whereis.

/** A repeatable option's values (parseArgs gives a list for `multiple: true`). */
function list(ctx: CommandContext, name: string): string[] {
  const v = ctx.values[name] as unknown;
  return Array.isArray(v) ? (v as string[]) : typeof v === 'string' ? [v] : [];
}

/** `--header x-beta=1` (`:` accepted too) → [name, value]. */
function pair(option: string, raw: string): [string, string] {
  const i = raw.search(/[=:]/);
  if (i <= 0) throw new UsageError(`--${option} ${raw}: expected NAME=VALUE`);
  return [raw.slice(0, i), raw.slice(i + 1)];
}

function pct(raw: unknown, option: string): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(String(raw).replace(/%$/, ''));
  if (!(typeof raw === 'string' && Number.isFinite(n) && n > 0 && n <= 100)) throw new UsageError(`--${option} ${String(raw)}: expected a percentage like 10 or 0.5`);
  return n;
}

interface RuleView {
  name: string;
  to: string;
  share?: number;
  match: Record<string, unknown>;
}

function conditionText(c: unknown): string {
  if (typeof c === 'string') return `=${c}`;
  const o = c as Record<string, unknown>;
  if (o.exact !== undefined) return `=${String(o.exact)}`;
  if (o.prefix !== undefined) return ` starts with ${String(o.prefix)}`;
  if (o.regex !== undefined) return ` ~ /${String(o.regex)}/`;
  return o.present === true ? ' present' : ' absent';
}

/** `beta → green (50 %): header x-beta=1, path starts with /api/` */
export function ruleLine(r: RuleView): string {
  const parts: string[] = [];
  for (const kind of ['header', 'cookie', 'query'] as const) {
    for (const [name, c] of Object.entries((r.match[kind] as Record<string, unknown> | undefined) ?? {})) parts.push(`${kind} ${name}${conditionText(c)}`);
  }
  if (r.match.path !== undefined) parts.push(`path${conditionText(r.match.path)}`);
  if (Array.isArray(r.match.method)) parts.push(`method ${r.match.method.join('|')}`);
  return `${r.name} → ${r.to}${r.share === undefined || r.share === 100 ? '' : ` (${r.share} %)`}: ${parts.length === 0 ? 'every request' : parts.join(', ')}`;
}

async function putRules(ctx: CommandContext, app: string, rules: unknown[], revision?: number): Promise<number> {
  const ifMatch: Record<string, string> = revision === undefined ? {} : { 'if-match': `"${revision}"` };
  return printState(ctx, await ctx.client.send<AppStateView>('PUT', `${appPath(app)}/rules`, { rules, ...writeFields(ctx) }, ifMatch));
}

async function readRulesFile(file: string): Promise<unknown[]> {
  let doc: unknown;
  try {
    doc = parseYaml(await readFile(file, 'utf8'));
  } catch (err) {
    throw new UsageError(`${file}: cannot read it as YAML or JSON (${(err as Error).message.split('\n')[0]})`);
  }
  const rules = Array.isArray(doc) ? doc : (doc as { rules?: unknown } | null)?.rules;
  if (!Array.isArray(rules)) throw new UsageError(`${file}: expected a list of rules, or { rules: [...] }`);
  return rules;
}

const matchOptions = { header: { type: 'string', multiple: true }, cookie: { type: 'string', multiple: true }, query: { type: 'string', multiple: true } } as const;

export const routingCommands: Readonly<Record<string, ApiCommand>> = {
  rules: {
    usage: 'rules APP [set -f FILE | clear] [--reason R]',
    summary: 'the app\'s cohort rules, in order; `set -f FILE` replaces them (YAML or JSON list), `clear` removes them',
    args: [1, 2],
    options: { ...writeOptions, file: { type: 'string', short: 'f' } },
    async run(ctx) {
      const [app, verb] = ctx.args as [string, string | undefined];
      if (verb === undefined) {
        const state = await ctx.client.get<AppStateView>(appPath(app));
        if (ctx.json) printJson(ctx, state.rules);
        else if (state.rules.length === 0) ctx.out(`${app}: no rules`);
        else (state.rules as RuleView[]).forEach((r, i) => ctx.out(`${i + 1}. ${ruleLine(r)}`));
        return 0;
      }
      if (verb === 'clear') return putRules(ctx, app, []);
      if (verb !== 'set') throw new UsageError(`rules ${app} ${verb}: expected set -f FILE or clear`);
      const file = ctx.values.file;
      if (typeof file !== 'string') throw new UsageError('rules APP set: -f FILE is required');
      return putRules(ctx, app, await readRulesFile(file));
    },
  },
  rule: {
    usage: 'rule add APP NAME --to POOL [--header N=V]… [--cookie N=V]… [--query N=V]… [--path-prefix P] [--share PCT] | rule remove APP NAME',
    summary: 'add a cohort rule after the others (or replace the one of that name), or remove one',
    args: [3, 3],
    options: { ...writeOptions, ...matchOptions, to: { type: 'string' }, 'path-prefix': { type: 'string' }, share: { type: 'string' } },
    async run(ctx) {
      const [verb, app, name] = ctx.args as [string, string, string];
      if (verb !== 'add' && verb !== 'remove') throw new UsageError(`rule ${verb}: expected add or remove`);
      const state = await ctx.client.get<AppStateView>(appPath(app));
      const rules = state.rules as RuleView[];
      if (verb === 'remove') {
        if (!rules.some((r) => r.name === name)) throw new UsageError(`app "${app}" has no rule "${name}" (rules: ${rules.map((r) => r.name).join(', ') || 'none'})`);
        return putRules(ctx, app, rules.filter((r) => r.name !== name), state.revision);
      }
      const to = ctx.values.to;
      if (typeof to !== 'string') throw new UsageError('rule add: --to POOL is required');
      const match: Record<string, unknown> = {};
      for (const kind of ['header', 'cookie', 'query'] as const) {
        const given = list(ctx, kind);
        if (given.length > 0) match[kind] = Object.fromEntries(given.map((g) => pair(kind, g)));
      }
      const prefix = ctx.values['path-prefix'];
      if (typeof prefix === 'string') match.path = { prefix };
      const share = pct(ctx.values.share, 'share');
      const rule = { name, match, to, ...(share === undefined ? {} : { share }) };
      const at = rules.findIndex((r) => r.name === name);
      const next = at === -1 ? [...rules, rule] : rules.map((r, i) => (i === at ? rule : r));
      return putRules(ctx, app, next, state.revision);
    },
  },
  mirror: {
    usage: 'mirror APP POOL --share PCT [--compare] [--methods GET,HEAD] | mirror APP off',
    summary: 'copy a share of the other pools\' requests to POOL (responses read and discarded; --compare counts status-class mismatches), or stop',
    args: [2, 2],
    options: { ...writeOptions, share: { type: 'string' }, compare: { type: 'boolean' }, methods: { type: 'string' } },
    async run(ctx) {
      const [app, pool] = ctx.args as [string, string];
      let mirror: Record<string, unknown> | null = null;
      if (pool !== 'off') {
        const share = pct(ctx.values.share, 'share');
        if (share === undefined) throw new UsageError('mirror APP POOL: --share PCT is required (or `mirror APP off`)');
        mirror = { to: pool, share, compare: ctx.values.compare === true };
        if (typeof ctx.values.methods === 'string') mirror.methods = ctx.values.methods.split(',').map((m) => m.trim().toUpperCase()).filter((m) => m !== '');
      }
      return printState(ctx, await ctx.client.put<AppStateView>(`${appPath(app)}/mirror`, { mirror, ...writeFields(ctx) }));
    },
  },
  whereis: {
    usage: 'whereis APP [KEY] [--header N=V]… [--cookie N=V]… [--query N=V]… [--path P] [--method M]',
    summary: 'where a request goes now and which step decides (preview, rule:NAME, pin, weights); KEY is a sticky key',
    args: [1, 2],
    options: { ...matchOptions, path: { type: 'string' }, method: { type: 'string' } },
    async run(ctx) {
      const [app, key] = ctx.args as [string, string | undefined];
      const q = new URLSearchParams();
      if (key !== undefined) q.set('key', key);
      for (const h of list(ctx, 'header')) q.append('header', pair('header', h).join(':'));
      for (const c of list(ctx, 'cookie')) q.append('cookie', pair('cookie', c).join('='));
      for (const c of list(ctx, 'query')) q.append('query', pair('query', c).join('='));
      if (typeof ctx.values.path === 'string') q.set('path', ctx.values.path);
      if (typeof ctx.values.method === 'string') q.set('method', ctx.values.method);
      if ([...q.keys()].length === 0) throw new UsageError('whereis APP: give a KEY or describe the request with --header, --cookie, --query, --path or --method');
      const v = await ctx.client.get<{ key: string | null; bucket: number | null; pool: string | null; version: string | null; revision: number; by: string | null; random?: boolean }>(`${appPath(app)}/whereis?${q}`);
      if (ctx.json) printJson(ctx, v);
      else if (v.pool === null) ctx.out(`${v.key ?? 'this request'}: no sticky key, split at random per request by the weights at revision ${v.revision}`);
      else ctx.out(`${v.key ?? 'this request'}: ${v.bucket === null ? '' : `bucket ${v.bucket} `}→ ${v.pool} (${v.version}) by ${v.by} at revision ${v.revision}`);
      return 0;
    },
  },
};
