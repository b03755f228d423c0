import type { Socket } from 'node:net';
import type { Http1Connection } from './http1-connection.ts';
import type { Exchange } from './http1-exchange.ts';
import { HTTPParser, type Parser } from './llhttp.ts';
import { UpstreamError } from './upstream.ts';
import { UPSTREAM_CODES } from './upstream-codes.ts';

const kConn = Symbol('switchyard.connection');
type ParserWithConn = Parser & { [kConn]: Http1Connection };
type ConnSocket = Socket & { [kConn]: Http1Connection };

/** A strict llhttp response parser whose callbacks report to `conn`. */
export function responseParser(conn: Http1Connection): Parser {
  const parser = new HTTPParser() as ParserWithConn;
  parser.initialize(HTTPParser.RESPONSE, {}, 0, HTTPParser.kLenientNone);
  parser[kConn] = conn;
  parser[HTTPParser.kOnHeaders] = onHeaders;
  parser[HTTPParser.kOnHeadersComplete] = onHeadersComplete;
  parser[HTTPParser.kOnBody] = onBody;
  parser[HTTPParser.kOnMessageComplete] = onMessageComplete;
  parser[HTTPParser.kOnExecute] = noop;
  return parser;
}

/** Wires the socket's events to `conn`. */
export function listen(socket: Socket, conn: Http1Connection): void {
  const s = socket as ConnSocket;
  s[kConn] = conn;
  s.on('connect', onConnect);
  // reads come through onread's callback (onRead), not 'data'; flowing, so the end of the
  // stream is still emitted as 'end'
  s.resume();
  s.on('drain', onDrain);
  s.on('end', onEnd);
  s.on('error', onError);
  s.on('close', onClose);
}

// Socket and parser callbacks: shared functions that find their connection on `this`, so a
// connection costs no closures and a request none at all.
function onConnect(this: ConnSocket): void {
  this[kConn].connected(Date.now());
}
/** net's onread callback: `buf` is the connection's read buffer, `nread` bytes of it fresh */
export function onRead(this: Socket, nread: number, buf: Uint8Array): boolean {
  const c = (this as ConnSocket)[kConn];
  try {
    c.read((buf as Buffer).subarray(0, nread));
  } catch (err) {
    c.crashed(err);
  }
  return true; // a pause is the handler's, through socket.pause()
}
function onDrain(this: ConnSocket): void {
  this[kConn].exchange?.bodyDrained();
}
function onEnd(this: ConnSocket): void {
  this[kConn].ended();
}
function onError(this: ConnSocket, err: Error): void {
  this[kConn].lost(err);
}
function onClose(this: ConnSocket): void {
  const c = this[kConn];
  if (c.exchange !== null) c.lost(new UpstreamError(UPSTREAM_CODES.SOCKET, 'other side closed'));
  else c.destroy();
}
function onHeaders(this: ParserWithConn, fields: string[]): void {
  this[kConn].pushHeaders(fields);
}
function onHeadersComplete(this: ParserWithConn, _major: number, _minor: number, headers: string[] | undefined, _method: unknown, _url: unknown, statusCode: number, statusMessage: string, upgrade: boolean, keepAlive: boolean): number {
  const c = this[kConn];
  return c.headersComplete(headers ?? c.takePartialHeaders(), statusCode, statusMessage, upgrade, keepAlive);
}
function onBody(this: ParserWithConn, chunk: Buffer): void {
  this[kConn].body(chunk);
}
function onMessageComplete(this: ParserWithConn): void {
  this[kConn].messageComplete();
}
function noop(): void {}
/** setImmediate's callback for a chunked request's head (Http1Connection.start) */
export function writeDeferred(c: Http1Connection, ex: Exchange): void {
  c.writeHead(ex);
}
