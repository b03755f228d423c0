import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { request } from 'undici';
import { TOKEN } from '../helpers/proxy.ts';
import { spawnServe, type ServeProcess } from '../helpers/serve-process.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

const run = promisify(execFile);
const ROOT = new URL('../../', import.meta.url).pathname;
/** npm and the package's bin both run on this test's Node (24), whatever the machine's own is */
const PATH = `${dirname(process.execPath)}${delimiter}${process.env['PATH'] ?? ''}`;
/**
 * Another Node to run the installed package on (serve and the CLI), e.g. the `engines` floor:
 * `SWITCHYARD_TEST_NODE=/path/to/node-v22.19.0/bin/node npx node --test test/e2e/package.test.ts`.
 * Unset: `npx switchyard`, as an operator types it.
 */
const OTHER_NODE = process.env['SWITCHYARD_TEST_NODE'];

/** The floor of an `engines.node` range like `>=22.19` or `^16 || ^18 || >=20` (its lowest version). */
function floorOf(range: string): [number, number] {
  const versions = [...range.matchAll(/(\d+)(?:\.(\d+))?(?:\.\d+)?/g)].map((m) => [Number(m[1]), Number(m[2] ?? 0)] as [number, number]);
  versions.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  return versions[0] ?? [0, 0];
}

const cmp = (a: [number, number], b: [number, number]): number => a[0] - b[0] || a[1] - b[1];

/**
 * The published package as an operator gets it: `npm pack` (whose prepack builds dist/), the
 * tarball installed into an empty directory with production dependencies only, then its bin run
 * from there against real upstreams. Nothing of the checkout (src/, devDependencies) is reachable.
 */
