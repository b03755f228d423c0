import type { ConditionConfig, MirrorConfig, RuleConfig } from '../config/routing-schema.ts';
import { compileLinear } from '../config/linear-regex.ts';
import type { AppConfig } from '../config/schema.ts';

/**
 * What a rule (or `whereis`) reads of a request. Accessors rather than fields, so a request
 * that meets no rule asking for cookies or the query never parses them.
 */
export interface RequestFacts {
  /** a header's value by lower-case name (the first field of that name) */
  header(lname: string): string | undefined;
  cookie(name: string): string | undefined;
  query(name: string): string | undefined;
  /** the request path, without the query */
  path(): string;
  readonly method: string;
  /** the client's address, for `sticky: ip` */
  readonly clientIp: string;
}

type Test = (value: string | undefined) => boolean;

function conditionTest(c: ConditionConfig): Test {
  if (c.exact !== undefined) {
    const x = c.exact;
    return (v) => v === x;
  }
  if (c.prefix !== undefined) {
    const x = c.prefix;
    return (v) => v !== undefined && v.startsWith(x);
  }
  if (c.regex !== undefined) {
    // linear-time (RE2): see config/routing-schema.ts; `test` finds the pattern anywhere, as RegExp#test does
    const re = compileLinear(c.regex);
    return (v) => v !== undefined && re.test(v);
  }
  const present = c.present === true;
  return (v) => (v !== undefined) === present;
}

/** A rule compiled for the data plane: `matches(facts)` is every condition of its `match`. */
export interface CompiledRule {
  readonly name: string;
  /** `rule:NAME`, what `by` says when it routed a request */
  readonly by: `rule:${string}`;
  readonly to: string;
  /** basis points of the matching requests */
  readonly share: number;
  matches(facts: RequestFacts): boolean;
}

function compileRule(rule: RuleConfig): CompiledRule {
  const tests: ((f: RequestFacts) => boolean)[] = [];
  const m = rule.match;
  if (m.method !== undefined) {
    const methods = new Set(m.method);
    tests.push((f) => methods.has(f.method));
  }
  if (m.path !== undefined) {
    const t = conditionTest(m.path);
    tests.push((f) => t(f.path()));
  }
  for (const [name, c] of Object.entries(m.header ?? {})) {
    const t = conditionTest(c);
    tests.push((f) => t(f.header(name)));
  }
  for (const [name, c] of Object.entries(m.cookie ?? {})) {
    const t = conditionTest(c);
    tests.push((f) => t(f.cookie(name)));
  }
  for (const [name, c] of Object.entries(m.query ?? {})) {
    const t = conditionTest(c);
    tests.push((f) => t(f.query(name)));
  }
  return Object.freeze({
    name: rule.name,
    by: `rule:${rule.name}` as const,
    to: rule.to,
    share: rule.share,
    matches: (f: RequestFacts) => {
      for (let i = 0; i < tests.length; i++) if (!(tests[i] as (f: RequestFacts) => boolean)(f)) return false;
      return true;
    },
  });
}

// compiled once per definition (a weights-only write reuses the AppConfig, so its rules too)
const cache = new WeakMap<AppConfig, readonly CompiledRule[]>();

export function compileRules(config: AppConfig): readonly CompiledRule[] {
  let rules = cache.get(config);
  if (rules === undefined) cache.set(config, (rules = Object.freeze((config.rules ?? []).map(compileRule))));
  return rules;
}

/** The mirror as the data plane reads it. */
export interface MirrorRoute extends Omit<MirrorConfig, 'methods'> {
  readonly methods: ReadonlySet<string>;
}

export function compileMirror(config: AppConfig): MirrorRoute | null {
  const m = config.mirror;
  return m === undefined ? null : Object.freeze({ ...m, methods: new Set(m.methods) });
}

/**
 * Why a pool is still sent traffic by the app's rules or mirror (`rule NAME`, `mirror`), for the
 * drain verdict: such a pool is not drained whatever its weight.
 */
export function routingHolds(config: AppConfig, pool: string): string[] {
  const out = (config.rules ?? []).filter((r) => r.to === pool).map((r) => `rule ${r.name}`);
  if (config.mirror?.to === pool) out.push('mirror');
  return out;
}
