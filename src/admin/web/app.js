// Switchyard dashboard: plain DOM, no framework, no build step, no network but this origin's /v1
// API. ES modules by panel: app-view.js (one app), rollout-panel.js, certificates-panel.js, chart.js, ui.js (status,
// messages, confirm dialog), api.js, dom.js. This file polls and holds the token form.
import { AppView } from './app-view.js';
import { CertificatesPanel } from './certificates-panel.js';
import { api, appPath, session } from './api.js';
import { setStatus } from './ui.js';

const TOKEN_KEY = 'switchyard.token';
const POLL_MS = 1500;
const HISTORY_ROWS = 8;

session.token = sessionStorage.getItem(TOKEN_KEY) ?? '';
/** whether to poll: a token was given, or Connect was pressed with none (an admin API without tokens, loopback only) */
let connected = session.token !== '';
let timer = 0;
let polling = false;
const views = new Map();
const certificates = new CertificatesPanel();
session.refresh = () => poll();
session.rejected = () => tokenRejected();

async function refreshApp(view) {
  const tasks = [api('GET', `${appPath(view.name)}/stats${view.historyLoaded ? '' : '?history=1'}`).then((s) => view.updateStats(s))];
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
    const [{ apps }, certs] = await Promise.all([api('GET', '/v1/apps'), api('GET', '/v1/certificates')]);
    const main = document.getElementById('apps');
    document.getElementById('empty')?.remove();
    if (!certificates.el.isConnected) main.prepend(certificates.el);
    certificates.update(certs);
    for (const state of apps) {
      let view = views.get(state.app);
      // pools are live data (added, removed): a card whose pools changed is drawn anew
      const samePools = view !== undefined && view.pools.join() === Object.keys(state.pools).join();
      if (!samePools) {
        const fresh = new AppView(state);
        if (view === undefined) main.append(fresh.el);
        else view.el.replaceWith(fresh.el);
        view = fresh;
        views.set(state.app, view);
      }
      view.update(state);
    }
    // apps are live data too: a deleted app's card goes
    for (const [name, view] of views) {
      if (apps.some((a) => a.app === name)) continue;
      view.el.remove();
      views.delete(name);
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
  session.token = '';
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
  session.token = input.value.trim();
  input.value = '';
  connected = true;
  if (session.token !== '') sessionStorage.setItem(TOKEN_KEY, session.token);
  showTokenForm(false);
  setStatus('', 'connecting…');
  void poll();
});

document.getElementById('forget').addEventListener('click', () => {
  clearTimeout(timer);
  session.token = '';
  connected = false;
  sessionStorage.removeItem(TOKEN_KEY);
  for (const v of views.values()) v.el.remove();
  views.clear();
  certificates.el.remove();
  setStatus('', 'not connected');
  showTokenForm(true);
});

if (connected) {
  showTokenForm(false);
  void poll();
} else {
  showTokenForm(true);
}
