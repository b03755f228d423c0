import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { OutgoingHttpHeaders } from 'node:http';
import type { FallbackHandler } from './router.ts';

/**
 * The dashboard's static files on the admin listener: `/` and a few assets, read once at startup
 * (a few tens of KB). The page itself needs no token; every figure it shows comes from the
 * authenticated `/v1` API, called with the token the operator types (sessionStorage, Bearer
 * header, no cookies: a cross-site page cannot make the browser send it). Without tokens the
 * browser itself would be the credential: request-guard.ts refuses cross-site and rebinding
 * requests, while this page, on the API's own origin, sends JSON writes and passes.
 */

const FILES: Readonly<Record<string, { file: string; type: string }>> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  // the page's ES modules, one per panel (index.html loads app.js, which imports the rest)
  ...Object.fromEntries(['app.js', 'api.js', 'dom.js', 'ui.js', 'chart.js', 'app-view.js', 'rollout-panel.js', 'gates-view.js', 'targets-panel.js', 'routing-panel.js', 'certificates-panel.js'].map((f) => [`/${f}`, { file: f, type: 'text/javascript; charset=utf-8' }])),
  '/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
  '/favicon.svg': { file: 'favicon.svg', type: 'image/svg+xml' },
};

/** Scripts, styles and API calls from this origin only; no inline code, no framing. */
export const DASHBOARD_CSP = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const HEADERS: OutgoingHttpHeaders = {
  'cache-control': 'no-store',
  'content-security-policy': DASHBOARD_CSP,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
};

/**
 * Where the web files are: next to this module in a checkout (src/admin/web), or under
 * src/admin/web beside dist/ in the package and the image (tsc does not copy them).
 */
export function webDir(): URL {
  const candidates = [new URL('./web/', import.meta.url), new URL('../../src/admin/web/', import.meta.url)];
  return candidates.find((u) => existsSync(new URL('index.html', u))) ?? (candidates[0] as URL);
}

/**
 * The FallbackHandler serving the dashboard (GET and HEAD only; anything else falls through to
 * 404). Files that cannot be read (a broken install) never stop the proxy: `/` then says so.
 */
export async function loadDashboard(dir: URL = webDir()): Promise<FallbackHandler> {
  const bodies = new Map<string, { body: Buffer; type: string; status?: number }>();
  try {
    for (const [path, { file, type }] of Object.entries(FILES)) bodies.set(path, { body: await readFile(new URL(file, dir)), type });
  } catch (err) {
    const body = Buffer.from(`the dashboard's files cannot be read from ${dir.pathname} (${(err as NodeJS.ErrnoException).code ?? String(err)}); the admin API is unaffected\n`);
    bodies.clear();
    bodies.set('/', { body, type: 'text/plain; charset=utf-8', status: 503 });
  }
  return (req, res, url) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    const hit = bodies.get(url.pathname);
    if (hit === undefined) return false;
    res.writeHead(hit.status ?? 200, { ...HEADERS, 'content-type': hit.type, 'content-length': hit.body.length });
    res.end(req.method === 'HEAD' ? undefined : hit.body);
    return true;
  };
}
