import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { request } from 'undici';
import { twoPools } from '../helpers/proxy.ts';
import { spawnServe } from '../helpers/serve-process.ts';
import { startUpstream } from '../helpers/upstream.ts';

const run = promisify(execFile);

/** `nodejs_heap_space_size_total_bytes{space="new"}` from the admin /metrics text. */
async function newSpaceBytes(adminUrl: string): Promise<number> {
  const res = await request(`${adminUrl}/metrics`);
  const text = await res.body.text();
  const m = /^nodejs_heap_space_size_total_bytes\{space="new"\} (\d+)$/m.exec(text);
  assert.ok(m, 'the new-space size among the default metrics');
  return Number(m[1]);
}

describe('memory at rest', () => {
  it('a started proxy gives back its startup young generation (16 MB grown while loading, ~1 MB once ready)', async (t) => {
    const up = await startUpstream('blue');
    t.after(() => up.close());
    const proc = await spawnServe({ apps: [twoPools(up.url, up.url)] });
    t.after(() => proc.cleanup());
    let bytes = Infinity;
    for (let i = 0; i < 50 && bytes > 4 * 1024 * 1024; i++) {
      bytes = await newSpaceBytes(proc.adminUrl);
      if (bytes > 4 * 1024 * 1024) await sleep(100);
    }
    // without releaseStartupMemory() V8 keeps the 16 MB it grew to while loading until a full collection
    assert.ok(bytes <= 4 * 1024 * 1024, `new space ${(bytes / 1048576).toFixed(1)} MB at rest`);
    // and it still proxies
    const res = await request(`${proc.proxyUrl}/`);
    await res.body.dump();
    assert.equal(res.statusCode, 200);
  });

  it("loading the proxy does not load Node's bundled undici (an ES import of node:http would: +13 MB)", async () => {
    const script = `await import(${JSON.stringify(new URL('../../src/app.ts', import.meta.url).href)});
      process.stdout.write(JSON.stringify(process.moduleLoadList.filter((m) => m.includes('deps/undici'))));`;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script]);
    assert.deepEqual(JSON.parse(stdout), []);
  });
});
