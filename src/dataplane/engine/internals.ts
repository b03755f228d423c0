import { createRequire } from 'node:module';
import { Socket } from 'node:net';
import type { Pool } from 'undici';
import type { ParserClass } from './llhttp.ts';

/**
 * The two internals the fast path leans on, loaded and checked here so that a Node or undici
 * release that moves or changes them turns the fast path off (one log line) instead of breaking
 * the proxy:
 *
 * - `node:_http_common`'s HTTPParser (Node's native llhttp, DEP0199: documented as deprecated
 *   internal, no stability promise): the raw front (src/dataplane/front.ts) and the native engine
 *   (./http1-connection.ts) parse with it. Checked by shape and by parsing one request and one
 *   response, so a changed callback signature is found too. Missing or changed: node:http serves
 *   every connection and the `undici` engine forwards.
 * - undici's Pool class by its file (`undici/lib/dispatcher/pool.js`, not part of undici's API):
 *   loaded alone it spares the ~14 MB of RSS the package index costs (runtime.ts). undici is
 *   pinned to an exact version in package.json for this; missing or changed: the public `Pool`
 *   export, at that memory cost.
 * - net.Socket's read-buffer slots (`kBuffer`, `kBufferCb`, `kBufferGen`: what the documented
 *   `onread` option of `net.connect` fills, and what Node's `onStreamRead` reads): the raw front
 *   switches an accepted plain socket to them, so that a client's bytes come to one callback
 *   without Readable's push, 'data' event and end-of-tick `maybeReadMore` per read (README
 *   Performance, "CPU per request on the plain path"). Checked by constructing a socket with
 *   `onread` and finding the buffer and callback in those slots. Missing or changed: the front
 *   reads through 'data' events, as before.
 */

const require = createRequire(import.meta.url);

export type ParserCheck = { readonly ok: true; readonly HTTPParser: ParserClass; readonly methods: readonly string[] } | { readonly ok: false; readonly reason: string };

const CONSTANTS = ['REQUEST', 'RESPONSE', 'kOnHeaders', 'kOnHeadersComplete', 'kOnBody', 'kOnMessageComplete', 'kOnExecute', 'kLenientNone'] as const;
const METHODS = ['initialize', 'execute', 'finish', 'close'] as const;

/** Whether `mod` (what `require('node:_http_common')` gave) has the HTTPParser the fast path was written for. */
export function checkHttpParser(mod: unknown): ParserCheck {
  const m = mod as { HTTPParser?: unknown; methods?: unknown } | null | undefined;
  const P = m?.HTTPParser as (ParserClass & Record<string, unknown>) | undefined;
  if (typeof P !== 'function') return { ok: false, reason: 'node:_http_common has no HTTPParser' };
  for (const k of CONSTANTS) if (typeof P[k] !== 'number') return { ok: false, reason: `HTTPParser.${k} is not a number` };
  const proto = P.prototype as Record<string, unknown>;
  for (const k of METHODS) if (typeof proto[k] !== 'function') return { ok: false, reason: `HTTPParser.prototype.${k} is not a function` };
  const methods = m?.methods;
  if (!Array.isArray(methods) || !methods.includes('GET')) return { ok: false, reason: 'node:_http_common has no methods list' };
  try {
    const why = smokeTest(P, methods as string[]);
    if (why !== null) return { ok: false, reason: why };
  } catch (err) {
    return { ok: false, reason: `HTTPParser threw: ${(err as Error).message}` };
  }
  return { ok: true, HTTPParser: P, methods: methods as string[] };
}

