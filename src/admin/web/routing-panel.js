// One app's cohort rules and mirror, edited (docs/cohorts.md §2, §4): add or remove a rule, set or turn off
// the mirror. Each write replaces the whole list (`PUT …/rules`) or the mirror (`PUT …/mirror`)
// behind the confirm dialog, which shows the JSON to be written; the AppView's write sends If-Match.
import { appPath } from './api.js';
import { h } from './dom.js';
import { confirmAction } from './ui.js';

const MODES = ['exact', 'prefix', 'regex', 'present'];

export class RoutingPanel {
  /** `view`: the AppView it belongs to (its state, pools and write) */
  constructor(view) {
    this.view = view;
    const pools = () => view.pools.map((p) => h('option', { value: p, text: p }));
    this.list = h('ul', { class: 'rule-list' });
    this.f = {
      name: h('input', { type: 'text', class: 'mono', name: 'rule-name', placeholder: 'beta', 'aria-label': 'rule name' }),
      to: h('select', { name: 'rule-to', 'aria-label': 'rule pool' }, ...pools()),
      kind: h('select', { name: 'rule-kind', 'aria-label': 'match on' }, h('option', { value: 'header', text: 'header' }), h('option', { value: 'cookie', text: 'cookie' })),
      key: h('input', { type: 'text', class: 'mono', name: 'rule-key', placeholder: 'x-beta', 'aria-label': 'header or cookie name' }),
      mode: h('select', { name: 'rule-mode', 'aria-label': 'match mode', onchange: () => (this.f.value.disabled = this.f.mode.value === 'present') }, ...MODES.map((m) => h('option', { value: m, text: m }))),
      value: h('input', { type: 'text', class: 'mono', name: 'rule-value', placeholder: '1', 'aria-label': 'value or pattern' }),
      share: h('input', { type: 'number', name: 'rule-share', min: 0.01, max: 100, step: 0.01, value: 100, class: 'share-input', 'aria-label': 'share of the matching requests in percent' }),
    };
    this.m = {
      to: h('select', { name: 'mirror-to', 'aria-label': 'mirror pool' }, ...pools()),
      share: h('input', { type: 'number', name: 'mirror-share', min: 0.01, max: 100, step: 0.01, value: 100, class: 'share-input', 'aria-label': 'share copied in percent' }),
      compare: h('input', { type: 'checkbox', name: 'mirror-compare' }),
    };
    this.mirrorOff = h('button', { type: 'button', class: 'small danger-quiet', 'data-action': 'mirror-off', onclick: () => this.setMirror(null), text: 'Turn off mirror…' });
    // a refused write stays here (role=alert), naming the fields, until the next write
    this.error = h('div', { class: 'routing-error bad', role: 'alert' });
    const f = this.f;
    this.el = h(
      'details',
      { class: 'routing-edit' },
      h('summary', { text: 'Edit rules and mirror' }),
      this.list,
      h('div', { class: 'rule-add' }, 'Rule', f.name, 'sends', f.share, '% of requests whose', f.kind, f.key, f.mode, f.value, 'to', f.to, h('button', { type: 'button', class: 'small', 'data-action': 'add-rule', onclick: () => this.addRule(), text: 'Add rule…' })),
      h('div', { class: 'mirror-edit' }, 'Mirror: copy', this.m.share, '% to', this.m.to, h('label', {}, this.m.compare, ' compare answers'), h('button', { type: 'button', class: 'small', 'data-action': 'set-mirror', onclick: () => this.setMirror(this.mirrorFromForm()), text: 'Set mirror…' }), this.mirrorOff),
      this.error,
    );
  }

  update(state) {
    const rules = state.rules ?? [];
    this.list.replaceChildren(
      ...rules.map((r, i) =>
        h('li', { 'data-rule': r.name }, h('span', { class: 'mono', text: `${r.name} → ${r.to} (${r.share ?? 100} %) when ${JSON.stringify(r.match)}` }), ' ', h('button', { type: 'button', class: 'small danger-quiet', 'data-action': 'remove-rule', 'data-rule': r.name, onclick: () => this.removeRule(i), text: 'Remove…' })),
      ),
    );
    this.mirrorOff.disabled = !state.mirror;
    // the mirror form starts from the mirror in force, once: later polls never overwrite what is typed
    if (!this.mirrorShown && state.mirror) {
      this.mirrorShown = true;
      this.m.to.value = state.mirror.to;
      this.m.share.value = String(state.mirror.share ?? 100);
      this.m.compare.checked = state.mirror.compare === true;
    }
  }

