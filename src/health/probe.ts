import type { Agent, IncomingMessage } from 'node:http';
import { http, https as httpsModule } from '../node-http.ts';
import type { HealthConfig } from '../config/schema.ts';
import { GrpcProbe } from './grpc-probe.ts';

/** What one health check of one target found. */
export interface ProbeResult {
  /** answered with a status in `expectStatus`, within `timeout` */
  readonly ok: boolean;
  readonly status: number | null;
  /** read with `versionFrom`; null when not configured or not reported */
  readonly version: string | null;
  /** why it failed: `status 500`, `timeout`, `ECONNREFUSED`; null when ok */
  readonly error: string | null;
}

/** One health check of `origin` (`http://host:port`); never rejects. */
export type Probe = (origin: string, health: HealthConfig, signal: AbortSignal) => Promise<ProbeResult>;

/** The most of a health answer read for a JSON version; the rest is drained unread. */
const MAX_BODY_BYTES = 64 * 1024;

/** `a.b.c` of a parsed JSON body, as a string when it is a string or a number. */
export function versionAt(body: unknown, path: string): string | null {
  let v: unknown = body;
  for (const key of path.split('.')) {
    if (v === null || typeof v !== 'object' || !Object.hasOwn(v, key)) return null;
    v = (v as Record<string, unknown>)[key];
  }
  if (typeof v === 'string' && v !== '') return v;
  return typeof v === 'number' && Number.isFinite(v) ? String(v) : null;
}

/** Keep-alive, at most two sockets per target. */
const AGENT_OPTIONS = { keepAlive: true, maxSockets: 2, maxFreeSockets: 1 };

/**
 * Health checks over node:http (not undici: the data plane loads only undici's Pool, and the
 * checks must not share its connections, or a saturated pool would fail them). Keep-alive agents
 * of their own, at most two sockets per target.
 */
export class HttpProbe {
  private readonly http = new http.Agent(AGENT_OPTIONS);
  /** created with the first https target (node:https costs ~5 MB to load) */
  private httpsAgent: Agent | null = null;
  /** `health.grpc`: the gRPC health protocol over HTTP/2 (grpc-probe.ts) */
  private readonly grpc = new GrpcProbe();

  readonly probe: Probe = (origin, health, signal) => {
    if (health.grpc === true) return this.grpc.probe(origin, health, signal);
    const timeout = AbortSignal.timeout(health.timeout);
    const both = AbortSignal.any([signal, timeout]);
    const https = origin.startsWith('https:');
    return new Promise<ProbeResult>((resolve) => {
      let done = false;
      const finish = (r: ProbeResult): void => {
        if (done) return;
        done = true;
        resolve(r);
      };
      const fail = (err: unknown): void => {
        const code = (err as { code?: unknown }).code;
        finish({ ok: false, status: null, version: null, error: timeout.aborted ? 'timeout' : typeof code === 'string' && code !== 'ABORT_ERR' ? code : String((err as Error).message ?? err) });
      };
      const options = { agent: https ? (this.httpsAgent ??= new (httpsModule().Agent)(AGENT_OPTIONS)) : this.http, signal: both, headers: { 'user-agent': 'switchyard-health-check', accept: 'application/json, */*' } };
      const req = (https ? httpsModule().request : http.request)(new URL(health.path, origin), options, (res) => {
        readAnswer(res, health).then(finish, fail);
      });
      req.on('error', fail);
      req.end();
    });
  };

  close(): void {
    this.http.destroy();
    this.httpsAgent?.destroy();
    this.grpc.close();
  }
}

async function readAnswer(res: IncomingMessage, health: HealthConfig): Promise<ProbeResult> {
  const status = res.statusCode ?? 0;
  const ok = status >= health.expectStatus.min && status <= health.expectStatus.max;
  const from = health.versionFrom;
  let version: string | null = null;
  if (from?.header !== undefined) {
    const h = res.headers[from.header];
    version = (Array.isArray(h) ? h[0] : h)?.trim() || null;
  }
  const wantBody = from?.json !== undefined && ok;
  const chunks: Buffer[] = [];
  let size = 0;
  // read to the end either way, so a body that stalls counts against the timeout
  for await (const chunk of res as AsyncIterable<Buffer>) {
    if (wantBody && size + chunk.length <= MAX_BODY_BYTES) chunks.push(chunk);
    size += chunk.length;
  }
  if (wantBody && from?.json !== undefined) {
    try {
      version = versionAt(JSON.parse(Buffer.concat(chunks).toString('utf8')), from.json);
    } catch {
      version = null;
    }
  }
  return { ok, status, version, error: ok ? null : `status ${status}` };
}
