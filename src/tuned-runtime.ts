/**
 * The runtime every serving Switchyard process runs with, and the re-exec that applies it. This
 * module imports nothing: bin/switchyard.js loads it before any other module, so a `serve` is
 * re-executed before it has loaded (and, from a checkout, type-stripped) the whole program.
 *
 * - `--max-semi-space-size=4`: 4 MB semi-spaces (an 8 MB young generation). With the raw-socket
 *   front a request makes little garbage that outlives a scavenge; at 8 MB the young generation
 *   alone was 16 MB of the resident set under load, at 4 MB it is 8 (README Performance, "Memory
 *   by start path", with the CPU per request of both).
 * - `--heap-growing-percent=50`: the old generation grows by half after a full collection rather
 *   than up to 4× (1,000 clients in 160–170 MB instead of 190–236, README Performance).
 * - `MALLOC_ARENA_MAX=2`: glibc gives each thread that allocates (V8's 4 compiler and GC helper
 *   threads, libuv's) an arena of its own, and keeps what was freed in each: 4–5 MiB more under
 *   load at 50 clients than with two shared arenas (measured, same README section). glibc reads
 *   it once, when the process starts: hence the re-exec, like the semi-space size, which V8 reads
 *   when it creates the heap (`v8.setFlagsFromString` after start is too late for it).
 *
 * An operator overrides any of them by giving it: a flag on node's command line or in
 * NODE_OPTIONS (any value), MALLOC_ARENA_MAX or GLIBC_TUNABLES in the environment; or keeps the
 * runtime exactly as started with SWITCHYARD_NODE_FLAGS=keep.
 */
export const TUNED_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4', '--heap-growing-percent=50'];
export const TUNED_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2' };

/** What the re-exec adds: the flags and environment variables not already given; null when nothing is to be done. */
export function missingTuning(execArgv: readonly string[], env: Readonly<Record<string, string | undefined>>): { flags: string[]; env: Record<string, string> } | null {
  if (env['SWITCHYARD_NODE_FLAGS'] === 'keep') return null;
  const given = `${execArgv.join(' ')} ${env['NODE_OPTIONS'] ?? ''}`;
  const flags = TUNED_NODE_FLAGS.filter((f) => !given.includes(f.slice(0, f.indexOf('='))));
  const added: Record<string, string> = {};
  // glibc's tunable (glibc.malloc.arena_max) is the other way to set the same thing
  for (const [k, v] of Object.entries(TUNED_ENV)) if (env[k] === undefined && !(k === 'MALLOC_ARENA_MAX' && (env['GLIBC_TUNABLES'] ?? '').includes('arena_max'))) added[k] = v;
  return flags.length === 0 && Object.keys(added).length === 0 ? null : { flags, env: added };
}

/**
 * Replaces this process (same pid, same stdio, open descriptors kept: `process.execve`) by node
 * running `script` with `args`, TUNED_NODE_FLAGS and TUNED_ENV added where missing. False when
 * nothing was to be done or the runtime has no execve (then the process runs as started).
 */
export function relaunchTuned(script: string, args: readonly string[]): boolean {
  const missing = missingTuning(process.execArgv, process.env);
  if (missing === null || typeof process.execve !== 'function') return false;
  process.execve(process.execPath, [process.execPath, ...missing.flags, ...process.execArgv, script, ...args], { ...process.env, ...missing.env });
  return true;
}
