// The rollout panel of an app card: the running (or last) rollout, its controls, the start form.
import { api, appPath, session } from './api.js';
import { ago, duration, fmtMs, fmtRate, h, pct } from './dom.js';
import { renderGates } from './gates-view.js';
import { confirmAction, toast } from './ui.js';

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

const stepText = (s) => (s.approval ? 'approval' : s.pause === null || s.pause === undefined ? pct(s.weight) : `${pct(s.weight)} · ${typeof s.pause === 'number' ? `${s.pause}ms` : s.pause}`);

/** The app's running (or last) progressive rollout: step, countdown, live analysis, its controls, and a form to start one. */
export class RolloutPanel {
  constructor(view) {
    this.view = view;
    this.title = h('span', { class: 'rollout-title' });
    this.state = h('span', { class: 'badge rollout-state' });
    this.next = h('span', { class: 'rollout-next' });
    this.steps = h('ol', { class: 'rollout-steps' });
    this.analysis = h('div', { class: 'rollout-analysis' });
    this.reason = h('div', { class: 'rollout-reason' });
    this.gates = h('ul', { class: 'rollout-gates', hidden: true });
    this.buttons = Object.fromEntries(
      ['approve', 'pause', 'resume', 'promote', 'abort'].map((verb) => [verb, h('button', { type: 'button', class: verb === 'abort' ? 'small danger-quiet' : 'small', 'data-action': `rollout-${verb}`, onclick: () => this.command(verb), text: `${verb[0].toUpperCase()}${verb.slice(1)}…` })]),
    );
    this.card = h(
      'div',
      { class: 'rollout', 'data-rollout': '', hidden: true, 'aria-label': 'rollout' },
      h('div', { class: 'rollout-head' }, h('div', {}, this.title, this.state, this.next), h('div', { class: 'rollout-actions' }, ...Object.values(this.buttons))),
      this.steps,
      this.analysis,
      this.gates,
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
    // a rollout that ended badly stays shown until the app moves on (a deploy, a switch): then it is
    // history. Its own last write (the abort's or the rollback's weights) is not moving on.
    const own = (this.view.state.reason ?? '').startsWith(`rollout ${r?.id} `);
    const stale = r !== null && (r.state === 'rolled-back' || r.state === 'aborted') && this.view.state.revision > r.revision && !own;
    this.card.hidden = r === null || stale;
    const active = r !== null && (r.state === 'running' || r.state === 'paused');
    this.start.hidden = active;
    if (active && this.form !== null) this.closeForm();
    if (r === null) return;
    this.card.dataset.rollout = r.state;
    this.title.textContent = `Rollout ${r.id} → ${r.to} · step ${r.step}/${r.steps.length} (${pct(r.weight)})`;
    this.state.textContent = r.state;
    this.state.dataset.state = r.state;
    this.next.textContent = r.nextInMs !== null ? ` · ${r.step < r.steps.length ? 'next step' : 'done'} in ${duration(r.nextInMs)}` : r.remainingMs !== null ? ` · ${duration(r.remainingMs)} of the step left` : r.endedAt ? ` · ended ${ago(r.endedAt)}` : '';
    this.steps.replaceChildren(...r.steps.map((s, i) => h('li', { class: i + 1 < r.step ? 'done' : i + 1 === r.step ? 'now' : '', text: s.approval ? 'approval' : s.pause ? `${pct(s.weight)} · ${s.pause}` : pct(s.weight) })));
    const a = r.lastAnalysis;
    const limits = r.analysis === null ? 'analysis off' : `errors ≤ ${fmtRate(r.analysis.maxErrorRate)}${r.analysis.maxP99Ms ? `, p99 ≤ ${fmtMs(r.analysis.maxP99Ms)}` : ''}, after ${r.analysis.minRequests} requests, on failure ${r.onFailure}`;
    const figures = a === null ? '' : `${a.window}: ${r.to} ${a.to.requests} req, ${fmtRate(a.to.errorRate)} errors, p99 ${fmtMs(a.to.p99)} · others ${a.others.requests} req, ${fmtRate(a.others.errorRate)} errors, p99 ${fmtMs(a.others.p99)} → ${a.verdict}`;
    this.analysis.textContent = figures === '' ? limits : `${figures} (${limits})`;
    this.analysis.classList.toggle('bad', a?.verdict === 'fail');
    this.reason.textContent = r.reason ?? '';
    renderGates(this.gates, r);
    this.buttons.approve.hidden = !(active && r.gates?.waitingApproval);
    this.buttons.pause.hidden = r.state !== 'running';
    this.buttons.resume.hidden = r.state !== 'paused';
    this.buttons.promote.hidden = !active;
    this.buttons.abort.hidden = !active;
  }

  async command(verb) {
    const r = this.current;
    if (r === null) return;
    const what = {
      approve: `Lets step ${r.step} go on: ${r.to} moves on from ${pct(r.weight)}. Recorded with your token's name and the reason.`,
      pause: `Holds ${r.to} at ${pct(r.weight)}: no further steps until it is resumed.`,
      resume: 'Carries on with the rest of the current step, then the next ones.',
      promote: `Sends 100 % of ${this.view.name} to ${r.to} now, skipping the remaining steps.`,
      abort: `Restores the starting weights (${Object.entries(r.from).map(([p, w]) => `${p} ${pct(w)}`).join(', ')}).`,
    }[verb];
    const reason = await confirmAction(`${verb[0].toUpperCase()}${verb.slice(1)} rollout ${r.id}?`, [h('p', { text: what })]);
    if (reason === null) return;
    try {
      this.update(await api('POST', `${appPath(this.view.name)}/rollouts/current/${verb}`, reason ? { reason } : {}));
      toast(this.view, `rollout ${r.id} ${{ approve: 'approved', pause: 'paused', resume: 'resumed', promote: 'promoted', abort: 'aborted' }[verb]}`, 'ok');
      void session.refresh();
    } catch (err) {
      if (err.status === 401) session.rejected();
      else toast(this.view, `${err.code}: ${err.message}`, 'bad');
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
      approval: h('input', { type: 'checkbox', name: 'approval' }),
      queryName: h('input', { type: 'text', name: 'queryName', class: 'short-input', placeholder: 'checkout-ok', maxlength: 63, autocomplete: 'off' }),
      query: h('input', { type: 'text', name: 'query', class: 'mono steps-input', placeholder: 'sum(rate(checkout_ok{version="{{version}}"}[1m])) / …', spellcheck: 'false', autocomplete: 'off', maxlength: 4000 }),
      queryMin: h('input', { type: 'number', name: 'queryMin', class: 'short-input', step: 'any', placeholder: 'min' }),
      queryMax: h('input', { type: 'number', name: 'queryMax', class: 'short-input', step: 'any', placeholder: 'max' }),
      prometheus: h('input', { type: 'text', name: 'prometheus', class: 'mono', placeholder: 'the process config’s', maxlength: 2000, autocomplete: 'off' }),
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
        field('Max error rate', f.maxErrorRate, '(% of requests: 1 = maxErrorRate 0.01, --max-error-rate 1%)'),
        field('Max p99', f.maxP99Ms, '(ms, optional)'),
        field('Min requests', f.minRequests, '(before judging)'),
        field('On failure', f.onFailure),
      ),
      h(
        'fieldset',
        { class: 'form-row' },
        h('legend', { text: 'Gates' }),
        h('label', { class: 'field' }, h('span', { class: 'field-label', text: 'Approval before 100 %' }), f.approval),
        field('Query name', f.queryName),
        field('Prometheus query', f.query, '({{app}}, {{pool}}, {{version}})'),
        field('Min', f.queryMin),
        field('Max', f.queryMax),
        field('Prometheus URL', f.prometheus, '(optional)'),
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
    const query = f.query.value.trim();
    const qmin = num(f.queryMin);
    const qmax = num(f.queryMax);
    if (query !== '' && f.queryName.value.trim() === '') issues.push({ field: 'queryName', text: 'query name: give the query a name' });
    if (query !== '' && qmin === null && qmax === null) issues.push({ field: 'queryMin', text: 'min or max: a query without a bound judges nothing' });
    if (issues.length > 0) return { issues };
    body.analysis = { maxErrorRate: Number((errPct / 100).toFixed(6)), minRequests, ...(p99 === null ? {} : { maxP99Ms: p99 }) };
    if (query !== '') {
      body.analysis.queries = [{ name: f.queryName.value.trim(), prometheus: query, ...(qmin === null ? {} : { min: qmin }), ...(qmax === null ? {} : { max: qmax }) }];
      if (f.prometheus.value.trim() !== '') body.analysis.prometheus = { url: f.prometheus.value.trim() };
    }
    if (f.approval.checked && steps.length > 0) {
      // an approval step before the final 100 %: a preset becomes its steps
      const explicit = body.steps ?? steps.map((s) => (s.pause === null ? { weight: s.weight } : { weight: s.weight, pause: s.pause }));
      if (explicit.at(-1).weight < 100) explicit.push({ weight: 100 });
      body.steps = [...explicit.slice(0, -1), { approval: true }, explicit.at(-1)];
      delete body.preset;
      steps = [...steps.slice(0, -1), { approval: true }, steps.at(-1)];
    }
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
      toast(view, `rollout ${r.id} of ${view.name} to ${r.to} started`, 'ok');
      void session.refresh();
    } catch (err) {
      if (err.status === 401) {
        session.rejected();
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
