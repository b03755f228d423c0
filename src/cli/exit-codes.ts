/**
 * The CLI's exit codes, one per outcome a pipeline must tell apart (README "CLI exit codes").
 * Like `git diff --exit-code`, `apply --exit-code` uses `differs` (1) for "the store and the file differ".
 */
export const EXIT = {
  ok: 0,
  /** the admin API refused or failed the call (4xx/5xx), or `apply --exit-code` found differences */
  refused: 1,
  /** a bad call: unknown command or option, a missing or malformed argument */
  usage: 2,
  /** a `rollout … --wait` (or `upgrade`) ran out of time before the outcome it waits for */
  waitTimedOut: 3,
  /** `drain --wait` ran out of time: 1, as docs/cli.md §2 has it (scripts written to it test for 1) */
  drainTimedOut: 1,
  /** the admin API could not be reached (connection refused, DNS, timeout) */
  unreachable: 4,
  /** a rollout ended rolled back or aborted */
  rolledBack: 5,
} as const;

/** The machine-readable error envelope written to stderr with `--json`. */
export function jsonError(code: string, message: string, exit: number, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ error: { code, message, exit, ...extra } });
}

/**
 * Reports a failure the way the call asked for (`--json`: one JSON line on stderr, else `error: …`)
 * and returns its exit code.
 */
export function fail(ctx: { readonly json: boolean; err(line: string): void }, exit: number, code: string, message: string): number {
  ctx.err(ctx.json ? jsonError(code, message, exit) : `error: ${message}`);
  return exit;
}

/** `--wait` prints a line at least this often while nothing changes (figures and time left). */
export const PROGRESS_MS = 10_000;
