// The gates of a rollout in the Rollout panel (docs/gates.md §5): each query and webhook with its
// last value or status, the approvals, and the last rounds; URLs arrive masked from the API.
import { h } from './dom.js';

const verdictClass = (v) => (v === 'fail' ? 'bad' : v === 'inconclusive' ? 'warn' : v === 'pass' ? 'ok' : '');

/** The newest check named `name` among the rounds (newest last), or null. */
function lastCheck(rounds, name) {
  for (let i = rounds.length - 1; i >= 0; i--) {
    const c = rounds[i].checks.find((x) => x.name === name);
    if (c) return c;
  }
  return null;
}

const checkValue = (c) => (c === null ? 'not judged yet' : c.kind === 'query' ? (c.value === null || c.value === undefined ? 'no value' : String(Number(c.value.toPrecision(6)))) : c.status === null || c.status === undefined ? 'no answer' : `HTTP ${c.status}`);

/** One line per gate: `query checkout-ok ≥ 0.99: 0.995 pass`, `webhook smoke: HTTP 500 fail (…)`, approvals. */
export function gateItems(r) {
  const g = r.gates;
  if (!g) return [];
  const items = [];
  const rounds = g.rounds ?? [];
  for (const q of g.config.queries) {
    const c = lastCheck(rounds, q.name);
    const bound = [q.min === undefined ? null : `≥ ${q.min}`, q.max === undefined ? null : `≤ ${q.max}`].filter(Boolean).join(' ');
    items.push({ kind: 'query', text: `query ${q.name} ${bound}: ${checkValue(c)}${c ? ` ${c.verdict}` : ''}${c?.why ? ` (${c.why})` : ''}`, verdict: c?.verdict ?? null });
  }
  for (const w of g.config.webhooks) {
    const c = lastCheck(rounds, w.name);
    items.push({ kind: 'webhook', text: `webhook ${w.name} ${w.url}: ${checkValue(c)}${c ? ` ${c.verdict}` : ''}${c?.why ? ` (${c.why})` : ''}`, verdict: c?.verdict ?? null });
  }
  const pre = [...rounds].reverse().find((x) => x.phase === 'preStep');
  if (g.config.hooks.preStep.length > 0) items.push({ kind: 'hook', text: `preStep hooks: ${pre ? `step ${pre.step} ${pre.verdict}` : 'not called yet'}`, verdict: pre?.verdict ?? null });
  r.steps.forEach((s, i) => {
    if (!s.approval) return;
    const a = g.approvals.find((x) => x.step === i + 1);
    const text = a ? `approval of step ${i + 1}: approved by ${a.by}${a.reason ? ` (${a.reason})` : ''}` : `approval of step ${i + 1}: ${g.waitingApproval && r.step === i + 1 ? 'waiting' : 'not yet'}${s.timeout ? `, timeout ${s.timeout}` : ''}`;
    items.push({ kind: 'approval', text, verdict: a ? 'pass' : null });
  });
  if (g.calling) items.push({ kind: 'calling', text: `calling: step ${g.calling.step} ${g.calling.phase} round ${g.calling.round}`, verdict: null });
  if (g.inconclusive > 0) items.push({ kind: 'inconclusive', text: `${g.inconclusive} of ${g.config.inconclusiveLimit} inconclusive rounds in a row (then ${g.config.onInconclusive})`, verdict: 'inconclusive' });
  return items;
}

export function renderGates(el, r) {
  const items = gateItems(r);
  el.hidden = items.length === 0;
  el.replaceChildren(...items.map((i) => h('li', { class: `gate ${verdictClass(i.verdict)}`, 'data-gate': i.kind, text: i.text })));
}
