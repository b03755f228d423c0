/**
 * The one catalogue of error codes Switchyard answers with. Every error the admin API returns,
 * and every error the data plane turns into a response, comes from here so that codes and
 * statuses stay stable (test/unit/errors.test.ts keeps it honest).
 */
export const ERRORS = {
  BAD_REQUEST: { status: 400, message: 'bad request' },
  UNAUTHORIZED: { status: 401, message: 'missing or unknown token' },
  HOST_NOT_ALLOWED: { status: 403, message: 'the admin API does not answer to this host name' },
  CROSS_ORIGIN_REQUEST: { status: 403, message: 'refused a request made by a page from another origin' },
  NOT_FOUND: { status: 404, message: 'not found' },
  UNKNOWN_APP: { status: 404, message: 'unknown app' },
  UNKNOWN_POOL: { status: 404, message: 'unknown pool' },
  METHOD_NOT_ALLOWED: { status: 405, message: 'method not allowed' },
  NO_EARLIER_REVISION: { status: 409, message: 'no earlier revision to roll back to' },
  /** the last routing change already took traffic back (a rollback, a rollout's automatic rollback, an abort): CONTRACT §10 */
  NOTHING_TO_ROLL_BACK: { status: 409, message: 'nothing to roll back' },
  /** a rollback would send traffic to a pool that runs another version now than it did then (unless force) */
  VERSION_CHANGED: { status: 409, message: 'a pool runs another version than it did then' },
  CONFLICT: { status: 409, message: 'conflict' },
  POOL_UNHEALTHY: { status: 409, message: 'the pool has no healthy target' },
  VERSION_MISMATCH: { status: 409, message: 'the pool does not run the expected version' },
  /** a write without If-Match kept losing the compare-and-set to other writers until its deadline */
  WRITE_CONFLICT: { status: 409, message: 'other writers kept getting there first; try again' },
  /** DELETE of a pool with weight or not yet drained (live definitions, CONTRACT §8) */
  POOL_IN_USE: { status: 409, message: 'the pool has weight or is not drained' },
  /** a host of the definition belongs to another app */
  HOST_CONFLICT: { status: 409, message: 'a host belongs to another app' },
  /** removing the last target of a pool with weight, or the last two pools, or an app with requests in flight */
  DEFINITION_IN_USE: { status: 409, message: 'the change would take away what serves traffic' },
  UNKNOWN_TARGET: { status: 404, message: 'not a target of the pool' },
  STALE_REVISION: { status: 412, message: 'stale revision' },
  BODY_TOO_LARGE: { status: 413, message: 'body over 64 KiB' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'writes must be application/json' },
  TOO_MANY_FAILED_LOGINS: { status: 429, message: 'too many failed logins' },
  INTERNAL: { status: 500, message: 'internal error' },
  /** a stored routing state breaks an invariant (src/state/invariants.ts): refused on write, reported on read */
  INVALID_STATE: { status: 500, message: 'the routing state is not valid' },
  STORE_UNAVAILABLE: { status: 503, message: 'the store cannot be written' },
  /** Redis gave no answer to a write and could not be read back after its deadline: it may or may not have landed */
  WRITE_OUTCOME_UNKNOWN: { status: 504, message: 'the write may or may not have landed; read the revision and history' },
  // data plane
  MISDIRECTED: { status: 421, message: 'no app for this host' },
  UPSTREAM_ERROR: { status: 502, message: 'upstream refused or broke the response' },
  NO_TARGET: { status: 503, message: 'the pool has no target that is up' },
  UPSTREAM_TIMEOUT: { status: 504, message: 'upstream timeout' },
  QUEUE_TIMEOUT: { status: 503, message: 'no upstream connection free in time; try again' },
  /** the proxy could not open an upstream connection for want of its own resources (fds, ports): never the target's fault */
  PROXY_OVERLOADED: { status: 503, message: 'the proxy is out of connections; try again' },
  BODY_TIMEOUT: { status: 408, message: 'the request body stopped arriving' },
  GOING_AWAY: { status: 503, message: 'shutting down or draining; try again' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERRORS;

/**
 * Answers the proxy makes for its own reasons (its shutdown, the client's pace, an exception it caught in itself), not for anything
 * a pool's upstreams did: never counted in a pool's error rate, which rollout analysis judges on.
 */
export const NOT_THE_POOLS_FAULT: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['GOING_AWAY', 'BODY_TIMEOUT', 'INTERNAL', 'PROXY_OVERLOADED']);

export class SwitchyardError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: unknown;
  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown; details?: unknown }) {
    super(message ?? ERRORS[code].message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SwitchyardError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.details = options?.details;
  }

  toJSON(): { error: { code: ErrorCode; message: string; details?: unknown } } {
    const error: { code: ErrorCode; message: string; details?: unknown } = { code: this.code, message: this.message };
    if (this.details !== undefined) error.details = this.details;
    return { error };
  }
}

/** A configuration that cannot be used: exits 2 with `path: reason` lines. */
export class ConfigError extends Error {
  readonly issues: readonly string[];
  constructor(issues: readonly string[]) {
    super(`invalid configuration:\n  ${issues.join('\n  ')}`);
    this.name = 'ConfigError';
    this.issues = issues;
  }
}
