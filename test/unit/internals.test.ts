import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import { checkHttpParser, engineFor, internalsWarnings, llhttp, loadPool, undiciPool } from '../../src/dataplane/engine/internals.ts';

const require = createRequire(import.meta.url);
const real = require('node:_http_common') as { HTTPParser: new () => Record<number, unknown> & { initialize(...a: unknown[]): void; execute(b: Buffer): unknown; close(): void }; methods: string[] };

describe('internals the fast path leans on (src/dataplane/engine/internals.ts)', () => {
  it('on this Node the HTTPParser passes its check and undici Pool loads from its own file', () => {
    assert.equal(llhttp.ok, true, llhttp.ok ? '' : llhttp.reason);
    assert.equal(undiciPool().fallback, null);
    assert.deepEqual(engineFor('native'), { engine: 'native', reason: null });
    assert.deepEqual(internalsWarnings('native'), []);
  });

  it('a missing module or HTTPParser turns the native engine into undici, with one line that says why', () => {
    for (const mod of [null, {}, { HTTPParser: 42, methods: real.methods }]) {
      const check = checkHttpParser(mod);
      assert.equal(check.ok, false);
      assert.match(check.ok ? '' : check.reason, /no HTTPParser/);
      assert.deepEqual(engineFor('native', check), { engine: 'undici', reason: check.ok ? null : check.reason });
      // a config that asked for undici is not told about the parser
      assert.deepEqual(engineFor('undici', check), { engine: 'undici', reason: null });
      const lines = internalsWarnings('native', check, undiciPool());
      assert.equal(lines.length, 1);
      assert.match(lines[0] as string, /^fast path off: .*no HTTPParser.*node:http serves every client connection and the undici engine forwards/);
    }
  });

  it('a changed HTTPParser is refused: a constant, a method, the methods list, or the arguments of its head callback', () => {
    class NoRequest extends real.HTTPParser {}
    Object.defineProperty(NoRequest, 'REQUEST', { value: undefined });
    assert.match((checkHttpParser({ HTTPParser: NoRequest, methods: real.methods }) as { reason: string }).reason, /HTTPParser\.REQUEST is not a number/);

    class NoExecute extends real.HTTPParser {}
    Object.defineProperty(NoExecute.prototype, 'execute', { value: undefined });
    assert.match((checkHttpParser({ HTTPParser: NoExecute, methods: real.methods }) as { reason: string }).reason, /prototype\.execute is not a function/);

    assert.match((checkHttpParser({ HTTPParser: real.HTTPParser, methods: undefined }) as { reason: string }).reason, /no methods list/);

    // the head callback's arguments moved (say, url before method): a parse through it finds out
    class Shifted extends real.HTTPParser {
      override initialize(...a: unknown[]): void {
        super.initialize(...a);
        const cb = this[(real.HTTPParser as unknown as { kOnHeadersComplete: number }).kOnHeadersComplete] as (...x: unknown[]) => unknown;
        this[(real.HTTPParser as unknown as { kOnHeadersComplete: number }).kOnHeadersComplete] = (...x: unknown[]) => cb(x[0], x[1], x[2], x[4], x[3], ...x.slice(5));
      }
    }
    Object.assign(Shifted, real.HTTPParser);
    for (const k of ['REQUEST', 'RESPONSE', 'kOnHeaders', 'kOnHeadersComplete', 'kOnBody', 'kOnMessageComplete', 'kOnExecute', 'kLenientNone']) Object.defineProperty(Shifted, k, { value: (real.HTTPParser as unknown as Record<string, number>)[k] });
    const shifted = checkHttpParser({ HTTPParser: Shifted, methods: real.methods });
    assert.equal(shifted.ok, false);
    assert.match((shifted as { reason: string }).reason, /request head callback has changed/);

    // a parser that throws when used
    class Throws extends real.HTTPParser {
      override execute(): unknown {
        throw new Error('gone');
      }
    }
    for (const k of ['REQUEST', 'RESPONSE', 'kOnHeaders', 'kOnHeadersComplete', 'kOnBody', 'kOnMessageComplete', 'kOnExecute', 'kLenientNone']) Object.defineProperty(Throws, k, { value: (real.HTTPParser as unknown as Record<string, number>)[k] });
    assert.match((checkHttpParser({ HTTPParser: Throws, methods: real.methods }) as { reason: string }).reason, /HTTPParser threw: gone/);
  });

  it('undici Pool: a missing or changed deep file falls back to the public export and says why', () => {
    const pub = (): unknown => require('undici');
    const { Pool } = require('undici') as { Pool: unknown };
    const missing = loadPool(() => {
      throw new Error("Cannot find module 'undici/lib/dispatcher/pool.js'\nRequire stack: …");
    }, pub);
    assert.equal(missing.Pool, Pool);
    assert.equal(missing.fallback, "undici/lib/dispatcher/pool.js did not load: Cannot find module 'undici/lib/dispatcher/pool.js'");
    const changed = loadPool(() => ({ default: class NotAPool {} }), pub);
    assert.equal(changed.Pool, Pool);
    assert.match(changed.fallback ?? '', /not a Pool class/);
    const lines = internalsWarnings('native', llhttp, changed);
    assert.equal(lines.length, 1);
    assert.match(lines[0] as string, /loaded from the package index/);
    // the deep file as it is today: a Pool
    assert.equal(loadPool(() => require('undici/lib/dispatcher/pool.js'), pub).fallback, null);
  });
});
