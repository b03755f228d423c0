import { createRequire } from 'node:module';
import type * as Http2 from 'node:http2';
import type { HealthConfig } from '../config/schema.ts';
import type { ProbeResult } from './probe.ts';

const require = createRequire(import.meta.url);
// loaded on the first gRPC check only (src/node-http.ts explains the require)
let http2: typeof Http2 | null = null;

/** The call of the gRPC health protocol (grpc/grpc doc/health-checking.md). */
const CHECK_PATH = '/grpc.health.v1.Health/Check';
/** HealthCheckRequest{ service: "" } framed: no compression, length 0 (the whole server). */
const EMPTY_REQUEST = Buffer.alloc(5);
/** HealthCheckResponse.ServingStatus */
const SERVING = 1;
const STATUS_NAMES = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'];

/**
 * `HealthCheckResponse.status` from a framed response message: field 1, varint (the message has
 * no other field, and the default, UNKNOWN, is sent as an empty message). -1 when unreadable.
 */
export function servingStatus(body: Buffer): number {
  if (body.length < 5 || body[0] !== 0) return -1; // compressed or no frame: we asked for neither
  const len = body.readUInt32BE(1);
  const msg = body.subarray(5, 5 + len);
  if (msg.length !== len) return -1;
  let status = 0;
  for (let i = 0; i < msg.length; ) {
    const tag = msg[i++] as number;
    let value = 0;
    let shift = 0;
    let byte: number;
    do {
      byte = msg[i++] ?? 0;
      value |= (byte & 0x7f) << shift;
      shift += 7;
    } while (byte & 0x80 && shift < 35);
    if (tag >> 3 === 1 && (tag & 7) === 0) status = value;
    else if ((tag & 7) !== 0) return -1; // only varints are expected in this message
  }
  return status;
}

/**
 * Health checks with `health: { grpc: true }`: one `grpc.health.v1.Health/Check` call for the
 * whole server (service ""), on an HTTP/2 session per target kept between checks (h2c for
 * http:// targets, TLS with ALPN h2 for https:// ones). Up when it answers SERVING with
 * grpc-status 0 within `timeout`.
 */
export class GrpcProbe {
  private readonly sessions = new Map<string, Http2.ClientHttp2Session>();

  private session(origin: string): Http2.ClientHttp2Session {
    const open = this.sessions.get(origin);
    if (open !== undefined && !open.closed && !open.destroyed) return open;
    http2 ??= require('node:http2') as typeof Http2;
    const s = http2.connect(origin);
    s.on('error', () => undefined);
    s.once('close', () => {
      if (this.sessions.get(origin) === s) this.sessions.delete(origin);
    });
    // a checker never keeps the process alive
    s.unref();
    this.sessions.set(origin, s);
    return s;
  }

  probe(origin: string, health: HealthConfig, signal: AbortSignal): Promise<ProbeResult> {
    return new Promise<ProbeResult>((resolve) => {
      let done = false;
      const session = this.session(origin);
      const finish = (r: ProbeResult): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        if (!stream.closed) stream.close();
        resolve(r);
      };
      const fail = (error: string, status: number | null = null): void => finish({ ok: false, status, version: null, error });
      const onAbort = (): void => fail('aborted');
      const timer = setTimeout(() => {
        fail('timeout');
        // a session that let a check time out may be dead: the next check opens a new one
        session.destroy();
      }, health.timeout);
      signal.addEventListener('abort', onAbort, { once: true });
      const stream = session.request({ ':method': 'POST', ':path': CHECK_PATH, 'content-type': 'application/grpc', te: 'trailers', 'user-agent': 'switchyard-health-check' });
      let httpStatus = 0;
      let grpcStatus: string | undefined;
      const chunks: Buffer[] = [];
      stream.on('response', (h) => {
        httpStatus = Number(h[':status']);
        grpcStatus = h['grpc-status'] as string | undefined;
      });
      stream.on('trailers', (t) => {
        grpcStatus = t['grpc-status'] as string | undefined;
      });
      stream.on('data', (c: Buffer) => {
        if (chunks.length < 4) chunks.push(c);
      });
      stream.on('error', (err: Error & { code?: string }) => {
        // a session that failed to open (TLS refused, connection refused) cancels its streams with
        // the session's error as the cause: that cause is what an operator needs to read
        const cause = err.cause instanceof Error ? (err.cause as Error & { code?: string }) : null;
        fail(cause !== null ? (cause.code ?? cause.message) : (err.code ?? err.message));
      });
      stream.on('end', () => {
        if (httpStatus !== 200) return fail(`status ${httpStatus}`, httpStatus);
        if (grpcStatus !== '0') return fail(`grpc-status ${grpcStatus ?? 'missing'}`, httpStatus);
        const serving = servingStatus(Buffer.concat(chunks));
        if (serving === SERVING) finish({ ok: true, status: httpStatus, version: null, error: null });
        else fail(serving === -1 ? 'unreadable health answer' : (STATUS_NAMES[serving] ?? `status ${serving}`), httpStatus);
      });
      stream.end(EMPTY_REQUEST);
    });
  }

  close(): void {
    for (const s of this.sessions.values()) s.destroy();
    this.sessions.clear();
  }
}
