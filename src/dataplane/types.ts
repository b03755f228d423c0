import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { ErrorCode } from '../errors.ts';
import type { RoutedBy } from '../routing/decide.ts';
import type { AppRoute, PoolRoute, Snapshot } from '../routing/snapshot.ts';
import type { RequestSpan, Tracing } from '../tracing/types.ts';
import type { ForwardedRequest, TrustedProxies } from './headers.ts';
import type { Limits } from './limits.ts';
import type { Runtime } from './runtime.ts';

// The data plane's shared vocabulary (undici's lib/core/symbols.js, errors.js): the types the
// server, the request steps, the upgrade pipe and the plane's readers (metrics, stats, the
// access log, the assembly in src/planes/) name, in a file that imports no code of theirs.

/**
 * The request side of one client request, as the request path reads it (server.ts, forward.ts,
 * request-target.ts, limits.ts, grpc.ts): the members node:http's IncomingMessage, the raw
 * front's FrontExchange (src/dataplane/front.ts) and the h2 H2Exchange (src/edge/h2.ts) all
 * have, structurally (no wrapper per request).
 */
export interface ClientRequest {
  readonly method?: string | undefined;
  readonly url?: string | undefined;
  readonly rawHeaders: string[];
  /** the few fields read by name; everything else is read from rawHeaders */
  readonly headers: { readonly host?: string | undefined; readonly upgrade?: string | undefined; readonly expect?: string | undefined; readonly 'content-type'?: string | undefined };
  readonly httpVersionMajor: number;
  readonly httpVersionMinor: number;
  readonly httpVersion: string;
  /** the client connection (an h2 stream's: its session's socket) */
  readonly socket: Socket;
  /** the whole body was received (or there was none) */
  readonly complete: boolean;
  readonly destroyed: boolean;
  /** the body is paused by its reader (the upstream reads slowly): not the client's stall */
  isPaused(): boolean;
  /** body bytes received and not yet read */
  readonly readableLength: number;
  /** the body stream when it is an object of its own (h2, the raw front), or the whole body when the raw front read it with the head; IncomingMessage is its own body */
  readonly requestBody?: Readable | Buffer | null;
  /** body bytes received, when the socket's byte count does not tell (h2) */
  readonly bodyBytesRead?: number;
}

/** The response side of one client request: what the request path writes through (the same three shapes). */
export interface ClientResponse {
  readonly headersSent: boolean;
  readonly destroyed: boolean;
  readonly writableEnded: boolean;
  readonly writableLength: number;
  readonly writableHighWaterMark: number;
  /** cleared when the connection must close after this response (refuse) */
  shouldKeepAlive: boolean;
  /** the client connection, for raw 1xx heads (null on node:http until the response has its turn) */
  readonly socket: Socket | null;
  writeHead(status: number, fields?: string[]): this;
  writeHead(status: number, reason: string, fields?: string[]): this;
  write(chunk: Buffer | string): boolean;
  end(chunk?: Buffer | string): this;
  addTrailers(fields: Record<string, string | string[] | undefined>): void;
  /** the interim 100 (RFC 9110 §10.1.1): a raw head on HTTP/1.1, a HEADERS frame on h2 */
  writeContinue?(): void;
  /** an interim 1xx other than 100 and 101 (102, 103 Early Hints) as h2 sends one: a HEADERS frame (HTTP/1.1 writes a raw head on `socket`) */
  writeInformational?(status: number, fields: Record<string, string | string[]>): void;
  destroy(err?: Error): this;
  once(event: 'close' | 'drain', fn: () => void): this;
  removeListener(event: 'close' | 'drain', fn: () => void): this;
}

/** One client request and its response as one object: the raw front's and h2's exchanges are both at once. */
export type ClientExchange = ClientRequest & ClientResponse;

/** What the server learns when a proxied request ends, for metrics and the access log. */
export interface Outcome {
  readonly status: number;
  /** set when the proxy made the response itself or the upstream broke it */
  readonly error: ErrorCode | null;
  readonly startedAt: number;
  /**
   * When the response head went to the client (or the proxy's own answer was written): latency,
   * as stats, metrics and rollouts judge it, is `headAt - startedAt`; how long the response then
   * stayed open (a stream, a download) is `endedAt - headAt`, kept apart. Equal to `endedAt` when
   * the request ended before any head was sent (a client that left, a cut). A 101 (an upgrade)
   * counts in neither figure.
   */
  readonly headAt: number;
  readonly endedAt: number;
  /** the call's `grpc-status` (response headers or trailers), when it had one */
  readonly grpc?: number;
}

