/** Which listener answers with a code: the admin API (a JSON envelope), the data plane (a short text body, or a gRPC status), or both. */
export type ErrorPlane = 'admin' | 'data' | 'both';

/**
 * The one catalogue of error codes Switchyard answers with. Every error the admin API returns,
 * and every error the data plane turns into a response, comes from here so that codes and
 * statuses stay stable. test/unit/errors.test.ts keeps it honest: each code's status and
 * envelope on the wire, and the README's "Error codes" tables against this file, both ways.
 */
export const ERRORS = {
  BAD_REQUEST: { status: 400, plane: 'admin', message: 'bad request' },
  UNAUTHORIZED: { status: 401, plane: 'admin', message: 'missing or unknown token' },
  HOST_NOT_ALLOWED: { status: 403, plane: 'admin', message: 'the admin API does not answer to this host name' },
  CROSS_ORIGIN_REQUEST: { status: 403, plane: 'admin', message: 'refused a request made by a page from another origin' },
  NOT_FOUND: { status: 404, plane: 'admin', message: 'not found' },
  UNKNOWN_APP: { status: 404, plane: 'admin', message: 'unknown app' },
  UNKNOWN_POOL: { status: 404, plane: 'admin', message: 'unknown pool' },
  METHOD_NOT_ALLOWED: { status: 405, plane: 'admin', message: 'method not allowed' },
  NO_EARLIER_REVISION: { status: 409, plane: 'admin', message: 'no earlier revision to roll back to' },
  /** the last routing change already took traffic back (a rollback, a rollout's automatic rollback, an abort): docs/cohorts.md §6 */
  NOTHING_TO_ROLL_BACK: { status: 409, plane: 'admin', message: 'nothing to roll back' },
  /** a rollback would send traffic to a pool that runs another version now than it did then (unless force) */
  VERSION_CHANGED: { status: 409, plane: 'admin', message: 'a pool runs another version than it did then' },
  CONFLICT: { status: 409, plane: 'admin', message: 'conflict' },
  POOL_UNHEALTHY: { status: 409, plane: 'admin', message: 'the pool has no healthy target' },
  VERSION_MISMATCH: { status: 409, plane: 'admin', message: 'the pool does not run the expected version' },
  /** a write without If-Match kept losing the compare-and-set to other writers until its deadline */
  WRITE_CONFLICT: { status: 409, plane: 'admin', message: 'other writers kept getting there first; try again' },
  /** DELETE of a pool with weight or not yet drained (docs/definitions.md §2) */
  POOL_IN_USE: { status: 409, plane: 'admin', message: 'the pool has weight or is not drained' },
  /** a host of the definition belongs to another app */
  HOST_CONFLICT: { status: 409, plane: 'admin', message: 'a host belongs to another app' },
  /** removing the last target of a pool with weight, or the last two pools, or an app with requests in flight */
  DEFINITION_IN_USE: { status: 409, plane: 'admin', message: 'the change would take away what serves traffic' },
  UNKNOWN_TARGET: { status: 404, plane: 'admin', message: 'not a target of the pool' },
  STALE_REVISION: { status: 412, plane: 'admin', message: 'stale revision' },
  BODY_TOO_LARGE: { status: 413, plane: 'admin', message: 'body over 64 KiB' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, plane: 'admin', message: 'writes must be application/json' },
  TOO_MANY_FAILED_LOGINS: { status: 429, plane: 'admin', message: 'too many failed logins' },
  INTERNAL: { status: 500, plane: 'both', message: 'internal error' },
  /** a stored routing state breaks an invariant (src/state/invariants.ts): refused on write, reported on read */
  INVALID_STATE: { status: 500, plane: 'admin', message: 'the routing state is not valid' },
  STORE_UNAVAILABLE: { status: 503, plane: 'admin', message: 'the store cannot be written' },
  /** Redis gave no answer to a write and could not be read back after its deadline: it may or may not have landed */
  WRITE_OUTCOME_UNKNOWN: { status: 504, plane: 'admin', message: 'the write may or may not have landed; read the revision and history' },
  // data plane
  MISDIRECTED: { status: 421, plane: 'data', message: 'no app for this host' },
  UPSTREAM_ERROR: { status: 502, plane: 'data', message: 'upstream refused or broke the response' },
  NO_TARGET: { status: 503, plane: 'data', message: 'the pool has no target that is up' },
  UPSTREAM_TIMEOUT: { status: 504, plane: 'data', message: 'upstream timeout' },
  QUEUE_TIMEOUT: { status: 503, plane: 'data', message: 'no upstream connection free in time; try again' },
  /** the proxy could not open an upstream connection for want of its own resources (fds, ports): never the target's fault */
  PROXY_OVERLOADED: { status: 503, plane: 'data', message: 'the proxy is out of connections; try again' },
  BODY_TIMEOUT: { status: 408, plane: 'data', message: 'the request body stopped arriving' },
  GOING_AWAY: { status: 503, plane: 'data', message: 'shutting down or draining; try again' },
  /** the request already passed Switchyard MAX_SWITCHYARD_HOPS times (its Via): a target points back at a proxy */
  LOOP_DETECTED: { status: 508, plane: 'data', message: 'forwarding loop: a target points back at the proxy' },
} as const satisfies Record<string, { status: number; plane: ErrorPlane; message: string }>;

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

/**
 * Errors of the process itself, never an HTTP answer: what stops it starting (a `fatal` log line
 * carrying `err.code`, then exit 1), what fails the hand-over of an upgrade (SIGUSR2 or
 * `switchyard upgrade`: the old process keeps serving and logs it), and a promise of the code
 * broken (a bug: please report it). A bad configuration is a `ConfigError` instead (exit 2, key
 * paths named).
 */
export const PROCESS_ERRORS = {
  /** the file store's state file is not JSON, or not a Switchyard state file */
  STATE_FILE_INVALID: { when: 'start', message: 'the state file cannot be read as Switchyard state; repair it or move it away' },
  /** the file store's rollouts file is not JSON, or not a Switchyard rollouts file */
  ROLLOUTS_FILE_INVALID: { when: 'start', message: 'the rollouts file cannot be read as Switchyard rollouts; repair it or move it away' },
  /** a rollout record in Redis is not one Switchyard wrote */
  ROLLOUT_RECORD_INVALID: { when: 'runtime', message: 'a stored rollout record is not valid' },
  /** seeding an app from the config file left the store with no state for it */
  SEED_FAILED: { when: 'start', message: 'an app could not be seeded into the store' },
  /** a worker exited before it was listening */
  WORKER_START_FAILED: { when: 'start', message: 'a worker exited before it was listening' },
  /** the listening sockets could not be handed to the new process; the old one keeps serving */
  UPGRADE_FAILED: { when: 'upgrade', message: 'the listening sockets could not be handed over' },
  /** a promise of the code was broken: a bug, never the operator's input */
  BUG: { when: 'runtime', message: 'an internal invariant was broken' },
} as const satisfies Record<string, { when: 'start' | 'upgrade' | 'runtime'; message: string }>;

export type ProcessErrorCode = keyof typeof PROCESS_ERRORS;

/** An error of the process (PROCESS_ERRORS), its `code` in every log line that carries it. */
export class ProcessError extends Error {
  readonly code: ProcessErrorCode;
  constructor(code: ProcessErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? PROCESS_ERRORS[code].message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ProcessError';
    this.code = code;
  }
}
