import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { z } from 'zod';
import { ERRORS } from '../errors.ts';
import { approveBody, finishBody, pauseBody, rolloutBody } from '../rollout/spec.ts';
import { rollbackBody, switchBody, weightsBody } from './body.ts';
import { appBody, poolBody, removeBody, targetBody } from './definition-routes.ts';
import { mirrorBody, rulesBody } from './routing-routes.ts';
import { Router, type AdminRoute, type HttpMethod } from './router.ts';

/**
 * `GET /v1/openapi.json`: an OpenAPI 3.1 description of the admin API. The operations are the
 * router's own table (so the document lists exactly what this server answers), each described
 * by an entry of OPERATIONS below; request bodies are the zod schemas the handlers validate
 * with, converted by zod's own `z.toJSONSchema` (OpenAPI 3.1 schemas are JSON Schema 2020-12).
 */

interface Query {
  readonly name: string;
  readonly description: string;
  readonly schema: Record<string, unknown>;
}

interface OperationDoc {
  readonly summary: string;
  readonly body?: z.ZodType;
  readonly query?: readonly Query[];
  /** the success status and what it carries @default 200 */
  readonly status?: number;
  readonly answer: string;
  /** a non-JSON answer (Prometheus text) */
  readonly contentType?: string;
  /** takes `If-Match: "REVISION"` (a stale one is a 412) */
  readonly ifMatch?: boolean;
  /** error statuses beyond the ones every route of its kind has (401/429 with a token, 404 with `:app`, 400/413/415 with a body) */
  readonly errors?: readonly number[];
}

type OperationKey = `${HttpMethod} ${string}`;

const WRITE_ERRORS = [409, 503, 504] as const;
const APP_STATE = 'AppState: `{ app, revision, weights, active, updatedAt, updatedBy, reason, pools: { NAME: { version, targets, weight, inflight, upgraded, drained, healthy, health, targetStates } }, rules, mirror, instances: { applied, total } }`, with `ETag: "REVISION"`';
const ROLLOUT = 'the rollout: `{ id, app, to, state, step, steps, weight, from, startedAt, nextAt, nextInMs, remainingMs, analysis, onFailure, reason, lastAnalysis, by, driver }`';

const rolloutCommand = (verb: string, what: string, body: z.ZodType): OperationDoc => ({ summary: `${verb} the running rollout: ${what}`, body, answer: ROLLOUT, errors: [409, 503] });

