import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { getCACertificates, setDefaultCACertificates } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { createTestCa, type TestCa } from '../helpers/certs.ts';
import { echoClient, grpc, startGrpcUpstream, TRAILER_BIN, unary, type EchoClient, type EchoReply, type GrpcUpstream } from '../helpers/grpc.ts';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';

/**
 * A `protocol: h2` pool whose target is https://; the certificate is checked for the target
 * URL's name (or IP), never for the client's :authority (src/dataplane/engine/tls-name.ts). (a grpc-js server with TLS credentials and a
 * certificate from a throwaway CA). The pool has no CA option of its own: it trusts what Node
 * trusts, so an operator adds a private CA with NODE_EXTRA_CA_CERTS; the test does the same
 * in-process with tls.setDefaultCACertificates (read at each new TLS connection).
 */
describe('protocol: h2 pools with https:// targets: ALPN h2, certificates verified', () => {
  let ca: TestCa;
  let up: GrpcUpstream;
  let target: string;
  let p: TestProxy;
  let client: EchoClient;
  const defaults = getCACertificates('default');

  const states = async (): Promise<{ state: string; lastCheck?: { error: string | null } }[]> => (await p.admin('GET', '/v1/apps/checked')).body.pools.blue.targetStates;
  const clientFor = (host: string): EchoClient => echoClient(p.proxyUrl.replace('http://', ''), grpc.credentials.createInsecure(), { 'grpc.default_authority': host });

  before(async () => {
    ca = createTestCa();
    const cert = ca.issue('target', ['localhost', '127.0.0.1']);
    up = await startGrpcUpstream('tls', grpc.ServerCredentials.createSsl(null, [{ private_key: readFileSync(cert.key), cert_chain: readFileSync(cert.cert) }], false));
    // the certificate names localhost; the server listens on 127.0.0.1 (Node's connect tries each family)
    target = `https://localhost:${up.port}`;
    const app = (name: string, host: string, url = target): Record<string, unknown> => ({
      name,
      hosts: [host],
      pools: { blue: { version: '1', targets: [url], protocol: 'h2' }, green: { version: '2', targets: [url], protocol: 'h2' } },
      health: { passive: false },
    });
    const checked = { ...app('checked', 'checked.test'), health: { grpc: true, interval: '100ms', timeout: '1s', rise: 1, fall: 1, passive: false } };
    p = await startProxy({ listen: { host: '127.0.0.1', port: 0, h2c: true }, apps: [app('untrusted', 'untrusted.test'), app('echo', 'echo.test'), checked, app('byip', 'byip.test', `https://127.0.0.1:${up.port}`)] });
    client = clientFor('echo.test');
  });

  after(async () => {
    setDefaultCACertificates(defaults);
    client?.close();
    await p?.close();
    await up?.close();
    ca?.close();
  });

  it('a target whose certificate no trusted CA signed is refused: UNAVAILABLE, the server sees no call, health checks say why', async (t) => {
    // the checks run from the start: their error names the certificate failure
    await t.waitFor(async () => assert.match(String((await states())[0]?.lastCheck?.error), /verify|certificate|issuer/i), { timeout: 10_000, interval: 100 });
    assert.equal((await states())[0]?.state, 'down');
    const c = clientFor('untrusted.test');
    t.after(() => {
      c.close();
    });
    await assert.rejects(unary(c, { message: 'x' }), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.UNAVAILABLE, err.details);
      return true;
    });
    assert.equal(up.calls, 0);
  });

  it('with the CA trusted, unary and bidi calls reach the TLS target over h2 (grpc-js accepts nothing else) with trailers intact', async (t) => {
    setDefaultCACertificates([...defaults, ca.caPem]);
    const md = new grpc.Metadata();
    md.set('x-plain', 'over-tls');
    const { reply, trailers, headers } = await unary(client, { message: 'hi' }, md);
    assert.deepEqual(reply, { message: 'hi', servedBy: 'tls' });
    assert.deepEqual(trailers.get('x-trailer-bin')[0], TRAILER_BIN);
    assert.equal(headers.get('x-served-by')[0], 'blue@1');
    assert.equal(up.lastMetadata?.get('x-plain')[0], 'over-tls');

    const bidi = client.Bidi();
    const echoes: string[] = [];
    await new Promise<void>((resolve, reject) => {
      bidi.on('error', reject);
      bidi.on('data', (r: EchoReply) => {
        echoes.push(r.message);
        if (echoes.length < 3) bidi.write({ message: `m${echoes.length}` });
        else bidi.end();
      });
      bidi.on('status', (s: grpc.StatusObject) => (s.code === grpc.status.OK ? resolve() : reject(new Error(s.details))));
      bidi.write({ message: 'm0' });
    });
    assert.deepEqual(echoes, ['m0', 'm1', 'm2']);

    // an IP target's certificate is checked for the IP (the client's :authority is byip.test),
    // and the IP is not sent as SNI, which RFC 6066 forbids (Node warns DEP0123 when asked to)
    const warnings: string[] = [];
    const onWarning = (w: Error & { code?: string }): void => void warnings.push(w.code ?? w.name);
    process.on('warning', onWarning);
    const c = clientFor('byip.test');
    t.after(() => {
      process.off('warning', onWarning);
      c.close();
    });
    assert.equal((await unary(c, { message: 'ip' })).reply.servedBy, 'tls');
    await new Promise((resolve) => setImmediate(resolve));
    assert.ok(!warnings.includes('DEP0123'), 'no IP address as TLS server name');
  });

  it('gRPC health checks reach the TLS target too: up once its CA is trusted', async (t) => {
    await t.waitFor(async () => assert.equal((await states())[0]?.state, 'up'), { timeout: 10_000, interval: 100 });
    const c = clientFor('checked.test');
    t.after(() => {
      c.close();
    });
    assert.equal((await unary(c, { message: 'h' })).reply.servedBy, 'tls');
  });
});
