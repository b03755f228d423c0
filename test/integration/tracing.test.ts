import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import { startProxy, twoPools } from '../helpers/proxy.ts';
import { startUpstream } from '../helpers/upstream.ts';

/** One span of an OTLP/HTTP JSON export (opentelemetry-proto's JSON mapping: ids in hex). */
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: { key: string; value: { stringValue?: string; intValue?: string | number; boolValue?: boolean } }[];
  status?: { code?: number; message?: string };
}

/** A real OTLP/HTTP receiver on port 0: what a collector's `otlp` receiver gets, as JSON. */
async function otlpReceiver(t: TestContext): Promise<{ url: string; spans: OtlpSpan[]; requests: { path: string; contentType: string; auth: string | undefined; resource: Record<string, string> }[] }> {
  const spans: OtlpSpan[] = [];
  const requests: { path: string; contentType: string; auth: string | undefined; resource: Record<string, string> }[] = [];
  const server: Server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString()) as { resourceSpans: { resource: { attributes: OtlpSpan['attributes'] }; scopeSpans: { spans: OtlpSpan[] }[] }[] };
      for (const rs of body.resourceSpans) {
        requests.push({ path: req.url ?? '', contentType: String(req.headers['content-type']), auth: req.headers['authorization'], resource: Object.fromEntries(rs.resource.attributes.map((a) => [a.key, String(a.value.stringValue)])) });
        for (const ss of rs.scopeSpans) spans.push(...ss.spans);
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, spans, requests };
}

const attrs = (s: OtlpSpan): Record<string, string | number | boolean | undefined> => Object.fromEntries(s.attributes.map((a) => [a.key, a.value.stringValue ?? (a.value.intValue === undefined ? a.value.boolValue : Number(a.value.intValue))]));
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0([01])$/;

