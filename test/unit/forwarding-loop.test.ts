import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { forwardRequestHeaders, MAX_SWITCHYARD_HOPS, switchyardHops, TrustedProxies, VIA } from '../../src/dataplane/headers.ts';

const trust = new TrustedProxies([]);
const viaOf = (out: string[]): string | undefined => out[out.lastIndexOf('via') + 1];

describe('forwarding-loop detection (the Via entries received by switchyard)', () => {
  it('counts only the entries a Switchyard received, whatever else the chain holds', () => {
    assert.equal(switchyardHops('1.1 switchyard'), 1);
    assert.equal(switchyardHops('1.1 cdn, 1.1 switchyard,1.0 Switchyard (edge), HTTP/2 other'), 2);
    assert.equal(switchyardHops('1.1 switchyard-a, 1.1 notswitchyard, switchyard'), 0);
    assert.equal(switchyardHops(''), 0);
  });

  it(`forwards a request that passed Switchyard ${MAX_SWITCHYARD_HOPS - 1} times, adding its own entry, and refuses one that passed it ${MAX_SWITCHYARD_HOPS} times with 508 LOOP_DETECTED`, () => {
    const chain = (n: number): string => Array.from({ length: n }, () => VIA).join(', ');
    const under = forwardRequestHeaders(['Host', 'a', 'Via', chain(MAX_SWITCHYARD_HOPS - 1)], '10.0.0.1', trust);
    assert.ok(!('error' in under));
    assert.equal(viaOf(under.headers), chain(MAX_SWITCHYARD_HOPS));
    // the entries may come in several Via fields
    const over = forwardRequestHeaders(['Host', 'a', 'Via', chain(3), 'X-Request-Id', 'loop-1', 'via', chain(MAX_SWITCHYARD_HOPS - 3)], '10.0.0.1', trust);
    assert.ok('error' in over && 'code' in over);
    assert.equal(over.status, 508);
    assert.equal(over.code, 'LOOP_DETECTED');
    // the request's own id, so each hop's access log line of the loop carries the same id
    assert.equal(over.requestId, 'loop-1');
  });

  it('any Via a client sends: never throws, refuses exactly from the hop limit on, and forwards everything else with one more entry', () => {
    const entry = fc.oneof(
      fc.constant(VIA),
      fc.constant('1.0 Switchyard'),
      fc.constant('1.1 cdn (Edge)'),
      fc.string({ maxLength: 20 }),
    );
    fc.assert(
      fc.property(fc.array(fc.array(entry, { maxLength: 12 }).map((a) => a.join(', ')), { maxLength: 3 }), (fields) => {
        const raw = ['Host', 'app.example'];
        for (const f of fields) raw.push('Via', f);
        const hops = fields.reduce((n, f) => n + switchyardHops(f), 0);
        const out = forwardRequestHeaders(raw, '10.0.0.1', trust);
        if (hops >= MAX_SWITCHYARD_HOPS) {
          assert.ok('error' in out && out.status === 508);
          return;
        }
        assert.ok(!('error' in out));
        const via = viaOf(out.headers) ?? '';
        assert.ok(via.endsWith(VIA));
        assert.equal(switchyardHops(via), hops + 1);
      }),
      { numRuns: 2000 },
    );
  });
});
