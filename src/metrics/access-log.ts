import type { Logger } from 'pino';
import type { RequestRecord } from '../dataplane/server.ts';

export interface AccessLogOptions {
  /** share of requests logged, 0..1 (config `log.accessSample`) @default 1 */
  readonly sample?: number;
  /** @default Math.random — separate from routing's random source so either stays exact in tests */
  readonly random?: () => number;
}

/** Longest path kept in a line: a line per request must stay small whatever the client sends. */
export const MAX_LOGGED_PATH = 256;

/**
 * One JSON line per proxied request (pino, `access: true`), sampled; failures are always logged.
 *
 * Fields: app, pool, version, revision, status, ms, requestId, method, path, by (how the pool was
 * chosen), and `error` (the proxy's error code) when the proxy answered or cut the response.
 * The path is logged without its query string: queries routinely carry tokens, e-mail addresses
 * and session ids, and the upstream's own log, joined on the request id, has the full URL for
 * whoever is entitled to it. No client address or headers either, for the same reason.
 *
 * A 5xx or a proxy error is logged at `warn` when the proxy made it, `info` otherwise, and never
 * sampled away: the lines an operator needs in an incident are never the ones skipped.
 */
export function createAccessLog(logger: Logger, opts: AccessLogOptions = {}): (rec: RequestRecord) => void {
  const sample = opts.sample ?? 1;
  const random = opts.random ?? Math.random;
  return (rec) => {
    const { status, error, startedAt, endedAt } = rec.outcome;
    const failed = error !== null || status >= 500;
    // the sampling draw is only made when it can matter, so sample 1 (the default) and 0 cost nothing
    if (!failed && (sample <= 0 || (sample < 1 && random() >= sample))) return;
    const level = error !== null ? 'warn' : 'info';
    if (!logger.isLevelEnabled(level)) return;
    const line: Record<string, unknown> = {
      access: true,
      app: rec.app.name,
      pool: rec.pool.name,
      version: rec.pool.version,
      revision: rec.app.revision,
      status,
      ms: endedAt - startedAt,
      requestId: rec.requestId,
      method: rec.method,
      path: pathOnly(rec.path),
      by: rec.by,
    };
    if (error !== null) line.error = error;
    logger[level](line, 'request');
  };
}

/** The path of a request target without its query, bounded in length. */
export function pathOnly(target: string | undefined): string | undefined {
  if (target === undefined) return undefined;
  const q = target.indexOf('?');
  const path = q === -1 ? target : target.slice(0, q);
  return path.length > MAX_LOGGED_PATH ? `${path.slice(0, MAX_LOGGED_PATH)}…` : path;
}
