import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pino from 'pino';
import { parseConfig } from '../../src/config/load.ts';
import { renewalDue } from '../../src/edge/acme.ts';
import { CertificateSet } from '../../src/edge/certificates.ts';
import { acmeHosts } from '../../src/edge/edge.ts';
import { ConfigError } from '../../src/errors.ts';
import { createTestCa } from '../helpers/certs.ts';

const pools = { blue: { version: '1.0.0', targets: ['http://10.0.0.1:8080'] }, green: { version: '2.0.0', targets: ['http://10.0.0.3:8080'] } };
const apps = [{ name: 'shop', hosts: ['shop.example.com', '*.shop.example.com', 'api.example.com'], pools }, { name: 'other', hosts: ['*'], pools }];

function issues(doc: Record<string, unknown>): string[] {
  try {
    parseConfig({ apps, ...doc });
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return [...err.issues];
  }
  return [];
}

describe('listen.tls configuration', () => {
  it('fills the documented defaults', () => {
    const c = parseConfig({ apps, listen: { tls: { certs: [{ cert: 'a.pem', key: 'a.key' }] } } });
    assert.deepEqual(c.listen.tls, { port: 8443, certs: [{ cert: 'a.pem', key: 'a.key' }], http2: true, minVersion: 'TLSv1.2', maxConcurrentStreams: 128 });
    assert.equal(c.listen.redirect, false);
  });

  it('names the key path of what is wrong', () => {
    assert.deepEqual(issues({ listen: { tls: {} } }), ['listen.tls.certs: needs certs, acme or both']);
    assert.deepEqual(issues({ listen: { redirect: true } }), ['listen.redirect: needs listen.tls (there is no https port to redirect to)']);
    // every worker serves the TLS port too (src/cluster/worker.ts)
    assert.deepEqual(issues({ listen: { tls: { certs: [{ cert: 'a', key: 'b' }] } }, workers: 2 }), []);
    assert.deepEqual(issues({ listen: { tls: { acme: { directory: 'https://x/dir', challenge: 'dns-01' } } } }).length, 1);
    assert.match(issues({ listen: { tls: { acme: { directory: 'https://x/dir', hosts: ['*.x.com'] } } } })[0] ?? '', /^listen\.tls\.acme\.hosts\[0\]: must be an exact DNS name/);
  });

  it('ACME orders for every exact host of every app unless hosts are given', () => {
    const c = parseConfig({ apps, listen: { tls: { acme: { directory: 'https://x/dir' } } } });
    assert.deepEqual(acmeHosts(c), ['shop.example.com', 'api.example.com']);
    const d = parseConfig({ apps, listen: { tls: { acme: { directory: 'https://x/dir', hosts: ['a.example.com'] } } } });
    assert.deepEqual(acmeHosts(d), ['a.example.com']);
  });

  it('renewal is due when a third of the lifetime remains', () => {
    const day = 86_400_000;
    assert.equal(renewalDue({ notBefore: 0, notAfter: 90 * day }, 59 * day), false);
    assert.equal(renewalDue({ notBefore: 0, notAfter: 90 * day }, 60 * day), true);
  });

  it('a certificate whose key does not match is refused at start, naming the file', (t) => {
    const ca = createTestCa();
    t.after(() => {
      ca.close();
    });
    const a = ca.issue('a', ['a.test']);
    const b = ca.issue('b', ['b.test']);
    assert.throws(() => new CertificateSet({ files: [{ cert: a.cert, key: b.key }], logger: pino({ level: 'silent' }) }), (err: unknown) => err instanceof ConfigError && /^listen\.tls\.certs\[0\]: .*a\.pem: the private key does not match the certificate$/.test(err.issues[0] ?? ''));
    assert.throws(() => new CertificateSet({ files: [{ cert: '/nonexistent.pem', key: b.key }], logger: pino({ level: 'silent' }) }), (err: unknown) => err instanceof ConfigError && /listen\.tls\.certs\[0\]: .*nonexistent/.test(err.issues[0] ?? ''));
  });
});
