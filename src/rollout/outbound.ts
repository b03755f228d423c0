import { setTimeout as sleep } from 'node:timers/promises';
import type { Dispatcher, request as undiciRequestFn } from 'undici';

/**
 * Every call a rollout makes to the outside (webhook gates, hooks, notifications, Prometheus):
 * one deadline for the whole call, bodies read up to a bound, and the URL masked wherever it is
 * shown, since hook URLs carry their credentials in the path (Slack's `/services/T0/B0/x`).
 */

/** The most of an answer that is read (a Prometheus vector of one series is a few hundred bytes). */
const MAX_ANSWER_BYTES = 1 << 20;

/** `https://hooks.example/…`: scheme and host, never the path, query or user info. */
export function maskUrl(url: string): string {
  try {
    const u = new URL(url);
    const rest = u.pathname !== '/' || u.search !== '' || u.hash !== '' || u.username !== '' ? '/…' : '/';
    return `${u.protocol}//${u.host}${rest}`;
  } catch {
    return '…';
  }
}

/** Header values masked, names kept (which header is sent is useful; its value is the secret). */
export function maskHeaders(headers: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.keys(headers).map((k) => [k, '***']));
}

export interface Answer {
  /** null: no answer (`error` says why) */
  readonly status: number | null;
  readonly body: string;
  /** the call ran out of time (an answer that never came: a verdict for gates, not a transport error) */
  readonly timedOut: boolean;
  readonly error?: string | undefined;
  readonly ms: number;
}

export interface CallOptions {
  readonly method: 'GET' | 'POST';
  readonly headers?: Readonly<Record<string, string>> | undefined;
  readonly body?: string | undefined;
  readonly timeoutMs: number;
  /** retries of a transport error (refused, reset before an answer), within the same deadline @default 2 */
  readonly retries?: number | undefined;
  readonly signal?: AbortSignal | undefined;
  readonly dispatcher?: Dispatcher | undefined;
}

/**
 * One call with a deadline over everything (connect, answer, body). A transport error is retried
 * a bounded number of times while the deadline allows; an answer, whatever its status, never is:
 * a 4xx/5xx is a verdict, and calling again could run a smoke test twice.
 */
export async function call(url: string, opts: CallOptions): Promise<Answer> {
  const t0 = performance.now();
  const request = await undiciRequest();
  const deadline = AbortSignal.timeout(opts.timeoutMs);
  const signal = opts.signal === undefined ? deadline : AbortSignal.any([deadline, opts.signal]);
  const retries = opts.retries ?? 2;
  let error: string;
  for (let attempt = 0; ; attempt++) {
    try {
      const res = await request(url, {
        method: opts.method,
        headers: { ...(opts.body === undefined ? {} : { 'content-type': 'application/json' }), 'user-agent': 'switchyard', ...opts.headers },
        ...(opts.body === undefined ? {} : { body: opts.body }),
        signal,
        headersTimeout: opts.timeoutMs,
        bodyTimeout: opts.timeoutMs,
        ...(opts.dispatcher === undefined ? {} : { dispatcher: opts.dispatcher }),
      });
      const body = await readBounded(res.body);
      return { status: res.statusCode, body, timedOut: false, ms: Math.round(performance.now() - t0) };
    } catch (err) {
      if (deadline.aborted) return { status: null, body: '', timedOut: true, error: `no answer within ${opts.timeoutMs}ms`, ms: Math.round(performance.now() - t0) };
      error = describe(err);
      if (opts.signal?.aborted === true || attempt >= retries) break;
      // a short backoff, never past the deadline (the next attempt would only time out)
      await sleep(Math.min(250 * 2 ** attempt, 1000), undefined, { signal }).catch(() => undefined);
      if (signal.aborted) break;
    }
  }
  const timedOut = deadline.aborted;
  return { status: null, body: '', timedOut, error: timedOut ? `no answer within ${opts.timeoutMs}ms` : error, ms: Math.round(performance.now() - t0) };
}

let undici: Promise<typeof undiciRequestFn> | undefined;

/**
 * undici's package index, loaded on the first call rather than with this module: every serve
 * loads the rollout code, and the index (fetch, WebSocket, caches) costs ~13 MiB of RSS that a
 * proxy with no gates, hooks or notifications never uses (README Performance, "Memory by start
 * path"). The data plane loads undici's Pool class alone for the same reason (dataplane/target.ts).
 */
function undiciRequest(): Promise<typeof undiciRequestFn> {
  return (undici ??= import('undici').then((m) => m.request));
}

async function readBounded(body: Dispatcher.ResponseData['body']): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    if (size > MAX_ANSWER_BYTES) {
      body.destroy();
      throw new Error(`answer over ${MAX_ANSWER_BYTES} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** An error in words, without the URL (undici's messages name host and port at most). */
function describe(err: unknown): string {
  const e = err as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  const code = e.cause?.code ?? e.code;
  const message = e.cause?.message ?? e.message ?? String(err);
  return code !== undefined && !message.includes(code) ? `${code}: ${message}` : message;
}
