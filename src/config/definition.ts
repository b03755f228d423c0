import type { z } from 'zod';
import { appSourcesOf, deepFreeze, formatPath } from './load.ts';
import { appSchema, type AppConfig, type Config } from './schema.ts';
import { SwitchyardError } from '../errors.ts';

/**
 * An app's **definition** as the store keeps it: one `apps[]` entry of the config, as written
 * (durations like `5m` stay strings, `${ENV}` already expanded), with its `name`. The routing
 * snapshot is compiled from it with the config's own zod schema (`appSchema`), so the file, the
 * admin API and the store accept exactly the same definitions and name errors by the same key paths.
 */
export type AppDefinition = Readonly<Record<string, unknown>>;

export interface KeyPathIssue {
  /** `definition.pools.green.targets[1]` */
  readonly path: string;
  readonly message: string;
}

/** zod issues as key paths under `prefix`, one per unknown key, as the config loader names them. */
export function keyPathIssues(issues: readonly z.core.$ZodIssue[], prefix: readonly PropertyKey[] = []): KeyPathIssue[] {
  const out: KeyPathIssue[] = [];
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) out.push({ path: formatPath([...prefix, ...issue.path, key]), message: 'unknown key' });
    } else {
      out.push({ path: formatPath([...prefix, ...issue.path]) || '(root)', message: issue.message });
    }
  }
  return out;
}

export type ParsedDefinition = { readonly ok: true; readonly config: AppConfig; readonly definition: AppDefinition } | { readonly ok: false; readonly issues: KeyPathIssue[] };

/**
 * Checks `value` as the definition of app `app`: the config's schema, and its `name` (added when
 * absent) must be `app`. Issues are named under `prefix` (`definition.pools.green…`).
 */
export function parseDefinition(value: unknown, app: string, prefix: readonly PropertyKey[] = []): ParsedDefinition {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { ok: false, issues: [{ path: formatPath(prefix) || '(root)', message: 'must be an object shaped like one apps[] entry of the config' }] };
  const rec = value as Record<string, unknown>;
  if (rec.name !== undefined && rec.name !== app) return { ok: false, issues: [{ path: formatPath([...prefix, 'name']), message: `must be "${app}", the app's name (or left out)` }] };
  const definition = { ...rec, name: app };
  const r = appSchema.safeParse(definition);
  if (!r.success) return { ok: false, issues: keyPathIssues(r.error.issues, prefix) };
  return { ok: true, config: deepFreeze(r.data), definition: deepFreeze(structuredClone(definition)) };
}

/** Compiles a stored definition that is known to be valid (the store checked it); throws naming the key paths otherwise. */
export function compileDefinition(definition: AppDefinition, app: string): AppConfig {
  const r = parseDefinition(definition, app);
  if (!r.ok) throw new SwitchyardError('INVALID_STATE', `app ${app}: the definition is not valid: ${r.issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`);
  return r.config;
}

/**
 * Each app's definition in the config file, by name, as written. A config not made by
 * `parseConfig` (no source kept) gives its parsed entries, which the schema reads back the same
 * except for `health.expectStatus` and `health.passive: false`, rewritten here.
 */
export function configDefinitions(config: Config): Map<string, AppDefinition> {
  const sources = appSourcesOf(config);
  const out = new Map<string, AppDefinition>();
  config.apps.forEach((app, i) => {
    const source = sources?.[i];
    out.set(app.name, deepFreeze(structuredClone((source ?? fromParsed(app)) as AppDefinition)));
  });
  return out;
}

function fromParsed(app: AppConfig): Record<string, unknown> {
  const copy = structuredClone(app) as unknown as Record<string, unknown>;
  const health = copy.health as Record<string, unknown> | undefined;
  if (health !== undefined) {
    const s = health.expectStatus as { min: number; max: number };
    health.expectStatus = `${s.min}-${s.max}`;
    if (health.passive === null) health.passive = false;
  }
  return copy;
}

/** One difference between two definitions: a key path with the old and the new value (undefined: absent). */
export interface DefinitionChange {
  readonly path: string;
  readonly from: unknown;
  readonly to: unknown;
}

/**
 * Where two definitions differ, as key paths of their compiled form (so `5m` and `300s` are the
 * same); arrays (targets, hosts) are compared whole. Empty when they route the same.
 */
export function definitionChanges(before: AppConfig | undefined, after: AppConfig | undefined): DefinitionChange[] {
  const out: DefinitionChange[] = [];
  walk(before, after, [], out);
  return out;
}

function walk(a: unknown, b: unknown, path: PropertyKey[], out: DefinitionChange[]): void {
  if (isPlain(a) && isPlain(b)) {
    for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) walk(a[key], b[key], [...path, key], out);
    return;
  }
  if (JSON.stringify(a) === JSON.stringify(b)) return;
  out.push({ path: formatPath(path) || '(root)', from: a, to: b });
}

function isPlain(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `pools.green.targets: ["http://a"] → ["http://b"]`, one line per change; a secret's value is never shown. */
export function formatChange(c: DefinitionChange): string {
  const secret = /(^|\.)(secret|token)$/.test(c.path);
  const show = (v: unknown): string => (v === undefined ? '(none)' : secret ? '(secret)' : JSON.stringify(v));
  return `${c.path}: ${show(c.from)} → ${show(c.to)}`;
}

/** The hosts of `app` that another app already has, as `hosts[i]` issues. */
export function hostConflicts(app: AppConfig, others: Iterable<AppConfig>, prefix: readonly PropertyKey[] = []): KeyPathIssue[] {
  const owner = new Map<string, string>();
  for (const o of others) if (o.name !== app.name) for (const h of o.hosts) owner.set(h, o.name);
  const out: KeyPathIssue[] = [];
  app.hosts.forEach((h, i) => {
    const other = owner.get(h);
    if (other !== undefined) out.push({ path: formatPath([...prefix, 'hosts', i]), message: `host "${h}" already belongs to app "${other}"` });
  });
  return out;
}
