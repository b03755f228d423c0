import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { z } from 'zod';
import { appSchema } from '../config/schema.ts';
import { ERRORS, type ErrorCode } from '../errors.ts';
import { approveBody, finishBody, pauseBody, rolloutBody } from '../rollout/spec.ts';
import * as S from './api-schemas.ts';
import { rollbackBody, switchBody, weightsBody } from './body.ts';
import { appBody, poolBody, removeBody, removeTargetBody, targetBody } from './definition-routes.ts';
import { Router, type AdminRoute, type HttpMethod } from './router.ts';
import { HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT } from './routes.ts';
import { mirrorBody, rulesBody } from './routing-routes.ts';

/**
 * `GET /v1/openapi.json`: an OpenAPI 3.1 description of the admin API. The operations are the
 * router's own table (so the document lists exactly what this server answers), each described
 * by an entry of OPERATIONS below; request bodies are the zod schemas the handlers validate
 * with, and each answer the zod schema of api-schemas.ts that the views are checked against,
 * converted by zod's own `z.toJSONSchema` (OpenAPI 3.1 schemas are JSON Schema 2020-12). Every
 * status an operation can answer is declared, each error with the codes of that status.
 */

interface Query {
  readonly name: string;
  readonly description: string;
  readonly schema: Record<string, unknown>;
}

/** A success answer: a zod schema of its JSON, or Prometheus text. */
type Answer = z.ZodType | 'text';

/**
 * One operation of the admin API. To document a new route, add an entry to OPERATIONS keyed by
 * its `METHOD path` exactly as the router registers it (test/integration/openapi.test.ts fails
 * for a route without one, or one without a schema for each success it answers).
 */
export interface OperationDoc {
  readonly summary: string;
  /** the zod schema the handler validates its body with */
  readonly body?: z.ZodType;
  /** the body may be left out (a DELETE without one is `{}`) @default false */
  readonly bodyOptional?: boolean;
  readonly query?: readonly Query[];
  /** each success status and what it carries, from api-schemas.ts */
  readonly ok: Readonly<Record<number, Answer>>;
  /** takes `If-Match: "REVISION"` (a stale one is a 412, a malformed one a 400) */
  readonly ifMatch?: boolean;
  /**
   * error statuses beyond the ones every route of its kind has: 403/405/500 for all, 401/429
   * with a token, 400/404 with a path parameter, 400/413/415 with a body, 415 for a write
   */
  readonly errors?: readonly number[];
}

type OperationKey = `${HttpMethod} ${string}`;

/** `GET /v1/config`: definitions as written (the config's input shape: durations as strings, defaults left out). */
const CONFIG_ANSWER = z.object({ apps: z.array(appSchema) });

/** `POST /v1/apps/:app/rollback`: the AppState written with what it restored, or with `?dryRun=true` what it would write. */
const ROLLBACK_ANSWER = z.union([S.rolledBack, S.rollbackDryRun]);

const WRITE_ERRORS = [409, 503, 504] as const;
const flagQuery = (name: string, description: string): Query => ({ name, description, schema: { type: 'string', enum: ['1', 'true', ''] } });
const rolloutCommand = (verb: string, what: string, body: z.ZodType): OperationDoc => ({ summary: `${verb} the running rollout: ${what}`, body, ok: { 200: S.rollout }, errors: [409, 503] });

