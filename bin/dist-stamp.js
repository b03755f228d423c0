// Whether a checkout's dist/ is the build of its src/ as it is now: bin/switchyard.js runs dist/
// only then (README Performance, "Memory by start path"). Plain JavaScript with no dependencies:
// the bin loads it before it knows which tree to run.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';

/** The file `npm run build` writes last, after tsc succeeded: the hash of what it compiled. */
export const STAMP = 'dist/.source-hash';

/**
 * sha256 over every file under src/ (path and content, in path order) and the two tsconfig files
 * that decide tsc's output. Contents, not modification times: a checkout, a stash or a copy that
 * keeps old times cannot make a stale dist/ look current. ~15 ms for the ~200 files of src/.
 */
export function sourceHash(root) {
  const hash = createHash('sha256');
  const files = readdirSync(join(root, 'src'), { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => relative(root, join(d.parentPath, d.name)).split('\\').join('/'))
    .sort();
  for (const file of [...files, 'tsconfig.json', 'tsconfig.build.json']) {
    hash.update(file).update('\0');
    try {
      hash.update(readFileSync(join(root, file)));
    } catch {
      hash.update('(missing)');
    }
    hash.update('\0');
  }
  return hash.digest('hex');
}

/** True when `root`'s dist/ was built from its src/ as it is now (the stamp names this very hash). */
export function distIsCurrent(root) {
  let stamp;
  try {
    stamp = readFileSync(join(root, STAMP), 'utf8').trim();
  } catch {
    return false;
  }
  return stamp !== '' && stamp === sourceHash(root);
}

/** Writes the stamp: `hash` is sourceHash(root) taken before tsc read src/ (scripts/build.ts). */
export function writeStampHash(root, hash) {
  writeFileSync(join(root, STAMP), `${hash}\n`);
}
