import { isIP } from 'node:net';
import { Resolver } from 'node:dns/promises';
import type { DiscoverConfig, DiscoveryConfig } from '../config/schema.ts';

/**
 * One lookup of a pool's `discover`: the target URLs it names now, sorted, or an error that says
 * why there is no answer to use. Uses node:dns's `Resolver` (c-ares, which asks the configured
 * servers itself and keeps no cache), never `dns.lookup` (getaddrinfo, the system's cache and
 * /etc/hosts, blocking a libuv thread per call).
 */

/** The lookups of one process: one c-ares channel, on `discovery.servers` or the system's resolvers. */
export function createResolver(config: DiscoveryConfig): Resolver {
  // tries: 2, so one lost UDP datagram is not a failed lookup; each try waits at most half the deadline
  const resolver = new Resolver({ timeout: Math.max(5, Math.floor(config.timeout / 2)), tries: 2 });
  if (config.servers !== undefined) resolver.setServers(config.servers);
  return resolver;
}

/** A lookup that yields nothing usable; `message` is what the pool's views and the log show. */
export class LookupError extends Error {
  override readonly name = 'LookupError';
}

/** "no such name" and "no record of this type": the name answered, with nothing (as opposed to a failure). */
const EMPTY = new Set(['ENODATA', 'ENOTFOUND']);

function code(err: unknown): string {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : 'ERROR';
}

/** A and AAAA of `name`; [] when the name has neither; throws on a failure of either family. */
async function addresses(resolver: Resolver, name: string): Promise<string[]> {
  const one = (family: 4 | 6): Promise<string[]> =>
    (family === 4 ? resolver.resolve4(name) : resolver.resolve6(name)).catch((err: unknown) => {
      if (EMPTY.has(code(err))) return [];
      // a half answer (A but not AAAA) is not taken for the whole: the pool keeps its last one
      throw new LookupError(`${family === 4 ? 'A' : 'AAAA'} ${name}: ${code(err)}`, { cause: err });
    });
  const [v4, v6] = await Promise.all([one(4), one(6)]);
  return [...v4, ...v6];
}

function url(scheme: string, address: string, port: number): string {
  return `${scheme}://${isIP(address) === 6 ? `[${address}]` : address}:${port}`;
}

/**
 * The target URLs `spec` names now. An answer with no address at all (NXDOMAIN, no records) is a
 * LookupError too, so the caller keeps its last answer: a DNS outage that answers empty, or a
 * record deleted by mistake, never empties a pool (to empty one, change its definition).
 */
export async function lookup(resolver: Resolver, spec: DiscoverConfig): Promise<string[]> {
  const urls = new Set<string>();
  if (spec.dns !== undefined) {
    for (const a of await addresses(resolver, spec.dns)) urls.add(url(spec.scheme, a, spec.port as number));
    if (urls.size === 0) throw new LookupError(`${spec.dns}: no A or AAAA record`);
  } else {
    const name = spec.srv as string;
    const records = await resolver.resolveSrv(name).catch((err: unknown) => {
      if (EMPTY.has(code(err))) return [];
      throw new LookupError(`SRV ${name}: ${code(err)}`, { cause: err });
    });
    // `name` is the record's target host; RFC 2782: only the lowest priority is used while it has records; weights are not followed
    // (targets share a pool's traffic equally, as with `targets`)
    const lowest = Math.min(...records.map((r) => r.priority));
    // at most maxTargets records, the first by host and port (the same on every instance), and
    // each host looked up once: an answer of thousands of records must not become thousands of
    // lookups every interval (the caller keeps at most maxTargets targets anyway)
    const used = records
      .filter((r) => r.priority === lowest && r.name !== '.' && r.name !== '')
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.port - b.port))
      .slice(0, spec.maxTargets);
    const hosts = [...new Set(used.map((r) => r.name))];
    const byHost = new Map(await Promise.all(hosts.map(async (h) => [h, isIP(h) !== 0 ? [h] : await addresses(resolver, h)] as const)));
    for (const r of used) for (const a of byHost.get(r.name) ?? []) urls.add(url(spec.scheme, a, r.port));
    if (urls.size === 0) throw new LookupError(records.length === 0 ? `${name}: no SRV record` : `${name}: no address for the SRV targets ${used.map((r) => r.name).join(', ')}`);
  }
  return [...urls].sort();
}

/** What a lookup asks, for logs and views: `A/AAAA web.svc:8080` or `SRV _http._tcp.web.svc`. */
export function describe(spec: DiscoverConfig): string {
  return spec.dns !== undefined ? `A/AAAA ${spec.dns}:${spec.port}` : `SRV ${spec.srv}`;
}
