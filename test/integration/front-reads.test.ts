import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { after, before, describe, it, type TestContext } from 'node:test';
import { readSlots } from '../../src/dataplane/engine/internals.ts';
import { createTestCa, type TestCa } from '../helpers/certs.ts';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { until } from '../helpers/wait.ts';
import { startWsUpstream, type WsUpstream } from '../helpers/ws.ts';

/**
 * The raw front's sockets (plain, and TLS: the cleartext TLSWrap hands up) read into one buffer shared by every connection (front.ts
 * readInto, net.Socket's onread slots): what a connection keeps past a read — part of a head, a
 * pipelined request, body bytes, the bytes handed to node:http with an upgrade — must be its own
 * copy, or the next read of another connection overwrites it. Each case below has a second
 * connection send different bytes of the same length while the first one holds some.
 */

interface Client {
  readonly socket: Socket;
  /** everything received, latin1 */
  text(): string;
}

/** A client of `port`, over TLS when `ca` is given (then connected once the handshake is done). */
async function clientOf(t: TestContext, port: number, ca?: TestCa): Promise<Client> {
  const socket = ca === undefined ? connect({ port, host: '127.0.0.1' }) : tlsConnect({ port, host: '127.0.0.1', ca: ca.caPem, servername: 'shop.test', ALPNProtocols: ['http/1.1'] });
  t.after(() => socket.destroy());
  let text = '';
  socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
  await new Promise<void>((resolve, reject) => socket.once(ca === undefined ? 'connect' : 'secureConnect', resolve).once('error', reject));
  return { socket, text: () => text };
}

const responses = (text: string): number => text.split('HTTP/1.1 ').length - 1;

/** A masked WebSocket text frame, as a client sends it (RFC 6455 §5.2), payload under 126 bytes. */
function frame(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = [0x11, 0x22, 0x33, 0x44];
  const out = Buffer.alloc(6 + payload.length);
  out[0] = 0x81;
  out[1] = 0x80 | payload.length;
  for (let i = 0; i < 4; i++) out[2 + i] = mask[i] as number;
  for (let i = 0; i < payload.length; i++) out[6 + i] = (payload[i] as number) ^ (mask[i % 4] as number);
  return out;
}

