import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';

/**
 * `serve --pid-file FILE`: the pid of the process that serves, for a supervisor that follows the
 * main process by it (systemd's `PIDFile=`, which it re-reads when the main process exits: a
 * hand-over moves the main process to a new pid, and the old one writes that pid here before it
 * exits). Plain files by design, so hand-written: there is no library for "write a number".
 */

/** Writes `pid` to `path` atomically (a temp file renamed over it): a reader never sees half a file. */
export function writePidFile(path: string, pid: number): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${pid}\n`, { mode: 0o644 });
  renameSync(tmp, path);
}

/** The pid in `path`, or null when there is none (no file, or not a number). */
export function readPidFile(path: string): number | null {
  try {
    const n = Number(readFileSync(path, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

/**
 * At exit: removes `path` if it still names `pid`. After a hand-over it names the new process,
 * which is left alone (the supervisor follows it through the file).
 */
export function removePidFileIfOurs(path: string, pid: number): void {
  if (readPidFile(path) === pid) rmSync(path, { force: true });
}
