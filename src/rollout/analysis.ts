import type { PoolWindowStats, StatsWindow } from '../metrics/stats.ts';
import type { AnalysisFigures, AnalysisResult, Rollout } from './model.ts';

/** What the analysis reads: `LiveStats.window`, summed over the fleet on Redis. */
export interface StatsSource {
  window(app: string, seconds: StatsWindow): Record<string, PoolWindowStats>;
  /** the copies sent to the app's mirror pool, and their compared pairs (a mirror step judges these) */
  mirrorWindow?(app: string, pool: string, seconds: StatsWindow): MirrorFigures;
}

/** What a mirror step judges: the copies (as a pool's figures) and the (live, copy) pairs compared. */
export interface MirrorFigures {
  readonly copies: PoolWindowStats;
  readonly compare: { readonly pairs: number; readonly mismatches: number; readonly mismatchRate: number };
}

const SHORT: StatsWindow = 10;
const LONG: StatsWindow = 60;

/**
 * The window a judgement reads: the 10 s one, or the 60 s one once the rollout (or its last
 * resume) is a minute old — more requests, steadier figures for long steps. Only the fleet's
 * 10 s and 60 s windows are summed over every instance, so those are the two choices.
 */
export function windowFor(r: Rollout, now: number): StatsWindow {
  return now - Math.max(r.startedAt, r.judgeFrom) >= LONG * 1000 ? LONG : SHORT;
}

function figures(s: PoolWindowStats | undefined): AnalysisFigures {
  if (s === undefined || s.requests === 0) return { requests: 0, errors: 0, errorRate: 0, p99: null };
  return { requests: s.requests, errors: s.errors, errorRate: s.errors / s.requests, p99: s.p99 };
}

/** `1.25%`: the error rates in reasons and logs. */
export function ratePct(rate: number): string {
  return `${Number((rate * 100).toFixed(2))}%`;
}

/**
 * Judges the rollout's pool over the live window: `fail` when its error rate is above
 * `maxErrorRate` or its p99 above `maxP99Ms`, `pass` otherwise, and `waiting` (no judgement)
 * until it has served `minRequests` in the window, or while the window still reaches back
 * before the last resume (so errors that paused the rollout do not fail it again at once).
 * The other pools' figures come along as the baseline. Pure; `analysis: null` is never judged.
 */
export function evaluate(r: Rollout, window: Record<string, PoolWindowStats>, now: number, seconds: StatsWindow = windowFor(r, now), mirror: MirrorFigures | null = null): AnalysisResult {
  // a mirror step serves `to` no users: its copies are what is judged (the live pools stay the baseline)
  const mirrored = r.steps[r.step - 1]?.mirror !== undefined;
  const to = figures(mirrored ? mirror?.copies : window[r.to]);
  let requests = 0;
  let errors = 0;
  let p99: number | null = null;
  for (const [pool, s] of Object.entries(window)) {
    if (pool === r.to || s.requests === 0) continue;
    requests += s.requests;
    errors += s.errors;
    if (s.p99 !== null && (p99 === null || s.p99 > p99)) p99 = s.p99;
  }
  const others: AnalysisFigures = { requests, errors, errorRate: requests === 0 ? 0 : errors / requests, p99 };
  const base = { at: now, window: seconds, to, others };
  const a = r.analysis;
  // the window covers the complete seconds before now's: it is clean once its first second starts at or after judgeFrom
  const windowStart = (Math.floor(now / 1000) - seconds) * 1000;
  if (a === null || to.requests < a.minRequests || windowStart < Math.ceil(r.judgeFrom / 1000) * 1000) return { ...base, verdict: 'waiting' };
  const over: string[] = [];
  if (to.errorRate > a.maxErrorRate) over.push(`error rate ${ratePct(to.errorRate)} > ${ratePct(a.maxErrorRate)}`);
  if (a.maxP99Ms !== undefined && to.p99 !== null && to.p99 > a.maxP99Ms) over.push(`p99 ${to.p99}ms > ${a.maxP99Ms}ms`);
  // meaningful once pairs were compared: a copy answering another status class than the live response
  const cmp = mirrored ? mirror?.compare : undefined;
  if (cmp !== undefined && cmp.pairs > 0 && cmp.mismatches / cmp.pairs > a.maxErrorRate) over.push(`compare mismatch rate ${ratePct(cmp.mismatches / cmp.pairs)} > ${ratePct(a.maxErrorRate)} (${cmp.mismatches} of ${cmp.pairs} pairs)`);
  if (over.length === 0) return { ...base, verdict: 'pass' };
  const baseline = `others ${ratePct(others.errorRate)}${others.p99 === null ? '' : `, p99 ${others.p99}ms`}`;
  const why = `${r.to}${mirrored ? ' mirror copies' : ''} ${over.join(' and ')} over ${seconds}s (${to.requests} requests, ${to.errors} errors; ${baseline})`;
  return { ...base, verdict: 'fail', why };
}

/** Reads the window and judges: what the driver does on every tick, and what GET shows live. */
export function analyse(r: Rollout, stats: StatsSource, now: number): AnalysisResult {
  const seconds = windowFor(r, now);
  const mirror = r.steps[r.step - 1]?.mirror !== undefined && stats.mirrorWindow !== undefined ? stats.mirrorWindow(r.app, r.to, seconds) : null;
  return evaluate(r, stats.window(r.app, seconds), now, seconds, mirror);
}
