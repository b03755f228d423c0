/**
 * The codes an upstream failure carries, as the request handler (src/dataplane/forward.ts)
 * and the upgrade path read them to decide retry, 502/503/504, passive health and the pool's
 * error rate. Both engines speak this vocabulary: undici's `Pool` raises its own errors, and the
 * native engine raises `UpstreamError`s with undici's code for the same failure, so one set of
 * rules serves both. A code is named here once; everything else uses the constant, so a typo is
 * a type error rather than a silently different retry or health decision
 * (test/unit/upstream-codes.test.ts checks the undici ones against undici's own error classes).
 */
export const UPSTREAM_CODES = {
  // undici's (node_modules/undici/lib/core/errors.js)
  /** the connection closed or broke under an exchange */
  SOCKET: 'UND_ERR_SOCKET',
  CONNECT_TIMEOUT: 'UND_ERR_CONNECT_TIMEOUT',
  /** no response head within the response timeout */
  HEADERS_TIMEOUT: 'UND_ERR_HEADERS_TIMEOUT',
  /** the response body stopped arriving for the idle timeout */
  BODY_TIMEOUT: 'UND_ERR_BODY_TIMEOUT',
  /** the target's pool was closed or destroyed with the exchange in it */
  DESTROYED: 'UND_ERR_DESTROYED',
  /** a request the client cannot send as it is (a field, a method): nothing reached the upstream */
  INVALID_ARG: 'UND_ERR_INVALID_ARG',
  NOT_SUPPORTED: 'UND_ERR_NOT_SUPPORTED',
  // the system's, from connect (errno names)
  ECONNREFUSED: 'ECONNREFUSED',
  EHOSTUNREACH: 'EHOSTUNREACH',
  ENETUNREACH: 'ENETUNREACH',
  ENOTFOUND: 'ENOTFOUND',
  EAI_AGAIN: 'EAI_AGAIN',
  /** the proxy's own resources: file descriptors, ephemeral ports, socket buffers, memory */
  EMFILE: 'EMFILE',
  ENFILE: 'ENFILE',
  EADDRNOTAVAIL: 'EADDRNOTAVAIL',
  ENOBUFS: 'ENOBUFS',
  ENOMEM: 'ENOMEM',
  // the native engine's own
  /** an exception the engine caught in its own read path (a bug): never the target's fault */
  INTERNAL: 'SY_INTERNAL',
  /** a response llhttp could not parse and that carried no `HPE_*` code of its own */
  HPE_INVALID: 'HPE_INVALID',
} as const;

/** One of the codes above. */
export type UpstreamCode = (typeof UPSTREAM_CODES)[keyof typeof UPSTREAM_CODES];

/** What an `UpstreamError` may carry: a code above, or an llhttp parse error's own `HPE_*` code. */
export type UpstreamErrorCode = UpstreamCode | `HPE_${string}`;

/**
 * A set of codes to test an error's code against: built from the constants only (so no typo),
 * asked with any string (an error's code is whatever its thrower put there).
 */
export function upstreamCodes(...codes: readonly UpstreamCode[]): ReadonlySet<string> {
  return new Set<string>(codes);
}
