import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { sourceHash, STAMP, writeStampHash } from '../bin/dist-stamp.js';

/**
 * `npm run build`: tsc into dist/, then dist/.source-hash, the hash of the src/ it compiled, which
 * lets bin/switchyard.js run dist/ from a checkout only while it is the build of src/ as it is
 * (bin/dist-stamp.js; README Performance, "Memory by start path"). The old stamp goes first and
 * the hash is taken before tsc reads src/: a failed or interrupted build, or src/ edited during
 * the build, leaves dist/ without a stamp that matches, so the bin runs src/.
 */
const root = fileURLToPath(new URL('..', import.meta.url));
rmSync(new URL(`../${STAMP}`, import.meta.url), { force: true });
const hash = sourceHash(root);
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const { status, signal } = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
if (status !== 0) {
  process.stderr.write(`build: tsc ${signal === null ? `exited ${status}` : `stopped by ${signal}`}; dist/ has no stamp, so the bin runs src/\n`);
  process.exit(status ?? 1);
}
mkdirSync(new URL('../dist', import.meta.url), { recursive: true });
writeStampHash(root, hash);
