// Switchyard dashboard: plain DOM, no framework, no network but this origin's /v1 API.
// Everything from the API is put in the page with textContent, never as HTML.

const TOKEN_KEY = 'switchyard.token';
const POLL_MS = 1500;
/** samples kept per chart (~3 min at POLL_MS) */
const KEEP = 120;
/** a chart spans at least this many samples, so a fresh page does not stretch three points edge to edge */
const MIN_SPAN = 24;
const HISTORY_ROWS = 8;
const SVG_NS = 'http://www.w3.org/2000/svg';
const PALETTE = ['#3b82f6', '#22c55e', '#f59e0b', '#a855f7', '#ef4444', '#14b8a6'];
const NAMED = { blue: '#3b82f6', green: '#22c55e', canary: '#f59e0b', stable: '#3b82f6' };

let token = sessionStorage.getItem(TOKEN_KEY) ?? '';
/** whether to poll: a token was given, or Connect was pressed with none (an admin API without tokens, loopback only) */
let connected = token !== '';
let timer = 0;
let polling = false;
const views = new Map();

// ---- small helpers -------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
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

function svg(tag, attrs = {}) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

/** A colour per pool: blue is blue and green is green; the others take palette colours not used yet. */
function colorsFor(pools) {
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
const pct = (n) => `${Number(n.toFixed(2))}%`;
const fmtRps = (n) => (n === null || n === undefined ? '–' : Number.isInteger(n) || n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2));
const fmtRate = (n) => (n === null || n === undefined ? '–' : n === 0 ? '0%' : `${Number((n * 100).toFixed(n < 0.01 ? 2 : 1))}%`);
const fmtMs = (n) => (n === null || n === undefined ? '–' : n >= 1000 ? `${Number((n / 1000).toFixed(2))} s` : `${n} ms`);

function ago(iso) {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (!Number.isFinite(s)) return iso;
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m ago`;
  return new Date(iso).toLocaleString();
}

function duration(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m ${s % 60}s` : `${s}s`;
}

// ---- API -----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

async function api(method, path, body, headers = {}) {
  const init = { method, cache: 'no-store', credentials: 'omit', headers: { accept: 'application/json', ...(token === '' ? {} : { authorization: `Bearer ${token}` }), ...headers } };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, 'UNREACHABLE', `cannot reach the admin API (${err.message})`);
  }
  const text = await res.text();
  let json = null;
  try {
    json = text === '' ? null : JSON.parse(text);
  } catch {
    json = null;
  }
  if (!res.ok) {
    const e = json?.error;
    throw new ApiError(res.status, e?.code ?? `HTTP_${res.status}`, e?.message ?? (text.slice(0, 200) || res.statusText), json);
  }
  return json;
}

const appPath = (app) => `/v1/apps/${encodeURIComponent(app)}`;

// ---- status line, toasts, confirm dialog ---------------------------------------------------

function setStatus(kind, text) {
  const el = document.getElementById('status');
  el.className = `status ${kind}`;
  el.textContent = text;
}

function toast(text, kind = 'ok') {
  const el = h('div', { class: `toast ${kind}`, role: kind === 'bad' ? 'alert' : 'status', text });
  document.getElementById('toasts').append(el);
  setTimeout(() => el.remove(), kind === 'bad' ? 9000 : 4500);
}

/** Resolves to the reason typed (possibly '') when confirmed, null when cancelled; `initialReason` prefills it. */
function confirmAction(title, body, initialReason = '') {
  const dialog = document.getElementById('confirm');
  document.getElementById('confirm-title').textContent = title;
  const target = document.getElementById('confirm-body');
  target.replaceChildren(...body);
  paintDots(target);
  const reason = document.getElementById('confirm-reason');
  reason.value = initialReason;
  return new Promise((resolve) => {
    const ok = document.getElementById('confirm-ok');
    const cancel = document.getElementById('confirm-cancel');
    const done = (value) => {
      ok.removeEventListener('click', onOk);
      cancel.removeEventListener('click', onCancel);
      reason.removeEventListener('keydown', onKey);
      dialog.removeEventListener('close', onClose);
      if (dialog.open) dialog.close();
      resolve(value);
    };
    const onOk = () => done(reason.value.trim());
    const onCancel = () => done(null);
    const onClose = () => done(null);
    const onKey = (e) => {
      if (e.key === 'Enter') onOk();
    };
    ok.addEventListener('click', onOk);
    cancel.addEventListener('click', onCancel);
    reason.addEventListener('keydown', onKey);
    dialog.addEventListener('close', onClose);
    dialog.showModal();
    ok.focus();
  });
}

/** `blue 90% → 0%` lines for a confirm dialog. */
function weightChanges(before, after, colors) {
  return Object.keys(after).map((pool) =>
    h('div', { class: 'change' }, h('span', { class: 'dot', 'data-color': colors.get(pool) ?? '' }), h('b', { text: pool }), ` ${pct(before[pool] ?? 0)} → `, h('b', { text: pct(after[pool]) })),
  );
}

// ---- charts --------------------------------------------------------------------------------

