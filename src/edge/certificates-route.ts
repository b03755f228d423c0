import type { AdminRoute } from '../admin/router.ts';
import type { AcmeHostStatus } from './acme.ts';
import { renewalDue, type LoadedCert } from './certificates.ts';

/** What a process knows of its certificates: the ones it serves (or, the primary of workers, sends), and ACME's status. */
export interface CertificateSource {
  certificates(): readonly LoadedCert[];
  acme(): { orderer: boolean; hosts: AcmeHostStatus[] } | null;
}

/**
 * `GET /v1/certificates`, for the dashboard's certificates panel: every certificate served on the
 * TLS port (names, file or ACME, validity, and whether it is due for renewal or expired) and, with
 * ACME, each host's last error and next attempt. `source` is null without `listen.tls`.
 */
export function certificateRoutes(source: () => CertificateSource | null, now: () => number = Date.now): AdminRoute[] {
  return [
    {
      method: 'GET',
      path: '/v1/certificates',
      handler: () => {
        const s = source();
        if (s === null) return { json: { tls: false, certificates: [], acme: null } };
        const t = now();
        const certificates = s.certificates().map((c) => ({
          names: [...c.names],
          source: c.source.startsWith('acme:') ? 'acme' : 'file',
          ...(c.source.startsWith('acme:') ? {} : { file: c.source }),
          notBefore: new Date(c.notBefore).toISOString(),
          notAfter: new Date(c.notAfter).toISOString(),
          expiresInSeconds: Math.round((c.notAfter - t) / 1000),
          state: t >= c.notAfter ? 'expired' : renewalDue(c, t) ? 'expiring' : 'ok',
        }));
        return { json: { tls: true, at: new Date(t).toISOString(), certificates, acme: s.acme() } };
      },
    },
  ];
}
