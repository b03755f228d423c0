import { z } from 'zod';
import { parseDuration } from '../config/duration.ts';
import { SwitchyardError } from '../errors.ts';
import { pctToBp, TOTAL_BP } from '../config/weights.ts';
import type { Gates, PrometheusSource } from './gate-model.ts';
import { evidenceFields, hooksBody, notifyBody, parseGates, type Issue } from './gate-spec.ts';
import { DEFAULT_ANALYSIS, DEFAULT_MAX_WAIT_MS, presetSteps, PRESET_EXAMPLES, type Analysis, type OnFailure, type Step } from './model.ts';

/** The longest pause a step may have: a rollout that outlives a week is a forgotten one. */
export const MAX_PAUSE_MS = 7 * 24 * 3_600_000;
export const MAX_STEPS = 100;

const reason = z.string().max(1000).nullable().optional();
/** `5m`, `30s`, `250ms`, or a number of milliseconds, as everywhere in Switchyard */
const pause = z.union([z.string().max(20), z.number()]);

/** `POST /v1/apps/:app/rollouts`; what zod cannot know (pools, decimals, order) is checked by `parseRolloutBody`. */
export const rolloutBody = z.strictObject({
  to: z.string().min(1).max(63),
  /** `{ weight, pause? }`, `{ approval: true, timeout? }` or `{ mirror: PCT, pause? }` (checked by parseSteps, for messages that name the field) */
  steps: z.array(z.strictObject({ weight: z.number().optional(), pause: pause.optional(), approval: z.literal(true).optional(), timeout: pause.optional(), mirror: z.number().optional() })).min(1).max(MAX_STEPS).optional(),
  preset: z.string().min(1).max(100).optional(),
  /** null: no analysis, the steps only follow their pauses */
  analysis: z
    .strictObject({
      maxErrorRate: z.number().min(0).max(1).default(DEFAULT_ANALYSIS.maxErrorRate),
      maxP99Ms: z.number().positive().optional(),
      minRequests: z.number().int().min(1).max(1_000_000_000).default(DEFAULT_ANALYSIS.minRequests),
      /** how long past a step's pause to wait for `minRequests` before failing @default "10m" */
      maxWait: pause.optional(),
      ...evidenceFields,
    })
    .nullable()
    .optional(),
  onFailure: z.enum(['rollback', 'pause']).optional(),
  hooks: hooksBody.optional(),
  notify: notifyBody.optional(),
  reason,
});
export type RolloutBody = z.infer<typeof rolloutBody>;

/** `POST …/rollouts/current/approve` */
export const approveBody = z.strictObject({ reason });
/** `POST …/rollouts/current/pause|resume` */
export const pauseBody = z.strictObject({ reason });
/** `POST …/rollouts/current/promote|abort`; `force` passes the health gate for the weights they write */
export const finishBody = z.strictObject({ reason, force: z.boolean().optional() });

/** A validated rollout request, in basis points and milliseconds. */
export interface RolloutSpec {
  readonly to: string;
  readonly steps: readonly Step[];
  readonly analysis: Analysis | null;
  readonly onFailure: OnFailure;
  readonly reason: string | null;
  readonly gates: Gates;
}

/**
 * Checks a rollout body against the app's pools: `to` must be one, exactly one of `steps` and
 * `preset`, weights with at most two decimals in (0, 100] and strictly ascending, pauses valid
 * durations. A last step below 100 % gets a final 100 % step appended (as Argo promotes fully
 * after the last step). Throws a 400 whose details name every offending field.
 */
export function parseRolloutBody(body: RolloutBody, pools: readonly string[], processPrometheus: PrometheusSource | null = null): RolloutSpec {
  const issues: Issue[] = [];
  if (!pools.includes(body.to)) issues.push({ path: 'to', message: `unknown pool (pools: ${pools.join(', ')})` });
  let steps: Step[] = [];
  if (body.steps !== undefined && body.preset !== undefined) issues.push({ path: 'preset', message: 'give steps or preset, not both' });
  else if (body.steps === undefined && body.preset === undefined) issues.push({ path: 'steps', message: `required (or a preset, e.g. ${PRESET_EXAMPLES.join(', ')})` });
  else if (body.preset !== undefined) {
    const preset = presetSteps(body.preset, parseDuration);
    if (preset === null) issues.push({ path: 'preset', message: `unknown preset (canaryP-D, linearP-every-D or all-at-once, e.g. ${PRESET_EXAMPLES.join(', ')})` });
    else steps = preset;
  } else {
    steps = parseSteps(body.steps ?? [], issues);
  }
  let maxWaitMs = DEFAULT_MAX_WAIT_MS;
  if (body.analysis?.maxWait !== undefined) {
    const ms = parseDuration(body.analysis.maxWait);
    if (ms === undefined || ms <= 0) issues.push({ path: 'analysis.maxWait', message: 'must be a duration like 30s, 5m or 250ms (or milliseconds), above 0' });
    else if (ms > MAX_PAUSE_MS) issues.push({ path: 'analysis.maxWait', message: 'at most 7d' });
    else maxWaitMs = Math.round(ms);
  }
  const gates = parseGates(body.analysis, body.hooks, body.notify, processPrometheus, issues);
  if (issues.length > 0) throw badRequest(issues);
  const last = steps[steps.length - 1] as Step;
  if (last.weight !== TOTAL_BP) {
    if (steps.length >= MAX_STEPS) throw badRequest([{ path: 'steps', message: `at most ${MAX_STEPS} steps including the final 100 %` }]);
    steps.push({ weight: TOTAL_BP, pauseMs: 0 });
  }
  const analysis: Analysis | null =
    body.analysis === null ? null : body.analysis === undefined ? DEFAULT_ANALYSIS : { maxErrorRate: body.analysis.maxErrorRate, minRequests: body.analysis.minRequests, maxWaitMs, ...(body.analysis.maxP99Ms === undefined ? {} : { maxP99Ms: body.analysis.maxP99Ms }) };
  return { to: body.to, steps, analysis, onFailure: body.onFailure ?? 'rollback', reason: body.reason ?? null, gates };
}

