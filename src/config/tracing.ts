import { z } from 'zod';
import { parseDuration } from './duration.ts';

/** `tracing.otlp` with no path: the OTLP/HTTP traces path is added, as OTEL_EXPORTER_OTLP_ENDPOINT does. */
function tracesEndpoint(url: string): string {
  const u = new URL(url);
  if (u.pathname === '/' || u.pathname === '') u.pathname = '/v1/traces';
  return u.toString();
}

/**
 * `tracing:` of the config file (README "Tracing"): OpenTelemetry server spans of proxied
 * requests, exported over OTLP/HTTP (src/tracing/). Omitted: no tracing, and nothing of the
 * OpenTelemetry SDK is even loaded.
 */
export const tracingSchema = z.strictObject({
  /** the collector's OTLP/HTTP traces URL (`http://collector:4318/v1/traces`); a URL without a path gets `/v1/traces` */
  otlp: z
    .string()
    .refine((s) => URL.canParse(s) && /^https?:$/.test(new URL(s).protocol), 'must be an http(s) URL of an OTLP/HTTP collector')
    .transform(tracesEndpoint),
  /** share of the requests that start a trace here, 0..1; a request whose `traceparent` says sampled is always traced @default 0.01 */
  sample: z.number().min(0).max(1).default(0.01),
  /** sent with every export, e.g. a collector's auth header */
  headers: z.record(z.string(), z.string()).default({}),
  /** the `service.name` of the spans @default switchyard */
  serviceName: z.string().min(1).max(200).default('switchyard'),
  /** spans are exported in batches at least this often @default 5s */
  exportEvery: z
    .union([z.string(), z.number()])
    .default('5s')
    .transform((v, ctx) => {
      const ms = parseDuration(v);
      if (ms === undefined || ms < 10) {
        ctx.addIssue({ code: 'custom', message: 'must be a duration of at least 10ms, like 1s or 5s' });
        return z.NEVER;
      }
      return ms;
    }),
});

export type TracingConfig = z.output<typeof tracingSchema>;