/** Parses one request head and one response as the front and the engine do; null when every callback said what they expect. */
function smokeTest(P: ParserClass, methods: readonly string[]): string | null {
  const req = new P();
  let head: unknown[] | null = null;
  req[P.kOnHeaders] = noop;
  req[P.kOnHeadersComplete] = (...args: unknown[]) => {
    head = args;
    return 2;
  };
  req[P.kOnBody] = noop;
  req[P.kOnMessageComplete] = noop;
  req[P.kOnExecute] = noop;
  req.initialize(P.REQUEST, {}, 0, P.kLenientNone);
  const bytes = 'GET /x HTTP/1.1\r\nHost: a\r\n\r\n';
  const r = req.execute(Buffer.from(bytes));
  req.close();
  // (major, minor, headers, method, url, statusCode, statusMessage, upgrade, keepAlive)
  const h = head as unknown[] | null;
  if (h === null) return 'HTTPParser reported no request head';
  if (h[0] !== 1 || h[1] !== 1 || methods[h[3] as number] !== 'GET' || h[4] !== '/x' || h[8] !== true) return 'HTTPParser request head callback has changed its arguments';
  if (!Array.isArray(h[2]) || h[2][0] !== 'Host' || h[2][1] !== 'a') return 'HTTPParser request head callback has changed its header list';
  if (r !== bytes.length) return 'HTTPParser.execute did not stop at the end of the head';

  const res = new P();
  let status: unknown = null;
  let body = '';
  let complete = false;
  res[P.kOnHeaders] = noop;
  res[P.kOnHeadersComplete] = (...args: unknown[]) => {
    status = args[5];
    return 0;
  };
  res[P.kOnBody] = (b: Buffer) => {
    body += b.toString('latin1');
  };
  res[P.kOnMessageComplete] = () => {
    complete = true;
  };
  res[P.kOnExecute] = noop;
  res.initialize(P.RESPONSE, {}, 0, P.kLenientNone);
  res.execute(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'));
  res.close();
  if (status !== 200 || body !== 'ok' || !complete) return 'HTTPParser response callbacks have changed';
  return null;
}

function noop(): void {}

/**
 * A socket's symbol-keyed internal slot, read or written through Reflect: net.Socket's types do
 * not declare them, and Reflect takes any object and key without a cast.
 */
export function slot(target: object, key: symbol): unknown {
  return Reflect.get(target, key);
}

export function setSlot(target: object, key: symbol, value: unknown): void {
  Reflect.set(target, key, value);
}

export type ReadSlots = { readonly ok: true; readonly kBuffer: symbol; readonly kBufferCb: symbol; readonly kBufferGen: symbol } | { readonly ok: false; readonly reason: string };

/**
 * The slots `new net.Socket({ onread })` fills, found by their symbols' descriptions and checked
 * by value: the buffer and the callback given, no buffer source; a socket without `onread` has
 * all three null.
 */
export function checkReadSlots(SocketClass: typeof Socket = Socket): ReadSlots {
  try {
    const buffer = Buffer.alloc(16);
    const callback = (): boolean => true;
    const withOnread = new SocketClass({ onread: { buffer, callback } });
    const plain = new SocketClass();
    const symbols = Object.getOwnPropertySymbols(withOnread);
    const find = (d: string): symbol | undefined => symbols.find((k) => k.description === d);
    const kBuffer = find('kBuffer');
    const kBufferCb = find('kBufferCb');
    const kBufferGen = find('kBufferGen');
    if (kBuffer === undefined || kBufferCb === undefined || kBufferGen === undefined) return { ok: false, reason: 'net.Socket has no kBuffer/kBufferCb/kBufferGen slots' };
    if (slot(withOnread, kBuffer) !== buffer || slot(withOnread, kBufferCb) !== callback || slot(withOnread, kBufferGen) !== null) return { ok: false, reason: "net.Socket's onread option no longer fills its kBuffer slots" };
    if (slot(plain, kBuffer) !== null || slot(plain, kBufferCb) !== null || slot(plain, kBufferGen) !== null) return { ok: false, reason: "a net.Socket without onread has its kBuffer slots set" };
    return { ok: true, kBuffer, kBufferCb, kBufferGen };
  } catch (err) {
    return { ok: false, reason: `checking net.Socket's read slots threw: ${(err as Error).message}` };
  }
}

/** This process's net.Socket read slots, checked once at load. */
export const readSlots: ReadSlots = checkReadSlots();

type PoolClass = new (origin: string, options?: Pool.Options) => Pool;
export type PoolLoad = { readonly Pool: PoolClass; readonly fallback: string | null };

/** undici's Pool from its own file when that is there and is a Pool, else the package's public export (with why). */
export function loadPool(deep: () => unknown, pub: () => unknown): PoolLoad {
  let reason: string;
  try {
    const m = deep() as { default?: unknown } | null;
    const C = (typeof m === 'function' ? m : m?.default) as PoolClass | undefined;
    if (typeof C === 'function' && typeof (C.prototype as { dispatch?: unknown }).dispatch === 'function') return { Pool: C, fallback: null };
    reason = 'undici/lib/dispatcher/pool.js is not a Pool class';
  } catch (err) {
    reason = `undici/lib/dispatcher/pool.js did not load: ${(err as Error).message.split('\n')[0] ?? ''}`;
  }
  return { Pool: (pub() as { Pool: PoolClass }).Pool, fallback: reason };
}

function requireHttpCommon(): unknown {
  try {
    return require('node:_http_common');
  } catch {
    return null;
  }
}

/** This process's HTTPParser, checked once at load. */
export const llhttp: ParserCheck = checkHttpParser(requireHttpCommon());
let pool: PoolLoad | undefined;
let reportFallback: (line: string) => void = (line) => process.emitWarning(line);

/** The line that says the Pool came from the package index, and why. */
export function poolFallbackLine(reason: string): string {
  return `undici's Pool loaded from the package index (about 14 MB more memory): ${reason}`;
}

/** Where a fallback found by the first `undiciPool()` is said (app.ts: the logger) @default process.emitWarning */
export function onPoolFallback(report: (line: string) => void): void {
  reportFallback = report;
}

/**
 * This process's undici Pool class, loaded by the first target that needs it: the `undici`
 * engine and `protocol: h2` pools only. Loaded with the data plane, it cost every start ~3 MiB of
 * RSS (the Pool, its HTTP/1 and HTTP/2 clients and node:http2; README Performance, "Memory by
 * start path") that the native engine's HTTP/1.1 targets never use. A synchronous require, at the
 * construction of a target (config applied at start or by the admin API), never per request.
 */
export function undiciPool(): PoolLoad {
  if (pool === undefined) {
    pool = loadPool(
      () => require('undici/lib/dispatcher/pool.js'),
      () => require('undici'),
    );
    if (pool.fallback !== null) reportFallback(poolFallbackLine(pool.fallback));
  }
  return pool;
}

/**
 * The engine a config asks for, as this process can run it: `native` only with a working
 * HTTPParser. `reason`: why the fast path (raw front and native engine) is off, for one log line.
 */
export function engineFor(requested: 'native' | 'undici', parser: ParserCheck = llhttp): { readonly engine: 'native' | 'undici'; readonly reason: string | null } {
  if (requested === 'native' && !parser.ok) return { engine: 'undici', reason: parser.reason };
  return { engine: requested, reason: null };
}

/**
 * The lines to log at start about internals this process could not use (none on a supported Node
 * and the pinned undici): each names what is off and what serves instead.
 */
export function internalsWarnings(requested: 'native' | 'undici', parser: ParserCheck = llhttp, pool: PoolLoad | null = null, slots: ReadSlots = readSlots): string[] {
  const out: string[] = [];
  if (requested === 'native' && parser.ok && !slots.ok) out.push(`the raw front reads client sockets through 'data' events (a little more CPU per request): ${slots.reason} (Node ${process.versions.node})`);
  if (requested === 'native' && !parser.ok) out.push(`fast path off: ${parser.reason} (Node ${process.versions.node}); node:http serves every client connection and the undici engine forwards (engine: undici)`);
  if (pool !== null && pool.fallback !== null) out.push(poolFallbackLine(pool.fallback));
  return out;
}
