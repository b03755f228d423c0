import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import { Socket } from 'node:net';
import { checkHttpParser, checkReadSlots, engineFor, internalsWarnings, llhttp, loadPool, readSlots, undiciPool } from '../../src/dataplane/engine/internals.ts';

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

  it("net.Socket's onread slots: found on this Node; a Socket whose onread fills other slots (or none) leaves the front on 'data' events, with one line", () => {
    assert.equal(readSlots.ok, true, readSlots.ok ? '' : readSlots.reason);
    assert.equal(checkReadSlots(Socket).ok, true);
    // a Node that renamed the slots
    class Renamed extends Socket {
      constructor(opts?: ConstructorParameters<typeof Socket>[0]) {
        super(opts);
        for (const k of Object.getOwnPropertySymbols(this)) {
          if (k.description?.startsWith('kBuffer') !== true) continue;
          const self = this as unknown as Record<symbol, unknown>;
          self[Symbol(`${k.description}2`)] = self[k];
          Reflect.deleteProperty(this, k);
        }
      }
    }
    const renamed = checkReadSlots(Renamed);
    assert.equal(renamed.ok, false);
    assert.match(renamed.ok ? '' : renamed.reason, /no kBuffer\/kBufferCb\/kBufferGen slots/);
    // a Node whose onread option no longer goes through them
    class Ignored extends Socket {
      constructor(opts?: ConstructorParameters<typeof Socket>[0]) {
        super(opts === undefined ? opts : { ...opts, onread: undefined });
      }
    }
    const ignored = checkReadSlots(Ignored);
    assert.match(ignored.ok ? '' : ignored.reason, /no longer fills its kBuffer slots/);
    const lines = internalsWarnings('native', llhttp, null, ignored);
    assert.equal(lines.length, 1);
    assert.match(lines[0] as string, /the raw front reads client sockets through 'data' events/);
    // with the engine off, or asked for undici, nothing to say about the front's reads
    assert.deepEqual(internalsWarnings('undici', llhttp, null, ignored), []);
  });
});
