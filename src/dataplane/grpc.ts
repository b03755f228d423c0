import type { IncomingHttpHeaders } from 'node:http';
import type { ServerHttp2Stream } from 'node:http2';
import type { ClientResponse } from './types.ts';

/**
 * gRPC over the proxy (docs/grpc.md §2, §3, README "gRPC"): what makes a request a gRPC call, the
 * errors the proxy answers in gRPC's shape, and how a `grpc-status` counts in stats and metrics.
 * Status codes and the HTTP mapping: docs/grpc.md in grpc/grpc ("Status codes and their use in
 * gRPC", "HTTP to gRPC Status Code Mapping").
 */

/** The gRPC status codes the proxy itself answers with. */
export const GrpcStatus = {
  OK: 0,
  UNKNOWN: 2,
  DEADLINE_EXCEEDED: 4,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

/**
 * Codes that are the server's fault, counted as errors like a 5xx (UNKNOWN, DEADLINE_EXCEEDED,
 * INTERNAL, UNAVAILABLE, DATA_LOSS); any other non-zero code is the caller's, like a 4xx.
 */
const SERVER_FAULT = new Set([2, 4, 13, 14, 15]);

/** `content-type: application/grpc`, `application/grpc+proto`, `application/grpc-web…`: a gRPC call. */
export function isGrpcContentType(value: string | string[] | undefined): boolean {
  return typeof value === 'string' && value.toLowerCase().startsWith('application/grpc');
}

/** Whether the request a response answers is a gRPC call (node:http and h2 responses know their request; the raw front's do not, and serve no gRPC). */
export function answersGrpc(res: ClientResponse): boolean {
  const req = (res as { req?: { headers?: IncomingHttpHeaders } }).req;
  return isGrpcContentType(req?.headers?.['content-type']);
}

/** The gRPC code for a status the proxy would answer an HTTP client with (502/503 → 14, 504 → 4). */
export function grpcStatusFor(httpStatus: number): number {
  switch (httpStatus) {
    case 502:
    case 503:
    case 429:
      return GrpcStatus.UNAVAILABLE;
    case 504:
    case 408:
      return GrpcStatus.DEADLINE_EXCEEDED;
    case 400:
      return GrpcStatus.INTERNAL;
    case 401:
      return GrpcStatus.UNAUTHENTICATED;
    case 404:
    case 421: // no app for the authority: no route, as Envoy answers it
      return GrpcStatus.UNIMPLEMENTED;
    case 413:
      return GrpcStatus.RESOURCE_EXHAUSTED;
    default:
      return GrpcStatus.UNKNOWN;
  }
}

/** `grpc-message` is percent-encoded UTF-8: every byte outside printable ASCII, and '%' itself. */
export function encodeGrpcMessage(message: string): string {
  let out = '';
  for (const byte of Buffer.from(message, 'utf8')) out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}

/** The `grpc-status` of a header or trailer block, or -1. */
export function grpcStatusOf(fields: Record<string, string | string[] | undefined> | null | undefined): number {
  const v = fields?.['grpc-status'];
  if (typeof v !== 'string') return -1;
  const n = Number(v);
  return Number.isInteger(n) && n >= 0 ? n : -1;
}

/** How a finished call counts: `ok` (0 or none), `client` (the caller's fault) or `server` (an error). */
export function grpcClass(code: number): 'ok' | 'client' | 'server' {
  if (code <= 0) return 'ok';
  return SERVER_FAULT.has(code) ? 'server' : 'client';
}

/**
 * Answers a gRPC call with an error the proxy made: HTTP 200 with `grpc-status` and
 * `grpc-message`, and no message (gRPC clients read the HTTP status only to tell a gRPC server
 * from something else). On HTTP/2 it is a Trailers-Only response, one HEADERS frame that ends
 * the stream, as gRPC servers send it; node:http2's compatibility API cannot send that (its
 * writeHead never ends the stream), hence the stream's own respond().
 */
export function sendGrpcError(res: ClientResponse, grpcStatus: number, message: string, requestId: string): void {
  const fields = { 'content-type': 'application/grpc', 'grpc-status': String(grpcStatus), 'grpc-message': encodeGrpcMessage(message), 'x-request-id': requestId };
  const stream = (res as { stream?: ServerHttp2Stream }).stream;
  if (stream !== undefined && typeof stream.respond === 'function') {
    if (!stream.destroyed && !stream.headersSent) stream.respond({ ':status': 200, ...fields }, { endStream: true });
    return;
  }
  res.writeHead(200, ['content-type', fields['content-type'], 'grpc-status', fields['grpc-status'], 'grpc-message', fields['grpc-message'], 'x-request-id', requestId]);
  res.end();
}

/**
 * Ends a gRPC call whose response is under way with `grpc-status` in its trailers (a drain
 * deadline, a broken upstream). HTTP/2 only: an HTTP/1.1 response has no trailers to carry it
 * unless chunked, so there the caller cuts the connection.
 */
export function endGrpcStream(res: ClientResponse, grpcStatus: number, message: string): boolean {
  if (typeof (res as { stream?: unknown }).stream !== 'object' || res.writableEnded || res.destroyed) return false;
  res.addTrailers({ 'grpc-status': String(grpcStatus), 'grpc-message': encodeGrpcMessage(message) });
  res.end();
  return true;
}

/**
 * GOAWAY on the client's HTTP/2 connection (the drain deadline, docs/grpc.md §6): the streams
 * still open on it finish, and the client opens a new connection for its next calls.
 */
export function goAway(res: ClientResponse): void {
  const session = (res as { stream?: ServerHttp2Stream }).stream?.session;
  if (session !== undefined && !session.closed && !session.destroyed) session.close();
}