describe(`the published package${OTHER_NODE === undefined ? '' : ` on ${OTHER_NODE}`}`, { timeout: 180_000 }, () => {
  let work: string;
  let app: string;
  let files: string[];
  let packedBytes = 0;
  let unpackedBytes = 0;
  let blue: Upstream;
  let green: Upstream;
  let proc: ServeProcess;
  const env = (): NodeJS.ProcessEnv => ({ ...process.env, PATH, SWITCHYARD_ADMIN_URL: proc.adminUrl, SWITCHYARD_TOKEN: TOKEN, NO_COLOR: '1' });
  const bin = (...args: string[]): [string, string[]] => (OTHER_NODE === undefined ? ['npx', ['--no-install', 'switchyard', ...args]] : [OTHER_NODE, [join(app, 'node_modules/switchyard-proxy/bin/switchyard.js'), ...args]]);
  const cli = (...args: string[]) => run(...bin(...args), { cwd: app, env: env() });
  // the same installed bin without npx in front (npx costs ~0.6 s of CPU a call): npx itself is
  // proven by `--version` and by `serve`, which go through it
  const installed = (...args: string[]) => run(...(OTHER_NODE === undefined ? ([join(app, 'node_modules/.bin/switchyard'), args] as [string, string[]]) : bin(...args)), { cwd: app, env: env() });

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'switchyard-pack-'));
    app = join(work, 'app');
    // packed from a copy of the checkout: prepack deletes and rebuilds dist/, which the checkout's
    // bin runs while it matches src/ (bin/dist-stamp.js), under the test files running beside this one
    const checkout = join(work, 'checkout');
    const skip = new Set(['node_modules', 'dist', '.git', '.tmp'].map((d) => join(ROOT, d)));
    await cp(ROOT, checkout, { recursive: true, filter: (from) => !skip.has(from.replace(/\/$/, '')) });
    await symlink(join(ROOT, 'node_modules'), join(checkout, 'node_modules'));
    const packed = await run('npm', ['pack', '--json', '--pack-destination', work], { cwd: checkout, env: { ...process.env, PATH }, maxBuffer: 16 * 1024 * 1024 });
    // prepack's own output comes before the JSON
    const info = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as { filename: string; size: number; unpackedSize: number; files: { path: string }[] }[];
    files = (info[0]?.files ?? []).map((f) => f.path);
    packedBytes = info[0]?.size ?? 0;
    unpackedBytes = info[0]?.unpackedSize ?? 0;
    await run('mkdir', ['-p', app]);
    await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'operator-site', private: true }));
    await run('npm', ['install', '--omit=dev', '--prefer-offline', '--no-audit', '--no-fund', join(work, info[0]?.filename ?? '')], { cwd: app, env: { ...process.env, PATH } });
    [blue, green] = await Promise.all([startUpstream('blue'), startUpstream('green')]);
    proc = await spawnServe(
      { apps: [{ name: 'shop', hosts: ['*'], pools: { blue: { version: '1.0.0', targets: [blue.url] }, green: { version: '2.0.0', targets: [green.url] } } }] },
      15_000,
      (config) => {
        const [command, args] = bin('serve', '--config', config);
        return { command, args, cwd: app, env: { ...process.env, PATH } };
      },
    );
  });

  after(async () => {
    await proc?.cleanup();
    await Promise.all([blue?.close(), green?.close()]);
    if (work !== undefined) await rm(work, { recursive: true, force: true, maxRetries: 5 });
  });

  it('holds the built dist/, the bin, the dashboard files and the example config, and no source, tests, maps or type declarations', () => {
    for (const need of ['bin/switchyard.js', 'dist/main.js', 'dist/cli/main.js', 'src/admin/web/index.html', 'src/admin/web/app.js', 'config/switchyard.yaml', 'package.json', 'README.md', 'LICENSE']) {
      assert.ok(files.includes(need), `the package holds ${need}`);
    }
    const stray = files.filter((f) => /\.(ts|map)$/.test(f) || f.startsWith('test/') || f.startsWith('bench/') || f.startsWith('scripts/') || (f.startsWith('src/') && !f.startsWith('src/admin/web/')));
    assert.deepEqual(stray, [], 'only what the package runs');
  });

  it('is named as published (the bare "switchyard" on npm is another project), with its licence, repository and the size the README gives', async () => {
    const own = JSON.parse(await readFile(join(app, 'node_modules/switchyard-proxy/package.json'), 'utf8')) as { name: string; license: string; repository?: unknown; homepage?: string; bugs?: unknown; bin: Record<string, string> };
    assert.equal(own.name, 'switchyard-proxy');
    assert.deepEqual(Object.keys(own.bin), ['switchyard']);
    assert.equal(own.license, 'Apache-2.0');
    assert.match(await readFile(join(app, 'node_modules/switchyard-proxy/LICENSE'), 'utf8'), /Apache License\s+Version 2\.0/);
    assert.ok(own.repository !== undefined && own.homepage !== undefined && own.bugs !== undefined);
    // the README's figures are the packed and the unpacked size, each within a tenth
    const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
    const said = /packed tarball is about (\d+) KB\s+\(([\d,]+) KB unpacked/.exec(readme);
    assert.ok(said !== null, 'the README gives the packed and unpacked sizes');
    const [packedKb, unpackedKb] = [Number(said[1]), Number(said[2]?.replace(',', ''))];
    assert.ok(Math.abs(packedKb * 1000 - packedBytes) <= packedBytes / 10, `README says ${packedKb} KB packed; npm pack made ${Math.round(packedBytes / 1000)} KB`);
    assert.ok(Math.abs(unpackedKb * 1000 - unpackedBytes) <= unpackedBytes / 10, `README says ${unpackedKb} KB unpacked; npm pack made ${Math.round(unpackedBytes / 1000)} KB`);
  });

  it('answers --version and serve --help, and a bad flag with the usage (exit 2), from the installed bin', async () => {
    const version = await cli('--version');
    assert.match(version.stdout, /^switchyard 0\.\d+\.\d+ \(switchyard-proxy,/);
    assert.match((await installed('serve', '--help')).stdout, /^usage: switchyard serve \[--config FILE\]/);
    const bad = await installed('serve', '--bogus').then(() => null, (err: { code: number; stderr: string }) => err);
    assert.equal(bad?.code, 2);
    assert.doesNotMatch(bad?.stderr ?? '', /\n\s+at /);
  });

  it('installs without the dev toolchain: no TypeScript, no pinned node, no source to run instead of dist/', async () => {
    const installed = await readdir(join(app, 'node_modules'));
    for (const dev of ['typescript', 'node', 'eslint', '@seriousme']) assert.ok(!installed.includes(dev), `${dev} is not installed`);
    assert.ok(!existsSync(join(app, 'node_modules/switchyard-proxy/src/cli/main.ts')), 'the bin runs dist/');
  });

  it('claims in engines the highest floor of its production dependencies, and its bin refuses an older Node by name', async () => {
    const own = JSON.parse(await readFile(join(app, 'node_modules/switchyard-proxy/package.json'), 'utf8')) as { engines: { node: string }; dependencies: Record<string, string> };
    const floor = floorOf(own.engines.node);
    const floors: [string, [number, number]][] = [];
    for (const dep of Object.keys(own.dependencies)) {
      const pkg = JSON.parse(await readFile(join(app, 'node_modules', dep, 'package.json'), 'utf8')) as { engines?: { node?: string } };
      if (pkg.engines?.node !== undefined) floors.push([dep, floorOf(pkg.engines.node)]);
    }
    const highest = floors.reduce((a, b) => (cmp(b[1], a[1]) > 0 ? b : a));
    assert.deepEqual(floor, highest[1], `engines ${own.engines.node} is ${highest[0]}'s floor, the highest of ${JSON.stringify(floors)}`);
    // the machine's own Node, when it is older than the floor, gets a clear refusal rather than a stack trace
    const system = ['/usr/bin/node', '/usr/local/bin/node'].find((p) => existsSync(p));
    if (system !== undefined) {
      const { stdout } = await run(system, ['-p', 'process.versions.node']);
      const [maj = 0, min = 0] = stdout.trim().split('.').map(Number);
      if (cmp([maj, min], floor) < 0) {
        const r = await run(system, [join(app, 'node_modules/switchyard-proxy/bin/switchyard.js'), 'status'], { cwd: app }).then(() => null, (err: { code: number; stderr: string }) => err);
        assert.ok(r !== null, 'refused');
        assert.equal(r.code, 1);
        assert.match(r.stderr, new RegExp(`needs Node ${own.engines.node.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(this is v${maj}\\.${min}`));
      }
    }
  });

  it('serves traffic and the dashboard from the installed package', async () => {
    const r = await request(`${proc.proxyUrl}/`);
    assert.equal(r.statusCode, 200);
    assert.equal(r.headers['x-served-by'], 'blue@1.0.0');
    await r.body.dump();
    const page = await request(`${proc.adminUrl}/`);
    assert.equal(page.statusCode, 200, 'the dashboard files are found beside dist/');
    assert.match(await page.body.text(), /<html/i);
  });

  it('runs CLI commands from the installed package: status, switch, rollback, history', async () => {
    const status = JSON.parse((await installed('status', 'shop', '--json')).stdout) as { weights: Record<string, number>; revision: number };
    assert.deepEqual(status.weights, { blue: 100, green: 0 });
    await installed('switch', 'shop', 'green', '--reason', 'from the package');
    const r = await request(`${proc.proxyUrl}/`);
    assert.equal(r.headers['x-served-by'], 'green@2.0.0');
    await r.body.dump();
    await installed('rollback', 'shop');
    const history = (await installed('history', 'shop')).stdout;
    assert.match(history, /from the package/);
    const bad = await installed('weights', 'shop', 'blue=abc').then(() => null, (err: { code: number }) => err);
    assert.equal(bad?.code, 2, 'a bad call exits 2');
  });
});
