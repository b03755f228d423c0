// The admin API from the page: this origin's /v1, the Bearer token the operator typed, no cookies.

/**
 * What the panels share with the page's driver (app.js): the token, and what to do after a
 * write (refresh now) or on a 401 (forget the token) — set by app.js, so no panel imports it.
 */
export const session = { token: '', refresh: () => {}, rejected: () => {} };

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

export async function api(method, path, body, headers = {}) {
  const init = { method, cache: 'no-store', credentials: 'omit', headers: { accept: 'application/json', ...(session.token === '' ? {} : { authorization: `Bearer ${session.token}` }), ...headers } };
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

export const appPath = (app) => `/v1/apps/${encodeURIComponent(app)}`;
