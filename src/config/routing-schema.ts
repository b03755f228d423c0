import { z } from 'zod';
import { pctToBp } from './weights.ts';
import { compileLinear } from './linear-regex.ts';

/**
 * The schema of an app's cohort `rules` and `mirror` (docs/cohorts.md §2, §4), part of `appSchema`
 * (config/schema.ts), so the config file, `PUT /v1/apps/:app`, `PUT …/rules` and `PUT …/mirror`
 * accept exactly the same values and name errors by the same key paths.
 *
 * Regexes: compiled with RE2JS, a port of RE2 whose matching time is linear in the input (no
 * backtracking), so no pattern can stall the data plane; what RE2 cannot do in linear time
 * (backreferences, lookaround) does not compile and is refused at write time, naming the field.
 * V8's own linear engine needs a process-wide flag (`--enable-experimental-regexp-engine`), and a
 * static "could this backtrack?" check misses cases (`(a|a)*`, polynomial `\d+\d+\d+$`).
 */

const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;
const METHOD = /^[A-Z]{1,20}$/;

/** A share in percent (two decimals at most) as basis points. */
export const sharePct = (fallback: number) =>
  z
    .number()
    .default(fallback)
    .transform((pct, ctx) => {
      const bp = pctToBp(pct);
      if (typeof bp === 'string' || bp === 0) {
        ctx.addIssue({ code: 'custom', message: typeof bp === 'string' ? `${bp} (a percentage like 10 or 0.5)` : 'must be more than 0' });
        return z.NEVER;
      }
      return bp;
    });

function compileRegex(source: string): true | string {
  try {
    compileLinear(source);
    return true;
  } catch (err) {
    return `not a pattern the linear-time matcher (RE2 syntax) accepts: ${(err as Error).message}`;
  }
}

/** `"v"` (exact), `{ exact }`, `{ prefix }`, `{ regex }` or `{ present: bool }`. */
const condition = z.preprocess(
  (v) => (typeof v === 'string' ? { exact: v } : v),
  z
    .strictObject({
      exact: z.string().optional(),
      prefix: z.string().min(1).optional(),
      regex: z
        .string()
        .min(1)
        .max(1000)
        .superRefine((s, ctx) => {
          const r = compileRegex(s);
          if (typeof r === 'string') ctx.addIssue({ code: 'custom', message: r });
        })
        .optional(),
      present: z.boolean().optional(),
    })
    .refine((c) => [c.exact, c.prefix, c.regex, c.present].filter((x) => x !== undefined).length === 1, 'needs exactly one of exact, prefix, regex or present (or a string: an exact match)'),
);
export type ConditionConfig = z.output<typeof condition>;

const conditions = (key: z.ZodType<string>) => z.record(key, condition).optional();

const match = z.strictObject({
  /** header name (case-insensitive) → condition */
  header: conditions(z.string().regex(HEADER_NAME, 'must be a header name').transform((s) => s.toLowerCase())),
  cookie: conditions(z.string().regex(/^[^\s;=,]+$/, 'must be a cookie name')),
  query: conditions(z.string().min(1)),
  /** the request path, without the query */
  path: condition.optional(),
  method: z.array(z.string().regex(METHOD, 'must be an HTTP method in capitals, like GET')).min(1).optional(),
});

const ruleName = z.string().regex(/^[a-z0-9-]{1,63}$/, 'must match [a-z0-9-]{1,63}');

export const ruleSchema = z.strictObject({
  name: ruleName,
  /** every condition must hold; `{}` matches every request */
  match,
  to: z.string().min(1),
  /** % of the matching requests (basis points once parsed) @default 100 */
  share: sharePct(100),
});

/** `1048576`, `"512KiB"`, `"1MiB"`, `"1MB"` as bytes. */
const byteSize = (fallback: string) =>
  z
    .union([z.number().int().min(0), z.string()])
    .default(fallback)
    .transform((v, ctx) => {
      if (typeof v === 'number') return v;
      const m = /^(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?$/i.exec(v.trim());
      if (m === null) {
        ctx.addIssue({ code: 'custom', message: 'must be a size like 65536, 512KiB or 1MiB' });
        return z.NEVER;
      }
      const unit = (m[2] ?? 'B').toLowerCase();
      const mult = { b: 1, kb: 1e3, kib: 1024, mb: 1e6, mib: 1024 ** 2, gb: 1e9, gib: 1024 ** 3 }[unit] as number;
      return Number(m[1]) * mult;
    });

export const mirrorSchema = z.strictObject({
  /** the pool that gets the copies */
  to: z.string().min(1),
  /** % of the requests routed to any other pool that are copied @default 100 */
  share: sharePct(100),
  /** only these are copied (a copied write would write twice) @default [GET, HEAD] */
  methods: z.array(z.string().regex(METHOD, 'must be an HTTP method in capitals, like GET')).min(1).default(['GET', 'HEAD']),
  /** a request whose body is larger (or of unknown length) is not copied @default 1MiB */
  maxBody: byteSize('1MiB'),
  /** copies in flight per process at most; the rest are skipped @default 100 */
  maxInflight: z.number().int().min(1).max(100_000).default(100),
  /** count (live status class, copy's status class) pairs @default false */
  compare: z.boolean().default(false),
});

export const rulesSchema = z.array(ruleSchema).max(1000);

export type RuleConfig = z.output<typeof ruleSchema>;
export type MirrorConfig = z.output<typeof mirrorSchema>;

/** Issues for rules and a mirror that name pools the app lacks, or repeat a rule name (added to `appSchema`'s superRefine). */
export function routingIssues(a: { readonly pools: Readonly<Record<string, unknown>>; readonly rules?: readonly RuleConfig[] | undefined; readonly mirror?: MirrorConfig | undefined }): { path: (string | number)[]; message: string }[] {
  const pools = Object.keys(a.pools);
  const unknown = (p: string): string => `unknown pool "${p}" (pools: ${pools.join(', ')})`;
  const out: { path: (string | number)[]; message: string }[] = [];
  const seen = new Set<string>();
  (a.rules ?? []).forEach((r, i) => {
    if (seen.has(r.name)) out.push({ path: ['rules', i, 'name'], message: `duplicate rule name "${r.name}"` });
    seen.add(r.name);
    if (!Object.hasOwn(a.pools, r.to)) out.push({ path: ['rules', i, 'to'], message: unknown(r.to) });
  });
  if (a.mirror !== undefined && !Object.hasOwn(a.pools, a.mirror.to)) out.push({ path: ['mirror', 'to'], message: unknown(a.mirror.to) });
  return out;
}
