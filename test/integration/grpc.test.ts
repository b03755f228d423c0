import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as h2connect } from 'node:http2';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { echoClient, grpc, startGrpcUpstream, TRAILER_BIN, unary, type EchoClient, type EchoReply, type GrpcUpstream } from '../helpers/grpc.ts';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { until } from '../helpers/wait.ts';

/** The app of these tests: two gRPC pools spoken to over h2c. */
function grpcApp(name: string, hosts: string[], blue: string[], green: string[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name,
    hosts,
    pools: {
      blue: { version: '1.0.0', targets: blue, protocol: 'h2' },
      green: { version: '2.0.0', targets: green, protocol: 'h2' },
    },
    ...extra,
  };
}

function collect<T>(stream: NodeJS.ReadableStream & { on(e: 'status', l: (s: grpc.StatusObject) => void): unknown }): Promise<{ items: T[]; status: grpc.StatusObject | null; error: grpc.ServiceError | null }> {
  return new Promise((resolve) => {
    const items: T[] = [];
    let status: grpc.StatusObject | null = null;
    let error: grpc.ServiceError | null = null;
    let ended = false;
    const done = (): void => {
      if (status !== null && (ended || error !== null)) resolve({ items, status, error });
    };
    stream.on('data', (d: T) => items.push(d));
    stream.on('error', (e: grpc.ServiceError) => {
      error = e;
      done();
    });
    stream.on('end', () => {
      ended = true;
      done();
    });
    stream.on('status', (s: grpc.StatusObject) => {
      status = s;
      done();
    });
  });
}