/** One finished request, as metrics, stats and the access log see it. */
export interface RequestRecord {
  readonly app: AppRoute;
  readonly pool: PoolRoute;
  readonly by: RoutedBy;
  readonly requestId: string;
  readonly method: string;
  /** the request target as received (path and query); the access log keeps the path only */
  readonly path?: string;
  readonly outcome: Outcome;
}

/** Where a request went and why (routing/decide.ts), carried by its handler until it ends. */
export interface Decision {
  readonly app: AppRoute;
  readonly pool: PoolRoute;
  readonly by: RoutedBy;
  /** a pin's only: the request's facts, to route it by weight should its pool fail it (DataPlane.reroute) */
  readonly fwd?: ForwardedRequest;
  /** with tracing: the request's sampled span, ended when it is done */
  readonly span?: RequestSpan;
  /** a pin's only: the time it was counted in its pool's `pinned` figure */
  readonly at?: number;
  /** its copy to the app's mirror pool, told the live outcome when the request ends */
  mirror?: MirrorCopy | null;
}

export interface DataPlaneOptions {
  /** anything holding the current snapshot (the Controller) */
  readonly source: { readonly snapshot: Snapshot };
  readonly runtime: Runtime;
  readonly trust: TrustedProxies;
  /** @default Math.random — injectable so split tests assert exact counts */
  readonly random?: () => number;
  /** @default Date.now */
  readonly now?: () => number;
  /** called once per proxied request when it ends (metrics, stats, access log) */
  readonly onRequest?: (record: RequestRecord) => void;
  /** called once per mirrored copy when it ends or is skipped, and per compared pair (src/dataplane/mirror.ts) */
  readonly onMirror?: (record: MirrorRecord) => void;
  /** called when a preview header carries a bad signature */
  readonly onPreviewRejected?: (app: AppRoute) => void;
  /** connection and request limits (src/dataplane/limits.ts) @default the config defaults */
  readonly limits?: Limits;
  /** answers a plain-port request itself before routing (true: taken), e.g. the 308 to https or an ACME HTTP-01 challenge (src/edge); never asked about a TLS connection's requests */
  readonly intercept?: (req: ClientRequest, res: ClientResponse) => boolean;
  /**
   * Who serves HTTP/1.1 clients: `native`, the raw-socket front (src/dataplane/front.ts), which
   * hands node:http every request it does not serve itself; `node`, node:http alone. With an
   * `intercept`, the front serves TLS connections only: plain ones go to node:http, whose
   * requests the intercept reads.
   * @default native with the native engine, node otherwise
   */
  readonly front?: 'native' | 'node';
  /** OpenTelemetry spans and trace context (src/tracing), or null: off, one null check per request @default null */
  readonly tracing?: Tracing | null;
}

/** What became of one copy (the `outcome` label of switchyard_mirror_requests_total). */
export type MirrorOutcome = '2xx' | '3xx' | '4xx' | '5xx' | 'error' | 'skipped_body' | 'skipped_busy';
/** A status class as compared: the copy's or the live response's (`error`: no response). */
export type StatusClass = '1xx' | '2xx' | '3xx' | '4xx' | '5xx' | 'error';

/** One mirror event: a copy that ended or was skipped, or (with `compare`) a (live, copy) pair. */
export type MirrorRecord =
  | { readonly kind: 'copy'; readonly app: AppRoute; readonly pool: PoolRoute; readonly outcome: MirrorOutcome; readonly startedAt: number; readonly endedAt: number }
  | { readonly kind: 'compare'; readonly app: AppRoute; readonly pool: PoolRoute; readonly live: StatusClass; readonly mirror: StatusClass; readonly at: number };

/** The live request's side of a copy: told the live outcome when the request ends, for `compare`. */
export interface MirrorCopy {
  live(outcome: Outcome): void;
}
