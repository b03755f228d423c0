import type { Pool } from 'undici';
// the Pool class alone, for the reason given in src/dataplane/target.ts
import { undiciPool } from './internals.ts';
import { targetConnector } from './tls-name.ts';
import type { Upstream } from './upstream.ts';

/** How a pool speaks to its targets (config `pools.NAME.protocol`). */
export type PoolProtocol = 'http1' | 'h2';

/** HTTP/2 sessions per target when the app sets no `maxConnections` (Envoy opens one per worker; we have few workers). */
export const H2_SESSIONS = 4;
/**
 * Streams the proxy opens at once on one session. 100 is the smallest limit servers commonly
 * announce (Node's http2 and grpc-go advertise 100 or more; nginx 128): a server that announces
 * fewer is obeyed, undici reads its SETTINGS.
 */
export const H2_STREAMS = 100;
/** A keep-alive PING on every session this often, so a dead peer or a NAT that forgot us shows before a request is lost. */
export const H2_PING_MS = 30_000;

export interface H2ClientOptions {
  readonly connectTimeout: number;
  /** from the request to the response head */
  readonly headersTimeout: number;
  /** between two reads of a response body (a stream that says nothing for this long is cut) */
  readonly bodyTimeout: number;
  /** sessions per target @default H2_SESSIONS */
  readonly sessions?: number | null;
  /** @default H2_STREAMS */
  readonly streams?: number;
  /** @default H2_PING_MS */
  readonly pingInterval?: number;
}

/**
 * The HTTP/2 engine of a `protocol: h2` pool: undici's Pool with its HTTP/2 client (h2c with
 * prior knowledge for http:// targets, ALPN h2 for https:// ones). Each undici Client of the
 * pool is one session carrying up to `streams` streams; the pool opens at most `sessions` of
 * them and queues the rest. A GOAWAY lets the streams in flight on that session finish while new
 * ones open a new session (undici replays once a stream the peer refused unprocessed), and a
 * PING every `pingInterval` finds a dead session.
 *
 * Why undici's client and not a node:http2 session pool of our own: it speaks the dispatch-handler
 * protocol the request handler already uses (src/dataplane/forward.ts), so retries, passive
 * health, drain counts, limits and metrics stay one code, and it carries the GOAWAY, PING,
 * SETTINGS and flow-control cases a hand-made pool would have to earn; its response trailers
 * arrive in `onResponseEnd`, which is where forward.ts relays them.
 */
export function createH2Client(origin: string, opts: H2ClientOptions): Upstream {
  const streams = opts.streams ?? H2_STREAMS;
  const options = {
    // https: the certificate is checked for the target's own name (./tls-name.ts)
    connect: origin.startsWith('https:') ? targetConnector({ timeout: opts.connectTimeout, allowH2: true }) : { timeout: opts.connectTimeout },
    headersTimeout: opts.headersTimeout,
    bodyTimeout: opts.bodyTimeout,
    connections: opts.sessions ?? H2_SESSIONS,
    allowH2: true,
    // prior knowledge on cleartext (there is no upgrade dance in gRPC); https negotiates h2 by ALPN
    useH2c: origin.startsWith('http:'),
    // undici's h2 client takes `pipelining` as its stream cap per session
    pipelining: streams,
    maxConcurrentStreams: streams,
    pingInterval: opts.pingInterval ?? H2_PING_MS,
  } as Pool.Options;
  return new (undiciPool().Pool)(origin, options);
}
