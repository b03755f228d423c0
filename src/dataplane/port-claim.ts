import { once } from 'node:events';
import { connect, createServer, type ListenOptions, type Server } from 'node:net';

/**
 * Why: the proxy port is bound by many SO_REUSEPORT sockets (`listen.acceptors`, workers), and
 * the kernel lets any process of the same user join such a group. A second Switchyard started on
 * the same port (a stale process, a copy started by mistake) would then silently take part of
 * the traffic with its own config. nginx refuses to start on a port in use; so do we.
 *
 * Two checks, before the first proxy listener binds:
 * 1. a Linux abstract unix socket named after the port, held while the proxy listens: it exists
 *    only as long as its process (no stale lock file after a crash), and a second Switchyard
 *    finds it taken and learns the holder's pid from it;
 * 2. a bind without SO_REUSEPORT, closed at once: it fails while any other process listens on
 *    the port, reuse-port group or not (an older Switchyard, another program).
 * The workers of one group do not claim: their primary holds the claim for them.
 */
export class PortInUseError extends Error {
  readonly code = 'EADDRINUSE';
  readonly port: number;
  constructor(port: number, message: string) {
    super(message);
    this.name = 'PortInUseError';
    this.port = port;
  }
}

/** The claim on a port; `release()` when the proxy stops listening. */
export interface PortClaim {
  release(): void;
}

const NOTHING: PortClaim = { release() {} };

/** listen, resolved once listening; `once` rejects with the listen error (EADDRINUSE…) */
async function bind(server: Server, options: ListenOptions): Promise<void> {
  server.listen(options);
  await once(server, 'listening');
}

function claimName(port: number): string {
  return `\0switchyard-proxy-port-${port}`;
}

/** The pid the holder of the claim tells, or null when it does not answer within a second. */
async function holderPid(port: number): Promise<string | null> {
  return (await claimHolder(port))?.pid.toString() ?? null;
}

/** The line the holder of the claim answers, or null. */
function holderLine(port: number): Promise<string | null> {
  return new Promise((resolve) => {
    const s = connect(claimName(port));
    let data = '';
    const done = (v: string | null): void => {
      s.destroy();
      resolve(v);
    };
    s.setTimeout(1000, () => done(null));
    s.on('data', (d: Buffer) => (data += d.toString()));
    s.on('end', () => done(data.trim() === '' ? null : data.trim()));
    s.on('error', () => done(null));
  });
}

/** What the claim's holder says after its pid (`switchyard upgrade` watches it): serving, upgrading, upgrade-failed. */
let claimStatus = 'serving';

/** Sets the word the port claim answers after the pid (src/upgrade). */
export function setClaimStatus(status: 'serving' | 'upgrading' | 'upgrade-failed' | 'handed-over'): void {
  claimStatus = status;
}

/** The pid and status the claim of `port` answers, or null when nobody holds it (or it does not answer within a second). */
export async function claimHolder(port: number): Promise<{ pid: number; status: string } | null> {
  const line = await holderLine(port);
  const m = line === null ? null : /^(\d+)(?: (\S+))?$/.exec(line);
  return m === null ? null : { pid: Number(m[1]), status: m[2] ?? 'serving' };
}

/**
 * Claims `host:port` for this process, or rejects with a PortInUseError naming the port (and the
 * other Switchyard's pid when it is one). Port 0 claims nothing: every bind gets a port of its own.
 * `probe: false` after a hand-over: the port is in use by the sockets this process inherited.
 */
export async function claimPort(host: string, port: number, opts: { probe?: boolean } = {}): Promise<PortClaim> {
  if (port === 0) return NOTHING;
  let holder: Server | null = null;
  if (process.platform === 'linux') {
    // answers whoever asks with our pid, so the refused process can say which one holds the port
    holder = createServer((s) => s.end(`${process.pid} ${claimStatus}\n`));
    try {
      await bind(holder, { path: claimName(port) });
      holder.unref();
    } catch (err) {
      holder.close();
      if ((err as { code?: string }).code !== 'EADDRINUSE') throw err;
      const pid = await holderPid(port);
      throw new PortInUseError(port, `listen.port ${port} is already served by another Switchyard${pid === null ? '' : ` (pid ${pid})`} (EADDRINUSE): a second one on the same port would silently take part of its traffic; stop it first or choose another port`);
    }
  }
  if (opts.probe === false) return { release: () => holder?.close() };
  const probe = createServer();
  try {
    await bind(probe, { host, port, exclusive: true });
  } catch (err) {
    holder?.close();
    if ((err as { code?: string }).code !== 'EADDRINUSE') throw err;
    throw new PortInUseError(port, `listen.port ${port} on ${host} is already in use by another process (EADDRINUSE)`);
  } finally {
    probe.close();
  }
  await new Promise((resolve) => setImmediate(resolve));
  return { release: () => holder?.close() };
}
