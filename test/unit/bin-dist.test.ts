import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { sourceHash, STAMP, writeStampHash } from '../../bin/dist-stamp.js';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');

/**
 * A checkout in miniature: the real bin and its dist-stamp.js, a src/cli/main.ts and a
 * dist/cli/main.js whose runCli each say which one ran, and the tsconfig files the stamp covers.
 */
async function miniCheckout(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'switchyard-bin-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await mkdir(join(dir, 'bin'));
  for (const f of ['switchyard.js', 'dist-stamp.js']) await copyFile(join(ROOT, 'bin', f), join(dir, 'bin', f));
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'mini', type: 'module', engines: { node: '>=22.19' } }));
  await mkdir(join(dir, 'src/cli'), { recursive: true });
  await mkdir(join(dir, 'dist/cli'), { recursive: true });
  const say = (what: string) => `export async function runCli(): Promise<number> {\n  process.stdout.write('${what}\\n');\n  return 0;\n}\n`;
  await writeFile(join(dir, 'src/cli/main.ts'), say('source'));
  await writeFile(join(dir, 'dist/cli/main.js'), say('dist').replace(': Promise<number>', ''));
  await writeFile(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { target: 'es2024', module: 'nodenext', strict: true, noEmit: true, allowImportingTsExtensions: true, rewriteRelativeImportExtensions: true, skipLibCheck: true, types: ['node'] }, include: ['src'] }));
  await writeFile(join(dir, 'tsconfig.build.json'), JSON.stringify({ extends: './tsconfig.json', compilerOptions: { noEmit: false, outDir: 'dist', rootDir: 'src' }, include: ['src'] }));
  return dir;
}

/** Which tree the bin ran: `source` or `dist`. SWITCHYARD_FROM_SOURCE unset unless given. */
async function ran(dir: string, env: Record<string, string> = {}): Promise<string> {
  const { SWITCHYARD_FROM_SOURCE: _, NODE_COMPILE_CACHE: __, ...rest } = process.env;
  const { stdout } = await run(process.execPath, [join(dir, 'bin/switchyard.js'), 'version'], { cwd: dir, env: { ...rest, ...env }, timeout: 30_000 });
  return stdout.trim();
}

describe('the bin in a checkout runs dist/ only while it is the build of src/ as it is (bin/dist-stamp.js)', () => {
  it('no stamp: the source; a stamp of this src/: dist/', async (t) => {
    const dir = await miniCheckout(t);
    assert.equal(await ran(dir), 'source');
    writeStampHash(dir, sourceHash(dir));
    assert.equal(await ran(dir), 'dist');
    assert.equal(await ran(dir, { SWITCHYARD_FROM_SOURCE: '1' }), 'source', 'SWITCHYARD_FROM_SOURCE=1 runs the source');
  });

  it('a stale dist/ never runs: a changed file (even with its old modification time), a new file, a changed tsconfig, a missing entry', async (t) => {
    const dir = await miniCheckout(t);
    const fresh = async (): Promise<void> => {
      writeStampHash(dir, sourceHash(dir));
      assert.equal(await ran(dir), 'dist');
    };
    await fresh();
    const main = join(dir, 'src/cli/main.ts');
    const { atime, mtime } = await stat(main);
    await writeFile(main, (await readFile(main, 'utf8')).replace("'source", "'source "));
    await utimes(main, atime, mtime);
    assert.equal(await ran(dir), 'source', 'a changed src file, its mtime put back');

    await fresh();
    await writeFile(join(dir, 'src/new.ts'), 'export const x = 1;\n');
    assert.equal(await ran(dir), 'source', 'a new src file');

    await fresh();
    await writeFile(join(dir, 'tsconfig.build.json'), JSON.stringify({ extends: './tsconfig.json', compilerOptions: { noEmit: false, outDir: 'dist', rootDir: 'src', target: 'es2022' }, include: ['src'] }));
    assert.equal(await ran(dir), 'source', 'a changed tsconfig.build.json');

    await fresh();
    await rm(join(dir, 'dist/cli/main.js'));
    assert.equal(await ran(dir), 'source', 'dist/ without its entry');
  });

  it('npm run build (scripts/build.ts) stamps what tsc compiled, and a failed tsc leaves no stamp', async (t) => {
    const dir = await miniCheckout(t);
    await mkdir(join(dir, 'scripts'));
    await copyFile(join(ROOT, 'scripts/build.ts'), join(dir, 'scripts/build.ts'));
    await symlink(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
    writeStampHash(dir, 'an old stamp');
    await run(process.execPath, ['scripts/build.ts'], { cwd: dir, timeout: 60_000 });
    assert.equal((await readFile(join(dir, STAMP), 'utf8')).trim(), sourceHash(dir));
    assert.match(await readFile(join(dir, 'dist/cli/main.js'), 'utf8'), /runCli/, 'tsc compiled src/ into dist/');
    // the built file says 'source' as its source does; one that says 'dist' shows which tree runs
    await writeFile(join(dir, 'dist/cli/main.js'), "export async function runCli() { process.stdout.write('dist\\n'); return 0; }\n");
    assert.equal(await ran(dir), 'dist', 'the stamp the build wrote is taken');

    // a type error: tsc exits non-zero, and the stamp of the previous build is gone
    await writeFile(join(dir, 'src/cli/broken.ts'), 'export const n: number = "not a number";\n');
    const failed = await run(process.execPath, ['scripts/build.ts'], { cwd: dir, timeout: 60_000 }).then(
      () => null,
      (err: { code: number; stderr: string }) => err,
    );
    assert.notEqual(failed, null, 'the build failed');
    await assert.rejects(stat(join(dir, STAMP)), { code: 'ENOENT' });
    assert.equal(await ran(dir), 'source');
  });
});