/** What each route of the admin API is, keyed by `METHOD path` as the router registers it. */
export const OPERATIONS: Readonly<Record<OperationKey, OperationDoc>> = {
  'GET /healthz': { summary: 'Liveness: 200 while the process runs', ok: { 200: S.healthz } },
  'GET /readyz': { summary: 'Readiness: 200 once routing state is loaded, 503 (same shape, `status: "unavailable"`) from the moment shutdown starts', ok: { 200: S.readyz, 503: S.readyz } },
  'GET /metrics': { summary: 'Prometheus metrics of this instance (or of the whole process group with workers)', ok: { 200: 'text' } },
  'GET /v1/openapi.json': { summary: 'This document', ok: { 200: S.openApi } },
  'GET /v1/certificates': { summary: "The certificates of the TLS port (`listen.tls`) and, with ACME, each host's last order error and next attempt; `expiring`: less than a third of its lifetime left (when ACME renews)", ok: { 200: S.certificates } },
  'GET /v1/apps': { summary: 'Every app with its routing state', ok: { 200: S.appList } },
  'GET /v1/apps/:app': { summary: "An app's routing state (`If-None-Match` answers 304)", ok: { 200: S.appState }, errors: [304] },
  'POST /v1/apps/:app/switch': { summary: 'Switch: `to` gets 100 %, the other pools 0', body: switchBody, ok: { 200: S.appState }, ifMatch: true, errors: WRITE_ERRORS },
  'PUT /v1/apps/:app/weights': { summary: 'Set the pool weights (percentages, two decimals at most, summing to 100; pools left out get 0)', body: weightsBody, ok: { 200: S.appState }, ifMatch: true, errors: WRITE_ERRORS },
  'POST /v1/apps/:app/rollback': {
    summary:
      'Roll back to the last known-good routing (weights, cohort rules and mirror together: the stable routing before the current release), as a new revision; answers the AppState written and `rollback`, what it restored. 409 `NOTHING_TO_ROLL_BACK` when the last change already took traffic back, `VERSION_CHANGED` when a pool it would send traffic to runs another version than then (unless `force`), `NO_EARLIER_REVISION`. With `?dryRun=true`: what it would write, nothing written',
    body: rollbackBody,
    query: [flagQuery('dryRun', '`true` answers what the rollback would write (RollbackDryRun) and writes nothing')],
    ok: { 200: ROLLBACK_ANSWER },
    ifMatch: true,
    errors: WRITE_ERRORS,
  },
  'GET /v1/apps/:app/history': {
    summary: 'The audit history of routing changes, newest first',
    query: [
      { name: 'limit', description: 'entries to return (anything else is a 400)', schema: { type: 'integer', minimum: 1, maximum: HISTORY_MAX_LIMIT, default: HISTORY_DEFAULT_LIMIT } },
      { name: 'offset', description: 'entries to skip, newest first (the `next` of the previous page); anything else is a 400', schema: { type: 'integer', minimum: 0, maximum: HISTORY_MAX_LIMIT, default: 0 } },
    ],
    ok: { 200: S.history },
  },
  'GET /v1/apps/:app/pools/:pool/drain': { summary: "A pool's drain figures, summed over the fleet", query: [flagQuery('instances', '`1` adds a per-instance breakdown')], ok: { 200: S.drain } },
  'GET /v1/apps/:app/whereis': {
    summary: 'Where a request like the one described goes now and which step decided (`by`: preview, pin, a cohort rule, the weights), computed by the data plane\'s own routing; at least one parameter is required (400). Without a sticky key the weights split at random: `pool` null, `random: true`',
    query: [
      { name: 'key', description: 'the sticky key (a user id, a session cookie value, an address)', schema: { type: 'string' } },
      { name: 'header', description: '`NAME:VALUE`, repeatable', schema: { type: 'string' } },
      { name: 'cookie', description: '`NAME=VALUE`, repeatable', schema: { type: 'string' } },
      { name: 'query', description: '`NAME=VALUE` of the request\'s query string, repeatable', schema: { type: 'string' } },
      { name: 'path', description: 'the request path (may carry a query string); default `/`', schema: { type: 'string' } },
      { name: 'method', description: 'default GET', schema: { type: 'string' } },
      { name: 'ip', description: 'the client address', schema: { type: 'string' } },
    ],
    ok: { 200: S.whereis },
  },
  'GET /v1/apps/:app/pools/:pool/preview-header': { summary: 'The signed preview header that reaches the pool whatever its weight (409 when the app has no `preview`)', ok: { 200: S.previewHeader }, errors: [409] },
  'GET /v1/apps/:app/stats': { summary: 'Live figures per pool over the last 10 s and 60 s', query: [flagQuery('history', '`1` adds the 10 s figures at each second of the last minute')], ok: { 200: S.stats } },
  'POST /v1/apps/:app/rollouts': { summary: 'Start a progressive rollout (steps or a preset, with analysis)', body: rolloutBody, ok: { 201: S.rollout }, ifMatch: true, errors: WRITE_ERRORS },
  'GET /v1/apps/:app/rollouts': { summary: 'The running or last rollout, `null` when the app never had one', ok: { 200: S.currentRollout } },
  'GET /v1/apps/:app/rollouts/current': { summary: 'The running or last rollout (404 when the app never had one)', ok: { 200: S.rollout } },
  'POST /v1/apps/:app/rollouts/current/pause': rolloutCommand('Pause', 'hold the current step', pauseBody),
  'POST /v1/apps/:app/rollouts/current/resume': rolloutCommand('Resume', 'carry on from the held step', pauseBody),
  'POST /v1/apps/:app/rollouts/current/promote': rolloutCommand('Promote', '100 % to `to` now', finishBody),
  'POST /v1/apps/:app/rollouts/current/abort': rolloutCommand('Abort', 'restore the starting weights', finishBody),
  'POST /v1/apps/:app/rollouts/current/approve': rolloutCommand('Approve', 'let the step waiting for approval go on (409 when the current step is not an approval step)', approveBody),
  // cohort rules and mirror (docs/cohorts.md §5)
  'PUT /v1/apps/:app/rules': { summary: "Replace the app's cohort rules (`[]` removes them), each checked by the config's schema; `to` must be a pool of the app", body: rulesBody, ok: { 200: S.appState }, ifMatch: true, errors: WRITE_ERRORS },
  'PUT /v1/apps/:app/mirror': { summary: "Set the app's mirror (`{ to, share, methods, maxBody, maxInflight, compare }`, checked by the config's schema), or remove it with `null`", body: mirrorBody, ok: { 200: S.appState }, ifMatch: true, errors: WRITE_ERRORS },
  // live definitions (docs/definitions.md §2)
  'PUT /v1/apps/:app/pools/:pool': { summary: "Set a pool's version and targets; a new pool is added at weight 0 after the existing ones (no sticky user moves)", body: poolBody, ok: { 200: S.appState }, ifMatch: true, errors: WRITE_ERRORS },
  'DELETE /v1/apps/:app/pools/:pool': { summary: 'Remove a pool: 409 `POOL_IN_USE` while it has weight or is not drained, unless `force`; an app keeps two pools', body: removeBody, bodyOptional: true, ok: { 200: S.appState }, ifMatch: true, errors: WRITE_ERRORS },
  'POST /v1/apps/:app/pools/:pool/targets': { summary: 'Add a target to a pool (one already there: 200, no new revision)', body: targetBody, ok: { 200: S.appState }, ifMatch: true, errors: WRITE_ERRORS },
  'DELETE /v1/apps/:app/pools/:pool/targets': {
    summary: 'Remove a target: requests in flight finish on it, upgraded connections are closed at the drain timeout counted from the removal; 409 for the last target of a pool with weight unless `force=true`; 400 without `url`',
    body: removeTargetBody,
    bodyOptional: true,
    query: [
      { name: 'url', description: 'the target to remove (required: without it, 400)', schema: { type: 'string', minLength: 1 } },
      flagQuery('force', '`true` removes the last target of a pool with weight'),
      { name: 'reason', description: 'why, for the history', schema: { type: 'string' } },
    ],
    ok: { 200: S.appState },
    ifMatch: true,
    errors: WRITE_ERRORS,
  },
  'PUT /v1/apps/:app': { summary: "Create (201) or replace (200) an app's definition, shaped like one `apps[]` entry of the config; 409 `HOST_CONFLICT` when a host belongs to another app", body: appBody, ok: { 200: S.appState, 201: S.appState }, ifMatch: true, errors: WRITE_ERRORS },
  'DELETE /v1/apps/:app': { summary: 'Delete an app: 409 while requests are in flight on it, unless `force`', body: removeBody, bodyOptional: true, ok: { 200: S.deletedApp }, ifMatch: true, errors: WRITE_ERRORS },
  'GET /v1/config': { summary: "Every app's live definition, in the shape `switchyard apply` reads", ok: { 200: CONFIG_ANSWER } },
};

