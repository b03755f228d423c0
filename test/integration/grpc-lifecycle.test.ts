import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect as h2connect } from 'node:http2';
import { after, before, describe, it } from 'node:test';
import { createTestCa, type TestCa } from '../helpers/certs.ts';
import { echoClient, grpc, startGrpcUpstream, TRAILER_BIN, unary, type EchoClient, type EchoReply, type GrpcUpstream } from '../helpers/grpc.ts';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';

async function targetStates(p: TestProxy, app: string, pool: string): Promise<{ state: string; lastCheck?: { error: string | null } }[]> {
  return (await p.admin('GET', `/v1/apps/${app}`)).body.pools[pool].targetStates;
}

describe('gRPC lifecycle: a switch under a running bidi stream, gRPC health checks, gRPC over TLS', () => {
  let blue: GrpcUpstream;
  let green: GrpcUpstream;
  let green2: GrpcUpstream;
  let ca: TestCa;
  let p: TestProxy;
  let client: EchoClient;
  let tlsAddress: string;

  before(async () => {
    blue = await startGrpcUpstream('blue');
    green = await startGrpcUpstream('green');
    green2 = await startGrpcUpstream('green2');
    ca = createTestCa();
    const cert = ca.issue('grpc', ['grpc.test']);
    p = await startProxy({
      listen: { host: '127.0.0.1', port: 0, h2c: true, tls: { port: 0, certs: [{ cert: cert.cert, key: cert.key }] } },
      apps: [
        {
          name: 'echo',
          hosts: ['*'],
          pools: {
            blue: { version: '1.0.0', targets: [blue.url], protocol: 'h2' },
            green: { version: '2.0.0', targets: [green.url, green2.url], protocol: 'h2' },
          },
          drain: { timeout: '1500ms' },
          health: { grpc: true, interval: '100ms', timeout: '1s', rise: 1, fall: 1, passive: false },
        },
      ],
    });
    client = echoClient(p.proxyUrl.replace('http://', ''));
    const addr = p.sy.edge?.listener.server.address();
    assert.ok(addr !== null && typeof addr === 'object');
    tlsAddress = `127.0.0.1:${addr.port}`;
  });

  after(async () => {
    client?.close();
    await p?.close();
    await blue?.close();
    await green?.close();
    await green2?.close();
    ca?.close();
  });

  it('a bidi stream stays on its pool after a switch, then ends with UNAVAILABLE (14) at the drain deadline', async (t) => {
    const bidi = client.Bidi();
    const replies: EchoReply[] = [];
    bidi.on('data', (r: EchoReply) => replies.push(r));
    const status = new Promise<grpc.StatusObject>((resolve) => bidi.on('status', resolve));
    bidi.on('error', () => undefined);
    bidi.write({ message: 'before' });
    // a bare h2c connection with a stream of its own on blue: it must see the GOAWAY and the trailers
    const session = h2connect(p.proxyUrl);
    let goaway = false;
    session.on('goaway', () => (goaway = true));
    session.on('error', () => undefined);
    const raw = session.request({ ':method': 'POST', ':path': '/switchyard.test.Echo/Bidi', 'content-type': 'application/grpc', te: 'trailers' });
    let rawData = 0;
    raw.on('data', (c: Buffer) => (rawData += c.length));
    const rawTrailers = new Promise<Record<string, unknown>>((resolve) => raw.on('trailers', resolve));
    raw.on('error', () => undefined);
    // one empty EchoRequest, framed: no compression, length 0
    raw.write(Buffer.alloc(5));
    await t.waitFor(() => assert.equal(replies.length, 1), { timeout: 5000 });
    await t.waitFor(() => assert.ok(rawData > 0), { timeout: 5000 });
    assert.equal(replies[0]?.servedBy, 'blue');
    const switchedAt = Date.now();
    assert.equal((await p.admin('POST', '/v1/apps/echo/switch', { to: 'green' })).status, 200);
    // new calls go to green; the open stream keeps talking to blue
    assert.match((await unary(client, { message: 'new' })).reply.servedBy, /^green/);
    bidi.write({ message: 'after' });
    await t.waitFor(() => assert.equal(replies.length, 2), { timeout: 5000 });
    assert.equal(replies[1]?.servedBy, 'blue', 'the stream stays on its pool');
    const end = await status;
    assert.equal(end.code, grpc.status.UNAVAILABLE);
    assert.match(end.details, /drained/);
    assert.ok(Date.now() - switchedAt >= 1000, 'not cut before the drain deadline');
    assert.equal((await rawTrailers)['grpc-status'], '14');
    await t.waitFor(() => assert.ok(goaway, 'the connection got a GOAWAY'), { timeout: 5000 });
    session.destroy();
    await t.waitFor(() => assert.equal(blue.open, 0), { timeout: 5000 });
    // the client reconnects (GOAWAY) and its next calls work
    assert.match((await unary(client, { message: 'again' })).reply.servedBy, /^green/);
    await p.admin('POST', '/v1/apps/echo/switch', { to: 'blue' });
  });

  it('gRPC health checks take a NOT_SERVING target out and bring it back when SERVING', async (t) => {
    await t.waitFor(async () => assert.deepEqual((await targetStates(p, 'echo', 'green')).map((s) => s.state), ['up', 'up']), { timeout: 10_000, interval: 100 });
    green2.health = 'NOT_SERVING';
    await t.waitFor(async () => assert.equal((await targetStates(p, 'echo', 'green'))[1]?.state, 'down'), { timeout: 10_000, interval: 100 });
    assert.equal((await targetStates(p, 'echo', 'green'))[1]?.lastCheck?.error, 'NOT_SERVING');
    await p.admin('POST', '/v1/apps/echo/switch', { to: 'green' });
    t.after(async () => {
      await p.admin('POST', '/v1/apps/echo/switch', { to: 'blue' });
    });
    const served = await Promise.all(Array.from({ length: 10 }, () => unary(client, { message: 'h' }).then((r) => r.reply.servedBy)));
    assert.deepEqual(new Set(served), new Set(['green']), 'the NOT_SERVING target gets no call');
    green2.health = 'SERVING';
    await t.waitFor(async () => assert.equal((await targetStates(p, 'echo', 'green'))[1]?.state, 'up'), { timeout: 10_000, interval: 100 });
  });

  it('gRPC clients reach the TLS port over h2 with everything the plain port carries', async (t) => {
    const creds = grpc.credentials.createSsl(Buffer.from(readFileSync(ca.caFile)));
    const c = echoClient(tlsAddress, creds, { 'grpc.ssl_target_name_override': 'grpc.test', 'grpc.default_authority': 'grpc.test' });
    t.after(() => {
      c.close();
    });
    const { reply, trailers } = await unary(c, { message: 'tls' });
    assert.deepEqual(reply, { message: 'tls', servedBy: 'blue' });
    assert.deepEqual(trailers.get('x-trailer-bin')[0], TRAILER_BIN);
    const items: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const s = c.ServerStream({ message: 't', count: 3 });
      s.on('data', (r: EchoReply) => items.push(r.message));
      s.on('error', reject);
      s.on('end', resolve);
    });
    assert.deepEqual(items, ['t#0', 't#1', 't#2']);
    await assert.rejects(unary(c, { failCode: grpc.status.PERMISSION_DENIED }), (err: grpc.ServiceError) => err.code === grpc.status.PERMISSION_DENIED);
  });
});
