// One app's targets, pool by pool: each target's state and in-flight count, with add and remove
// (confirmed in the same dialog as a switch). Live definitions: docs/definitions.md §2.
import { appPath } from './api.js';
import { h, paintDots } from './dom.js';
import { confirmAction, toast } from './ui.js';

export class TargetsPanel {
  /** `view`: the AppView it belongs to (its state, colours, write and toasts) */
  constructor(view) {
    this.view = view;
    this.body = h('div', { class: 'targets-body' });
    this.el = h('details', { class: 'targets', open: true }, h('summary', { text: 'Targets' }), this.body);
  }

  update(state) {
    const blocks = Object.entries(state.pools).map(([pool, p]) => this.poolBlock(pool, p));
    this.body.replaceChildren(...blocks);
    paintDots(this.body);
  }

  poolBlock(pool, p) {
    // health state by URL (up/down/ejected), and this instance's in-flight counts with the retiring targets
    const health = new Map((p.targetStates ?? []).map((t) => [t.url, t.state]));
    const figures = p.targetFigures ?? p.targets.map((url) => ({ url, phase: 'serving', inflight: null, upgraded: null }));
    const rows = figures.map((f) => {
      const state = f.phase === 'retiring' ? 'retiring' : (health.get(f.url) ?? 'up');
      const title = f.phase === 'retiring' ? `removed ${f.removedAt}; what is still open on it is closed at ${f.deadline}` : '';
      // a target DNS discovery found is not in the definition: it leaves when DNS drops it, not by a DELETE
      const discovered = !p.targets.includes(f.url);
      const remove = f.phase === 'retiring'
        ? h('span', { class: 'muted', text: 'finishing' })
        : discovered
          ? h('span', { class: 'muted', title: 'found by DNS discovery: it leaves the pool when DNS stops naming it', text: 'discovered' })
          : h('button', { type: 'button', class: 'small danger-quiet', 'data-action': 'remove-target', 'data-target': f.url, onclick: () => this.remove(pool, p, f.url), text: 'Remove…' });
      return h(
        'tr',
        { 'data-target': f.url, 'data-phase': f.phase },
        h('td', { class: 'mono', text: f.url }),
        h('td', {}, h('span', { class: `state ${state === 'up' ? 'serving' : state === 'retiring' ? 'draining' : 'bad'}`, 'data-state': state, title, text: state })),
        h('td', { class: 'num', text: f.inflight === null ? '?' : String(f.inflight) }),
        h('td', { class: 'actions' }, remove),
      );
    });
    const input = h('input', { type: 'url', class: 'mono target-input', placeholder: 'http://10.0.0.7:8080', 'aria-label': `new target of ${pool}` });
    const add = h('button', { type: 'button', class: 'small', 'data-action': 'add-target', 'data-pool': pool, onclick: () => this.add(pool, p, input), text: 'Add target…' });
    return h(
      'div',
      { class: 'target-pool', 'data-pool': pool },
      h('h4', {}, h('span', { class: 'dot', 'data-color': this.view.colors.get(pool) }), `${pool} `, h('span', { class: 'mono muted', text: p.version })),
      h('table', { class: 'target-table' }, h('thead', {}, h('tr', {}, ...['target', 'state', 'in flight here', ''].map((t) => h('th', { scope: 'col', text: t, ...(t === 'in flight here' ? { title: 'requests and WebSockets on the target through the instance serving this page; ? where it carries no traffic (the primary of workers)' } : {}) })))), h('tbody', {}, ...rows)),
      h('div', { class: 'target-add' }, input, add),
    );
  }

  async add(pool, p, input) {
    const url = input.value.trim();
    if (url === '') {
      toast(this.view, 'type the URL of the target to add, like http://10.0.0.7:8080', 'bad');
      return;
    }
    const reason = await confirmAction(`Add a target to ${this.view.name}/${pool}?`, [
      h('p', { text: `${url} joins ${pool} (${p.version}) on every instance and takes its share of ${pool}'s requests${p.weight > 0 ? ` (${pool} has ${p.weight}% of the traffic)` : ` (${pool} has no traffic now)`}.` }),
    ]);
    if (reason === null) return;
    input.value = '';
    await this.view.write('POST', `${appPath(this.view.name)}/pools/${encodeURIComponent(pool)}/targets`, { url, ...(reason ? { reason } : {}) }, `added ${url} to ${pool}`);
  }

  async remove(pool, p, url) {
    const last = p.targets.length === 1;
    const reason = await confirmAction(`Remove ${url} from ${this.view.name}/${pool}?`, [
      h('p', { text: `No new request goes to ${url}. Requests in flight on it finish there; its WebSockets stay until ${pool}'s drain timeout, counted from now.` }),
      ...(last ? [h('p', { class: 'warn', text: `It is ${pool}'s last target${p.weight > 0 ? `, and ${pool} has ${p.weight}% of the traffic: the proxy refuses this unless forced` : ''}.` })] : []),
    ]);
    if (reason === null) return;
    const query = new URLSearchParams({ url, ...(reason ? { reason } : {}) });
    await this.view.write('DELETE', `${appPath(this.view.name)}/pools/${encodeURIComponent(pool)}/targets?${query}`, undefined, `removed ${url} from ${pool}`);
  }
}