/** Named answers: a component schema each, referenced from every operation that answers it. */
const COMPONENTS: ReadonlyMap<z.ZodType, string> = new Map<z.ZodType, string>([
  [S.appState, 'AppState'],
  [S.appList, 'AppList'],
  [S.history, 'History'],
  [S.drain, 'Drain'],
  [S.rollout, 'Rollout'],
  [S.currentRollout, 'CurrentRollout'],
  [S.stats, 'Stats'],
  [S.whereis, 'Whereis'],
  [ROLLBACK_ANSWER, 'Rollback'],
  [S.previewHeader, 'PreviewHeader'],
  [S.certificates, 'Certificates'],
  [S.deletedApp, 'DeletedApp'],
  [S.healthz, 'Healthz'],
  [S.readyz, 'Readyz'],
  [CONFIG_ANSWER, 'Definitions'],
]);

/** Codes the data plane answers with, never the admin API (the catalogue's `plane`). */
const DATA_PLANE_CODES = new Set<ErrorCode>((Object.keys(ERRORS) as ErrorCode[]).filter((c) => ERRORS[c].plane === 'data'));

/** The admin API's error codes of one HTTP status, from the catalogue (src/errors.ts). */
export function codesOf(status: number): ErrorCode[] {
  return (Object.keys(ERRORS) as ErrorCode[]).filter((c) => ERRORS[c].status === status && !DATA_PLANE_CODES.has(c));
}

