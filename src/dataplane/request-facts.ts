import type { Serving } from '../routing/decide.ts';
import type { RequestFacts } from '../routing/rules.ts';
import type { PoolRoute } from '../routing/snapshot.ts';
import { cookieValue, type ForwardedRequest } from './headers.ts';
import type { Runtime } from './runtime.ts';

/** A header's value in a flat `[name, value, …]` list by lower-case name (the first one). */
export function rawHeader(raw: readonly string[], lname: string): string | undefined {
  for (let i = 0; i < raw.length; i += 2) if ((raw[i] as string).length === lname.length && (raw[i] as string).toLowerCase() === lname) return raw[i + 1];
  return undefined;
}

/**
 * One proxied request's facts as `routing/decide` reads them, and whether a pool of its app has a
 * target up now, from the Runtime: one object per request (HTTP/1.1, h2 and upgrades alike),
 * reading the client's raw headers lazily (the query is parsed only if a rule asks for it).
 */
export class ProxyFacts implements RequestFacts, Serving {
  readonly method: string;
  readonly clientIp: string;
  private readonly raw: readonly string[];
  private readonly cookies: string | undefined;
  /** origin-form target: path and query */
  private readonly target: string;
  private readonly pools: Runtime['apps'][number]['pools'] | undefined;
  private readonly now: number;
  private params: URLSearchParams | null = null;

  constructor(raw: readonly string[], fwd: ForwardedRequest, method: string, target: string, runtime: Runtime, appIndex: number, now: number) {
    this.raw = raw;
    this.cookies = fwd.cookie;
    this.clientIp = fwd.clientIp;
    this.method = method;
    this.target = target;
    this.pools = runtime.apps[appIndex]?.pools;
    this.now = now;
  }

  header(lname: string): string | undefined {
    return rawHeader(this.raw, lname);
  }

  cookie(name: string): string | undefined {
    return cookieValue(this.cookies, name);
  }

  path(): string {
    const q = this.target.indexOf('?');
    return q === -1 ? this.target : this.target.slice(0, q);
  }

  query(name: string): string | undefined {
    if (this.params === null) {
      const q = this.target.indexOf('?');
      this.params = new URLSearchParams(q === -1 ? '' : this.target.slice(q + 1));
    }
    return this.params.get(name) ?? undefined;
  }

  serves(pool: PoolRoute): boolean {
    const targets = this.pools?.[pool.index]?.targets;
    if (targets === undefined) return false;
    for (let i = 0; i < targets.length; i++) if ((targets[i] as (typeof targets)[number]).isUp(this.now)) return true;
    return false;
  }
}
