import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isIP } from 'node:net';
import { join } from 'node:path';

export interface TestCa {
  readonly dir: string;
  /** the CA certificate (PEM), for clients to trust */
  readonly caPem: string;
  readonly caFile: string;
  /** a key and a certificate signed by the CA for `names` (DNS SANs, IP SANs for IP addresses); written to files in `dir` */
  issue(label: string, names: readonly string[], days?: number): { cert: string; key: string; certPem: string; keyPem: string };
  close(): void;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A throwaway CA made with the openssl command at test time (no private key is committed). */
export function createTestCa(): TestCa {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-ca-'));
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=Switchyard Test CA'], dir);
  let serial = 1;
  return {
    dir,
    caFile: join(dir, 'ca.pem'),
    caPem: readFileSync(join(dir, 'ca.pem'), 'utf8'),
    issue(label, names, days = 2) {
      const ext = join(dir, `${label}.ext`);
      writeFileSync(ext, `subjectAltName=${names.map((n) => (isIP(n) === 0 ? `DNS:${n}` : `IP:${n}`)).join(',')}\nextendedKeyUsage=serverAuth\n`);
      openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${label}.key`, '-out', `${label}.csr`, '-subj', `/CN=${names[0] ?? label}`], dir);
      openssl(['x509', '-req', '-in', `${label}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', String(serial++), '-days', String(days), '-out', `${label}.pem`, '-extfile', ext], dir);
      return { cert: join(dir, `${label}.pem`), key: join(dir, `${label}.key`), certPem: readFileSync(join(dir, `${label}.pem`), 'utf8'), keyPem: readFileSync(join(dir, `${label}.key`), 'utf8') };
    },
    close() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
