import type { IncomingMessage } from 'node:http';
import { z } from 'zod';
import { formatPath } from '../config/load.ts';
import { SwitchyardError } from '../errors.ts';

/** The largest request body the admin API reads. */
export const MAX_BODY_BYTES = 64 * 1024;

const reason = z.string().max(1000).nullable().optional();
const force = z.boolean().optional();

/** `POST /v1/apps/:app/switch`; `expectVersion`: refuse (409) unless `to`'s targets report this version (`force` does not skip it) */
export const switchBody = z.strictObject({ to: z.string().min(1), reason, force, expectVersion: z.string().min(1).max(200).optional() });
/**
 * `PUT /v1/apps/:app/weights` (percentages; the controller checks decimals, pools and the sum),
 * for an app with `pools` (named in the unknown-pool message, like every other unknown-pool error).
 */
export function weightsBodyFor(pools?: readonly string[]) {
  const unknown = pools === undefined ? 'unknown pool' : `unknown pool (pools: ${pools.join(', ')})`;
  return z.strictObject({
    // zod's record drops an own `__proto__` key without a word (its value unchecked): name it instead
    weights: z.preprocess((raw, ctx) => {
      if (typeof raw === 'object' && raw !== null && Object.hasOwn(raw, '__proto__')) ctx.addIssue({ code: 'custom', path: ['__proto__'], message: unknown, input: raw });
      return raw;
    }, z.record(z.string(), z.number())),
    reason,
    force,
  });
}
/** The weights body of any app (the API description's). */
export const weightsBody = weightsBodyFor();
/** `POST /v1/apps/:app/rollback`; `force` too, since the previous weights may point at a pool the health gate refuses */
export const rollbackBody = z.strictObject({ reason, force });

export interface FieldIssue {
  path: string;
  message: string;
}

/** zod issues as `[{ path, message }]`, one per unknown field, path `(root)` for the body itself. */
export function fieldIssues(issues: readonly z.core.$ZodIssue[]): FieldIssue[] {
  const out: FieldIssue[] = [];
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) out.push({ path: formatPath([...issue.path, key]), message: 'unknown field' });
    } else {
      out.push({ path: formatPath(issue.path) || '(root)', message: issue.message });
    }
  }
  return out;
}

/** Validates a parsed body, throwing a 400 whose details name each offending field. */
export function validate<T>(schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const details = fieldIssues(r.error.issues);
  throw new SwitchyardError('BAD_REQUEST', details.map((d) => `${d.path}: ${d.message}`).join('; '), { details });
}

/** application/json or application/*+json, parameters ignored. */
export function isJsonType(contentType: string): boolean {
  const [type] = contentType.split(';');
  const t = (type ?? '').trim().toLowerCase();
  return t === 'application/json' || (t.startsWith('application/') && t.endsWith('+json'));
}

/**
 * Reads a JSON request body of at most `limit` bytes. It must be application/json (415; the
 * RequestGuard already refuses a write without it, since a body-less POST is what a cross-site
 * form can send); an empty JSON body is `{}`.
 * A body over the limit is refused as soon as that is known, from Content-Length or while
 * streaming, without buffering the rest (413; the server then closes the connection).
 */
export async function readJson(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<unknown> {
  const contentType = req.headers['content-type'];
  if (contentType === undefined) throw new SwitchyardError('UNSUPPORTED_MEDIA_TYPE', 'writes must be application/json (no Content-Type given)');
  if (!isJsonType(contentType)) throw new SwitchyardError('UNSUPPORTED_MEDIA_TYPE', `writes must be application/json, got ${contentType.slice(0, 100)}`);
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) throw tooLarge(limit);
  const text = await readText(req, limit);
  if (text.trim().length === 0) return {};
  let value: unknown;
  try {
    value = JSON.parse(text) as unknown;
  } catch (err) {
    throw new SwitchyardError('BAD_REQUEST', `body is not valid JSON: ${(err as Error).message}`, { details: [{ path: '(root)', message: 'not valid JSON' }] });
  }
  return value;
}

/** Refuses (400 naming its path) a parsed body holding an own `__proto__` key anywhere under `at`. */
export function refuseProtoKeys(value: unknown, at: (string | number)[]): void {
  const proto = protoKey(value, at);
  if (proto !== null) throw new SwitchyardError('BAD_REQUEST', `${proto}: "__proto__" is not a name anything can have`, { details: [{ path: proto, message: 'not a valid name' }] });
}

/**
 * The path of the first own `__proto__` key in a parsed body, or null. JSON.parse makes it an
 * ordinary key, but copying it into an object (zod's records, spreads) sets the copy's prototype
 * instead: such a field was dropped without a word and the write answered 200.
 */
function protoKey(value: unknown, path: (string | number)[]): string | null {
  if (typeof value !== 'object' || value === null) return null;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const p = protoKey(value[i], [...path, i]);
      if (p !== null) return p;
    }
    return null;
  }
  for (const key of Object.keys(value)) {
    if (key === '__proto__') return formatPath([...path, key]);
    const p = protoKey((value as Record<string, unknown>)[key], [...path, key]);
    if (p !== null) return p;
  }
  return null;
}

function tooLarge(limit: number): SwitchyardError {
  return new SwitchyardError('BODY_TOO_LARGE', `body over ${limit / 1024} KiB`);
}

function readText(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        // stop reading: whatever else the client sends is not buffered
        req.pause();
        reject(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      try {
        resolve(new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks)));
      } catch {
        reject(new SwitchyardError('BAD_REQUEST', 'body is not valid UTF-8', { details: [{ path: '(root)', message: 'not valid UTF-8' }] }));
      }
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const onClose = () => onError(new Error('the client closed the connection before the body ended'));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

/**
 * `If-Match` as the revision a write expects: `"7"` or `7`; absent or `*` means any revision.
 * Anything else (a list, a weak tag, not a revision) is a 400.
 */
export function parseIfMatch(header: string | undefined): number | undefined {
  if (header === undefined) return undefined;
  const v = header.trim();
  if (v === '*') return undefined;
  const m = /^"?(\d{1,15})"?$/.exec(v);
  if (m === null || (v.startsWith('"') !== v.endsWith('"'))) {
    throw new SwitchyardError('BAD_REQUEST', 'If-Match must be "REVISION" (the ETag of GET /v1/apps/:app) or *', { details: [{ path: 'If-Match', message: 'must be "REVISION" or *' }] });
  }
  return Number(m[1]);
}

/** Whether `If-None-Match` names the given ETag (weak tags and `*` match too). */
export function ifNoneMatchHits(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  return header.split(',').some((tag) => {
    const t = tag.trim();
    return t === '*' || t === etag || t === `W/${etag}`;
  });
}