/** What each route of the admin API is, keyed by `METHOD path` as the router registers it. */
export const OPERATIONS: Readonly<Record<OperationKey, OperationDoc>> = {
  'GET /healthz': { summary: 'Liveness: 200 while the process runs', answer: '`{ status: "ok" }`' },
  'GET /readyz': { summary: 'Readiness: 200 once routing state is loaded, 503 from the moment shutdown starts', answer: '`{ status: "ready" | "unavailable", details? }`', errors: [503] },
  'GET /metrics': { summary: 'Prometheus metrics of this instance (or of the whole process group with workers)', answer: 'Prometheus text exposition format', contentType: 'text/plain' },
  'GET /v1/openapi.json': { summary: 'This document', answer: 'an OpenAPI 3.1 document' },
  'GET /v1/certificates': {
    summary: 'The certificates of the TLS port (`listen.tls`) and, with ACME, each host\'s last order error and next attempt',
    answer: '`{ tls, at, certificates: [{ names, source: "file" | "acme", file?, notBefore, notAfter, expiresInSeconds, state: "ok" | "expiring" | "expired" }], acme: { orderer, hosts: [{ host, notAfter, lastError, failures, retryAt }] } | null }`; `expiring`: less than a third of its lifetime left (when ACME renews)',
  },
  'GET /v1/apps': { summary: 'Every app with its routing state', answer: '`{ apps: [AppState] }`' },
  'GET /v1/apps/:app': { summary: "An app's routing state (`If-None-Match` answers 304)", answer: APP_STATE },
  'POST /v1/apps/:app/switch': { summary: 'Switch: `to` gets 100 %, the other pools 0', body: switchBody, answer: APP_STATE, ifMatch: true, errors: WRITE_ERRORS },
  'PUT /v1/apps/:app/weights': { summary: 'Set the pool weights (percentages, two decimals at most, summing to 100; pools left out get 0)', body: weightsBody, answer: APP_STATE, ifMatch: true, errors: WRITE_ERRORS },
  'POST /v1/apps/:app/rollback': { summary: 'Back to the last known-good (stable) routing, as a new revision; ?dryRun=true answers what it would write (weights, each pool\'s version then and now) and writes nothing', body: rollbackBody, answer: APP_STATE, ifMatch: true, errors: WRITE_ERRORS },
  'GET /v1/apps/:app/history': {
    summary: 'The audit history of routing changes, newest first',
    query: [
      { name: 'limit', description: 'entries to return (up to store.historyLimit)', schema: { type: 'integer', minimum: 1, maximum: 100000, default: 50 } },
      { name: 'offset', description: 'entries to skip, newest first (paging: the previous answer\'s `next`)', schema: { type: 'integer', minimum: 0, maximum: 100000, default: 0 } },
    ],
    answer: '`{ entries: [{ revision, weights, action, by, reason, at }], next }`: `next` is the offset of the next page, null after the last',
  },
  'GET /v1/apps/:app/pools/:pool/drain': {
    summary: "A pool's drain figures, summed over the fleet",
    query: [{ name: 'instances', description: '`1` adds a per-instance breakdown', schema: { type: 'string', enum: ['1', 'true', ''] } }],
    answer: '`{ pool, weight, inflight, upgraded, pinned, drainingSince, deadline, drained, reason? }`',
  },
  'GET /v1/apps/:app/whereis': {
    summary: 'Where a request is routed now, and which step decided (`by`: preview, rule:NAME, pin, weights); at least one parameter',
    query: [
      { name: 'key', description: 'the sticky key (a user id, a session cookie value, an address)', schema: { type: 'string', minLength: 1 } },
      { name: 'header', description: '`NAME:VALUE`, repeatable', schema: { type: 'string' } },
      { name: 'cookie', description: '`NAME=VALUE`, repeatable', schema: { type: 'string' } },
      { name: 'query', description: '`NAME=VALUE`, repeatable', schema: { type: 'string' } },
      { name: 'path', description: 'the request path (a query after `?` is read too)', schema: { type: 'string' } },
      { name: 'method', description: '@default GET', schema: { type: 'string' } },
    ],
    answer: '`{ key, bucket, pool, version, revision, by }`; `pool: null, random: true` when a random draw decides (no sticky key)',
    errors: [400],
  },
  'GET /v1/apps/:app/pools/:pool/preview-header': { summary: 'The signed preview header that reaches the pool whatever its weight', answer: '`{ header, value }`', errors: [409] },
  'GET /v1/apps/:app/stats': { summary: 'Live figures per pool over the last 10 s and 60 s', answer: '`{ app, at, windows: { "10s": { POOL: { requests, rps, errors, errorRate, p50, p95, p99 } }, "60s": … }, fleet, instances }`' },
  'POST /v1/apps/:app/rollouts': { summary: 'Start a progressive rollout (steps or a preset, with analysis)', body: rolloutBody, status: 201, answer: ROLLOUT, ifMatch: true, errors: WRITE_ERRORS },
  'GET /v1/apps/:app/rollouts': { summary: 'The running or last rollout, `null` when the app never had one', answer: '`{ current: Rollout | null }`' },
  'GET /v1/apps/:app/rollouts/current': { summary: 'The running or last rollout (404 when the app never had one)', answer: ROLLOUT },
  'POST /v1/apps/:app/rollouts/current/pause': rolloutCommand('Pause', 'hold the current step', pauseBody),
  'POST /v1/apps/:app/rollouts/current/resume': rolloutCommand('Resume', 'carry on from the held step', pauseBody),
  'POST /v1/apps/:app/rollouts/current/promote': rolloutCommand('Promote', '100 % to `to` now', finishBody),
  'POST /v1/apps/:app/rollouts/current/abort': rolloutCommand('Abort', 'restore the starting weights', finishBody),
  'POST /v1/apps/:app/rollouts/current/approve': rolloutCommand('Approve', 'let an approval step go on, recorded with the token name and reason (409 on a step that is not one)', approveBody),
  // live definitions (CONTRACT §8)
  'PUT /v1/apps/:app/pools/:pool': { summary: "Set a pool's version and targets; a new pool is added at weight 0 after the existing ones (no sticky user moves)", body: poolBody, answer: APP_STATE, ifMatch: true, errors: WRITE_ERRORS },
  'DELETE /v1/apps/:app/pools/:pool': { summary: 'Remove a pool: 409 `POOL_IN_USE` while it has weight or is not drained, unless `force`; an app keeps two pools', body: removeBody, answer: APP_STATE, ifMatch: true, errors: WRITE_ERRORS },
  'POST /v1/apps/:app/pools/:pool/targets': { summary: 'Add a target to a pool (one already there: 200, no new revision)', body: targetBody, answer: APP_STATE, ifMatch: true, errors: WRITE_ERRORS },
  'DELETE /v1/apps/:app/pools/:pool/targets': {
    summary: 'Remove a target: requests in flight finish on it, upgraded connections are closed at the drain timeout counted from the removal; 409 for the last target of a pool with weight unless `force=true`',
    query: [
      { name: 'url', description: 'the target to remove (required)', schema: { type: 'string' } },
      { name: 'force', description: '`true` removes the last target of a pool with weight', schema: { type: 'string', enum: ['1', 'true', ''] } },
      { name: 'reason', description: 'why, for the history', schema: { type: 'string' } },
    ],
    answer: APP_STATE,
    ifMatch: true,
    errors: WRITE_ERRORS,
  },
  'PUT /v1/apps/:app': { summary: "Create (201) or replace (200) an app's definition, shaped like one `apps[]` entry of the config; 409 `HOST_CONFLICT` when a host belongs to another app", body: appBody, status: 201, answer: `${APP_STATE} (200 when the app existed)`, ifMatch: true, errors: WRITE_ERRORS },
  'DELETE /v1/apps/:app': { summary: 'Delete an app: 409 while requests are in flight on it, unless `force`', body: removeBody, answer: '`{ app, revision, deleted: true, updatedAt, updatedBy, reason }`', ifMatch: true, errors: WRITE_ERRORS },
  'PUT /v1/apps/:app/rules': { summary: "Replace the app's cohort rules (CONTRACT §10), checked by the config's schema (a regex RE2 cannot match in linear time, or a rule naming an unknown pool, is a 400 naming the field); history action `rules`", body: rulesBody, answer: APP_STATE, ifMatch: true, errors: WRITE_ERRORS },
  'PUT /v1/apps/:app/mirror': { summary: "Set the app's mirror `{ to, share, methods, maxBody, maxInflight, compare }`, or remove it (`null`); history action `mirror`", body: mirrorBody, answer: APP_STATE, ifMatch: true, errors: WRITE_ERRORS },
  'GET /v1/config': { summary: "Every app's live definition, in the shape `switchyard apply` reads", answer: '`{ apps: [definition] }`' },
};

