import type { Dispatcher } from 'undici';
import { UPSTREAM_CODES, type UpstreamErrorCode } from './upstream-codes.ts';

/**
 * The forwarding engine's interface, the one the request handler (src/dataplane/forward.ts)
 * talks to: dispatch a request, get head, data, end and error callbacks with a controller that
 * pauses, resumes or aborts it. It is undici's dispatch-handler protocol
 * (`Dispatcher.DispatchHandler`), so undici's `Pool` is one engine as it stands and
 * `Http1Pool` (./http1-pool.ts) the other; the differential test runs both through one corpus.
 */
export interface Upstream {
  /** starts the request; the handler hears of it until exactly one of onResponseEnd / onResponseError */
  dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean;
  /** true once close() or destroy() was called */
  readonly closed: boolean;
  /** finishes what is in flight, then closes every connection */
  close(): Promise<void>;
  /** closes every connection now; what is in flight or queued fails */
  destroy(): Promise<void>;
}

/** Which engine forwards to HTTP targets (config `engine`). */
export type EngineKind = 'native' | 'undici';

/** What an engine needs to know about one target's connections (from the app's `timeouts` and `maxConnections`). */
export interface UpstreamOptions {
  readonly connectTimeout: number;
  /** from the request's dispatch (or its last body byte sent) to the response head */
  readonly headersTimeout: number;
  /** between two reads of a response body (not counted while the client's pace pauses it) */
  readonly bodyTimeout: number;
  /** how long an idle keep-alive connection is kept */
  readonly keepAliveTimeout: number;
  /** the most an upstream's `Keep-Alive: timeout=` hint may raise that to */
  readonly keepAliveMaxTimeout: number;
  /** connections at most; null: one per request in flight */
  readonly connections: number | null;
}

/** The code of an exception the engine caught in its own read path (a bug): never the target's fault. */
export const INTERNAL_ERROR_CODE = UPSTREAM_CODES.INTERNAL;

/** An error of the engine with the code undici gives the same failure, so the handler's rules (retry, 504, passive health) are one. */
export class UpstreamError extends Error {
  readonly code: UpstreamErrorCode;
  constructor(code: UpstreamErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UpstreamError';
    this.code = code;
  }
}
