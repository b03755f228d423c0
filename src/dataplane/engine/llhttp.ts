import { llhttp } from './internals.ts';

/**
 * Node's native llhttp, the parser node:http itself runs, in strict mode (no lenient flag): the
 * same framing rules as node:http's client, in C, with header names and values handed over as
 * one flat array. undici parses with its WebAssembly build of the same llhttp, and node:http's
 * ClientRequest/IncomingMessage stream machinery costs more than this whole path (the profiles
 * in README Performance); neither lets a proxy pass bytes through as they come.
 */
export interface Parser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | Error;
  finish(): undefined | Error;
  close(): void;
  [k: number]: unknown;
}
export interface ParserClass {
  new (): Parser;
  readonly REQUEST: number;
  readonly RESPONSE: number;
  readonly kOnHeaders: number;
  readonly kOnHeadersComplete: number;
  readonly kOnBody: number;
  readonly kOnMessageComplete: number;
  readonly kOnExecute: number;
  readonly kLenientNone: number;
}
/** Stands in for a missing or changed HTTPParser: never constructed, since the fast path is then off (./internals.ts). */
class Unavailable implements Parser {
  static readonly REQUEST = 1;
  static readonly RESPONSE = 2;
  static readonly kOnHeaders = 1;
  static readonly kOnHeadersComplete = 2;
  static readonly kOnBody = 3;
  static readonly kOnMessageComplete = 4;
  static readonly kOnExecute = 5;
  static readonly kLenientNone = 0;
  [k: number]: unknown;
  constructor() {
    throw new Error(`node:_http_common's HTTPParser is not usable here: ${llhttp.ok ? '' : llhttp.reason}`);
  }
  initialize(): void {}
  execute(): Error {
    return new Error('unavailable');
  }
  finish(): undefined {
    return undefined;
  }
  close(): void {}
}

/** Node's HTTPParser, checked at load (./internals.ts); `llhttp.ok` false: the raw front and the native engine are off. */
export const HTTPParser: ParserClass = llhttp.ok ? llhttp.HTTPParser : Unavailable;

/** Method names by llhttp's method number, as node:http maps them. */
export const METHODS: readonly string[] = llhttp.ok ? llhttp.methods : [];
