import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { createTestCa, type TestCa } from './certs.ts';
import { freePort } from './ports.ts';

export interface Pebble {
  /** the ACME directory URL */
  readonly directory: string;
  /** the CA file that signs pebble's own HTTPS certificate (config `acme.caFile`) */
  readonly caFile: string;
  /** stops pebble (the DNS server stays), e.g. to fail a renewal */
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

export interface PebbleOptions {
  /** the port pebble validates HTTP-01 on: the proxy's plain port */
  readonly httpPort: number;
  /** the port pebble validates TLS-ALPN-01 on: the proxy's TLS port */
  readonly tlsPort: number;
  /** lifetime of the certificates it issues, seconds */
  readonly validitySeconds?: number;
}

/** Fails with the package to install when Debian's pebble is missing (`.ci/run` installs it). */
export function requirePebble(): void {
  if (!existsSync('/usr/bin/pebble') || !existsSync('/usr/bin/pebble-challtestsrv')) throw new Error('pebble and pebble-challtestsrv are not installed: apt-get install -y pebble (Debian package "pebble")');
}

async function stopChild(child: ChildProcess | null): Promise<void> {
  if (child === null || child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  await exited;
}

/**
 * Debian's pebble (a real ACME server for tests) and pebble-challtestsrv as its DNS server, on
 * free ports; every name resolves to 127.0.0.1, so pebble validates against the proxy under test.
 */
export async function startPebble(opts: PebbleOptions): Promise<Pebble> {
  requirePebble();
  const ca: TestCa = createTestCa();
  const own = ca.issue('pebble', ['localhost']);
  const [acmePort, mgmtPort, dnsPort, chttp] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const config = join(ca.dir, 'pebble.json');
  writeFileSync(config, JSON.stringify({
    pebble: {
      listenAddress: `127.0.0.1:${acmePort}`,
      managementListenAddress: `127.0.0.1:${mgmtPort}`,
      certificate: own.cert,
      privateKey: own.key,
      httpPort: opts.httpPort,
      tlsPort: opts.tlsPort,
      ocspResponderURL: '',
      externalAccountBindingRequired: false,
      ...(opts.validitySeconds === undefined ? {} : { certificateValidityPeriod: opts.validitySeconds }),
    },
  }));
  // DNS only; IPv6 answers off, so pebble dials the proxy's 127.0.0.1 listeners
  const dns = spawn('pebble-challtestsrv', ['-dns01', `127.0.0.1:${dnsPort}`, '-http01', '', '-https01', '', '-tlsalpn01', '', '-management', `127.0.0.1:${chttp}`, '-defaultIPv6', ''], { stdio: 'ignore' });
  let pebble: ChildProcess | null = null;
  const dispatcher = new Agent({ connect: { ca: ca.caPem } });
  const directory = `https://localhost:${acmePort}/dir`;

  async function start(): Promise<void> {
    // PEBBLE_AUTHZREUSE=0: every order is validated again, as a renewal in the field would be
    pebble = spawn('pebble', ['-config', config, '-dnsserver', `127.0.0.1:${dnsPort}`], { env: { ...process.env, PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0', PEBBLE_AUTHZREUSE: '0' }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    pebble.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (pebble.exitCode !== null) throw new Error(`pebble exited at start: ${stderr}`);
      try {
        const r = await request(directory, { dispatcher });
        await r.body.text();
        if (r.statusCode === 200) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`pebble did not answer on ${directory}: ${stderr}`);
      await sleep(50);
    }
  }

  await start();
  return {
    directory,
    caFile: ca.caFile,
    stop: () => stopChild(pebble),
    start,
    async close() {
      await stopChild(pebble);
      await stopChild(dns);
      await dispatcher.close();
      ca.close();
    },
  };
}

