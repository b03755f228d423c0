import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../errors.ts';
import { configSchema, type Config } from './schema.ts';

/** `apps[0].pools.green.targets[1]` from a zod path. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out;
}

/** One `path: reason` line per zod issue (unknown keys get one line each). */
export function formatIssues(issues: readonly z.core.$ZodIssue[]): string[] {
  const lines: string[] = [];
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) lines.push(`${formatPath([...issue.path, key])}: unknown key`);
    } else {
      lines.push(`${formatPath(issue.path) || '(root)'}: ${issue.message}`);
    }
  }
  return lines;
}

const ENV_RE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/** Expands `${VAR}` and `${VAR:-default}` in every string value; an unset variable is an error naming the key path. */
export function expandEnv(value: unknown, env: NodeJS.ProcessEnv, path: (string | number)[] = [], issues: string[] = []): unknown {
  if (typeof value === 'string') {
    return value.replace(ENV_RE, (_m, name: string, fallback: string | undefined) => {
      const v = env[name];
      if (v !== undefined && v !== '') return v;
      if (fallback !== undefined) return fallback;
      issues.push(`${formatPath(path) || '(root)'}: environment variable ${name} is not set`);
      return '';
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => expandEnv(v, env, [...path, i], issues));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = expandEnv(v, env, [...path, k], issues);
    return out;
  }
  return value;
}

export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** The `apps[]` entries as written (env expanded), per parsed config: what seeds the store (src/config/definition.ts). */
const appSources = new WeakMap<Config, readonly unknown[]>();

/** The config file's `apps[]` entries as written (env expanded), or undefined for a config not made by `parseConfig`. */
export function appSourcesOf(config: Config): readonly unknown[] | undefined {
  return appSources.get(config);
}

/** Validates an already parsed document; throws ConfigError with every `path: reason`. */
export function parseConfig(doc: unknown, env: NodeJS.ProcessEnv = {}): Config {
  const envIssues: string[] = [];
  const expanded = expandEnv(doc, env, [], envIssues);
  if (envIssues.length > 0) throw new ConfigError(envIssues);
  const result = configSchema.safeParse(expanded);
  if (!result.success) throw new ConfigError(formatIssues(result.error.issues));
  const config = deepFreeze(result.data);
  const apps = (expanded as { apps?: unknown }).apps;
  if (Array.isArray(apps)) appSources.set(config, deepFreeze(structuredClone(apps)));
  return config;
}

/** Reads a YAML (or JSON) config file. */
export async function loadConfig(file: string, env: NodeJS.ProcessEnv = {}): Promise<Config> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? String(err)})`]);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text, { prettyErrors: true });
  } catch (err) {
    throw new ConfigError([`${file}: not valid YAML or JSON: ${(err as Error).message.split('\n')[0]}`]);
  }
  return parseConfig(doc, env);
}
