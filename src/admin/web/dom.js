// DOM building and number formats shared by the panels. Everything from the API goes in with
// textContent, never as HTML.

const SVG_NS = 'http://www.w3.org/2000/svg';
const PALETTE = ['#3b82f6', '#22c55e', '#f59e0b', '#a855f7', '#ef4444', '#14b8a6'];
const NAMED = { blue: '#3b82f6', green: '#22c55e', canary: '#f59e0b', stable: '#3b82f6' };

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c);
  return el;
}

export function svg(tag, attrs = {}) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

/** A colour per pool: blue is blue and green is green; the others take palette colours not used yet. */
export function colorsFor(pools) {
  const colors = new Map();
  const used = new Set();
  for (const p of pools) {
    if (NAMED[p] !== undefined && !used.has(NAMED[p])) {
      colors.set(p, NAMED[p]);
      used.add(NAMED[p]);
    }
  }
  pools.forEach((p, i) => {
    if (colors.has(p)) return;
    const c = PALETTE.find((x) => !used.has(x)) ?? PALETTE[i % PALETTE.length];
    colors.set(p, c);
    used.add(c);
  });
  return colors;
}
export const pct = (n) => `${Number(n.toFixed(2))}%`;
export const fmtRps = (n) => (n === null || n === undefined ? '–' : Number.isInteger(n) || n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2));
export const fmtRate = (n) => (n === null || n === undefined ? '–' : n === 0 ? '0%' : `${Number((n * 100).toFixed(n < 0.01 ? 2 : 1))}%`);
export const fmtMs = (n) => (n === null || n === undefined ? '–' : n >= 1000 ? `${Number((n / 1000).toFixed(2))} s` : `${n} ms`);

export function ago(iso) {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (!Number.isFinite(s)) return iso;
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m ago`;
  return new Date(iso).toLocaleString();
}

export function duration(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m ${s % 60}s` : `${s}s`;
}

/** Colours set through the CSSOM (the CSP forbids inline style attributes, not this). */
export function paintDots(root) {
  for (const dot of root.querySelectorAll('[data-color]')) dot.style.setProperty('--c', dot.dataset.color);
}