describe('tracing (OpenTelemetry, OTLP/HTTP)', () => {
  it('exports a server span per request, a child of the client\'s traceparent and the parent of the upstream\'s, with the routing facts', async (t) => {
    const receiver = await otlpReceiver(t);
    const blue = await startUpstream('blue');
    const green = await startUpstream('green', (_req, res) => res.writeHead(500).end('broken'));
    t.after(() => Promise.all([blue.close(), green.close()]));
    const p = await startProxy({
      apps: [twoPools(blue.url, green.url, { preview: { header: 'x-preview', secret: 'preview-secret-0123456789' }, sticky: { key: ['header:x-user'] } })],
      // sample 0: only requests whose traceparent says sampled are traced (parent-based)
      tracing: { otlp: receiver.url, sample: 0, headers: { authorization: 'Bearer collector' }, exportEvery: '100ms', serviceName: 'edge' },
    });
    t.after(() => p.close());

    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const clientSpan = '00f067aa0ba902b7';
    const r1 = await p.get('/shop?q=1', { traceparent: `00-${traceId}-${clientSpan}-01`, tracestate: 'vendor=abc', 'x-user': 'u1' });
    assert.equal(r1.status, 200);
    // the upstream saw Switchyard's own span as the parent, in the same trace, with the tracestate
    const seen = blue.seen.at(-1)?.headers ?? assert.fail('blue saw the request');
    const [, upTrace, upParent, upSampled] = TRACEPARENT.exec(String(seen.traceparent)) ?? assert.fail(`traceparent upstream: ${String(seen.traceparent)}`);
    assert.equal(upTrace, traceId);
    assert.notEqual(upParent, clientSpan);
    assert.equal(upSampled, '1');
    assert.equal(seen.tracestate, 'vendor=abc');

    // a preview request to green, which answers 500: an error span saying which step routed it
    const sig = (await p.admin('GET', '/v1/apps/shop/pools/green/preview-header')).body.value as string;
    const r2 = await p.get('/broken', { traceparent: `00-${traceId}-${clientSpan}-01`, 'x-preview': sig });
    assert.equal(r2.status, 500);
    // not sampled by the client, and sample 0: nothing exported, but the context still goes upstream
    const unsampledTrace = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';
    assert.equal((await p.get('/quiet', { traceparent: `00-${unsampledTrace}-${clientSpan}-00` })).status, 200);
    assert.equal(blue.seen.at(-1)?.headers.traceparent, `00-${unsampledTrace}-${clientSpan}-00`, 'an unsampled traceparent goes upstream as it came');
    // no traceparent and sample 0: nothing recorded, nothing added
    assert.equal((await p.get('/none')).status, 200);
    assert.equal(blue.seen.at(-1)?.headers.traceparent, undefined);

    await t.waitFor(() => assert.equal(receiver.spans.length, 2), { timeout: 15_000, interval: 50 });
    const revision = (await p.admin('GET', '/v1/apps/shop')).body.revision as number;
    const [ok, broken] = [...receiver.spans].sort((a, b) => (attrs(a)['url.path'] === '/shop' ? -1 : 1) - (attrs(b)['url.path'] === '/shop' ? -1 : 1)) as [OtlpSpan, OtlpSpan];
    assert.equal(ok.traceId, traceId);
    assert.equal(ok.parentSpanId, clientSpan);
    assert.equal(ok.spanId, upParent, 'the span the upstream named as its parent is the exported one');
    assert.equal(ok.kind, 2, 'SPAN_KIND_SERVER');
    assert.equal(ok.name, 'GET');
    assert.deepEqual(attrs(ok), {
      'http.request.method': 'GET',
      'url.path': '/shop',
      'server.address': new URL(p.proxyUrl).host,
      'switchyard.app': 'shop',
      'switchyard.pool': 'blue',
      'switchyard.version': '1.0.0',
      'switchyard.revision': revision,
      'switchyard.by': 'weights',
      'switchyard.upstream': blue.url,
      'http.response.status_code': 200,
    });
    assert.equal(ok.status?.code ?? 0, 0);
    const b = attrs(broken);
    assert.equal(b['switchyard.by'], 'preview');
    assert.equal(b['switchyard.pool'], 'green');
    assert.equal(b['switchyard.version'], '2.0.0');
    assert.equal(b['http.response.status_code'], 500);
    assert.equal(b['error.type'], '500');
    assert.equal(broken.status?.code, 2, 'STATUS_CODE_ERROR');
    assert.equal(broken.parentSpanId, clientSpan);

    const req = receiver.requests[0] ?? assert.fail('an export');
    assert.equal(req.path, '/v1/traces', 'a URL without a path gets /v1/traces');
    assert.match(req.contentType, /^application\/json/);
    assert.equal(req.auth, 'Bearer collector');
    assert.equal(req.resource['service.name'], 'edge');
  });

  it('starts traces at the configured share, a proxy error included, and exports what is left at shutdown', async (t) => {
    const receiver = await otlpReceiver(t);
    const blue = await startUpstream('blue');
    t.after(() => blue.close());
    // green has no target up: a request routed there is the proxy's own 503
    const p = await startProxy({ apps: [twoPools(blue.url, 'http://127.0.0.1:9', { initial: { green: 100 } })], tracing: { otlp: `${receiver.url}/v1/traces`, sample: 1, exportEvery: '1h' } });
    let closed = false;
    t.after(() => (closed ? undefined : p.close()));
    assert.equal((await p.get('/')).status, 503);
    assert.equal((await p.admin('POST', '/v1/apps/shop/switch', { to: 'blue', force: true })).status, 200);
    for (let i = 0; i < 3; i++) assert.equal((await p.get(`/n${i}`)).status, 200);
    assert.equal(receiver.spans.length, 0, 'batched: nothing yet');
    await p.close();
    closed = true;
    assert.equal(receiver.spans.length, 4, 'the stop exported the batch');
    const noTarget = receiver.spans.find((s) => attrs(s)['http.response.status_code'] === 503) ?? assert.fail('the 503 span');
    assert.equal(attrs(noTarget)['error.type'], 'NO_TARGET');
    assert.equal(noTarget.parentSpanId ?? '', '', 'a root span: the client sent no traceparent');
    assert.equal(new Set(receiver.spans.map((s) => s.traceId)).size, 4, 'each request its own trace');
  });

  it('refuses a tracing config that cannot work, naming the key', () => {
    const base = { admin: { host: '127.0.0.1', port: 0, tokens: [{ name: 't', token: 'x'.repeat(20) }] } };
    assert.throws(() => parseConfig({ ...base, tracing: { otlp: 'collector:4318' } }), /tracing\.otlp/);
    assert.throws(() => parseConfig({ ...base, tracing: { otlp: 'http://c:4318', sample: 2 } }), /tracing\.sample/);
    assert.throws(() => parseConfig({ ...base, tracing: { otlp: 'http://c:4318', exportEvery: '1ms' } }), /tracing\.exportEvery/);
    assert.throws(() => parseConfig({ ...base, tracing: { otlp: 'http://c:4318', smaple: 0.1 } }), /smaple/);
    assert.equal(parseConfig({ ...base, tracing: { otlp: 'http://c:4318' } }).tracing?.otlp, 'http://c:4318/v1/traces');
  });
});