/** A small live line chart: one polyline per pool over the last KEEP samples. */
class Chart {
  constructor(title, format) {
    this.format = format;
    this.legend = h('span', { class: 'legend' });
    this.max = h('span', { class: 'chart-max' });
    this.svg = svg('svg', { viewBox: `0 0 ${KEEP - 1} 60`, preserveAspectRatio: 'none', class: 'spark', role: 'img', 'aria-label': title });
    this.svg.append(svg('line', { x1: 0, x2: KEEP - 1, y1: 30, y2: 30, class: 'grid', 'vector-effect': 'non-scaling-stroke' }));
    this.lines = new Map();
    this.el = h('div', { class: 'chart' }, h('div', { class: 'chart-head' }, h('span', { class: 'chart-title', text: title }), this.max), h('div', { class: 'plot' }, this.svg), this.legend);
  }

  update(series, colors) {
    let max = 0;
    for (const values of series.values()) for (const v of values) if (v !== null && v > max) max = v;
    const top = niceCeil(max);
    this.max.textContent = top > 0 ? `max ${this.format(top)}` : '';
    const legend = [];
    let span = MIN_SPAN;
    for (const values of series.values()) span = Math.max(span, values.length);
    const x = (i) => ((i / (span - 1)) * (KEEP - 1)).toFixed(2);
    for (const [pool, values] of series) {
      let line = this.lines.get(pool);
      if (line === undefined) {
        line = svg('polyline', { fill: 'none', stroke: colors.get(pool), 'stroke-width': 2, 'stroke-linejoin': 'round', 'vector-effect': 'non-scaling-stroke' });
        this.lines.set(pool, line);
        this.svg.append(line);
      }
      const offset = span - values.length;
      const pts = [];
      values.forEach((v, i) => {
        if (v !== null) pts.push(`${x(offset + i)},${top > 0 ? (60 - (v / top) * 58).toFixed(2) : 60}`);
      });
      line.setAttribute('points', pts.join(' '));
      const last = values.at(-1);
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

/** Colours set through the CSSOM (the CSP forbids inline style attributes, not this). */
function paintDots(root) {
  for (const dot of root.querySelectorAll('[data-color]')) dot.style.setProperty('--c', dot.dataset.color);
}

// ---- one app -------------------------------------------------------------------------------

class AppView {
  constructor(state) {
    this.name = state.app;
    this.state = state;
    this.pools = Object.keys(state.pools);
    this.colors = colorsFor(this.pools);
    this.samples = new Map(this.pools.map((p) => [p, []]));
    this.historyRevision = -1;
    this.drain = new Map();
    this.sliderDirty = false;
    this.build();
  }

  build() {
    this.title = h('h2', { text: this.name });
    this.rev = h('span', { class: 'badge rev' });
    this.active = h('span', { class: 'badge active' });
    this.who = h('div', { class: 'who' });
    this.instances = h('span', { class: 'instances' });
    this.bar = h('div', { class: 'bar', role: 'img' });
    this.rollout = new RolloutPanel(this);
    this.rows = new Map();
    const tbody = h('tbody');
    for (const pool of this.pools) {
      const row = {
        weight: h('td', { class: 'num' }),
        version: h('td', { class: 'mono' }),
        state: h('td'),
        inflight: h('td', { class: 'num' }),
        upgraded: h('td', { class: 'num' }),
        rps: h('td', { class: 'num' }),
        errors: h('td', { class: 'num' }),
        p99: h('td', { class: 'num' }),
        switchBtn: h('button', { type: 'button', class: 'small', 'data-action': 'switch', 'data-pool': pool, onclick: () => this.switchTo(pool), text: `Switch to ${pool}` }),
      };
      this.rows.set(pool, row);
      tbody.append(
        h(
          'tr',
          { 'data-pool': pool },
          h('th', { scope: 'row' }, h('span', { class: 'dot', 'data-color': this.colors.get(pool) }), pool),
          row.version,
          row.weight,
          row.state,
          row.inflight,
          row.upgraded,
          row.rps,
          row.errors,
          row.p99,
          h('td', { class: 'actions' }, row.switchBtn),
        ),
      );
    }
    const head = h('tr', {}, ...['pool', 'version', 'weight', 'state', 'in flight', 'upgraded', 'req/s', 'errors', 'p99', ''].map((t, i) => h('th', { scope: 'col', class: i >= 2 && i !== 3 && i < 9 ? 'num' : '', text: t })));
    this.charts = { rps: new Chart('Requests / s', fmtRps), errors: new Chart('Error rate', fmtRate), p99: new Chart('p99 latency', fmtMs) };

    this.poolSelect = h('select', { 'aria-label': 'pool', onchange: () => this.syncSlider(true) }, ...this.pools.map((p) => h('option', { value: p, text: p })));
    this.slider = h('input', { type: 'range', min: 0, max: 100, step: 1, 'aria-label': 'weight in percent', oninput: () => this.fromSlider() });
    this.number = h('input', { type: 'number', min: 0, max: 100, step: 0.01, class: 'pct-input', 'aria-label': 'weight in percent (two decimals)', oninput: () => this.fromNumber() });
    this.preview = h('span', { class: 'preview' });
    const controls = h(
      'div',
      { class: 'controls' },
      h('div', { class: 'weights-control' }, h('span', { text: 'Send' }), this.number, h('span', { text: '% to' }), this.poolSelect, this.slider, this.preview, h('button', { type: 'button', 'data-action': 'weights', onclick: () => this.setWeights(), text: 'Set weights…' })),
      h('button', { type: 'button', class: 'danger-quiet', 'data-action': 'rollback', onclick: () => this.rollback(), text: 'Roll back…' }),
    );

    this.historyBody = h('tbody');
    this.el = h(
      'section',
      { class: 'app', 'data-app': this.name, 'aria-label': `app ${this.name}` },
      h('div', { class: 'app-head' }, h('div', { class: 'app-title' }, this.title, this.rev, this.active), this.instances),
      this.who,
      this.bar,
      this.rollout.el,
      h('div', { class: 'table-wrap' }, h('table', { class: 'pools' }, h('thead', {}, head), tbody)),
      h('div', { class: 'charts' }, this.charts.rps.el, this.charts.errors.el, this.charts.p99.el),
      controls,
      h('details', { class: 'history', open: true }, h('summary', { text: 'History' }), h('table', {}, h('thead', {}, h('tr', {}, ...['rev', 'when', 'action', 'by', 'weights', 'reason'].map((t) => h('th', { scope: 'col', text: t })))), this.historyBody)),
    );
    paintDots(this.el);
    // the canary candidate: the smallest share in a split, else the first pool not at 100 %
    const w = (p) => this.state.weights[p] ?? 0;
    const split = this.pools.filter((p) => w(p) > 0 && w(p) < 100).sort((a, b) => w(a) - w(b));
    const candidate = split[0] ?? this.pools.find((p) => w(p) < 100) ?? this.pools[0];
    this.poolSelect.value = candidate;
  }

  update(state) {
    this.state = state;
    this.rev.textContent = `rev ${state.revision}`;
    this.active.textContent = state.active === null ? 'split' : `active: ${state.active}`;
    this.active.classList.toggle('split', state.active === null);
    this.active.dataset.active = state.active ?? '';
    const reason = state.reason ? ` — “${state.reason}”` : '';
    this.who.textContent = `Changed by ${state.updatedBy} ${ago(state.updatedAt)}${reason}`;
    this.who.title = state.updatedAt;
    this.instances.textContent = `${state.instances.applied}/${state.instances.total} instance${state.instances.total === 1 ? '' : 's'} on rev ${state.revision}`;
    this.instances.classList.toggle('lagging', state.instances.applied < state.instances.total);

    const segments = [];
    this.pools.forEach((pool) => {
      const w = state.weights[pool] ?? 0;
      if (w <= 0) return;
      const seg = h('div', { class: 'seg', 'data-color': this.colors.get(pool), title: `${pool} ${pct(w)}` }, h('span', { text: w >= 8 ? `${pool} ${pct(w)}` : '' }));
      seg.style.width = `${w}%`;
      segments.push(seg);
    });
    this.bar.replaceChildren(...segments);
    this.bar.setAttribute('aria-label', this.pools.map((p) => `${p} ${pct(state.weights[p] ?? 0)}`).join(', '));
    paintDots(this.bar);

    for (const pool of this.pools) {
      const p = state.pools[pool];
      const row = this.rows.get(pool);
      row.version.textContent = p.version;
      row.weight.textContent = pct(p.weight);
      row.inflight.textContent = String(p.inflight);
      row.upgraded.textContent = String(p.upgraded);
      row.switchBtn.disabled = p.weight === 100;
      row.state.replaceChildren(this.stateBadge(pool, p));
    }
    if (!this.sliderDirty) this.syncSlider(false);
    else this.renderPreview();
  }

  stateBadge(pool, p) {
    if (p.weight > 0) return h('span', { class: 'state serving', text: 'serving' });
    if (p.drained) return h('span', { class: 'state drained', 'data-state': 'drained', text: '✓ drained' });
    const d = this.drain.get(pool);
    const left = d && d.remainingMs !== null ? ` · closes in ${duration(d.remainingMs)}` : '';
    // pinned: requests an affinity pin sent here in the last 60 s; the reason says until when pins hold it
    const pinned = ` · ${p.pinned ?? d?.pinned ?? 0} pinned`;
    return h('span', { class: 'state draining', 'data-state': 'draining', title: d?.reason ?? '', text: `draining · ${p.inflight + p.upgraded} open${pinned}${left}` });
  }

  updateStats(stats) {
    const win = stats.windows['10s'];
    for (const pool of this.pools) {
      const s = win[pool];
      const row = this.rows.get(pool);
      row.rps.textContent = fmtRps(s?.rps);
      row.errors.textContent = fmtRate(s?.errorRate);
      row.errors.classList.toggle('bad', (s?.errorRate ?? 0) >= 0.01);
      row.p99.textContent = fmtMs(s?.p99 ?? null);
      const list = this.samples.get(pool);
      list.push(s ?? null);
      if (list.length > KEEP) list.shift();
    }
    const series = (key) => new Map(this.pools.map((p) => [p, this.samples.get(p).map((s) => (s === null ? null : key === 'p99' ? s.p99 : key === 'errors' ? (s.requests > 0 ? s.errorRate : null) : s.rps))]));
    this.charts.rps.update(series('rps'), this.colors);
    this.charts.errors.update(series('errors'), this.colors);
    this.charts.p99.update(series('p99'), this.colors);
  }

  updateHistory(entries = this.historyEntries ?? []) {
    this.historyEntries = entries;
    this.historyBody.replaceChildren(
      ...entries.map((e) => {
        const mini = h('span', { class: 'mini-bar' });
        Object.entries(e.weights).forEach(([pool, w]) => {
          if (w <= 0) return;
          // a pool the config no longer has is drawn grey
          const seg = h('span', { 'data-color': this.colors.get(pool) ?? '#94a3b8' });
          seg.style.width = `${w}%`;
          mini.append(seg);
        });
        const text = Object.entries(e.weights)
          .filter(([, w]) => w > 0)
          .map(([p, w]) => `${p} ${pct(w)}`)
          .join(' · ');
        return h('tr', {}, h('td', { class: 'num', text: String(e.revision) }), h('td', { title: e.at, text: ago(e.at) }), h('td', { text: e.action }), h('td', { text: e.by }), h('td', {}, mini, h('span', { class: 'mono', text })), h('td', { class: 'reason', text: e.reason ?? '' }));
      }),
    );
    paintDots(this.historyBody);
  }

  // weights control: the slider moves whole percents, the number box takes two decimals
  syncSlider(fromUser) {
    const pool = this.poolSelect.value;
    const w = this.state.weights[pool] ?? 0;
    this.slider.value = String(Math.round(w));
    this.number.value = String(w);
    if (fromUser) this.sliderDirty = false;
    this.renderPreview();
  }

  fromSlider() {
    this.number.value = this.slider.value;
    this.sliderDirty = true;
    this.renderPreview();
  }

  fromNumber() {
    const v = Number(this.number.value);
    if (Number.isFinite(v)) this.slider.value = String(Math.round(v));
    this.sliderDirty = true;
    this.renderPreview();
  }

  target() {
    const v = Math.round(Number(this.number.value) * 100) / 100;
    if (!Number.isFinite(v) || v < 0 || v > 100) return null;
    return proportional(this.state.weights, this.pools, this.poolSelect.value, v);
  }

  renderPreview() {
    const t = this.target();
    this.preview.textContent = t === null ? 'between 0 and 100' : this.pools.map((p) => `${p} ${pct(t[p])}`).join(' · ');
  }

  async switchTo(pool) {
    const after = Object.fromEntries(this.pools.map((p) => [p, p === pool ? 100 : 0]));
    const others = this.pools.filter((p) => p !== pool && (this.state.weights[p] ?? 0) > 0);
    const body = [h('p', { text: `All new requests to ${this.name} go to ${pool} (${this.state.pools[pool].version}).${others.length > 0 ? ` ${others.join(', ')} drain${others.length === 1 ? 's' : ''}: in-flight requests finish where they started.` : ''}` }), ...weightChanges(this.state.weights, after, this.colors)];
    const reason = await confirmAction(`Switch ${this.name} to ${pool}?`, body);
    if (reason === null) return;
    await this.write('POST', `${appPath(this.name)}/switch`, { to: pool, ...(reason ? { reason } : {}) }, `switched ${this.name} to ${pool}`);
  }

  async setWeights() {
    const after = this.target();
    if (after === null) {
      toast('the weight must be a percentage from 0 to 100', 'bad');
      return;
    }
    const reason = await confirmAction(`Set the weights of ${this.name}?`, [h('p', { text: 'New requests are split like this; sticky users only move toward the pool that gains weight.' }), ...weightChanges(this.state.weights, after, this.colors)]);
    if (reason === null) return;
    this.sliderDirty = false;
    await this.write('PUT', `${appPath(this.name)}/weights`, { weights: after, ...(reason ? { reason } : {}) }, `set the weights of ${this.name}`);
  }

  async rollback() {
    const reason = await confirmAction(`Roll back ${this.name}?`, [h('p', { text: `Writes the weights of revision ${this.state.revision - 1} again, as revision ${this.state.revision + 1}.` })]);
    if (reason === null) return;
    await this.write('POST', `${appPath(this.name)}/rollback`, reason ? { reason } : {}, `rolled ${this.name} back`);
  }

  async write(method, path, body, done) {
    try {
      const state = await api(method, path, body, { 'if-match': `"${this.state.revision}"` });
      this.update(state);
      toast(`${done}: now revision ${state.revision}`, 'ok');
      void poll();
    } catch (err) {
      if (err.status === 412) {
        const current = err.body?.error?.details?.current;
        if (current) this.update(current);
        toast(`${this.name} was changed meanwhile (now revision ${current?.revision ?? '?'}); look again and retry`, 'bad');
      } else if (err.status === 401) {
        tokenRejected();
      } else {
        toast(`${err.code}: ${err.message}`, 'bad');
      }
    }
  }
}

/** `pool` gets `value` %; the other pools share the rest in their current proportions (equally if all are 0). */
function proportional(weights, pools, pool, value) {
  const others = pools.filter((p) => p !== pool);
  const restBp = 10000 - Math.round(value * 100);
  const sum = others.reduce((n, p) => n + (weights[p] ?? 0), 0);
  const out = { [pool]: Math.round(value * 100) / 100 };
  let given = 0;
  others.forEach((p, i) => {
    const bp = i === others.length - 1 ? restBp - given : Math.floor(sum > 0 ? (restBp * (weights[p] ?? 0)) / sum : restBp / others.length);
    given += bp;
    out[p] = bp / 100;
  });
  return Object.fromEntries(pools.map((p) => [p, out[p]]));
}

// ---- rollout panel -------------------------------------------------------------------------

/** The plans the start form offers: the API's presets, or steps typed in. */
const PLANS = [
  ['canary10-5m', 'canary10-5m · 10% for 5 min, then 100%'],
  ['linear10-every-1m', 'linear10-every-1m · +10% every minute'],
  ['all-at-once', 'all-at-once · 100% now'],
  ['custom', 'custom steps…'],
];
/** what the API's field paths are called in the form */
const START_LABELS = { to: 'pool', plan: 'plan', steps: 'steps', maxErrorRate: 'max errors', maxP99Ms: 'max p99', minRequests: 'min requests', onFailure: 'on failure', reason: 'reason' };

/** The steps a preset stands for (as the API expands them), for the confirm dialog; null if unknown. */
function presetSteps(name) {
  if (name === 'all-at-once') return [{ weight: 100, pause: null }];
  const canary = /^canary(\d{1,2})-(\w+)$/.exec(name);
  if (canary !== null) return [{ weight: Number(canary[1]), pause: canary[2] }, { weight: 100, pause: null }];
  const linear = /^linear(\d{1,2})-every-(\w+)$/.exec(name);
  if (linear === null || Number(linear[1]) < 1) return null;
  const steps = [];
  for (let w = Number(linear[1]); w < 100; w += Number(linear[1])) steps.push({ weight: w, pause: linear[2] });
  steps.push({ weight: 100, pause: null });
  return steps;
}

/**
 * `10:5m,50:5m,100` into the API's `[{ weight, pause }]` (a bare number pause is milliseconds).
 * Only the shape is checked here; ascending weights, decimals and durations are the API's to judge.
 */
function parseStepsText(text) {
  const parts = text.split(',').map((s) => s.trim());
  if (parts.every((s) => s === '')) return { error: 'give the steps as weight:pause, e.g. 10:5m,50:5m,100' };
  const steps = [];
  for (const [i, part] of parts.entries()) {
    const m = /^(\d+(?:\.\d+)?)\s*%?\s*(?::\s*(\S+))?$/.exec(part);
    if (m === null) return { error: `step ${i + 1} “${part}” is not weight:pause (e.g. 10:5m, or 100 for the last)` };
    const step = { weight: Number(m[1]) };
    if (m[2] !== undefined) step.pause = /^\d+$/.test(m[2]) ? Number(m[2]) : m[2];
    steps.push(step);
  }
  return { steps };
}

/** An API field path (`steps[1].pause`, `analysis.minRequests`…) as the form field it belongs to and a line to show. */
function startIssue(path, message) {
  const step = /^steps\[(\d+)\]\.(weight|pause)$/.exec(path);
  if (step !== null) return { field: 'steps', text: `step ${Number(step[1]) + 1} ${step[2]}: ${message}` };
  if (path === 'steps' || path.startsWith('steps[')) return { field: 'steps', text: `steps: ${message}` };
  if (path === 'preset') return { field: 'plan', text: `plan: ${message}` };
  const key = path.startsWith('analysis.') ? path.slice('analysis.'.length) : path;
  if (Object.hasOwn(START_LABELS, key)) return { field: key, text: `${START_LABELS[key]}: ${message}` };
  return { field: null, text: `${path}: ${message}` };
}

const stepText = (s) => (s.pause === null || s.pause === undefined ? pct(s.weight) : `${pct(s.weight)} · ${typeof s.pause === 'number' ? `${s.pause}ms` : s.pause}`);

/** The app's running (or last) progressive rollout: step, countdown, live analysis, its controls, and a form to start one. */
class RolloutPanel {
  constructor(view) {
    this.view = view;
    this.title = h('span', { class: 'rollout-title' });
    this.state = h('span', { class: 'badge rollout-state' });
    this.next = h('span', { class: 'rollout-next' });
    this.steps = h('ol', { class: 'rollout-steps' });
    this.analysis = h('div', { class: 'rollout-analysis' });
    this.reason = h('div', { class: 'rollout-reason' });
    this.buttons = Object.fromEntries(
      ['pause', 'resume', 'promote', 'abort'].map((verb) => [verb, h('button', { type: 'button', class: verb === 'abort' ? 'small danger-quiet' : 'small', 'data-action': `rollout-${verb}`, onclick: () => this.command(verb), text: `${verb[0].toUpperCase()}${verb.slice(1)}…` })]),
    );
    this.card = h(
      'div',
      { class: 'rollout', 'data-rollout': '', hidden: true, 'aria-label': 'rollout' },
      h('div', { class: 'rollout-head' }, h('div', {}, this.title, this.state, this.next), h('div', { class: 'rollout-actions' }, ...Object.values(this.buttons))),
      this.steps,
      this.analysis,
      this.reason,
    );
    // the form's fields are built when it is opened, so an app card holds no extra inputs until then
    this.opener = h('button', { type: 'button', class: 'small', 'data-action': 'rollout-start', onclick: () => this.openForm(), text: 'Start rollout…' });
    this.start = h('div', { class: 'rollout-start', hidden: true }, this.opener);
    this.form = null;
    this.el = h('div', { class: 'rollout-panel' }, this.card, this.start);
    this.current = null;
  }

  update(r) {
    this.current = r;
    this.card.hidden = r === null;
    const active = r !== null && (r.state === 'running' || r.state === 'paused');
    this.start.hidden = active;
    if (active && this.form !== null) this.closeForm();
    if (r === null) return;
    this.card.dataset.rollout = r.state;
    this.title.textContent = `Rollout ${r.id} → ${r.to} · step ${r.step}/${r.steps.length} (${pct(r.weight)})`;
    this.state.textContent = r.state;
    this.state.dataset.state = r.state;
    this.next.textContent = r.nextInMs !== null ? ` · ${r.step < r.steps.length ? 'next step' : 'done'} in ${duration(r.nextInMs)}` : r.remainingMs !== null ? ` · ${duration(r.remainingMs)} of the step left` : r.endedAt ? ` · ended ${ago(r.endedAt)}` : '';
    this.steps.replaceChildren(...r.steps.map((s, i) => h('li', { class: i + 1 < r.step ? 'done' : i + 1 === r.step ? 'now' : '', text: s.pause ? `${pct(s.weight)} · ${s.pause}` : pct(s.weight) })));
    const a = r.lastAnalysis;
    const limits = r.analysis === null ? 'analysis off' : `errors ≤ ${fmtRate(r.analysis.maxErrorRate)}${r.analysis.maxP99Ms ? `, p99 ≤ ${fmtMs(r.analysis.maxP99Ms)}` : ''}, after ${r.analysis.minRequests} requests, on failure ${r.onFailure}`;
    const figures = a === null ? '' : `${a.window}: ${r.to} ${a.to.requests} req, ${fmtRate(a.to.errorRate)} errors, p99 ${fmtMs(a.to.p99)} · others ${a.others.requests} req, ${fmtRate(a.others.errorRate)} errors, p99 ${fmtMs(a.others.p99)} → ${a.verdict}`;
    this.analysis.textContent = figures === '' ? limits : `${figures} (${limits})`;
    this.analysis.classList.toggle('bad', a?.verdict === 'fail');
    this.reason.textContent = r.reason ?? '';
    this.buttons.pause.hidden = r.state !== 'running';
    this.buttons.resume.hidden = r.state !== 'paused';
    this.buttons.promote.hidden = !active;
    this.buttons.abort.hidden = !active;
  }

  async command(verb) {
    const r = this.current;
    if (r === null) return;
    const what = {
      pause: `Holds ${r.to} at ${pct(r.weight)}: no further steps until it is resumed.`,
      resume: 'Carries on with the rest of the current step, then the next ones.',
      promote: `Sends 100 % of ${this.view.name} to ${r.to} now, skipping the remaining steps.`,
      abort: `Restores the starting weights (${Object.entries(r.from).map(([p, w]) => `${p} ${pct(w)}`).join(', ')}).`,
    }[verb];
    const reason = await confirmAction(`${verb[0].toUpperCase()}${verb.slice(1)} rollout ${r.id}?`, [h('p', { text: what })]);
    if (reason === null) return;
    try {
      this.update(await api('POST', `${appPath(this.view.name)}/rollouts/current/${verb}`, reason ? { reason } : {}));
      toast(`rollout ${r.id} ${{ pause: 'paused', resume: 'resumed', promote: 'promoted', abort: 'aborted' }[verb]}`, 'ok');
      void poll();
    } catch (err) {
      if (err.status === 401) tokenRejected();
      else toast(`${err.code}: ${err.message}`, 'bad');
    }
  }

  // ---- the start form ----

  openForm() {
    if (this.form !== null) return;
    const view = this.view;
    const w = (p) => view.state.weights[p] ?? 0;
    // the likely target: the pool with the least weight that is not at 100 % yet
    const target = [...view.pools].filter((p) => w(p) < 100).sort((a, b) => w(a) - w(b))[0] ?? view.pools[0];
    const f = {
      to: h('select', { name: 'to' }, ...view.pools.map((p) => h('option', { value: p, text: `${p} (${view.state.pools[p].version})` }))),
      plan: h('select', { name: 'plan', onchange: () => this.syncPlan() }, ...PLANS.map(([value, text]) => h('option', { value, text }))),
      steps: h('input', { type: 'text', name: 'steps', class: 'mono steps-input', placeholder: '10:5m,50:5m,100', spellcheck: 'false', autocomplete: 'off', maxlength: 500 }),
      maxErrorRate: h('input', { type: 'number', name: 'maxErrorRate', class: 'short-input', min: 0, max: 100, step: 'any', value: '1' }),
      maxP99Ms: h('input', { type: 'number', name: 'maxP99Ms', class: 'short-input', min: 1, step: 'any', placeholder: 'off' }),
      minRequests: h('input', { type: 'number', name: 'minRequests', class: 'short-input', min: 1, step: 1, value: '100' }),
      onFailure: h('select', { name: 'onFailure' }, h('option', { value: 'rollback', text: 'roll back' }), h('option', { value: 'pause', text: 'pause' })),
      reason: h('input', { type: 'text', name: 'reason', class: 'reason-input', maxlength: 500, autocomplete: 'off', placeholder: 'optional, goes into the audit history' }),
    };
    f.to.value = target;
    for (const el of Object.values(f)) el.addEventListener('input', () => el.removeAttribute('aria-invalid'));
    const field = (label, control, hint) => h('label', { class: 'field' }, h('span', { class: 'field-label' }, label, hint ? h('span', { class: 'hint', text: ` ${hint}` }) : null), control);
    this.fields = f;
    this.stepsField = field('Steps', f.steps, '(weight %:pause, …)');
    this.error = h('div', { class: 'form-error', role: 'alert', hidden: true });
    this.submit = h('button', { type: 'submit', class: 'primary small', text: 'Start rollout…' });
    this.form = h(
      'form',
      { class: 'rollout-form', autocomplete: 'off', novalidate: true, 'aria-label': `start a rollout of ${view.name}`, onsubmit: (e) => {
        e.preventDefault();
        void this.startRollout();
      } },
      h('div', { class: 'form-title', text: `Start a rollout of ${view.name}` }),
      h('div', { class: 'form-row' }, field('Pool', f.to), field('Plan', f.plan), this.stepsField),
      h(
        'fieldset',
        { class: 'form-row' },
        h('legend', { text: 'Analysis of the new pool, each step' }),
        field('Max errors', f.maxErrorRate, '(%)'),
        field('Max p99', f.maxP99Ms, '(ms, optional)'),
        field('Min requests', f.minRequests, '(before judging)'),
        field('On failure', f.onFailure),
      ),
      h('div', { class: 'form-row' }, h('label', { class: 'field wide' }, h('span', { class: 'field-label', text: 'Reason' }), f.reason)),
      this.error,
      h('div', { class: 'form-actions' }, h('button', { type: 'button', class: 'quiet small', onclick: () => this.closeForm(true), text: 'Cancel' }), this.submit),
    );
    this.syncPlan();
    this.opener.hidden = true;
    this.start.append(this.form);
    f.to.focus();
  }

  closeForm(focusOpener = false) {
    this.form?.remove();
    this.form = null;
    this.opener.hidden = false;
    if (focusOpener) this.opener.focus();
  }

  syncPlan() {
    this.stepsField.hidden = this.fields.plan.value !== 'custom';
  }

  /** The API body and the steps it stands for, or `{ issues }` when a field is not usable. */
  collect() {
    const f = this.fields;
    const issues = [];
    const body = { to: f.to.value };
    let steps;
    if (f.plan.value === 'custom') {
      const parsed = parseStepsText(f.steps.value);
      if (parsed.error) issues.push({ field: 'steps', text: `steps: ${parsed.error}` });
      else {
        body.steps = parsed.steps;
        steps = parsed.steps.map((s) => ({ weight: s.weight, pause: s.pause ?? null }));
        // the API appends a final 100 % step when the last is below it
        if (steps.at(-1).weight < 100) steps.push({ weight: 100, pause: null });
      }
    } else {
      body.preset = f.plan.value;
      steps = presetSteps(f.plan.value) ?? [];
    }
    const num = (el) => (el.value.trim() === '' ? null : Number(el.value));
    const errPct = num(f.maxErrorRate);
    if (errPct === null || !Number.isFinite(errPct) || errPct < 0 || errPct > 100) issues.push({ field: 'maxErrorRate', text: 'max errors: a percentage from 0 to 100' });
    const p99 = num(f.maxP99Ms);
    if (p99 !== null && !(Number.isFinite(p99) && p99 > 0)) issues.push({ field: 'maxP99Ms', text: 'max p99: milliseconds above 0, or empty to leave latency unjudged' });
    const minRequests = num(f.minRequests);
    if (minRequests === null || !Number.isInteger(minRequests) || minRequests < 1) issues.push({ field: 'minRequests', text: 'min requests: a whole number from 1' });
    if (issues.length > 0) return { issues };
    body.analysis = { maxErrorRate: Number((errPct / 100).toFixed(6)), minRequests, ...(p99 === null ? {} : { maxP99Ms: p99 }) };
    body.onFailure = f.onFailure.value;
    return { body, steps };
  }

  showIssues(title, issues = []) {
    this.clearIssues();
    this.error.replaceChildren(h('strong', { text: title }), ...(issues.length > 0 ? [h('ul', {}, ...issues.map((i) => h('li', { text: i.text })))] : []));
    this.error.hidden = false;
    for (const i of issues) if (i.field !== null && this.fields[i.field]) this.fields[i.field].setAttribute('aria-invalid', 'true');
    const first = issues.find((i) => i.field !== null && this.fields[i.field]);
    if (first) this.fields[first.field].focus();
  }

  clearIssues() {
    this.error.hidden = true;
    this.error.replaceChildren();
    for (const el of Object.values(this.fields)) el.removeAttribute('aria-invalid');
  }

  async startRollout() {
    if (this.form === null) return;
    const view = this.view;
    const form = this.form;
    const plan = this.collect();
    if (plan.issues) {
      this.showIssues('Check these fields:', plan.issues);
      return;
    }
    this.clearIssues();
    const { body, steps } = plan;
    const a = body.analysis;
    const version = view.state.pools[body.to]?.version;
    const limits = `errors ≤ ${fmtRate(a.maxErrorRate)}${a.maxP99Ms ? `, p99 ≤ ${fmtMs(a.maxP99Ms)}` : ''}, judged once ${a.minRequests} requests reached ${body.to}`;
    const failure = body.onFailure === 'rollback' ? `on failure the weights go back to ${view.pools.map((p) => `${p} ${pct(view.state.weights[p] ?? 0)}`).join(', ')}` : 'on failure it pauses where it is';
    const dialogBody = [
      h('p', { text: `${body.to}${version ? ` (${version})` : ''} takes these shares of ${view.name}'s new requests, step by step${body.preset ? ` (preset ${body.preset})` : ''}:` }),
      h('ol', { class: 'rollout-steps confirm-steps' }, ...steps.map((s) => h('li', { text: stepText(s) }))),
      h('p', { text: `Each step: ${limits}; ${failure}.` }),
    ];
    const reason = await confirmAction(`Start a rollout of ${view.name} to ${body.to}?`, dialogBody, this.fields.reason.value.trim());
    if (reason === null || this.form !== form) return;
    if (reason) body.reason = reason;
    this.submit.disabled = true;
    try {
      const r = await api('POST', `${appPath(view.name)}/rollouts`, body, { 'if-match': `"${view.state.revision}"` });
      this.closeForm();
      this.update(r);
      toast(`rollout ${r.id} of ${view.name} to ${r.to} started`, 'ok');
      void poll();
    } catch (err) {
      if (err.status === 401) {
        tokenRejected();
        return;
      }
      if (this.form !== form) return;
      const details = err.body?.error?.details;
      if (err.status === 400 && Array.isArray(details) && details.length > 0) {
        this.showIssues('The API refused these fields:', details.map((d) => startIssue(String(d.path ?? ''), String(d.message ?? ''))));
      } else if (err.status === 412) {
        const now = details?.currentRevision;
        this.showIssues(`${view.name} was changed meanwhile${now === undefined ? '' : ` (now revision ${now})`}; look again and retry.`);
      } else {
        this.showIssues(err.status === 409 ? `Not started: ${err.message}` : `${err.code}: ${err.message}`);
      }
    } finally {
      this.submit.disabled = false;
    }
  }
}

// ---- polling -------------------------------------------------------------------------------

async function refreshApp(view) {
  const tasks = [api('GET', `${appPath(view.name)}/stats`).then((s) => view.updateStats(s))];
  if (view.historyRevision !== view.state.revision) {
    const rev = view.state.revision;
    tasks.push(
      api('GET', `${appPath(view.name)}/history?limit=${HISTORY_ROWS}`).then((r) => {
        view.updateHistory(r.entries);
        view.historyRevision = rev;
      }),
    );
  }
  for (const pool of view.pools) {
    const p = view.state.pools[pool];
    if (p.weight === 0 && !p.drained) tasks.push(api('GET', `${appPath(view.name)}/pools/${encodeURIComponent(pool)}/drain`).then((d) => view.drain.set(pool, d)));
    else view.drain.delete(pool);
  }
  tasks.push(api('GET', `${appPath(view.name)}/rollouts`).then((r) => view.rollout.update(r.current)));
  await Promise.all(tasks);
  view.update(view.state);
  // keeps the "2m ago" of older entries current
  if (view.historyRevision === view.state.revision) view.updateHistory();
}

async function poll() {
  clearTimeout(timer);
  if (!connected || polling) return;
  polling = true;
  try {
    const { apps } = await api('GET', '/v1/apps');
    const main = document.getElementById('apps');
    document.getElementById('empty')?.remove();
    for (const state of apps) {
      let view = views.get(state.app);
      if (view === undefined) {
        view = new AppView(state);
        views.set(state.app, view);
        main.append(view.el);
      }
      view.update(state);
    }
    await Promise.all(apps.map((a) => refreshApp(views.get(a.app))));
    setStatus('ok', `live · ${new Date().toLocaleTimeString()}`);
  } catch (err) {
    if (err.status === 401) {
      tokenRejected();
      return;
    }
    setStatus('bad', err.status === 429 ? 'too many failed logins; wait a minute' : err.message);
  } finally {
    polling = false;
  }
  if (connected) timer = setTimeout(poll, POLL_MS);
}

function tokenRejected() {
  clearTimeout(timer);
  token = '';
  connected = false;
  sessionStorage.removeItem(TOKEN_KEY);
  setStatus('bad', 'token rejected');
  showTokenForm(true);
}

function showTokenForm(show) {
  document.getElementById('token-form').hidden = !show;
  document.getElementById('forget').hidden = show;
  if (show) document.getElementById('token').focus();
}

document.getElementById('token-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = document.getElementById('token');
  token = input.value.trim();
  input.value = '';
  connected = true;
  if (token !== '') sessionStorage.setItem(TOKEN_KEY, token);
  showTokenForm(false);
  setStatus('', 'connecting…');
  void poll();
});

document.getElementById('forget').addEventListener('click', () => {
  clearTimeout(timer);
  token = '';
  connected = false;
  sessionStorage.removeItem(TOKEN_KEY);
  for (const v of views.values()) v.el.remove();
  views.clear();
  setStatus('', 'not connected');
  showTokenForm(true);
});

if (connected) {
  showTokenForm(false);
  void poll();
} else {
  showTokenForm(true);
}