for (const overTls of [false, true]) describe(`the raw front reads ${overTls ? 'TLS' : 'plain'} sockets into one shared buffer, and keeps its own copies`, () => {
  let up: WsUpstream;
  let p: TestProxy;
  let port: number;
  let ca: TestCa | undefined;
  const client = (t: TestContext, to: number): Promise<Client> => clientOf(t, to, ca);
  /** answers /slow once a request for a path starting with /B arrived (resolved by the upstream) */
  let sawB: () => void = () => undefined;
  let bSeen = new Promise<void>((resolve) => (sawB = resolve));

  before(async () => {
    up = await startWsUpstream('blue', (req: IncomingMessage, res: ServerResponse) => {
      if (req.url?.startsWith('/B') === true) sawB();
      if (req.url === '/slow') {
        void bSeen.then(() => res.end('slow'));
        return true;
      }
      if (req.url === '/ws') return false;
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => res.end(JSON.stringify({ url: req.url, body: Buffer.concat(chunks).toString('latin1') })));
      return true;
    });
    if (overTls) {
      ca = createTestCa();
      const cert = ca.issue('shop', ['shop.test']);
      // a TLS port (HTTP/1.1 only: the client speaks it) beside the plain one, no redirect
      p = await startProxy({ engine: 'native', listen: { host: '127.0.0.1', port: 0, tls: { port: 0, http2: false, certs: [{ cert: cert.cert, key: cert.key }] } }, apps: [twoPools(up.url, up.url)] });
      port = (p.sy.edge?.listener.server.address() as AddressInfo).port;
    } else {
      p = await startProxy({ engine: 'native', apps: [twoPools(up.url, up.url)] });
      port = Number(new URL(p.proxyUrl).port);
    }
  });
  after(async () => {
    await p.close();
    await up.close();
    ca?.close();
  });

  it('is on in this Node (the onread slots are where the check expects them)', async (t) => {
    assert.equal(readSlots.ok, true, readSlots.ok ? '' : readSlots.reason);
    const a = await client(t, port);
    a.socket.write('GET /on HTTP/1.1\r\nHost: shop\r\n\r\n');
    await until(t, 'the response', () => a.text().includes('"url":"/on"'));
    assert.equal(p.sy.dataPlane.frontDirectConnections, 1);
  });

  it('a head that arrives in two reads keeps its first part while another connection reads', async (t) => {
    for (let round = 0; round < 5; round++) {
      const a = await client(t, port);
      const b = await client(t, port);
      const pathA = `/A${round}${'a'.repeat(200)}`;
      const pathB = `/B${round}${'b'.repeat(200)}`;
      a.socket.write(`GET ${pathA}`);
      b.socket.write(`GET ${pathB} HTTP/1.1\r\nHost: shop\r\n\r\n`);
      await until(t, 'B answered', () => b.text().includes(`"url":"${pathB}"`));
      a.socket.write(' HTTP/1.1\r\nHost: shop\r\n\r\n');
      await until(t, 'A answered', () => responses(a.text()) === 1 && a.text().includes('"url"'));
      assert.match(a.text(), new RegExp(`"url":"${pathA}"`));
    }
  });

  it('a pipelined request waits in its own copy while the one before it is served', async (t) => {
    sawB = () => undefined;
    bSeen = new Promise<void>((resolve) => (sawB = resolve));
    const a = await client(t, port);
    const b = await client(t, port);
    const pathA = `/A${'a'.repeat(300)}`;
    a.socket.write(`GET /slow HTTP/1.1\r\nHost: shop\r\n\r\nGET ${pathA} HTTP/1.1\r\nHost: shop\r\n\r\n`);
    // same length as A's whole payload, so B's read covers the bytes A's second request sat in
    b.socket.write(`GET /B${'b'.repeat(300 + 34)} HTTP/1.1\r\nHost: shop\r\n\r\n`);
    await until(t, 'both of A answered', () => responses(a.text()) === 2 && a.text().includes('"url"'));
    assert.match(a.text(), /\r\n\r\nslow/);
    assert.match(a.text(), new RegExp(`"url":"${pathA}"`));
  });

  it('a request body that comes in several reads reaches the upstream intact', async (t) => {
    const a = await client(t, port);
    const b = await client(t, port);
    a.socket.write(`POST /body HTTP/1.1\r\nHost: shop\r\nContent-Length: 400\r\n\r\n${'x'.repeat(200)}`);
    b.socket.write(`POST /B-other HTTP/1.1\r\nHost: shop\r\nContent-Length: 400\r\n\r\n${'y'.repeat(400)}`);
    await until(t, 'B answered', () => b.text().includes('"url":"/B-other"'));
    a.socket.write('z'.repeat(200));
    await until(t, 'A answered', () => a.text().includes('"url":"/body"'));
    assert.match(a.text(), new RegExp(`"body":"${'x'.repeat(200)}${'z'.repeat(200)}"`));
  });

  it('a connection handed to node:http by an upgrade keeps the bytes read with it, and reads on', async (t) => {
    const a = await client(t, port);
    const b = await client(t, port);
    a.socket.write('GET /first HTTP/1.1\r\nHost: shop\r\n\r\n');
    await until(t, 'the plain request answered', () => a.text().includes('"url":"/first"'));
    // the upgrade and the first frame in one read: the frame goes to node:http (and on to the upstream) as the upgrade's head
    const upgrade = 'GET /ws HTTP/1.1\r\nHost: shop\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';
    a.socket.write(Buffer.concat([Buffer.from(upgrade), frame('one')]));
    await until(t, 'the first frame echoed', () => a.text().includes('blue:one'));
    assert.match(a.text(), /HTTP\/1\.1 101 /);
    b.socket.write(`GET /B${'q'.repeat(400)} HTTP/1.1\r\nHost: shop\r\n\r\n`);
    await until(t, 'B answered', () => b.text().includes('"url":"/B'));
    a.socket.write(frame('two'));
    await until(t, 'the second frame echoed', () => a.text().includes('blue:two'));
  });
});
