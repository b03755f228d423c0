import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { encodeGrpcMessage, grpcClass, grpcStatusFor, grpcStatusOf, isGrpcContentType } from '../../src/dataplane/grpc.ts';
import { H2_PREFACE, startsWithPreface } from '../../src/dataplane/h2c.ts';
import { servingStatus } from '../../src/health/grpc-probe.ts';
import { initialState, nextState } from '../../src/control/next-state.ts';
import { Runtime } from '../../src/dataplane/runtime.ts';
import { RoutingTable } from '../../src/routing/routing-table.ts';

describe('gRPC helpers', () => {
  it('counts statuses 2, 4, 13, 14 and 15 as the server\'s errors, other non-zero codes as the caller\'s', () => {
    assert.equal(grpcClass(0), 'ok');
    for (const code of [2, 4, 13, 14, 15]) assert.equal(grpcClass(code), 'server', `code ${code}`);
    for (const code of [1, 3, 5, 6, 7, 8, 9, 10, 11, 12, 16]) assert.equal(grpcClass(code), 'client', `code ${code}`);
  });

  it('maps the proxy\'s 502/503 to UNAVAILABLE and 504 to DEADLINE_EXCEEDED', () => {
    assert.equal(grpcStatusFor(502), 14);
    assert.equal(grpcStatusFor(503), 14);
    assert.equal(grpcStatusFor(504), 4);
    assert.equal(grpcStatusFor(400), 13);
  });

  it('reads grpc-status from a header block, and tells gRPC content types', () => {
    assert.equal(grpcStatusOf({ 'grpc-status': '14' }), 14);
    assert.equal(grpcStatusOf({ 'grpc-status': 'x' }), -1);
    assert.equal(grpcStatusOf({}), -1);
    assert.equal(grpcStatusOf(null), -1);
    assert.ok(isGrpcContentType('application/grpc'));
    assert.ok(isGrpcContentType('application/grpc+proto'));
    assert.ok(isGrpcContentType('Application/GRPC-web'));
    assert.ok(!isGrpcContentType('application/json'));
    assert.ok(!isGrpcContentType(undefined));
  });

  it('percent-encodes grpc-message so that any text decodes back whole and stays printable ASCII', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), (text) => {
        const encoded = encodeGrpcMessage(text);
        assert.match(encoded, /^[\x20-\x7e]*$/);
        assert.equal(decodeURIComponent(encoded), text);
      }),
    );
    assert.equal(encodeGrpcMessage('100% down\n'), '100%25 down%0A');
  });

  it('tells the HTTP/2 preface from any HTTP/1.1 start after its first differing byte', () => {
    assert.equal(startsWithPreface(H2_PREFACE), true);
    assert.equal(startsWithPreface(Buffer.concat([H2_PREFACE, Buffer.from([0, 0, 0, 4])])), true);
    assert.equal(startsWithPreface(Buffer.from('PRI * HTTP/2')), undefined, 'too short to tell');
    assert.equal(startsWithPreface(Buffer.from('POST / HTTP/1.1\r\n')), false);
    assert.equal(startsWithPreface(Buffer.from('PRI * HTTP/1.1\r\n')), false);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
        const buf = Buffer.from(bytes);
        const n = Math.min(buf.length, H2_PREFACE.length);
        const agrees = buf.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
        assert.equal(startsWithPreface(buf), !agrees ? false : n === H2_PREFACE.length ? true : undefined);
      }),
    );
  });

  it('reads HealthCheckResponse.status from a framed message', () => {
    const frame = (msg: number[], flag = 0): Buffer => Buffer.from([flag, 0, 0, 0, msg.length, ...msg]);
    assert.equal(servingStatus(frame([0x08, 0x01])), 1, 'SERVING');
    assert.equal(servingStatus(frame([0x08, 0x02])), 2, 'NOT_SERVING');
    assert.equal(servingStatus(frame([])), 0, 'UNKNOWN is the empty message');
    assert.equal(servingStatus(frame([0x08, 0x01], 1)), -1, 'a compressed message is not read');
    assert.equal(servingStatus(Buffer.from([0, 0, 0, 0, 9, 0x08])), -1, 'a short frame is not read');
    assert.equal(servingStatus(Buffer.alloc(0)), -1);
  });

  it('a pool switched to protocol: h2 live gets new targets on the HTTP/2 engine; the other pools keep theirs', () => {
    const pools = (protocol?: string) => ({ blue: { version: '1', targets: ['http://127.0.0.1:9001'], ...(protocol === undefined ? {} : { protocol }) }, green: { version: '2', targets: ['http://127.0.0.1:9002'] } });
    const runtime = new Runtime();
    const first = initialState('svc', { blue: 10_000, green: 0 }, 0, { name: 'svc', hosts: ['svc.test'], pools: pools() });
    const table = new RoutingTable([first], { onSnapshot: (s) => runtime.sync(s) });
    const [blue0, green0] = [runtime.pool('svc', 'blue')!.targets[0]!, runtime.pool('svc', 'green')!.targets[0]!];
    assert.equal(blue0.protocol, 'http1');
    table.apply(nextState(first, { weights: { blue: 10_000, green: 0 }, action: 'define', by: 't', reason: null, now: 1, definition: { name: 'svc', hosts: ['svc.test'], pools: pools('h2') } }));
    const blue1 = runtime.pool('svc', 'blue')!.targets[0]!;
    assert.notEqual(blue1, blue0);
    assert.equal(blue1.protocol, 'h2');
    assert.equal(blue1.engine, 'undici');
    assert.equal(runtime.pool('svc', 'green')!.targets[0], green0, 'green is untouched');
    assert.deepEqual([...runtime.retiring].map((r) => r.target), [blue0], 'the HTTP/1.1 target retires, finishing what it carries');
    void runtime.close();
  });
});
