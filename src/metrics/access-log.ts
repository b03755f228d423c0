import pino, { type Logger } from 'pino';
import type { RequestRecord } from '../dataplane/types.ts';
import { grpcClass } from '../dataplane/grpc.ts';
import { LogSink } from '../logger.ts';

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
 * chosen), `error` (the proxy's error code) when the proxy answered or cut the response, and
 * `grpc` (the call's grpc-status) for a gRPC call; statuses 2, 4, 13, 14, 15 are failures.
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
  const direct = directLine(logger);
  return (rec) => {
    const { status, error, startedAt, headAt, endedAt, grpc } = rec.outcome;
    const failed = error !== null || status >= 500 || (grpc !== undefined && grpcClass(grpc) === 'server');
    // the sampling draw is only made when it can matter, so sample 1 (the default) and 0 cost nothing
    if (!failed && (sample <= 0 || (sample < 1 && random() >= sample))) return;
    const level = error !== null ? 'warn' : 'info';
    if (!logger.isLevelEnabled(level)) return;
    if (direct !== null) return direct(level, rec, pathOnly(rec.path));
    const line: Record<string, unknown> = {
      access: true,
      app: rec.app.name,
      pool: rec.pool.name,
      version: rec.pool.version,
      revision: rec.app.revision,
      status,
      ms: endedAt - startedAt,
      headMs: headAt - startedAt,
      requestId: rec.requestId,
      method: rec.method,
      path: pathOnly(rec.path),
      by: rec.by,
    };
    if (error !== null) line.error = error;
    if (grpc !== undefined) line.grpc = grpc;
    logger[level](line, 'request');
  };
}

const LEVEL_VALUE = { info: 30, warn: 40 } as const;

/**
 * The access line written straight into the LogSink, byte for byte what pino writes for it
 * (test/unit/access-log.test.ts compares them), or null when the logger writes elsewhere (a
 * terminal's pino-pretty, a test's stream). Why not pino: its generic path (serializers, the
 * redaction's wildcard scan of every key, asJson) cost 2.7 µs a line, this one 0.65 µs, on a
 * path that runs once per request; none of these fields is ever redacted (no token can be in
 * them) and the strings a client controls go through JSON.stringify.
 */
export function directLine(logger: Logger): ((level: 'info' | 'warn', rec: RequestRecord, path: string | undefined) => void) | null {
  const internals = logger as unknown as Record<symbol, unknown>;
  const sink = internals[pino.symbols.streamSym];
  const bindings = internals[pino.symbols.chindingsSym];
  if (!(sink instanceof LogSink) || typeof bindings !== 'string') return null;
  // the fields that only change with the pool or the app's revision, written once per pool and revision
  const heads = new WeakMap<RequestRecord['pool'], PoolHead>();
  return (level, rec, path) => {
    const { status, error, startedAt, headAt, endedAt, grpc } = rec.outcome;
    const app = rec.app;
    const pool = rec.pool;
    let head = heads.get(pool);
    if (head === undefined || head.app !== app || head.revision !== app.revision) {
      head = { app, revision: app.revision, text: `${bindings},"access":true,"app":${JSON.stringify(app.name)},"pool":${JSON.stringify(pool.name)},"version":${JSON.stringify(pool.version)},"revision":${app.revision},"status":` };
      heads.set(pool, head);
    }
    sink.write(
      `{"level":${LEVEL_VALUE[level]},"time":${Date.now()}${head.text}${status},"ms":${endedAt - startedAt},"headMs":${headAt - startedAt},"requestId":${jsonString(rec.requestId)},"method":${jsonString(rec.method)}${path === undefined ? '' : `,"path":${JSON.stringify(path)}`},"by":${jsonString(rec.by)}${error === null ? '' : `,"error":${JSON.stringify(error)}`}${grpc === undefined ? '' : `,"grpc":${grpc}`},"msg":"request"}\n`,
    );
  };
}

/** The start of an access line up to `"status":` for one pool at one revision of its app. */
interface PoolHead {
  readonly app: RequestRecord['app'];
  readonly revision: number;
  readonly text: string;
}

/** Characters JSON.stringify writes as they are: a request id (headers.ts), a method, `weights`, `pin`… */
const PLAIN = /^[A-Za-z0-9._:@\-/+= ]*$/;

/** JSON.stringify(s), without its call for the strings that need no escape (README Performance, "CPU per request on the plain path"). */
function jsonString(s: string): string {
  return PLAIN.test(s) ? `"${s}"` : JSON.stringify(s);
}

/** The path of a request target without its query, bounded in length. */
export function pathOnly(target: string | undefined): string | undefined {
  if (target === undefined) return undefined;
  const q = target.indexOf('?');
  const path = q === -1 ? target : target.slice(0, q);
  return path.length > MAX_LOGGED_PATH ? `${path.slice(0, MAX_LOGGED_PATH)}…` : path;
}