  ruleFromForm() {
    const f = this.f;
    const cond = f.mode.value === 'present' ? { present: true } : { [f.mode.value]: f.value.value };
    return { name: f.name.value.trim(), match: { [f.kind.value]: { [f.key.value.trim()]: cond } }, to: f.to.value, share: Number(f.share.value) };
  }

  mirrorFromForm() {
    return { to: this.m.to.value, share: Number(this.m.share.value), compare: this.m.compare.checked };
  }

  async addRule() {
    const rule = this.ruleFromForm();
    const rules = [...(this.view.state.rules ?? []), rule];
    const body = [
      h('p', { text: `${rule.share} % of the requests to ${this.view.name} whose ${this.f.kind.value} ${this.f.key.value.trim()} matches go to ${rule.to}, whatever the weights; the rules before it are tried first.` }),
      h('pre', { class: 'mono confirm-json', text: JSON.stringify({ rules }, null, 2) }),
    ];
    if (await this.send('rules', body, `Add rule ${rule.name || '(no name)'} to ${this.view.name}?`, { rules }, `added rule ${rule.name}`)) this.f.name.value = '';
  }

  async removeRule(i) {
    const rules = [...(this.view.state.rules ?? [])];
    const [gone] = rules.splice(i, 1);
    const body = [h('p', { text: `The requests rule ${gone.name} sent to ${gone.to} go by the next rules and the weights again.` }), h('pre', { class: 'mono confirm-json', text: JSON.stringify({ rules }, null, 2) })];
    await this.send('rules', body, `Remove rule ${gone.name} from ${this.view.name}?`, { rules }, `removed rule ${gone.name}`);
  }

  async setMirror(mirror) {
    const body = mirror === null
      ? [h('p', { text: `No more copies go to ${this.view.state.mirror?.to ?? 'the mirror pool'}; live traffic is unchanged.` }), h('pre', { class: 'mono confirm-json', text: JSON.stringify({ mirror }) })]
      : [h('p', { text: `${mirror.share} % of the GET and HEAD requests served by the other pools are copied to ${mirror.to}; its answers are dropped${mirror.compare ? ' and compared with the live ones' : ''}.` }), h('pre', { class: 'mono confirm-json', text: JSON.stringify({ mirror }, null, 2) })];
    const title = mirror === null ? `Turn off the mirror of ${this.view.name}?` : `Mirror ${this.view.name} to ${mirror.to}?`;
    await this.send('mirror', body, title, { mirror }, mirror === null ? 'turned the mirror off' : `mirroring to ${mirror.to}`);
  }

  /** Confirms, writes, and on a refusal says in words which field or what conflict; true when written. */
  async send(part, body, title, payload, done) {
    const reason = await confirmAction(title, body);
    if (reason === null) return false;
    this.error.textContent = '';
    const err = await this.view.write('PUT', `${appPath(this.view.name)}/${part}`, { ...payload, ...(reason ? { reason } : {}) }, done);
    if (err === null) return true;
    const details = Array.isArray(err.body?.error?.details) ? err.body.error.details : [];
    if (err.status === 400) {
      const fields = details.length > 0 ? details.map((d) => `${Array.isArray(d.path) ? d.path.join('.') : d.path}: ${d.message}`).join('; ') : err.message;
      this.error.textContent = `Not written — the proxy refused a field: ${fields}`;
    } else if (err.status === 409) {
      this.error.textContent = `Not written — it conflicts with the current state (${err.code}): ${err.message}`;
    } else if (err.status !== 412 && err.status !== 401) {
      this.error.textContent = `Not written (${err.code}): ${err.message}`;
    }
    return false;
  }
}
