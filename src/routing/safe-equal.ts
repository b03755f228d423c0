import { timingSafeEqual } from 'node:crypto';

/**
 * Whether `given` equals `expected` (a signature the proxy computed), in time that does not
 * depend on where they differ. `timingSafeEqual` throws on buffers of different byte lengths,
 * and a string's length is not its UTF-8 byte length: a client value holding one byte in
 * 0x80–0xFF (read as latin1, one UTF-16 unit, two UTF-8 bytes) once passed a string-length check
 * and then threw out of the request path. The byte lengths are compared here, on the buffers
 * actually compared; the length of a signature is no secret.
 */
export function signatureMatches(expected: string, given: string): boolean {
  const a = Buffer.from(expected, 'utf8');
  const b = Buffer.from(given, 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}
