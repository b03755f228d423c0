// The status line, per-app messages and the confirm dialog.
import { h, paintDots, pct } from './dom.js';

/** toasts shown at once per app; an older one makes room */
const MAX_TOASTS = 3;

export function setStatus(kind, text) {
  const el = document.getElementById('status');
  el.className = `status ${kind}`;
  el.textContent = text;
}

/**
 * A message about one app's action, in that app's card between its controls and its history: in
 * the page's flow, so it never covers the history row it announces, a figure or a button.
 */
export function toast(view, text, kind = 'ok') {
  const el = h('div', { class: `toast ${kind}`, role: kind === 'bad' ? 'alert' : 'status', text });
  view.toasts.append(el);
  while (view.toasts.childElementCount > MAX_TOASTS) view.toasts.firstElementChild.remove();
  setTimeout(() => el.remove(), kind === 'bad' ? 9000 : 4500);
}

/** Resolves to the reason typed (possibly '') when confirmed, null when cancelled; `initialReason` prefills it. */
export function confirmAction(title, body, initialReason = '') {
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
    // a dialog's 'close' event comes in a later task: the close of the confirm before this one (a
    // question asked after its answer, as "send force: true") can arrive once this one is open,
    // and must not close it; the dialog's own close (Escape) leaves it closed
    const onClose = () => {
      if (!dialog.open) done(null);
    };
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
export function weightChanges(before, after, colors) {
  return Object.keys(after).map((pool) =>
    h('div', { class: 'change' }, h('span', { class: 'dot', 'data-color': colors.get(pool) ?? '' }), h('b', { text: pool }), ` ${pct(before[pool] ?? 0)} → `, h('b', { text: pct(after[pool]) })),
  );
}
