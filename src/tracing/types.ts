/**
 * What the data plane sees of tracing (src/tracing/otel.ts implements it): a span started when a
 * request is routed and ended when it is done. Without `tracing:` in the config there is no
 * Tracing object at all, and the data plane's only cost is one `null` check per request.
 */

/** An open server span; opaque to the data plane. */
export interface RequestSpan {
  readonly __requestSpan: true;
}

/** What a span says of where the request went, read when it ends (a reroute may have moved it). */
export interface SpanRoute {
  readonly app: { readonly name: string; readonly revision: number };
  readonly pool: { readonly name: string; readonly version: string };
  /** the routing step that decided: preview, rule:NAME, pin, sticky or random (both `weights`) */
  readonly by: string;
}

export interface SpanOutcome {
  readonly status: number;
  /** the proxy's error code when it answered or the upstream broke the response */
  readonly error: string | null;
  readonly endedAt: number;
}

export interface Tracing {
  /**
   * Starts the server span of a request, a child of the client's `traceparent` when it carries
   * one, and writes its own `traceparent` (and the client's `tracestate`) into `headers`, the
   * list forwarded upstream, so the upstream's spans are its children. Returns null when the
   * span is not sampled: nothing is recorded, but the trace context still goes upstream.
   */
  start(headers: string[], method: string, path: string, host: string | undefined, startedAt: number): RequestSpan | null;
  /** Ends a span with where the request went and how it ended. */
  end(span: RequestSpan, route: SpanRoute, target: string | null, outcome: SpanOutcome): void;
  /** Exports what is buffered and stops (bounded). */
  shutdown(): Promise<void>;
}