/** The error envelope with the given codes. */
function envelope(codes: readonly ErrorCode[]): z.ZodType {
  return z.strictObject({ error: z.strictObject({ code: z.enum(codes as [ErrorCode, ...ErrorCode[]]), message: z.string(), details: z.unknown().optional() }) });
}

/** The error envelope, its `code` narrowed to the codes of `status`. */
function errorSchema(status: number): z.ZodType {
  return envelope(codesOf(status));
}

/** Every error of the admin API (`components.schemas.Error`). */
const ERROR_ENVELOPE = envelope((Object.keys(ERRORS) as ErrorCode[]).filter((c) => !DATA_PLANE_CODES.has(c)));

/** A zod schema as an OpenAPI 3.1 schema object: JSON Schema 2020-12, the `$schema` left to the document's dialect. */
function schemaOf(schema: z.ZodType, io: 'input' | 'output'): Record<string, unknown> {
  // input: what a client sends (fields with defaults are optional); transforms cannot be expressed,
  // and what they check is said in the operation's summary instead
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { target: 'draft-2020-12', io, unrepresentable: 'any' });
  return rest;
}

/** `PUT /v1/apps/:app`'s body: `definition` is checked by the config's own app schema (its `name` comes from the path). */
function bodySchema(body: z.ZodType): Record<string, unknown> {
  const out = schemaOf(body, 'input');
  if (body !== appBody) return out;
  const definition = schemaOf(appSchema, 'input');
  definition.required = (definition.required as string[]).filter((k) => k !== 'name');
  (out.properties as Record<string, unknown>).definition = definition;
  out.required = ['definition'];
  return out;
}

const STATUS_TEXT: Readonly<Record<number, string>> = {
  304: 'not modified (`If-None-Match` names the current revision)',
  400: 'bad request: `details` name each offending field (body field, query parameter, path segment or `If-Match`)',
  401: 'missing or unknown bearer token',
  403: 'a request from a page of another origin, or to a host name the admin API does not answer to (`admin.allowedHosts`)',
  404: 'unknown app, pool, target or rollout',
  405: 'a method this path does not serve (`Allow` lists the ones it does)',
  409: 'refused: a conflict with the current state (see `error.code`)',
  412: 'stale `If-Match`: `details.current` is the current state',
  413: 'body over 64 KiB',
  415: 'a write that is not application/json',
  429: 'too many failed logins from this address (`Retry-After`)',
  500: 'an internal error, or a stored routing state that breaks an invariant',
  503: 'unavailable (the store cannot be written, or the instance is shutting down); a write answered 503 never lands',
  504: '`WRITE_OUTCOME_UNKNOWN`: the store did not answer the write and could not be read back; it may or may not have landed (read the revision and history before retrying)',
};

/** `/v1/apps/:app` → `/v1/apps/{app}` and its parameter names. */
function openApiPath(path: string): { path: string; params: string[] } {
  const params: string[] = [];
  const out = path.replace(/:([A-Za-z_]\w*)/g, (_, name: string) => (params.push(name), `{${name}}`));
  return { path: out, params };
}

/** Every status an operation can answer: its successes, then the errors of its kind and its own. */
export function statusesOf(route: AdminRoute, doc: OperationDoc): { ok: number[]; errors: number[] } {
  const { params } = openApiPath(route.path);
  const errors = new Set<number>([403, 405, 500, ...(doc.errors ?? [])]);
  if (Router.needsAuth(route)) [401, 429].forEach((s) => errors.add(s));
  if (params.length > 0) [400, 404].forEach((s) => errors.add(s));
  if (doc.body !== undefined) [400, 413, 415].forEach((s) => errors.add(s));
  if (route.method !== 'GET') errors.add(415);
  if (doc.query?.some((q) => q.name === 'limit' || q.name === 'url' || q.name === 'key') === true) errors.add(400);
  if (doc.ifMatch === true) [400, 412].forEach((s) => errors.add(s));
  const ok = Object.keys(doc.ok).map(Number);
  for (const s of ok) errors.delete(s);
  return { ok: ok.sort((a, b) => a - b), errors: [...errors].sort((a, b) => a - b) };
}

