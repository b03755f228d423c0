import type * as Undici from 'undici';
import type { Agent } from 'undici';

let undici: Promise<typeof Undici> | undefined;

/**
 * undici's package index (fetch, WebSocket, caches, mocks: ~110 modules), loaded by the first
 * request rather than with this module: bin/switchyard.js loads the CLI for every command, `serve`
 * included, and a serving proxy never calls the admin client; loaded with the CLI it cost every
 * `switchyard serve` (checkout, package, image) ~4 MiB of RSS (README Performance, "Memory by
 * start path"). src/rollout/outbound.ts loads it the same way.
 */
function loadUndici(): Promise<typeof Undici> {
  return (undici ??= import('undici'));
}

/** The admin API answered with an error (`{ error: { code, message, details? } }`). */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly details: unknown;
  constructor(status: number, code: string, message: string, details?: unknown) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

/** The admin API could not be reached (refused, timed out, not HTTP). */
export class UnreachableError extends Error {
  constructor(url: string, cause: unknown) {
    const why = (cause as { code?: unknown }).code ?? (cause instanceof Error ? cause.message : String(cause));
    super(`cannot reach the admin API at ${url} (${String(why)})`, { cause });
    this.name = 'UnreachableError';
  }
}

export interface AdminClientOptions {
  /** e.g. `http://127.0.0.1:8081`; a path prefix is kept (`https://host/switchyard`) */
  readonly baseUrl: string;
  /** sent as `Authorization: Bearer TOKEN` when set */
  readonly token?: string | undefined;
  /** per request: connect, headers and body each @default 30 000 */
  readonly timeoutMs?: number;
}

/** A small JSON client of the admin API, with its own connection pool (closed by `close`). */
export class AdminClient {
  readonly baseUrl: string;
  readonly #token: string | undefined;
  readonly #timeoutMs: number;
  #agent: Agent | undefined;

  /** Throws TypeError for a base URL that is not http(s). */
  constructor(opts: AdminClientOptions) {
    const url = new URL(opts.baseUrl);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TypeError(`the admin URL must be http(s), got ${opts.baseUrl}`);
    this.baseUrl = url.href.replace(/\/+$/, '');
    this.#token = opts.token === '' ? undefined : opts.token;
    this.#timeoutMs = opts.timeoutMs ?? 30_000;
  }

  get<T = unknown>(path: string): Promise<T> {
    return this.send<T>('GET', path);
  }

  post<T = unknown>(path: string, body: unknown): Promise<T> {
    return this.send<T>('POST', path, body);
  }

  put<T = unknown>(path: string, body: unknown): Promise<T> {
    return this.send<T>('PUT', path, body);
  }

  delete<T = unknown>(path: string, body?: unknown): Promise<T> {
    return this.send<T>('DELETE', path, body);
  }

  /** `extra`: more request headers (`if-match` for a write that must not overwrite a newer revision) */
  async send<T>(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown, extra: Record<string, string> = {}): Promise<T> {
    const url = `${this.baseUrl}${path}`;
    const headers: Record<string, string> = { accept: 'application/json', ...extra };
    if (this.#token !== undefined) headers.authorization = `Bearer ${this.#token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const { Agent, request } = await loadUndici();
    this.#agent ??= new Agent({ connect: { timeout: this.#timeoutMs } });
    let status: number;
    let text: string;
    try {
      const res = await request(url, {
        method,
        headers,
        body: body === undefined ? null : JSON.stringify(body),
        dispatcher: this.#agent,
        headersTimeout: this.#timeoutMs,
        bodyTimeout: this.#timeoutMs,
      });
      status = res.statusCode;
      text = await res.body.text();
    } catch (err) {
      throw new UnreachableError(this.baseUrl, err);
    }
    let json: unknown;
    try {
      json = text === '' ? null : JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (status >= 400) {
      const error = (json as { error?: { code?: unknown; message?: unknown; details?: unknown } } | undefined)?.error;
      if (typeof error?.code === 'string') throw new ApiError(status, error.code, String(error.message ?? ''), error.details);
      throw new ApiError(status, `HTTP_${status}`, text.slice(0, 200) || `HTTP ${status}`);
    }
    if (json === undefined) throw new ApiError(status, 'BAD_RESPONSE', `the admin API at ${this.baseUrl} answered ${method} ${path} with something that is not JSON`);
    return json as T;
  }

  async close(): Promise<void> {
    await this.#agent?.close();
  }
}