describe('gRPC through Switchyard over h2c: h2 pools, streams, trailers, gRPC-shaped errors', () => {
  let blue: GrpcUpstream;
  let green: GrpcUpstream;
  let web: Upstream;
  let p: TestProxy;
  let client: EchoClient;
  let address: string;
  let draw = 0;

  before(async () => {
    blue = await startGrpcUpstream('blue');
    green = await startGrpcUpstream('green');
    web = await startUpstream('web');
    p = await startProxy(
      {
        listen: { host: '127.0.0.1', port: 0, h2c: true },
        apps: [
          grpcApp('echo', ['*'], [blue.url], [green.url], { sticky: { key: ['header:x-user-id'] }, preview: { secret: 'preview-secret-0123456789' } }),
          // a slow answer gets the proxy's own deadline (timeouts.response)
          grpcApp('slow', ['slow.test'], [blue.url], [green.url], { timeouts: { response: '300ms' } }),
          // green's only target refuses connections
          grpcApp('dead', ['dead.test'], [blue.url], ['http://127.0.0.1:1'], { initial: { green: 100 } }),
          // a cohort rule on request metadata (docs/cohorts.md §2): x-beta: 1 goes to green, the rest by weight
          // its own app so that its stats windows hold only the calls of the canary test
          grpcApp('judge', ['judge.test'], [blue.url], [green.url]),
          grpcApp('cohort', ['cohort.test'], [blue.url], [green.url], { initial: { blue: 80, green: 20 }, rules: [{ name: 'beta', match: { header: { 'x-beta': '1' } }, to: 'green' }] }),
          { name: 'web', hosts: ['web.test'], pools: { blue: { version: '1', targets: [web.url] }, green: { version: '2', targets: [web.url] } } },
        ],
      },
      { random: () => (draw++ % 100) / 100 },
    );
    address = p.proxyUrl.replace('http://', '');
    client = echoClient(address);
  });

  after(async () => {
    client?.close();
    await p?.close();
    await blue?.close();
    await green?.close();
    await web?.close();
  });

  it('a unary call goes through with its reply, its -bin metadata and trailers byte for byte', async () => {
    const md = new grpc.Metadata();
    const sent = Buffer.from([0xff, 0, 0x80, 7]);
    md.set('x-echo-bin', sent);
    md.set('x-plain', 'hello');
    const { reply, trailers, headers } = await unary(client, { message: 'hi' }, md);
    assert.deepEqual(reply, { message: 'hi', servedBy: 'blue' });
    assert.deepEqual(trailers.get('x-trailer-bin')[0], TRAILER_BIN, 'binary trailer intact');
    assert.deepEqual(trailers.get('x-echo-bin')[0], sent, 'binary request metadata reached the server and came back intact');
    assert.equal(blue.lastMetadata?.get('x-plain')[0], 'hello');
    assert.equal(headers.get('x-served-by')[0], 'blue@1.0.0');
  });

  it('server, client and bidirectional streams flow both ways and end with the upstream trailers', async () => {
    const server = await collect<EchoReply>(client.ServerStream({ message: 's', count: 5, intervalMs: 5 }));
    assert.deepEqual(
      server.items.map((r) => r.message),
      ['s#0', 's#1', 's#2', 's#3', 's#4'],
    );
    assert.equal(server.status?.code, grpc.status.OK);
    assert.deepEqual(server.status?.metadata.get('x-trailer-bin')[0], TRAILER_BIN);

    const clientStream = await new Promise<EchoReply>((resolve, reject) => {
      const call = client.ClientStream((err: grpc.ServiceError | null, r: EchoReply) => (err ? reject(err) : resolve(r)));
      for (const m of ['a', 'b', 'c']) call.write({ message: m });
      call.end();
    });
    assert.deepEqual(clientStream, { message: 'a,b,c', servedBy: 'blue' });

    // each message waits for the echo of the previous one: only a full-duplex path passes
    const bidi = client.Bidi();
    const echoes: string[] = [];
    const finished = collect<EchoReply>(bidi);
    await new Promise<void>((resolve) => {
      bidi.on('data', (r: EchoReply) => {
        echoes.push(r.message);
        if (echoes.length < 4) bidi.write({ message: `m${echoes.length}` });
        else {
          bidi.end();
          resolve();
        }
      });
      bidi.write({ message: 'm0' });
    });
    const end = await finished;
    assert.deepEqual(echoes, ['m0', 'm1', 'm2', 'm3']);
    assert.equal(end.status?.code, grpc.status.OK);
    assert.deepEqual(end.status?.metadata.get('x-trailer-bin')[0], TRAILER_BIN);
  });

  it("an upstream's error status, message and trailers reach the client as the upstream sent them", async () => {
    await assert.rejects(unary(client, { message: 'x', failCode: grpc.status.NOT_FOUND }), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.NOT_FOUND);
      assert.equal(err.details, 'failed on purpose by blue');
      assert.deepEqual(err.metadata.get('x-trailer-bin')[0], TRAILER_BIN);
      return true;
    });
  });

  it('a dead pool answers UNAVAILABLE (14) with a grpc-message, not an HTTP status', async (t) => {
    const c = echoClient(address, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'dead.test' });
    t.after(() => {
      c.close();
    });
    await assert.rejects(unary(c, { message: 'x' }), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.UNAVAILABLE);
      assert.match(err.details, /no target that is up|refused/);
      return true;
    });
  });

  it("the proxy's response timeout is DEADLINE_EXCEEDED (4); a client deadline is kept too", async (t) => {
    const c = echoClient(address, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'slow.test' });
    t.after(() => {
      c.close();
    });
    await assert.rejects(unary(c, { message: 'x', delayMs: 3000 }), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.DEADLINE_EXCEEDED);
      assert.match(err.details, /upstream timeout/);
      return true;
    });
    await assert.rejects(unary(client, { message: 'x', delayMs: 3000 }, new grpc.Metadata(), { deadline: Date.now() + 200 }), (err: grpc.ServiceError) => err.code === grpc.status.DEADLINE_EXCEEDED);
  });

  it('HTTP/1.1 keeps being served on the same port, and a bare h2c client gets an answer', async (t) => {
    const port = Number(new URL(p.proxyUrl).port);
    // a connection reset before its first byte, while the preface check holds it, harms nothing
    const reset = connect(port, '127.0.0.1');
    await once(reset, 'connect');
    reset.resetAndDestroy();
    // a request line that arrives a byte at a time starts like the preface ("P…") and still is HTTP/1.1
    const slow = connect(port, '127.0.0.1');
    await once(slow, 'connect');
    let answer = '';
    slow.on('data', (c: Buffer) => (answer += c.toString('latin1')));
    for (const ch of 'PUT /slow HTTP/1.1\r\nHost: web.test\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi') {
      slow.write(ch);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    await once(slow, 'close');
    assert.match(answer, /^HTTP\/1\.1 200 /);
    assert.match(answer, /"method":"PUT","url":"\/slow","body":"hi"/);
    const r = await p.get('/hello', { host: 'web.test' });
    assert.equal(r.status, 200);
    assert.equal(JSON.parse(r.body).pool, 'web');
    const session = h2connect(p.proxyUrl);
    t.after(() => {
      session.close();
    });
    const stream = session.request({ ':path': '/x', ':authority': 'web.test' });
    const [headers] = (await new Promise((resolve) => stream.once('response', (h) => resolve([h])))) as [Record<string, unknown>];
    stream.resume();
    assert.equal(headers[':status'], 200);
    assert.equal(headers['x-served-by'], 'blue@1');
  });

  it('routes on metadata like headers: a preview header and a sticky key sent as gRPC metadata', async (t) => {
    const { createHmac } = await import('node:crypto');
    const md = new grpc.Metadata();
    md.set('x-switchyard-preview', `green.${createHmac('sha256', 'preview-secret-0123456789').update('echo:green').digest('hex')}`);
    assert.equal((await unary(client, { message: 'p' }, md)).reply.servedBy, 'green');
    assert.equal((await p.admin('PUT', '/v1/apps/echo/weights', { weights: { blue: 50, green: 50 } })).status, 200);
    t.after(async () => {
      await p.admin('POST', '/v1/apps/echo/switch', { to: 'blue' });
    });
    for (const user of ['u1', 'u2', 'u3', 'u4']) {
      const pools = new Set<string>();
      for (let i = 0; i < 4; i++) {
        const m = new grpc.Metadata();
        m.set('x-user-id', user);
        pools.add((await unary(client, { message: 'k' }, m)).reply.servedBy);
      }
      assert.equal(pools.size, 1, `user ${user} stays on one pool`);
    }
  });

  it('a canary split by weight sends exactly its share of calls to the new pool, and stats judge gRPC statuses', async (t) => {
    // the app "judge" serves no other test: its windows count this test's calls and nothing else
    const c = echoClient(address, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'judge.test' });
    t.after(() => {
      c.close();
    });
    assert.equal((await p.admin('PUT', '/v1/apps/judge/weights', { weights: { blue: 80, green: 20 } })).status, 200);
    draw = 0;
    const served = await Promise.all(Array.from({ length: 100 }, () => unary(c, { message: 'c' }).then((r) => r.reply.servedBy)));
    assert.equal(served.filter((s) => s === 'green').length, 20, 'exactly 20 of 100 calls on green with the fixed draws');
    // green fails 10 calls with INTERNAL (an error) and blue 10 with NOT_FOUND (the caller's fault)
    await p.admin('POST', '/v1/apps/judge/switch', { to: 'green' });
    await Promise.all(Array.from({ length: 10 }, () => unary(c, { failCode: grpc.status.INTERNAL }).catch(() => undefined)));
    await p.admin('POST', '/v1/apps/judge/switch', { to: 'blue' });
    await Promise.all(Array.from({ length: 10 }, () => unary(c, { failCode: grpc.status.NOT_FOUND }).catch(() => undefined)));
    // the windows end at the current second (exclusive): poll until every call of this test is in
    const window = async (pool: string): Promise<{ requests: number; errors: number }> => (await p.admin('GET', '/v1/apps/judge/stats')).body.windows['60s'][pool];
    let seen: Record<string, { requests: number }> = {};
    await until(t, 'the 60 s windows to hold all 120 calls (30 on green, 90 on blue)', async () => {
      seen = { green: await window('green'), blue: await window('blue') };
      return seen['green']?.requests === 30 && seen['blue']?.requests === 90;
    }, { timeout: 10_000, interval: 200, detail: () => JSON.stringify(seen) });
    const g = await window('green');
    assert.equal(g.errors, 10, `green's INTERNAL answers count as errors (${JSON.stringify(g)})`);
    assert.equal((await window('blue')).errors, 0, "NOT_FOUND is the caller's fault, not an error of blue");
    const metrics = await (await fetch(`${p.adminUrl}/metrics`)).text();
    const m = /switchyard_requests_total\{app="judge",pool="green",class="5xx"\} (\d+)/.exec(metrics);
    assert.equal(Number(m?.[1]), 10, 'the 10 INTERNAL answers are counted as 5xx in /metrics');
  });

  it('a cohort rule on metadata sends x-beta: 1 calls to green; the others split by weight', async (t) => {
    const c = echoClient(address, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'cohort.test' });
    t.after(() => {
      c.close();
    });
    const beta = (): grpc.Metadata => {
      const m = new grpc.Metadata();
      m.set('x-beta', '1');
      return m;
    };
    const betas = await Promise.all(Array.from({ length: 20 }, () => unary(c, { message: 'b' }, beta())));
    assert.deepEqual(new Set(betas.map((r) => r.reply.servedBy)), new Set(['green']), 'every x-beta: 1 call on green');
    assert.equal(betas[0]?.headers.get('x-served-by')[0], 'green@2.0.0');
    draw = 0;
    const others = await Promise.all(
      Array.from({ length: 100 }, (_, i) => {
        const m = new grpc.Metadata();
        // a value other than "1", or no x-beta at all: not the cohort
        if (i % 2 === 0) m.set('x-beta', '0');
        return unary(c, { message: 'o' }, m).then((r) => r.reply.servedBy);
      }),
    );
    assert.equal(others.filter((s) => s === 'green').length, 20, 'exactly 20 of 100 calls outside the cohort on green with the fixed draws');
    assert.equal(others.filter((s) => s === 'blue').length, 80);
  });
});
