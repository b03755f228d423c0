import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { ClientResponse } from './types.ts';
import { destroyAfterWrites } from './write-batch.ts';

/** Where an exception was caught: the request path, an upgrade, a client connection's reader, the forwarding engine. */
export const GUARD_PLACES = ['request', 'upgrade', 'connection', 'engine'] as const;
export type GuardPlace = (typeof GUARD_PLACES)[number];

const INTERNAL_BODY = '500 internal error: the proxy failed on this request\n';
const INTERNAL_500 = `HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${INTERNAL_BODY.length}\r\nconnection: close\r\n\r\n${INTERNAL_BODY}`;

/**
 * The data plane's last line against its own bugs: an exception thrown while one request or one
 * connection is handled ends that request (500, or a cut once its response started) and never the
 * process. Each is counted by place (`switchyard_request_exceptions_total`) and logged at most
 * once per place and 10 s, with the first error's stack: an input that trips a bug arrives by the
 * thousand, and a line per request would be the attack's amplifier.
 *
 * This is not a way to stay up: an exception is a bug (the fuzz tests fail on any), and one that
 * escapes every handler still reaches `uncaughtException` and ends the process.
 */
export class RequestGuard {
  readonly counts: Record<GuardPlace, number> = { request: 0, upgrade: 0, connection: 0, engine: 0 };
  readonly #logger: Logger | undefined;
  readonly #pending = new Map<GuardPlace, { n: number; err: unknown }>();
  #timer: NodeJS.Timeout | null = null;

  constructor(logger?: Logger) {
    this.#logger = logger;
  }

  /** Counts and logs (rate-limited) one exception caught at `place`. */
  caught(place: GuardPlace, err: unknown): void {
    this.counts[place]++;
    const p = this.#pending.get(place);
    if (p === undefined) this.#pending.set(place, { n: 1, err });
    else p.n++;
    if (this.#timer === null) this.#flush();
  }

  /** An exception while handling the request of `res`: answered 500 when nothing was sent yet, else cut. */
  request(err: unknown, res: ClientResponse, place: GuardPlace = 'request'): void {
    this.caught(place, err);
    try {
      if (res.headersSent || res.destroyed) {
        res.destroy();
        return;
      }
      res.shouldKeepAlive = false;
      res.writeHead(500, ['content-type', 'text/plain; charset=utf-8', 'content-length', String(INTERNAL_BODY.length), 'connection', 'close']);
      res.end(INTERNAL_BODY);
    } catch {
      // the response itself is what broke: the client sees the connection close
      res.destroy();
    }
  }

  /** An exception while reading a raw client connection (upgrade, the front's parser): 500 if nothing was written on it yet, then closed. */
  socket(err: unknown, socket: Socket, place: GuardPlace, answered: boolean): void {
    this.caught(place, err);
    if (socket.destroyed) return;
    if (answered) destroyAfterWrites(socket);
    else {
      socket.end(INTERNAL_500);
      socket.destroySoon();
    }
  }

  #flush(): void {
    this.#timer = null;
    if (this.#pending.size === 0) return;
    for (const [place, { n, err }] of this.#pending) {
      this.#logger?.error({ place, count: n, err }, 'exception while handling a request: the request was ended, the process goes on (a bug: please report it; at most one line per place and 10 s)');
    }
    this.#pending.clear();
    this.#timer = setTimeout(() => this.#flush(), 10_000).unref();
  }

  /** Stops the log timer (close). */
  stop(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }
}
