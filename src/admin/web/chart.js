// The live charts: one line per pool, drawn against time.
import { h, paintDots, svg } from './dom.js';

/** how far back a chart goes: it starts with the server's last minute and grows to this */
export const KEEP_MS = 180_000;
/** a chart spans at least this long, so a fresh page does not stretch a few points edge to edge */
const MIN_SPAN_MS = 60_000;
/** samples further apart than this are not joined by a line (the tab slept, the API was away) */
const GAP_MS = 5000;
/** the chart's drawing width in viewBox units */
const PLOT_W = 119;

/** A small live line chart: one line per pool over the last KEEP_MS (at least MIN_SPAN_MS wide). */
export class Chart {
  constructor(title, format) {
    this.format = format;
    this.legend = h('span', { class: 'legend' });
    this.max = h('span', { class: 'chart-max' });
    this.svg = svg('svg', { viewBox: `0 0 ${PLOT_W} 60`, preserveAspectRatio: 'none', class: 'spark', role: 'img', 'aria-label': title });
    this.svg.append(svg('line', { x1: 0, x2: PLOT_W, y1: 30, y2: 30, class: 'grid', 'vector-effect': 'non-scaling-stroke' }));
    this.lines = new Map();
    this.el = h('div', { class: 'chart' }, h('div', { class: 'chart-head' }, h('span', { class: 'chart-title', text: title }), this.max), h('div', { class: 'plot' }, this.svg), this.legend);
  }

  /** `series`: pool → `[{ t, v }]` oldest first (v null: no figure then); `end`: the newest time. */
  update(series, colors, end) {
    let max = 0;
    let oldest = end;
    for (const points of series.values()) {
      for (const p of points) if (p.v !== null && p.v > max) max = p.v;
      if (points.length > 0) oldest = Math.min(oldest, points[0].t);
    }
    const top = niceCeil(max);
    this.max.textContent = top > 0 ? `max ${this.format(top)}` : '';
    const legend = [];
    const span = Math.min(KEEP_MS, Math.max(MIN_SPAN_MS, end - oldest));
    const x = (t) => (((t - (end - span)) / span) * PLOT_W).toFixed(2);
    for (const [pool, points] of series) {
      let line = this.lines.get(pool);
      if (line === undefined) {
        line = svg('path', { fill: 'none', stroke: colors.get(pool), 'stroke-width': 2, 'stroke-linejoin': 'round', 'vector-effect': 'non-scaling-stroke' });
        this.lines.set(pool, line);
        this.svg.append(line);
      }
      const d = [];
      let prev = null;
      for (const p of points) {
        if (p.v === null) {
          prev = null;
          continue;
        }
        d.push(`${prev === null || p.t - prev > GAP_MS ? 'M' : 'L'}${x(p.t)},${top > 0 ? (60 - (p.v / top) * 58).toFixed(2) : 60}`);
        prev = p.t;
      }
      line.setAttribute('d', d.join(' '));
      line.dataset.points = String(d.length);
      const last = points.at(-1)?.v;
      legend.push(h('span', { class: 'legend-item' }, h('span', { class: 'dot', 'data-color': colors.get(pool) }), `${pool} `, h('b', { text: this.format(last ?? null) })));
    }
    this.legend.replaceChildren(...legend);
    paintDots(this.legend);
  }
}

function niceCeil(v) {
  if (!(v > 0)) return 0;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}
