// One app's card: weights bar, pools table with the drain display, charts, weights control, history.
import { api, appPath, session } from './api.js';
import { Chart, KEEP_MS } from './chart.js';
import { ago, colorsFor, duration, fmtMs, fmtRate, fmtRps, h, paintDots, pct } from './dom.js';
import { RolloutPanel } from './rollout-panel.js';
import { RoutingPanel } from './routing-panel.js';
import { TargetsPanel } from './targets-panel.js';
import { confirmAction, toast, weightChanges } from './ui.js';

export class AppView {
  constructor(state) {
    this.name = state.app;
    this.state = state;
    this.pools = Object.keys(state.pools);
    this.colors = colorsFor(this.pools);
    /** `[{ t, s }]` per pool: the 10 s figures at time t, oldest first; the first poll fills the last minute */
    this.samples = new Map(this.pools.map((p) => [p, []]));
    this.historyLoaded = false;
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
    // a segment too narrow for its label (a canary under 8 %) is named here instead
    this.legend = h('div', { class: 'bar-legend' });
    this.rollout = new RolloutPanel(this);
    this.targets = new TargetsPanel(this);
    this.routing = new RoutingPanel(this);
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

    // picking a pool keeps a percentage already typed: "Send 20 % to" then "green" means green 20 %
    this.poolSelect = h('select', { 'aria-label': 'pool', onchange: () => (this.sliderDirty ? this.renderPreview() : this.syncSlider()) }, ...this.pools.map((p) => h('option', { value: p, text: p })));
    this.slider = h('input', { type: 'range', min: 0, max: 100, step: 1, 'aria-label': 'weight in percent', oninput: () => this.fromSlider() });
    this.number = h('input', { type: 'number', min: 0, max: 100, step: 0.01, class: 'pct-input', 'aria-label': 'weight in percent (two decimals)', oninput: () => this.fromNumber() });
    this.preview = h('span', { class: 'preview' });
    const controls = h(
      'div',
      { class: 'controls' },
      h('div', { class: 'weights-control' }, h('span', { text: 'Send' }), this.number, h('span', { text: '% to' }), this.poolSelect, this.slider, this.preview, h('button', { type: 'button', 'data-action': 'weights', onclick: () => this.setWeights(), text: 'Set weights…' })),
      h('button', { type: 'button', class: 'danger-quiet', 'data-action': 'rollback', onclick: () => this.rollback(), text: 'Roll back…' }),
    );

    // the routing beyond the weights (docs/cohorts.md §7): the cohort rules, and the mirror pool's figures beside the live ones
    this.rulesInfo = h('div', { class: 'routing-info', 'data-part': 'rules' });
    this.mirrorInfo = h('div', { class: 'routing-info', 'data-part': 'mirror' });
    this.historyBody = h('tbody');
    this.toasts = h('div', { class: 'toasts', 'aria-live': 'polite' });
    this.el = h(
      'section',
      { class: 'app', 'data-app': this.name, 'aria-label': `app ${this.name}` },
      h('div', { class: 'app-head' }, h('div', { class: 'app-title' }, this.title, this.rev, this.active), this.instances),
      this.who,
      this.bar,
      this.legend,
      this.rollout.el,
      h('div', { class: 'table-wrap' }, h('table', { class: 'pools' }, h('thead', {}, head), tbody)),
      this.rulesInfo,
      this.mirrorInfo,
      h('div', { class: 'charts' }, this.charts.rps.el, this.charts.errors.el, this.charts.p99.el),
      controls,
      this.toasts,
      h('details', { class: 'history', open: true }, h('summary', { text: 'History' }), h('table', {}, h('thead', {}, h('tr', {}, ...['rev', 'when', 'what it did', 'by', 'weights', 'reason'].map((t) => h('th', { scope: 'col', text: t })))), this.historyBody)),
      this.routing.el,
      this.targets.el,
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
    // total is null while the fleet's figures cannot be read: say so, never a reassuring n/n
    const total = state.instances.total;
    this.instances.textContent = total === null
      ? `${state.instances.applied}/? instances on rev ${state.revision} (fleet unknown)`
      : `${state.instances.applied}/${total} instance${total === 1 ? '' : 's'} on rev ${state.revision}`;
    if (total === null) this.instances.title = state.instances.reason ?? '';
    this.instances.classList.toggle('lagging', total === null || state.instances.applied < total);

    const segments = [];
    this.pools.forEach((pool) => {
      const w = state.weights[pool] ?? 0;
      if (w <= 0) return;
      const seg = h('div', { class: 'seg', 'data-color': this.colors.get(pool), title: `${pool} ${pct(w)}` }, h('span', { text: w >= 8 ? `${pool} ${pct(w)}` : '' }));
      seg.style.width = `${w}%`;
      segments.push(seg);
    });
    this.bar.replaceChildren(...segments);
    const narrow = this.pools.filter((p) => (state.weights[p] ?? 0) > 0 && (state.weights[p] ?? 0) < 8);
    this.legend.hidden = narrow.length === 0;
    this.legend.replaceChildren(...narrow.map((p) => h('span', { class: 'legend-item', 'data-pool': p }, h('span', { class: 'dot', 'data-color': this.colors.get(p) }), `${p} ${pct(state.weights[p])}`)));
    paintDots(this.legend);
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
      // a pool with no healthy target is flagged where its weight is, not only in the targets list
      const unhealthy = p.health === 'unhealthy';
      row.state.replaceChildren(this.stateBadge(pool, p), ...(unhealthy ? [' ', h('span', { class: 'state bad', 'data-state': 'unhealthy', title: 'no target of this pool passes its health checks', text: 'unhealthy' })] : []));
      row.state.closest('tr')?.classList.toggle('unhealthy', unhealthy);
    }
    const rules = state.rules ?? [];
    this.rulesInfo.textContent = rules.length === 0 ? '' : `Rules (first match wins): ${rules.map((r) => `${r.name} → ${r.to}${r.share !== undefined && r.share !== 100 ? ` (${r.share} %)` : ''}`).join(' · ')}`;
    if (!state.mirror) this.mirrorInfo.textContent = '';
    this.targets.update(state);
    this.routing.update(state);
    if (!this.sliderDirty) this.syncSlider();
    else this.renderPreview();
  }