const ERROR_ENVELOPE = z.strictObject({
  error: z.strictObject({ code: z.enum(Object.keys(ERRORS) as [keyof typeof ERRORS, ...(keyof typeof ERRORS)[]]), message: z.string(), details: z.unknown().optional() }),
});

/** A zod schema as an OpenAPI 3.1 schema object: JSON Schema 2020-12, the `$schema` left to the document's dialect. */
function schemaOf(schema: z.ZodType): Record<string, unknown> {
  // io: 'input' — what a client sends (fields with defaults are optional); transforms cannot be
  // expressed, and what they check is said in the operation's summary instead
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { target: 'draft-2020-12', io: 'input', unrepresentable: 'any' });
  return rest;
}

const STATUS_TEXT: Readonly<Record<number, string>> = {
  304: 'not modified (`If-None-Match` names the current revision)',
  400: 'bad request: `details` name each offending field',
  401: 'missing or unknown bearer token',
  404: 'unknown app, pool or path',
  409: 'refused: a conflict with the current state (see `error.code`)',
  412: 'stale `If-Match`: `details.current` is the current state',
  413: 'body over 64 KiB',
  415: 'a write that is not application/json',
  429: 'too many failed logins from this address (`Retry-After`)',
  503: 'unavailable (the store cannot be written, or the instance is shutting down); a write answered 503 never lands',
  504: '`WRITE_OUTCOME_UNKNOWN`: the store did not answer the write and could not be read back; it may or may not have landed (read the revision and history before retrying)',
};

