import type { Agent, ClientRequest, IncomingMessage } from 'node:http';
import { http, https } from '../node-http.ts';
import type { MirrorRoute } from '../routing/rules.ts';
import type { AppRoute, PoolRoute } from '../routing/snapshot.ts';
import type { Outcome } from './forward.ts';
import type { ForwardedRequest } from './headers.ts';
import type { Runtime } from './runtime.ts';

/** What became of one copy (the `outcome` label of switchyard_mirror_requests_total). */
export const MIRROR_OUTCOMES = ['2xx', '3xx', '4xx', '5xx', 'error', 'skipped_body', 'skipped_busy'] as const;
export type MirrorOutcome = (typeof MIRROR_OUTCOMES)[number];
/** A status class as compared: the copy's or the live response's (`error`: no response). */
export type StatusClass = '1xx' | '2xx' | '3xx' | '4xx' | '5xx' | 'error';

/** One mirror event: a copy that ended or was skipped, or (with `compare`) a (live, copy) pair. */
export type MirrorRecord =
  | { readonly kind: 'copy'; readonly app: AppRoute; readonly pool: PoolRoute; readonly outcome: MirrorOutcome; readonly startedAt: number; readonly endedAt: number }
  | { readonly kind: 'compare'; readonly app: AppRoute; readonly pool: PoolRoute; readonly live: StatusClass; readonly mirror: StatusClass; readonly at: number };

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

/** The live request's side of a copy: told the live outcome when the request ends, for `compare`. */
export interface MirrorCopy {
  live(outcome: Outcome): void;
}

class Copy implements MirrorCopy {
  private liveSeen: StatusClass | null = null;
  private copySeen: StatusClass | null = null;
  private readonly done: (live: StatusClass, copy: StatusClass) => void;
  constructor(done: (live: StatusClass, copy: StatusClass) => void) {
    this.done = done;
  }
  live(outcome: Outcome): void {
    if (this.liveSeen !== null) return;
    this.liveSeen = liveClass(outcome);
    if (this.copySeen !== null) this.done(this.liveSeen, this.copySeen);
  }
  copied(cls: StatusClass): void {
    this.copySeen = cls;
    if (this.liveSeen !== null) this.done(this.liveSeen, cls);
  }
}

/**
 * Shadow traffic (CONTRACT §10): copies of live requests sent to one target of the app's mirror
 * pool, with the same request id and `X-Switchyard-Mirror: 1`. The copy is sent on the next turn
 * of the event loop, after the live request is on its way, over its own agents (never the live
 * connection pools), and nothing of the live path waits on it: its response is read and
 * discarded; a copy that fails, hangs (bounded by the app's response timeout) or cannot start
 * costs the live request nothing but the bookkeeping here. At most `maxInflight` copies per
 * process; requests beyond, or whose body is not known to fit `maxBody`, are skipped and counted.
 *
 * Bodies: the live path streams a request body to its upstream as it arrives; copying it would
 * mean reading it here first (delaying the live request) or teeing a stream the engine reads,
 * so this version copies requests without a body only (a configured method with a body is counted
 * `skipped_body`). GET and HEAD, the default methods, carry none.
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
   * body of unknown length).
   */
  copy(app: AppRoute, live: PoolRoute, m: MirrorRoute, method: string, path: string, fwd: ForwardedRequest, contentLength: string | null): MirrorCopy | null {
    const now = this.opts.now();
    const pool = app.poolsByName.get(m.to);
    if (pool === undefined || pool === live) return null;
    const record = this.opts.onRecord;
    const skip = (outcome: MirrorOutcome): null => {
      record?.({ kind: 'copy', app, pool, outcome, startedAt: now, endedAt: now });
      return null;
    };
    if (contentLength === null || Number(contentLength) !== 0) return skip('skipped_body');
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
    const finish = (cls: StatusClass): void => {
      if (finished) return;
      finished = true;
      this.inflight--;
      record?.({ kind: 'copy', app, pool, outcome: cls === '1xx' ? 'error' : cls, startedAt: now, endedAt: this.opts.now() });
      c.copied(cls);
    };
    setImmediate(() => {
      let req: ClientRequest;
      try {
        const url = new URL(target.url);
        const secure = url.protocol === 'https:';
        const lib = secure ? https() : http;
        req = lib.request({
          host: url.hostname.replace(/^\[|\]$/g, ''),
          port: url.port === '' ? (secure ? 443 : 80) : Number(url.port),
          method,
          path,
          headers,
          agent: secure ? (this.httpsAgent ??= new (https().Agent)({ keepAlive: true })) : (this.httpAgent ??= new http.Agent({ keepAlive: true })),
        });
      } catch {
        finish('error');
        return;
      }
      // one deadline for the whole copy (connect, response head, body): the app's timeouts summed
      const deadline = setTimeout(() => req.destroy(new Error('mirror copy timed out')), timeouts.connect + timeouts.response + timeouts.idle).unref();
      req.on('error', () => {
        clearTimeout(deadline);
        finish('error');
      });
      req.on('response', (res: IncomingMessage) => {
        res.on('error', () => undefined);
        res.on('end', () => {
          clearTimeout(deadline);
          finish(statusClass(res.statusCode ?? 0));
        });
        res.on('close', () => {
          clearTimeout(deadline);
          if (!res.complete) finish('error');
        });
        res.resume();
      });
      req.end();
    });
    return c;
  }

  /** Closes the copies' idle connections (shutdown). */
  close(): void {
    this.httpAgent?.destroy();
    this.httpsAgent?.destroy();
  }
}
