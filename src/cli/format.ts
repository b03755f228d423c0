import type { AppStateView, DrainView, HistoryEntryView } from '../admin/views.ts';

/** Human-readable renderings of the admin API's answers, one string per line. */

const BLOCK = '▇';

/** `90%`, `0.05%` */
export function pct(n: number): string {
  return `${Number(n.toFixed(2))}%`;
}

/** `4m12s`, `1h0m5s`, `800ms` */
export function humanDuration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  const s = Math.round(ms / 1000);
  const [h, m, sec] = [Math.floor(s / 3600), Math.floor((s % 3600) / 60), s % 60];
  return h > 0 ? `${h}h${m}m${sec}s` : m > 0 ? `${m}m${sec}s` : `${sec}s`;
}

/** One block per 10 %, at least one for any weight above 0. */
export function bar(weight: number): string {
  if (weight <= 0) return '';
  return BLOCK.repeat(Math.max(1, Math.round(weight / 10)));
}

/** `blue 90% ▇▇▇▇▇▇▇▇▇ green 10% ▇` */
export function weightsLine(weights: Readonly<Record<string, number>>): string {
  return Object.entries(weights)
    .map(([pool, w]) => [pool, pct(w), bar(w)].filter((s) => s !== '').join(' '))
    .join(' ');
}

function byLine(by: string, reason: string | null): string {
  return reason === null || reason === '' ? `by ${by}` : `by ${by}: ${JSON.stringify(reason)}`;
}

/** `shop  rev 7  blue 90% ▇▇▇▇▇▇▇▇▇ green 10% ▇  active: (split)  by ci: "canary"` */
export function appLine(s: AppStateView, nameWidth = s.app.length): string {
  return [s.app.padEnd(nameWidth), `rev ${s.revision}`, weightsLine(s.weights), `active: ${s.active ?? '(split)'}`, byLine(s.updatedBy, s.reason)].join('  ');
}

/** Left-aligned columns, two spaces apart. */
export function table(rows: readonly (readonly string[])[], indent = ''): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => indent + row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  '));
}

/** The app line, its pools, and how far the fleet has applied the revision. */
export function appDetail(s: AppStateView): string[] {
  const rows = [['pool', 'version', 'weight', 'inflight', 'upgraded', 'state', 'targets']];
  for (const [name, p] of Object.entries(s.pools)) {
    const state = (p.drained ? 'drained' : p.weight === 0 ? 'draining' : 'serving') + (p.health === 'unhealthy' ? ', unhealthy' : '');
    // targets the health checks took out are marked: `http://10.0.0.3:8080 (down)`
    const targets = p.targetStates?.map((t) => (t.state === 'up' ? t.url : `${t.url} (${t.state})`)) ?? p.targets;
    rows.push([name, p.version, pct(p.weight), String(p.inflight), String(p.upgraded), state, targets.join(', ')]);
  }
  return [
    appLine(s),
    ...table(rows, '  '),
    `  updated ${s.updatedAt}; ${s.instances.total === null ? `${s.instances.applied}/? instance(s) known to route on rev ${s.revision} (${s.instances.reason})` : `${s.instances.applied}/${s.instances.total} instance(s) route on rev ${s.revision}`}`,
  ];
}

export function historyLines(entries: readonly HistoryEntryView[]): string[] {
  if (entries.length === 0) return ['(no history)'];
  const rows = [['rev', 'at', 'action', 'by', 'what it did', 'reason']];
  // `summary` in words; an older server's answer has none: its weights then
  for (const e of entries) rows.push([String(e.revision), e.at, e.action, e.by, e.summary ?? weightsLine(e.weights), e.reason ?? '']);
  return table(rows);
}

function inWords(ms: number | null | undefined): string {
  return ms === null || ms === undefined ? '' : ms > 0 ? ` (in ${humanDuration(ms)})` : ' (passed)';
}

/** `blue  weight 0%  inflight 3  upgraded 1  pinned 4  draining since …, closed at … (in 4m)` */
export function drainLine(v: DrainView): string {
  const parts = [v.pool, `weight ${pct(v.weight)}`, `inflight ${v.inflight}`, `upgraded ${v.upgraded}`, `pinned ${v.pinned}`];
  if (v.unknown === true) parts.push(`unknown: ${v.reason ?? ''}`);
  else if (v.drained) parts.push('drained');
  else if (v.drainingSince === null) parts.push('serving');
  else if (v.blockedBy !== undefined && v.blockedBy.by === 'affinity') {
    // the affinity window, not the drain timeout, is what it waits for: name that one
    parts.push(`draining since ${v.drainingSince}, pins honoured until ${v.blockedBy.until}${inWords(v.blockedBy.remainingMs)} (affinity window)${v.deadline === null ? '' : `; drain timeout ${v.deadline}`}`);
  } else if (v.deadline !== null) {
    parts.push(`draining since ${v.drainingSince}, deadline ${v.deadline}${inWords(v.remainingMs)}`);
  }
  return parts.join('  ');
}