  stateBadge(pool, p) {
    if (p.weight > 0) return h('span', { class: 'state serving', text: 'serving' });
    // a pool a rule or the mirror sends to is not drained whatever its weight (docs/cohorts.md §3)
    const by = [...(this.state.rules ?? []).filter((r) => r.to === pool).map((r) => `rule ${r.name}`), ...(this.state.mirror?.to === pool ? ['mirror'] : [])];
    if (by.length > 0) return h('span', { class: 'state serving', 'data-state': 'routed', text: `serving · ${by.join(', ')}` });
    if (p.drained) return h('span', { class: 'state drained', 'data-state': 'drained', text: '✓ drained' });
    const d = this.drain.get(pool);
    const left = d && d.remainingMs !== null ? ` · closes in ${duration(d.remainingMs)}` : '';
    // pinned: requests an affinity pin sent here in the last 60 s; the reason says until when pins hold it
    const pinned = ` · ${p.pinned ?? d?.pinned ?? 0} pinned`;
    return h('span', { class: 'state draining', 'data-state': 'draining', title: d?.reason ?? '', text: `draining · ${p.inflight + p.upgraded} open${pinned}${left}` });
  }

  /** The figures of `GET …/stats` (with `history` the first time: the last minute the server sampled). */
  updateStats(stats) {
    const win = stats.windows['10s'];
    const end = Date.parse(stats.at);
    for (const pool of this.pools) {
      const s = win[pool];
      const row = this.rows.get(pool);
      row.rps.textContent = fmtRps(s?.rps);
      row.errors.textContent = fmtRate(s?.errorRate);
      row.errors.classList.toggle('bad', (s?.errorRate ?? 0) >= 0.01);
      row.p99.textContent = fmtMs(s?.p99 ?? null);
      // p99 is the time to the response head; how long responses then stayed open is apart
      row.p99.title = `time to the response head; responses stayed open ${fmtMs(s?.streamP99 ?? null)} after it (p99)`;
      const list = this.samples.get(pool);
      for (const point of stats.history ?? []) addSample(list, Date.parse(point.at), point.pools[pool] ?? null);
      addSample(list, end, s ?? null);
      while (list.length > 0 && list[0].t < end - KEEP_MS) list.shift();
    }
    if (stats.history !== undefined) this.historyLoaded = true;
    const m = stats.mirror;
    // copies are read and discarded: these figures say how the mirror pool answers real traffic
    this.mirrorInfo.textContent = m === undefined || !this.state.mirror ? '' : `Mirror → ${m.pool} (${this.state.mirror.share ?? 100} % copied): ${fmtRps(m.windows['10s'].rps)} req/s · errors ${fmtRate(m.windows['10s'].errorRate)} · p99 ${fmtMs(m.windows['10s'].p99 ?? null)}${this.state.mirror.compare ? ` · answers differ ${fmtRate(m.compare['10s'].mismatchRate)} of ${m.compare['10s'].pairs}` : ''}`;
    const series = (key) => new Map(this.pools.map((p) => [p, this.samples.get(p).map(({ t, s }) => ({ t, v: s === null ? null : key === 'p99' ? s.p99 : key === 'errors' ? (s.requests > 0 ? s.errorRate : null) : s.rps }))]));
    this.charts.rps.update(series('rps'), this.colors, end);
    this.charts.errors.update(series('errors'), this.colors, end);
    this.charts.p99.update(series('p99'), this.colors, end);
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
        // what the entry did in words (a deploy: `green → 3.0.0 on 2 targets`); an older server sends none
        const did = e.summary ?? e.action;
        return h('tr', {}, h('td', { class: 'num', text: String(e.revision) }), h('td', { title: e.at, text: ago(e.at) }), h('td', { class: 'did', title: e.action, text: did }), h('td', { text: e.by }), h('td', {}, mini, h('span', { class: 'mono', text })), h('td', { class: 'reason', text: e.reason ?? '' }));
      }),
    );
    paintDots(this.historyBody);
  }

  // weights control: the slider moves whole percents, the number box takes two decimals; until
  // the operator moves either, they show the picked pool's current weight
  syncSlider() {
    const pool = this.poolSelect.value;
    const w = this.state.weights[pool] ?? 0;
    this.slider.value = String(Math.round(w));
    this.number.value = String(w);
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
      toast(this, 'the weight must be a percentage from 0 to 100', 'bad');
      return;
    }
    if (this.pools.every((p) => after[p] === (this.state.weights[p] ?? 0))) {
      toast(this, `nothing to change: ${this.pools.map((p) => `${p} is at ${pct(after[p])}`).join(', ')} already`, 'bad');
      return;
    }
    const reason = await confirmAction(`Set the weights of ${this.name}?`, [h('p', { text: 'New requests are split like this; sticky users only move toward the pool that gains weight.' }), ...weightChanges(this.state.weights, after, this.colors)]);
    if (reason === null) return;
    this.sliderDirty = false;
    await this.write('PUT', `${appPath(this.name)}/weights`, { weights: after, ...(reason ? { reason } : {}) }, `set the weights of ${this.name}`);
  }

  async rollback() {
    let plan;
    try {
      plan = await api('POST', `${appPath(this.name)}/rollback?dryRun=true`, {});
    } catch (err) {
      if (err.status === 401) session.rejected();
      else toast(this, `${err.code}: ${err.message}`, 'bad');
      return;
    }
    const versions = Object.entries(plan.pools).map(([pool, p]) => {
      const changed = plan.versionChanged.includes(pool);
      const then = p.version.then ?? 'not recorded';
      return h('div', { class: `change${changed ? ' bad' : ''}`, 'data-pool': pool }, h('span', { class: 'dot', 'data-color': this.colors.get(pool) ?? '' }), h('b', { text: pool }), ` ran ${then} then, runs ${p.version.now ?? '(gone)'} now${changed ? ' — redeployed since' : ''}`);
    });
    const force = h('input', { type: 'checkbox', name: 'force' });
    const body = [
      h('p', { text: `Back to the last known-good routing: revision ${plan.restores.revision} (${ago(plan.restores.at)}), undoing revisions ${plan.restores.releaseFrom}–${plan.revision}, written as revision ${this.state.revision + 1}.` }),
      ...weightChanges(this.state.weights, plan.weights, this.colors),
      h('p', { class: 'versions-title', text: 'Versions, then and now:' }),
      ...versions,
      ...(plan.refused === null ? [] : [h('p', { class: 'bad', text: `${plan.refused.code}: ${plan.refused.message}` }), h('label', { class: 'force' }, force, ' Roll back anyway (force)')]),
    ];
    const reason = await confirmAction(`Roll back ${this.name}?`, body);
    if (reason === null) return;
    if (plan.refused !== null && !force.checked) {
      toast(this, `not rolled back: ${plan.refused.code} (tick "Roll back anyway" to force it)`, 'bad');
      return;
    }
    await this.write('POST', `${appPath(this.name)}/rollback`, { ...(reason ? { reason } : {}), ...(force.checked ? { force: true } : {}) }, `rolled ${this.name} back to revision ${plan.restores.revision}'s routing`);
  }

  /** Resolves to null when written, else to the ApiError (already told in a toast), for a panel to say more. */
  async write(method, path, body, done) {
    try {
      const state = await api(method, path, body, { 'if-match': `"${this.state.revision}"` });
      this.update(state);
      toast(this, `${done}: now revision ${state.revision}`, 'ok');
      void session.refresh();
      return null;
    } catch (err) {
      if (err.status === 412) {
        const current = err.body?.error?.details?.current;
        if (current) this.update(current);
        toast(this, `${this.name} was changed meanwhile (now revision ${current?.revision ?? '?'}); look again and retry`, 'bad');
      } else if (err.status === 401) {
        session.rejected();
      } else if (err.code === 'POOL_UNHEALTHY' && body.force !== true) {
        // the API's answer says "send force: true": here that is this question
        const again = await confirmAction(`${this.name}: send traffic to a pool with no healthy target?`, [h('p', { class: 'bad', text: err.message }), h('p', { text: 'Its requests get 503 until a target is up. Send it anyway (force)?' })], body.reason ?? '');
        if (again !== null) return this.write(method, path, { ...body, ...(again ? { reason: again } : {}), force: true }, `${done} (forced)`);
      } else {
        toast(this, `${err.code}: ${err.message}`, 'bad');
      }
      return err;
    }
  }
}

/** Appends a sample unless one at that time or later is there already (history and polls overlap). */
function addSample(list, t, s) {
  if (Number.isFinite(t) && (list.length === 0 || list[list.length - 1].t < t)) list.push({ t, s });
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
