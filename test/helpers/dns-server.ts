import { createSocket, type RemoteInfo } from 'node:dgram';
import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import * as packet from 'dns-packet';

/** One SRV record: `target` is a host name the same server answers A/AAAA for (or an address). */
export interface SrvRecord {
  readonly target: string;
  readonly port: number;
  /** @default 0 */
  readonly priority?: number;
  /** @default 0 */
  readonly weight?: number;
}

/** What one name answers; a name with no entry is NXDOMAIN. */
export interface DnsRecords {
  a?: string[];
  aaaa?: string[];
  srv?: SrvRecord[];
}

export interface DnsServer {
  /** `127.0.0.1:PORT`, for `discovery.servers` (UDP and TCP on the same port) */
  readonly address: string;
  readonly port: number;
  /** the records, by lower-case name: change them live, the next query sees the change */
  readonly zone: Map<string, DnsRecords>;
  /** queries answered or dropped so far */
  queries: number;
  /** `'drop'`: queries get no answer at all (a server that stopped answering); `'servfail'`: SERVFAIL */
  mode: 'answer' | 'drop' | 'servfail';
  set(name: string, records: DnsRecords): void;
  close(): Promise<void>;
}

/** Every answer's TTL: 0, so no resolver cache hides a change from the next lookup. */
const TTL = 0;

/**
 * A small authoritative DNS server on a free port (UDP, and TCP on the same port for a client that
 * retries over TCP) for discovery tests, written with `dns-packet` rather than by hand: A, AAAA and
 * SRV answers from `zone`, NXDOMAIN for unknown names, and a switch to stop answering.
 */
export async function startDnsServer(records: Record<string, DnsRecords> = {}): Promise<DnsServer> {
  const zone = new Map<string, DnsRecords>(Object.entries(records).map(([k, v]) => [k.toLowerCase(), v]));
  const sockets = new Set<Socket>();
  const tcp: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    let buf = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const len = buf.readUInt16BE(0);
        const reply = answer(buf.subarray(2, 2 + len));
        buf = buf.subarray(2 + len);
        if (reply !== null) socket.write(packet.streamEncode(reply));
      }
    });
  });
  // a free UDP port whose TCP twin is free too (a few tries: another test may hold the TCP one)
  let udp = createSocket('udp4');
  let port: number;
  for (let attempt = 0; ; attempt++) {
    udp.bind(0, '127.0.0.1');
    await once(udp, 'listening');
    port = udp.address().port;
    tcp.listen(port, '127.0.0.1');
    // events.once(tcp, 'listening') would reject on the 'error' event: listen for both by hand
    const bound = await new Promise<boolean>((resolve) => {
      const ok = (): void => { tcp.off('error', taken); resolve(true); };
      const taken = (): void => { tcp.off('listening', ok); resolve(false); };
      tcp.once('listening', ok).once('error', taken);
    });
    if (bound) break;
    udp.close();
    if (attempt === 10) throw new Error('no free UDP+TCP port pair for the test DNS server');
    udp = createSocket('udp4');
  }

  const server: DnsServer = {
    address: `127.0.0.1:${port}`,
    port,
    zone,
    queries: 0,
    mode: 'answer',
    set: (name, recs) => void zone.set(name.toLowerCase(), recs),
    close: async () => {
      udp.close();
      for (const s of sockets) s.destroy();
      tcp.close();
      await once(tcp, 'close').catch(() => undefined);
    },
  };

  function answer(msg: Buffer): packet.Packet | null {
    server.queries++;
    if (server.mode === 'drop') return null;
    let query: packet.Packet;
    try {
      query = packet.decode(msg);
    } catch {
      return null;
    }
    const q = query.questions?.[0];
    const base = { id: query.id ?? 0, type: 'response' as const, questions: query.questions ?? [] };
    if (q === undefined) return { ...base, flags: packet.AUTHORITATIVE_ANSWER | 1 };
    if (server.mode === 'servfail') return { ...base, flags: packet.RECURSION_DESIRED | 2 };
    const recs = zone.get(q.name.toLowerCase());
    if (recs === undefined) return { ...base, flags: packet.AUTHORITATIVE_ANSWER | 3 }; // NXDOMAIN
    const answers: packet.Answer[] = [];
    if (q.type === 'A') for (const ip of recs.a ?? []) answers.push({ type: 'A', name: q.name, ttl: TTL, data: ip });
    if (q.type === 'AAAA') for (const ip of recs.aaaa ?? []) answers.push({ type: 'AAAA', name: q.name, ttl: TTL, data: ip });
    if (q.type === 'SRV') {
      for (const s of recs.srv ?? []) answers.push({ type: 'SRV', name: q.name, ttl: TTL, data: { target: s.target, port: s.port, priority: s.priority ?? 0, weight: s.weight ?? 0 } });
    }
    return { ...base, flags: packet.AUTHORITATIVE_ANSWER, answers };
  }

  udp.on('message', (msg: Buffer, from: RemoteInfo) => {
    const reply = answer(msg);
    if (reply !== null) udp.send(packet.encode(reply), from.port, from.address);
  });
  return server;
}