/** `/v1/apps/:app` → `/v1/apps/{app}` and its parameter names. */
function openApiPath(path: string): { path: string; params: string[] } {
  const params: string[] = [];
  const out = path.replace(/:([A-Za-z_]\w*)/g, (_, name: string) => (params.push(name), `{${name}}`));
  return { path: out, params };
}

function operation(route: AdminRoute, doc: OperationDoc | undefined): Record<string, unknown> {
  const { params } = openApiPath(route.path);
  const auth = Router.needsAuth(route);
  const parameters: Record<string, unknown>[] = params.map((name) => ({ name, in: 'path', required: true, schema: { type: 'string' } }));
  for (const q of doc?.query ?? []) parameters.push({ name: q.name, in: 'query', required: false, description: q.description, schema: q.schema });
  if (doc?.ifMatch === true) parameters.push({ name: 'If-Match', in: 'header', required: false, description: 'the revision this write expects, `"REVISION"` (the ETag) or `*`', schema: { type: 'string' } });
  const errors = new Set<number>(doc?.errors ?? []);
  if (auth) [401, 429].forEach((s) => errors.add(s));
  if (params.length > 0) errors.add(404);
  if (doc?.body !== undefined) [400, 413, 415].forEach((s) => errors.add(s));
  if (doc?.ifMatch === true) errors.add(412);
  if (route.method === 'GET' && route.path === '/v1/apps/:app') errors.add(304);
  const responses: Record<string, unknown> = {
    [String(doc?.status ?? 200)]: { description: doc?.answer ?? 'undescribed', content: { [doc?.contentType ?? 'application/json']: { schema: doc?.contentType === undefined ? {} : { type: 'string' } } } },
  };
  for (const status of [...errors].sort((a, b) => a - b)) {
    responses[String(status)] = status === 304 ? { description: STATUS_TEXT[status] } : { description: STATUS_TEXT[status] ?? 'error', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
  }
  const op: Record<string, unknown> = {
    operationId: `${route.method.toLowerCase()}${route.path.replace(/[^A-Za-z0-9]+(.)?/g, (_, c: string | undefined) => (c ?? '').toUpperCase())}`,
    summary: doc?.summary ?? 'undescribed: this route has no entry in src/admin/openapi.ts OPERATIONS',
    parameters,
    responses,
  };
  if (doc === undefined) op['x-switchyard-undescribed'] = true;
  if (!auth) op.security = [];
  if (doc?.body !== undefined) op.requestBody = { required: false, content: { 'application/json': { schema: schemaOf(doc.body) } } };
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
  for (const route of routes) {
    const { path } = openApiPath(route.path);
    (paths[path] ??= {})[route.method.toLowerCase()] = operation(route, OPERATIONS[`${route.method} ${route.path}`]);
  }
  return {
    openapi: '3.1.1',
    info: { title: 'Switchyard admin API', version: packageVersion(), description: 'Blue/green and canary routing state, drain figures, rollouts. Errors are `{ error: { code, message, details? } }`.' },
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    security: [{ bearer: [] }],
    paths,
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'a token of `admin.tokens`; its name is the actor in the audit history' } },
      schemas: { Error: schemaOf(ERROR_ENVELOPE) },
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
