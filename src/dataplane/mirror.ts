import type { Agent, ClientRequest, IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { http, https } from '../node-http.ts';
import type { MirrorRoute } from '../routing/rules.ts';
import type { AppRoute, PoolRoute } from '../routing/snapshot.ts';
import type { MirrorCopy, MirrorOutcome, MirrorRecord, Outcome, StatusClass } from './types.ts';
import type { ForwardedRequest } from './headers.ts';
import type { Runtime } from './runtime.ts';

export interface MirrorOptions {
  readonly runtime: Runtime;
  readonly now: () => number;
  readonly onRecord?: (record: MirrorRecord) => void;
}

export function statusClass(status: number): StatusClass {
  return status < 200 ? '1xx' : status < 300 ? '2xx' : status < 400 ? '3xx' : status < 500 ? '4xx' : '5xx';
}

function liveClass(o: Outcome): StatusClass {
  return o.error !== null ? 'error' : statusClass(o.status);
}

class Copy implements MirrorCopy {
  private liveSeen: StatusClass | null = null;
  private copySeen: StatusClass | null = null;
  private readonly done: (live: StatusClass, copy: StatusClass) => void;
  /** while the request body is being read for the copy: gives up on it (the live request ended first) */
  abandon: (() => void) | null = null;
  constructor(done: (live: StatusClass, copy: StatusClass) => void) {
    this.done = done;
  }
  live(outcome: Outcome): void {
    if (this.liveSeen !== null) return;
    this.liveSeen = liveClass(outcome);
    this.abandon?.();
    if (this.copySeen !== null) this.done(this.liveSeen, this.copySeen);
  }
  copied(cls: StatusClass): void {
    this.copySeen = cls;
    if (this.liveSeen !== null) this.done(this.liveSeen, cls);
  }
}

/**
 * Reads a copy of a request body as the live path reads it, never sooner: the listener is added
 * in the same turn as the forwarding engine's own `data` listener (on its `newListener`), so the
 * stream starts flowing when it would have anyway, pauses when the engine pauses it, and every
 * chunk reaches both. Nothing here pauses, buffers beyond `length` or changes the live stream.
 */
function captureBody(body: Readable, length: number, done: (payload: Buffer) => void): () => void {
  const chunks: Buffer[] = [];
  let got = 0;
  const onData = (chunk: Buffer): void => {
    got += chunk.length;
    if (got <= length) chunks.push(chunk);
  };
  const onEnd = (): void => {
    stop();
    if (got === length) done(Buffer.concat(chunks, length));
  };
  const watch = (event: string | symbol): void => {
    if (event !== 'data') return;
    body.removeListener('newListener', watch);
    body.on('data', onData);
    body.once('end', onEnd);
  };
  const stop = (): void => {
    body.removeListener('newListener', watch);
    body.removeListener('data', onData);
    body.removeListener('end', onEnd);
  };
  body.on('newListener', watch);
  return stop;
}

/**
 * Shadow traffic (docs/cohorts.md §4): copies of live requests sent to one target of the app's mirror
 * pool, with the same request id and `X-Switchyard-Mirror: 1`. The copy is sent on the next turn
 * of the event loop, after the live request is on its way, over its own agents (never the live
 * connection pools), and nothing of the live path waits on it: its response is read and
 * discarded; a copy that fails, hangs (bounded by the app's response timeout) or cannot start
 * costs the live request nothing but the bookkeeping here. At most `maxInflight` copies per
 * process; requests beyond, or whose body is not known to fit `maxBody`, are skipped and counted.
 *
 * Bodies (methods beyond the default GET and HEAD): a body with a Content-Length up to `maxBody`
 * is read alongside the live path (captureBody) and the copy goes once it is whole; a larger one,
 * or a chunked one of unknown length, is skipped (`skipped_body`), as is one whose live request
 * ended before its body did. At most `maxInflight × maxBody` bytes are held per process.
 */
export class Mirror {
  /** copies in flight in this process */
  inflight = 0;
  private readonly opts: MirrorOptions;
  private httpAgent: Agent | null = null;
  private httpsAgent: Agent | null = null;

  constructor(opts: MirrorOptions) {
    this.opts = opts;
  }

  /**
   * Starts a copy of a request routed to `live` (not the mirror pool) as `m` says; null when it is
   * skipped (counted). `contentLength`: the request's Content-Length ('0' without a body; null: a
   * body of unknown length); `body`: the request stream the live path forwards, when it has one.
   */
  copy(app: AppRoute, live: PoolRoute, m: MirrorRoute, method: string, path: string, fwd: ForwardedRequest, contentLength: string | null, body: Readable | Buffer | null): MirrorCopy | null {
    const now = this.opts.now();
    const pool = app.poolsByName.get(m.to);
    if (pool === undefined || pool === live) return null;
    const record = this.opts.onRecord;
    const skip = (outcome: MirrorOutcome): null => {
      record?.({ kind: 'copy', app, pool, outcome, startedAt: now, endedAt: now });
      return null;
    };
    const length = contentLength === null ? NaN : Number(contentLength);
    if (!(length <= m.maxBody) || (length > 0 && body === null)) return skip('skipped_body');
    if (this.inflight >= m.maxInflight) return skip('skipped_busy');
    const target = this.opts.runtime.apps[app.index]?.pools[pool.index]?.pick(now, null) ?? null;
    if (target === null) return skip('error');
    this.inflight++;
    const c = new Copy((l, r) => {
      if (m.compare) record?.({ kind: 'compare', app, pool, live: l, mirror: r, at: this.opts.now() });
    });
    const headers = fwd.headers.slice();
    headers.push('x-switchyard-mirror', '1');
    const timeouts = app.config.timeouts;
    let finished = false;
    const finish = (outcome: MirrorOutcome, cls: StatusClass | null): void => {
      if (finished) return;
      finished = true;
      this.inflight--;
      record?.({ kind: 'copy', app, pool, outcome, startedAt: now, endedAt: this.opts.now() });
      if (cls !== null) c.copied(cls);
    };
    const ended = (cls: StatusClass): void => finish(cls === '1xx' ? 'error' : cls, cls);
    const send = (payload: Buffer | null): void => {
      c.abandon = null;
      setImmediate(() => this.send(target.url, method, path, headers, payload, timeouts, ended));
    };
    if (length === 0 || body === null) send(null);
    // the raw front's whole body (its Content-Length bytes, come with the head): nothing to wait for
    else if (Buffer.isBuffer(body)) send(body);
    else {
      const stop = captureBody(body, length, send);
      c.abandon = () => {
        stop();
        finish('skipped_body', null);
      };
    }
    return c;
  }

  /** Sends one copy and tells `ended` its status class (`error`: no response, or a broken one). */
  private send(url: string, method: string, path: string, headers: string[], payload: Buffer | null, timeouts: AppRoute['config']['timeouts'], ended: (cls: StatusClass) => void): void {
    let req: ClientRequest;
    try {
      const u = new URL(url);
      const secure = u.protocol === 'https:';
      const lib = secure ? https() : http;
      req = lib.request({
        host: u.hostname.replace(/^\[|\]$/g, ''),
        port: u.port === '' ? (secure ? 443 : 80) : Number(u.port),
        method,
        path,
        headers,
        agent: secure ? (this.httpsAgent ??= new (https().Agent)({ keepAlive: true })) : (this.httpAgent ??= new http.Agent({ keepAlive: true })),
      });
    } catch {
      ended('error');
      return;
    }
    // one deadline for the whole copy (connect, response head, body): the app's timeouts summed
    const deadline = setTimeout(() => req.destroy(new Error('mirror copy timed out')), timeouts.connect + timeouts.response + timeouts.idle).unref();
    req.on('error', () => {
      clearTimeout(deadline);
      ended('error');
    });
    req.on('response', (res: IncomingMessage) => {
      res.on('error', () => undefined);
      res.on('end', () => {
        clearTimeout(deadline);
        ended(statusClass(res.statusCode ?? 0));
      });
      res.on('close', () => {
        clearTimeout(deadline);
        if (!res.complete) ended('error');
      });
      res.resume();
    });
    req.end(payload ?? undefined);
  }

  /** Closes the copies' idle connections (shutdown). */
  close(): void {
    this.httpAgent?.destroy();
    this.httpsAgent?.destroy();
  }
}
