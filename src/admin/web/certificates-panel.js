// The TLS port's certificates (GET /v1/certificates): each one's names, file or ACME and expiry,
// and each ACME host's last failed order and next attempt. Hidden without listen.tls.
import { h } from './dom.js';

const DAY_S = 86400;

/** "in 12d 3h", "in 5h", "3d ago" */
function until(seconds) {
  const s = Math.abs(seconds);
  const text = s >= DAY_S ? `${Math.floor(s / DAY_S)}d ${Math.floor((s % DAY_S) / 3600)}h` : s >= 3600 ? `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m` : s >= 60 ? `${Math.floor(s / 60)}m` : `${s}s`;
  return seconds >= 0 ? `in ${text}` : `${text} ago`;
}

const STATE_CLASS = { ok: 'serving', expiring: 'draining', expired: 'bad', failing: 'bad', unissued: 'bad', pending: 'draining' };
const STATE_TEXT = { ok: 'valid', expiring: 'renewal due', expired: 'expired', failing: 'renewal failing', unissued: 'first order failing', pending: 'no certificate yet' };
const badge = (state, title = '') => h('span', { class: `state ${STATE_CLASS[state]}`, 'data-state': state, title, text: STATE_TEXT[state] });

export class CertificatesPanel {
  constructor() {
    this.summary = h('span', { class: 'badge' });
    this.body = h('div', { class: 'certs-body' });
    this.el = h('section', { class: 'app certificates', 'aria-label': 'certificates', hidden: true }, h('div', { class: 'app-head' }, h('div', { class: 'app-title' }, h('h2', { text: 'Certificates' }), this.summary)), this.body);
  }

  /** `data`: the answer of GET /v1/certificates */
  update(data) {
    this.el.hidden = !data.tls;
    if (!data.tls) return;
    const hosts = data.acme?.hosts ?? [];
    // a host whose last order failed: the certificate it serves (if any) stays, but will not be renewed until an order succeeds
    // a host no certificate serves yet has nothing to renew: its failing order is its first one
    const served = (host) => data.certificates.some((c) => c.names.some((n) => n === host || (n.startsWith('*.') && host.endsWith(n.slice(1)))));
    const unissued = (a) => a.notAfter === null && !served(a.host);
    const hostState = (a) => (a.lastError !== null ? (unissued(a) ? 'unissued' : 'failing') : a.notAfter === null ? 'pending' : 'ok');
    const rows = data.certificates.map((c) =>
      h(
        'tr',
        { 'data-names': c.names.join(' '), 'data-source': c.source },
        h('td', { class: 'mono', text: c.names.join(', ') }),
        h('td', { class: c.source === 'file' ? 'mono' : '', text: c.source === 'file' ? c.file : 'ACME' }),
        h('td', { title: c.notAfter, text: `${new Date(c.notAfter).toLocaleString()} (${until(c.expiresInSeconds)})` }),
        h('td', {}, badge(c.state, c.state === 'expiring' ? 'less than a third of its lifetime is left' : '')),
      ),
    );
    const certTable = h('table', { class: 'cert-table' }, h('thead', {}, h('tr', {}, ...['names', 'source', 'expires', 'state'].map((t) => h('th', { scope: 'col', text: t })))), h('tbody', {}, ...rows));
    const parts = [rows.length > 0 ? certTable : h('p', { class: 'muted', text: 'No certificate loaded yet: the TLS port answers no handshake.' })];
    if (data.acme !== null) {
      const acmeRows = hosts.map((a) => {
        const state = hostState(a);
        return h(
          'tr',
          { 'data-host': a.host, 'data-state': state },
          h('td', { class: 'mono', text: a.host }),
          h('td', {}, badge(state)),
          h('td', { class: 'acme-error', text: a.lastError === null ? '' : `${a.lastError} (${a.failures} ${a.failures === 1 ? 'failure' : 'failures'} in a row)` }),
          // relative to the server's clock (`at`), as expiresInSeconds is
          h('td', { text: a.retryAt === null ? '' : `next try ${new Date(a.retryAt).toLocaleTimeString()} (${until(Math.round((Date.parse(a.retryAt) - Date.parse(data.at)) / 1000))})` }),
        );
      });
      parts.push(
        h('h3', { class: 'certs-sub', text: `ACME${data.acme.orderer ? ' · this instance orders' : ' · another instance orders'}` }),
        h('table', { class: 'acme-table' }, h('thead', {}, h('tr', {}, ...['host', 'order', 'last error', 'retry'].map((t) => h('th', { scope: 'col', text: t })))), h('tbody', {}, ...acmeRows)),
      );
    }
    this.body.replaceChildren(...parts);
    const expired = data.certificates.filter((c) => c.state === 'expired').length;
    const expiring = data.certificates.filter((c) => c.state === 'expiring').length;
    const failing = hosts.filter((a) => hostState(a) === 'failing').length;
    const firstOrders = hosts.filter((a) => hostState(a) === 'unissued').length;
    const problems = [expired > 0 ? `${expired} expired` : '', expiring > 0 ? `${expiring} due for renewal` : '', failing > 0 ? `${failing} renewal${failing === 1 ? '' : 's'} failing` : '', firstOrders > 0 ? `${firstOrders} first order${firstOrders === 1 ? '' : 's'} failing` : ''].filter((x) => x !== '');
    this.summary.textContent = problems.length === 0 ? `${data.certificates.length} valid` : problems.join(' · ');
    this.summary.className = `badge ${expired > 0 || failing > 0 || firstOrders > 0 ? 'bad' : expiring > 0 ? 'warn' : ''}`;
    this.summary.dataset.state = expired > 0 || failing > 0 || firstOrders > 0 ? 'bad' : expiring > 0 ? 'warn' : 'ok';
  }
}
