import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Span, type TextMapGetter, type TextMapSetter } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOnSampler, BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler } from '@opentelemetry/sdk-trace-base';
import type { Logger } from 'pino';
import type { TracingConfig } from '../config/tracing.ts';
import type { RequestSpan, SpanOutcome, SpanRoute, Tracing } from './types.ts';

/** How long `shutdown()` waits for the last export. */
const SHUTDOWN_MS = 5_000;

/**
 * The forwarded header list (`[name, value, …]`, names lower-case: src/dataplane/headers.ts) as
 * a carrier for the W3C propagator: it reads the client's `traceparent`/`tracestate` from it and
 * replaces them with this proxy's.
 */
const getter: TextMapGetter<string[]> = {
  keys: (h) => h.filter((_, i) => i % 2 === 0),
  get(h, key) {
    for (let i = 0; i < h.length; i += 2) if (h[i] === key) return h[i + 1];
    return undefined;
  },
};
const setter: TextMapSetter<string[]> = {
  set(h, key, value) {
    for (let i = 0; i < h.length; i += 2) {
      if (h[i] === key) {
        h[i + 1] = value;
        // a second header of that name from the client would contradict ours
        for (let j = h.length - 2; j > i; j -= 2) if (h[j] === key) h.splice(j, 2);
        return;
      }
    }
    h.push(key, value);
  },
};

/** A version-00 `traceparent` (W3C Trace Context §3.2): the last two hex digits are the flags, bit 0 "sampled". */
const TRACEPARENT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

/** `sticky` and `random` are both the weights' decision (docs/cohorts.md §7 `by`). */
function byOf(by: string): string {
  return by === 'sticky' || by === 'random' ? 'weights' : by;
}

export interface OtelTracingDeps {
  readonly logger: Logger;
  /** `service.instance.id` */
  readonly instanceId: string;
  readonly version?: string;
  /** the draw that starts a trace at `sample` @default Math.random */
  readonly random?: () => number;
}

/**
 * Tracing with the OpenTelemetry JS SDK: W3C trace context in and out, parent-based sampling (a
 * sampled `traceparent` is always traced, an unsampled one never, and `sample` of the requests
 * without one start a trace here), a SERVER span per request with Switchyard's routing facts as
 * attributes, batched OTLP/HTTP (JSON) export. No context manager and no instrumentation:
 * contexts are passed explicitly, so nothing hooks node:http or async_hooks.
 *
 * The sampling decision is taken before the SDK is called, and a request that is not traced
 * never reaches it: its `traceparent`, if any, goes upstream as it came. Measured with
 * bench/tracing.ts, the SDK's own unsampled path (trace and span ids drawn, a NonRecordingSpan,
 * a fresh `traceparent` written) cost ~3 µs per request, 30 times this one.
 */
export function createOtelTracing(config: TracingConfig, deps: OtelTracingDeps): Tracing {
  const exporter = new OTLPTraceExporter({ url: config.otlp, headers: config.headers, timeoutMillis: 10_000 });
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': config.serviceName, 'service.instance.id': deps.instanceId, ...(deps.version === undefined ? {} : { 'service.version': deps.version }) }),
    // roots reach the SDK only once start() drew them in (at `sample`), so the SDK keeps them all
    sampler: new ParentBasedSampler({ root: new AlwaysOnSampler() }),
    spanProcessors: [new BatchSpanProcessor(exporter, { scheduledDelayMillis: config.exportEvery, maxQueueSize: 8192, maxExportBatchSize: 512 })],
  });
  const tracer = provider.getTracer('switchyard');
  const propagator = new W3CTraceContextPropagator();
  const random = deps.random ?? Math.random;
  const sample = config.sample;
  deps.logger.info({ otlp: config.otlp, sample: config.sample }, 'tracing: spans are exported over OTLP/HTTP');

  return {
    start(headers, method, path, host, startedAt) {
      const incoming = getter.get(headers, 'traceparent');
      if (typeof incoming === 'string' && TRACEPARENT.test(incoming)) {
        // the caller decided: an unsampled trace is passed on untouched
        if ((parseInt(incoming.slice(-2), 16) & 1) === 0) return null;
      } else if (!(random() < sample)) {
        return null;
      }
      const parent = propagator.extract(ROOT_CONTEXT, headers, getter);
      const span = tracer.startSpan(method, { kind: SpanKind.SERVER, startTime: startedAt }, parent);
      propagator.inject(trace.setSpan(parent, span), headers, setter);
      if (!span.isRecording()) return null;
      span.setAttributes({ 'http.request.method': method, 'url.path': path.split('?', 1)[0] ?? path, ...(host === undefined ? {} : { 'server.address': host }) });
      return span as unknown as RequestSpan;
    },
    end(handle, route: SpanRoute, target, outcome: SpanOutcome) {
      const span = handle as unknown as Span;
      span.setAttributes({
        'switchyard.app': route.app.name,
        'switchyard.pool': route.pool.name,
        'switchyard.version': route.pool.version,
        'switchyard.revision': route.app.revision,
        'switchyard.by': byOf(route.by),
        'http.response.status_code': outcome.status,
        ...(target === null ? {} : { 'switchyard.upstream': target }),
      });
      if (outcome.error !== null || outcome.status >= 500) {
        span.setAttribute('error.type', outcome.error ?? String(outcome.status));
        span.setStatus({ code: SpanStatusCode.ERROR, ...(outcome.error === null ? {} : { message: outcome.error }) });
      }
      span.end(outcome.endedAt);
    },
    async shutdown() {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([provider.shutdown().catch((err: unknown) => deps.logger.warn({ err }, 'tracing: the last export failed')), new Promise<void>((resolve) => (timer = setTimeout(resolve, SHUTDOWN_MS).unref()))]);
      clearTimeout(timer);
    },
  };
}
