import { randomBytes } from 'node:crypto';
import { open as openFile, readdir, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * Replaces `path` with `text` so that a crash leaves either the old or the new file, never a
 * torn one: write a temp file in the same directory, fsync it, rename it over the target, and
 * (with `durable`) fsync the directory so the rename itself survives a power cut.
 * The temp file is removed when anything fails; the error is rethrown.
 */
export async function writeFileAtomic(path: string, text: string, opts: { durable?: boolean } = {}): Promise<void> {
  const tmp = join(dirname(path), `${tempPrefix(path)}${randomBytes(6).toString('hex')}.tmp`);
  try {
    const fh = await openFile(tmp, 'wx');
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    // if only this fails the rename may still survive a crash; callers treat the write as failed
    // and rewrite the whole file next time, so nothing is lost either way
    if (opts.durable !== false) await syncDir(dirname(path));
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}

/** A crash between writing a temp file and renaming it leaves one behind; the caller is the only writer. */
export async function removeStaleTemps(path: string): Promise<void> {
  const prefix = tempPrefix(path);
  const names = await readdir(dirname(path)).catch(() => [] as string[]);
  for (const name of names) {
    if (name.startsWith(prefix) && name.endsWith('.tmp')) await unlink(join(dirname(path), name)).catch(() => undefined);
  }
}

function tempPrefix(path: string): string {
  return `.${basename(path)}.`;
}

/** The rename is durable only once the directory entry is; Windows cannot fsync a directory and loses nothing by skipping. */
async function syncDir(dir: string): Promise<void> {
  let fh;
  try {
    fh = await openFile(dir, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EISDIR' || code === 'EPERM') return;
    throw err;
  }
  try {
    await fh.sync();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
  } finally {
    await fh.close();
  }
}
