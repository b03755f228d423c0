import { ERRORS, type ErrorCode } from '../errors.ts';
import { http } from '../node-http.ts';
import { answersGrpc, grpcStatusFor, sendGrpcError } from './grpc.ts';
import type { ClientResponse } from './types.ts';

// The responses the proxy writes itself (refusals before routing, its error codes, the answers
// on an upgrade's raw socket), in one place: every one is a short text body with the catalogue's
// status (errors.ts) and the request's X-Request-Id when it has one.

/** A refusal the proxy makes before routing: short text body, and the connection is closed (its framing cannot be trusted). */
export function refuse(res: ClientResponse, status: number, reason: string, requestId?: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = `${status} ${reason}\n`;
  const headers = ['content-type', 'text/plain; charset=utf-8', 'content-length', String(Buffer.byteLength(body)), 'connection', 'close'];
  if (requestId !== undefined) headers.push('x-request-id', requestId);
  res.shouldKeepAlive = false;
  res.writeHead(status, headers);
  res.end(body);
}

/** A response the proxy makes itself: short text body, X-Request-Id. */
export function sendError(res: ClientResponse, code: ErrorCode, requestId: string, close: boolean): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const { status, message } = ERRORS[code];
  if (answersGrpc(res)) {
    sendGrpcError(res, grpcStatusFor(status), message, requestId);
    return;
  }
  const body = `${status} ${message}\n`;
  const headers: string[] = ['content-type', 'text/plain; charset=utf-8', 'content-length', String(Buffer.byteLength(body)), 'x-request-id', requestId];
  if (close) headers.push('connection', 'close');
  res.writeHead(status, headers);
  res.end(body);
}

/** A raw HTTP/1.1 response head: once `upgrade` fired, the client socket is ours, not a ServerResponse's. */
export function responseHead(status: number, message: string, headers: readonly string[]): string {
  let s = `HTTP/1.1 ${status} ${message || (http.STATUS_CODES[status] ?? '')}\r\n`;
  for (let i = 0; i < headers.length; i += 2) s += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return `${s}\r\n`;
}

/** A whole raw response with a text body, for a socket no ServerResponse owns (an upgrade). */
export function textResponse(status: number, body: string, requestId: string | null): string {
  const headers = ['content-type', 'text/plain; charset=utf-8', 'content-length', String(Buffer.byteLength(body)), 'connection', 'close'];
  if (requestId !== null) headers.push('x-request-id', requestId);
  return responseHead(status, '', headers) + body;
}

export function errorResponse(code: ErrorCode, requestId: string | null): string {
  const { status, message } = ERRORS[code];
  return textResponse(status, `${status} ${message}\n`, requestId);
}