type StepInput = { weight?: number | undefined; pause?: string | number | undefined; approval?: true | undefined; timeout?: string | number | undefined; mirror?: number | undefined };

/**
 * `{ weight, pause? }` steps ascend; an `{ approval: true, timeout? }` step holds at the weight
 * of the step before it (0 % when it comes first) until approved; a `{ mirror: PCT, pause? }`
 * step holds at that weight too while PCT % is mirrored to `to` (docs/gates.md §1).
 */
function parseSteps(input: readonly StepInput[], issues: Issue[]): Step[] {
  const steps: Step[] = [];
  let previous = 0;
  input.forEach((s, i) => {
    if (s.mirror !== undefined) {
      const share = pctToBp(s.mirror);
      if (typeof share === 'string') issues.push({ path: `steps[${i}].mirror`, message: `${share} (a percentage like 10 or 0.5)` });
      else if (share === 0) issues.push({ path: `steps[${i}].mirror`, message: 'must be above 0' });
      if (s.weight !== undefined) issues.push({ path: `steps[${i}].weight`, message: 'a mirror step holds at the weight of the step before it; give weight or mirror, not both' });
      if (s.approval !== undefined) issues.push({ path: `steps[${i}].approval`, message: 'give approval or mirror, not both' });
      if (s.timeout !== undefined) issues.push({ path: `steps[${i}].timeout`, message: 'goes with approval: true (a mirror step has pause)' });
      steps.push({ weight: previous, pauseMs: parsePause(s.pause, i, issues), mirror: { share: s.mirror } });
      return;
    }
    if (s.approval === true) {
      if (s.weight !== undefined) issues.push({ path: `steps[${i}].weight`, message: 'an approval step holds at the weight of the step before it; give weight or approval, not both' });
      if (s.pause !== undefined) issues.push({ path: `steps[${i}].pause`, message: 'an approval step holds until approved (timeout: how long at most)' });
      let timeoutMs: number | null = null;
      if (s.timeout !== undefined) {
        const ms = parseDuration(s.timeout);
        if (ms === undefined || ms <= 0) issues.push({ path: `steps[${i}].timeout`, message: 'must be a duration like 30m, 1h or 2d, above 0' });
        else if (ms > MAX_PAUSE_MS) issues.push({ path: `steps[${i}].timeout`, message: 'at most 7d' });
        else timeoutMs = Math.round(ms);
      }
      steps.push({ weight: previous, pauseMs: 0, approval: { timeoutMs } });
      return;
    }
    if (s.timeout !== undefined) issues.push({ path: `steps[${i}].timeout`, message: 'goes with approval: true (a weight step has pause)' });
    if (s.weight === undefined) {
      issues.push({ path: `steps[${i}].weight`, message: 'required (or approval: true)' });
      return;
    }
    const bp = pctToBp(s.weight);
    if (typeof bp === 'string') issues.push({ path: `steps[${i}].weight`, message: bp });
    else if (bp === 0) issues.push({ path: `steps[${i}].weight`, message: 'must be above 0' });
    else if (bp <= previous) issues.push({ path: `steps[${i}].weight`, message: `steps must be ascending: ${bp / 100} follows ${previous / 100}` });
    const pauseMs = parsePause(s.pause, i, issues);
    if (typeof bp === 'number' && bp > previous) previous = bp;
    steps.push({ weight: typeof bp === 'number' ? bp : 0, pauseMs });
  });
  return steps;
}

function parsePause(pause: string | number | undefined, i: number, issues: Issue[]): number {
  if (pause === undefined) return 0;
  const ms = parseDuration(pause);
  if (ms === undefined) issues.push({ path: `steps[${i}].pause`, message: 'must be a duration like 30s, 5m or 250ms (or milliseconds)' });
  else if (ms > MAX_PAUSE_MS) issues.push({ path: `steps[${i}].pause`, message: 'at most 7d' });
  else return Math.round(ms);
  return 0;
}

function badRequest(issues: readonly Issue[]): SwitchyardError {
  return new SwitchyardError('BAD_REQUEST', issues.map((d) => `${d.path}: ${d.message}`).join('; '), { details: issues });
}