function operation(route: AdminRoute, doc: OperationDoc | undefined, components: Record<string, unknown>): Record<string, unknown> {
  const { params } = openApiPath(route.path);
  const parameters: Record<string, unknown>[] = params.map((name) => ({ name, in: 'path', required: true, schema: { type: 'string' } }));
  const responses: Record<string, unknown> = {};
  const op: Record<string, unknown> = {
    operationId: `${route.method.toLowerCase()}${route.path.replace(/[^A-Za-z0-9]+(.)?/g, (_, c: string | undefined) => (c ?? '').toUpperCase())}`,
    summary: doc?.summary ?? 'undescribed: this route has no entry in src/admin/openapi.ts OPERATIONS',
    parameters,
    responses,
  };
  if (!Router.needsAuth(route)) op.security = [];
  if (doc === undefined) {
    op['x-switchyard-undescribed'] = true;
    responses.default = { description: 'undescribed' };
    return op;
  }
  for (const q of doc.query ?? []) parameters.push({ name: q.name, in: 'query', required: false, description: q.description, schema: q.schema });
  if (doc.ifMatch === true) parameters.push({ name: 'If-Match', in: 'header', required: false, description: 'the revision this write expects, `"REVISION"` (the ETag) or `*`', schema: { type: 'string' } });
  if (doc.body !== undefined) op.requestBody = { required: doc.bodyOptional !== true, content: { 'application/json': { schema: bodySchema(doc.body) } } };
  const { ok, errors } = statusesOf(route, doc);
  for (const status of ok) {
    const answer = doc.ok[status] as Answer;
    if (answer === 'text') {
      responses[status] = { description: 'Prometheus text exposition format', content: { 'text/plain': { schema: { type: 'string' } } } };
      continue;
    }
    const name = COMPONENTS.get(answer);
    const io = answer === CONFIG_ANSWER ? 'input' : 'output';
    if (name !== undefined) components[name] ??= schemaOf(answer, io);
    const response: Record<string, unknown> = { description: name ?? 'success', content: { 'application/json': { schema: name === undefined ? schemaOf(answer, io) : { $ref: `#/components/schemas/${name}` } } } };
    if (answer === S.appState || answer === ROLLBACK_ANSWER) response.headers = { ETag: { description: 'the revision, `"REVISION"`', schema: { type: 'string' } } };
    responses[status] = response;
  }
  for (const status of errors) {
    if (status === 304) {
      responses[status] = { description: STATUS_TEXT[status] };
      continue;
    }
    components[`Error${status}`] ??= schemaOf(errorSchema(status), 'output');
    responses[status] = { description: STATUS_TEXT[status] ?? 'error', content: { 'application/json': { schema: { $ref: `#/components/schemas/Error${status}` } } } };
  }
  return op;
}

function packageVersion(): string {
  try {
    // src/admin and dist/admin both sit two levels below the package root
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}

/** The OpenAPI 3.1 document of the given routes (the router's table). */
export function openApiDocument(routes: readonly AdminRoute[]): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  const schemas: Record<string, unknown> = { Error: schemaOf(ERROR_ENVELOPE, 'output') };
  for (const route of routes) {
    const { path } = openApiPath(route.path);
    (paths[path] ??= {})[route.method.toLowerCase()] = operation(route, OPERATIONS[`${route.method} ${route.path}`], schemas);
  }
  return {
    openapi: '3.1.1',
    info: { title: 'Switchyard admin API', version: packageVersion(), description: 'Blue/green and canary routing state, drain figures, rollouts. Errors are `{ error: { code, message, details? } }`.' },
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    security: [{ bearer: [] }],
    paths,
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'a token of `admin.tokens`; its name is the actor in the audit history' } },
      schemas,
    },
  };
}

/** The admin servers' route tables, for the test that keeps OPERATIONS and the router in step. */
const TABLES = new WeakMap<Server, Router>();

/** The routes a server built by createAdminServer answers (undefined for any other server). */
export function routeTable(server: Server): readonly AdminRoute[] | undefined {
  return TABLES.get(server)?.routes();
}

/** Registers `GET /v1/openapi.json` on the router; call it after every other route is added. */
export function attachOpenApi(router: Router, server: Server): void {
  let doc: string | undefined;
  router.add({
    method: 'GET',
    path: '/v1/openapi.json',
    // built on first use, when the table is complete; the table never changes after startup
    handler: () => ({ raw: (doc ??= JSON.stringify(openApiDocument(router.routes()))), contentType: 'application/json; charset=utf-8' }),
  });
  TABLES.set(server, router);
}
