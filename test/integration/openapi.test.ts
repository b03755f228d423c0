import assert from 'node:assert/strict';
import { Validator } from '@seriousme/openapi-schema-validator';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { z } from 'zod';
import { codesOf, OPERATIONS, routeTable } from '../../src/admin/openapi.ts';
import type { AdminRoute } from '../../src/admin/router.ts';
import { startProxy, TOKEN, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the document is checked by the validator, then walked loosely
type Doc = { openapi: string; paths: Record<string, Record<string, any>> };

const key = (method: string, path: string) => `${method.toUpperCase()} ${path}`;
/** `/v1/apps/{app}` back to the router's `/v1/apps/:app` */
const routerPath = (p: string) => p.replace(/\{(\w+)\}/g, ':$1');

describe('the OpenAPI document of the admin API', () => {
  let blue: Upstream;
  let green: Upstream;
  let p: TestProxy;
  let doc: Doc;
  let table: readonly AdminRoute[];

  before(async () => {
    [blue, green] = await Promise.all([startUpstream('blue'), startUpstream('green')]);
    p = await startProxy({ apps: [twoPools(blue.url, green.url, { preview: { header: 'x-preview', secret: 'preview-secret-0123456789' }, sticky: { key: ['header:x-user'] } })] });
    const r = await p.admin('GET', '/v1/openapi.json');
    assert.equal(r.status, 200);
    assert.match(String(r.headers['content-type']), /^application\/json/);
    doc = r.body as Doc;
    table = routeTable(p.sy.admin) ?? assert.fail('the admin server has a route table');
  });
  after(async () => {
    await p?.close();
    await Promise.all([blue?.close(), green?.close()]);
  });

  it('is a valid OpenAPI 3.1 document by the OpenAPI Initiative schema', async () => {
    const validator = new Validator();
    const res = await validator.validate(structuredClone(doc) as unknown as Record<string, unknown>);
    assert.equal(validator.version, '3.1');
    assert.ok(res.valid, JSON.stringify(res.errors, null, 2));
  });

  it('lists every route of the router and nothing else, each with its description', () => {
    const routed = table.map((r) => key(r.method, r.path)).sort();
    const documented = Object.entries(doc.paths)
      .flatMap(([path, ops]) => Object.keys(ops).map((m) => key(m, routerPath(path))))
      .sort();
    assert.deepEqual(documented, routed);
    const undescribed = routed.filter((k) => !Object.hasOwn(OPERATIONS, k));
    assert.deepEqual(undescribed, [], 'each route needs an entry in OPERATIONS (src/admin/openapi.ts)');
    const stale = Object.keys(OPERATIONS).filter((k) => !routed.includes(k));
    assert.deepEqual(stale, [], 'each entry of OPERATIONS names a route the server has');
  });

  it('marks exactly the routes that need no token as open, and the server agrees', async () => {
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        if (method !== 'get') continue;
        const concrete = path.replace('{app}', 'shop').replace('{pool}', 'green');
        const r = await request(`${p.adminUrl}${concrete}${path.endsWith('whereis') ? '?key=u1' : ''}`);
        await r.body.dump();
        const open = Array.isArray(op.security) && op.security.length === 0;
        assert.equal(r.statusCode === 401, !open, `GET ${path} without a token: ${r.statusCode}`);
      }
    }
  });

  it('describes each request body with the schema the server validates: an undeclared field is a 400 naming it', async () => {
    const withBody = Object.entries(doc.paths).flatMap(([path, ops]) => Object.entries(ops).filter(([, op]) => op.requestBody !== undefined).map(([method, op]) => ({ path, method, op })));
    assert.ok(withBody.length >= 8, `writes with bodies: ${withBody.length}`);
    for (const { path, method, op } of withBody) {
      const schema = op.requestBody.content['application/json'].schema;
      assert.equal(schema.additionalProperties, false, `${method} ${path}: strict like the zod schema`);
      assert.equal(schema.$schema, undefined, 'the dialect is the document\'s');
      const query = path.endsWith('/targets') && method === 'delete' ? `?url=${encodeURIComponent(green.url)}` : '';
      const r = await p.admin(method.toUpperCase(), `${path.replace('{app}', 'shop').replace('{pool}', 'green')}${query}`, { notAField: 1 });
      assert.equal(r.status, 400, `${method} ${path}: ${JSON.stringify(r.body)}`);
      assert.deepEqual(
        r.body.error.details.find((d: { path: string }) => d.path === 'notAField'),
        { path: 'notAField', message: 'unknown field' },
      );
      for (const required of schema.required ?? []) assert.ok(schema.properties[required], `${required} is described`);
    }
    // a body is required where the route reads one; a DELETE without one is `{}`
    for (const { path, method, op } of withBody) assert.equal(op.requestBody.required, method !== 'delete', `${method} ${path}: requestBody.required`);
    const sw = doc.paths['/v1/apps/{app}/switch']?.post;
    assert.deepEqual(sw.requestBody.content['application/json'].schema.required, ['to']);
    assert.ok(sw.responses['412'] && sw.responses['409'] && sw.responses['401'], 'a switch documents its stale-revision, refusal and auth answers');
  });
});

describe('the answers of the admin API, checked against the OpenAPI document', () => {
  let blue: Upstream;
  let green: Upstream;
  let p: TestProxy;
  let doc: Doc;
  /** operations (`get /v1/apps/{app}`) whose success was checked, and every `op status` seen */
  const succeeded = new Set<string>();
  const seen = new Set<string>();

  before(async () => {
    [blue, green] = await Promise.all([startUpstream('blue'), startUpstream('green')]);
    p = await startProxy({ apps: [twoPools(blue.url, green.url, { preview: { header: 'x-preview', secret: 'preview-secret-0123456789' }, sticky: { key: ['header:x-user'] }, health: { interval: '1m' } })] });
    doc = (await p.admin('GET', '/v1/openapi.json')).body as Doc;
  });
  after(async () => {
    await p?.close();
    await Promise.all([blue?.close(), green?.close()]);
  });

  /** The document's path template that a concrete path matches. */
  function template(path: string): string {
    const parts = path.split('?')[0]?.split('/') ?? [];
    const hit = Object.keys(doc.paths).find((t) => {
      const ts = t.split('/');
      return ts.length === parts.length && ts.every((seg, i) => seg.startsWith('{') || seg === parts[i]);
    });
    return hit ?? assert.fail(`no path of the document matches ${path}`);
  }

  /** A schema of the document, its `$ref` to a component resolved, as zod (zod's own JSON Schema reader). */
  function schemaAt(ref: Record<string, unknown>): z.ZodType {
    const name = typeof ref.$ref === 'string' ? ref.$ref.replace('#/components/schemas/', '') : null;
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- components are JSON Schema objects
    const schema = name === null ? ref : (doc as any).components.schemas[name];
    assert.ok(schema, `component ${name} exists`);
    return z.fromJSONSchema(structuredClone(schema));
  }

  /**
   * One call: its status must be declared for the operation (405: for any operation of the path),
   * and its JSON body valid by the schema declared for that status. Returns the body.
   */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- answers are asserted on loosely once validated
  async function call(method: string, path: string, opts: { body?: unknown; headers?: Record<string, string>; token?: boolean; expect: number }): Promise<any> {
    const r = await request(`${p.adminUrl}${path}`, {
      method: method as 'GET',
      headers: { ...(opts.token === false ? {} : { authorization: `Bearer ${TOKEN}` }), ...(opts.body === undefined ? {} : { 'content-type': 'application/json' }), ...opts.headers },
      ...(opts.body === undefined ? {} : { body: JSON.stringify(opts.body) }),
    });
    const text = await r.body.text();
    assert.equal(r.statusCode, opts.expect, `${method} ${path}: ${text.slice(0, 500)}`);
    const t = template(path);
    const ops = doc.paths[t] as Record<string, { responses: Record<string, { content?: Record<string, { schema: Record<string, unknown> }> }> }>;
    const op = ops[method.toLowerCase()] ?? Object.values(ops)[0];
    assert.ok(op, `${method} ${t} is documented`);
    const declared = op.responses[String(r.statusCode)];
    assert.ok(declared, `${method} ${t} answered ${r.statusCode}, which the document does not declare (declared: ${Object.keys(op.responses).join(', ')})`);
    seen.add(`${method.toLowerCase()} ${t} ${r.statusCode}`);
    if (r.statusCode === 304) return null;
    const content = declared.content ?? assert.fail(`${method} ${t} ${r.statusCode}: no content declared`);
    if (content['text/plain'] !== undefined) {
      assert.match(String(r.headers['content-type']), /^text\/plain/);
      if (r.statusCode < 300) succeeded.add(`${method.toLowerCase()} ${t}`);
      return text;
    }
    const json = content['application/json'] ?? assert.fail(`${method} ${t} ${r.statusCode}: JSON declared`);
    const body: unknown = JSON.parse(text);
    const result = schemaAt(json.schema).safeParse(body);
    assert.ok(result.success, `${method} ${path} ${r.statusCode}: the answer does not match the document: ${JSON.stringify(result.error?.issues.slice(0, 5), null, 1)}\n${text.slice(0, 800)}`);
    if (r.statusCode < 300) succeeded.add(`${method.toLowerCase()} ${t}`);
    return body;
  }

  it('answers every operation with what the document declares, successes and errors alike, and nothing undeclared', async () => {
    const json = { headers: { 'content-type': 'application/json' } };
    await call('GET', '/healthz', { token: false, expect: 200 });
    await call('GET', '/readyz', { token: false, expect: 200 });
    await call('GET', '/metrics', { token: false, expect: 200 });
    await call('GET', '/v1/openapi.json', { expect: 200 });
    await call('GET', '/v1/certificates', { expect: 200 });
    await call('GET', '/v1/apps', { expect: 200 });
    const state = await call('GET', '/v1/apps/shop', { expect: 200 });
    await call('GET', '/v1/apps/shop', { headers: { 'if-none-match': `"${state.revision}"` }, expect: 304 });
    await call('POST', '/v1/apps/shop/switch', { body: { to: 'green', reason: 'openapi' }, expect: 200 });
    await call('PUT', '/v1/apps/shop/weights', { body: { weights: { blue: 50, green: 50 } }, expect: 200 });
    await call('POST', '/v1/apps/shop/rollback', { body: {}, expect: 200 });
    await call('GET', '/v1/apps/shop/history?limit=5', { expect: 200 });
    await call('GET', '/v1/apps/shop/history?limit=abc', { expect: 400 });
    await call('GET', '/v1/apps/shop/pools/blue/drain', { expect: 200 });
    await call('GET', '/v1/apps/shop/pools/green/drain?instances=1', { expect: 200 });
    await call('GET', '/v1/apps/shop/whereis?key=u1', { expect: 200 });
    await call('GET', '/v1/apps/shop/whereis', { expect: 400 });
    await call('GET', '/v1/apps/shop/pools/green/preview-header', { expect: 200 });
    for (let i = 0; i < 5; i++) await p.get('/', { 'x-user': `u${i}` });
    await call('GET', '/v1/apps/shop/stats', { expect: 200 });
    const withHistory = await call('GET', '/v1/apps/shop/stats?history=1', { expect: 200 });
    assert.ok(Array.isArray(withHistory.history), 'history=1 adds the history');

    // rollouts
    await call('POST', '/v1/apps/shop/switch', { body: { to: 'blue' }, expect: 200 });
    assert.equal((await call('GET', '/v1/apps/shop/rollouts', { expect: 200 })).current, null);
    await call('GET', '/v1/apps/shop/rollouts/current', { expect: 404 });
    await call('POST', '/v1/apps/shop/rollouts', { body: { to: 'green', steps: [{ weight: 10, pause: '1h' }, { weight: 100 }] }, expect: 201 });
    await call('POST', '/v1/apps/shop/rollouts', { body: { to: 'green', preset: 'all-at-once' }, expect: 409 });
    await call('GET', '/v1/apps/shop/rollouts', { expect: 200 });
    await call('GET', '/v1/apps/shop/rollouts/current', { expect: 200 });
    await call('POST', '/v1/apps/shop/rollouts/current/pause', { body: {}, expect: 200 });
    await call('POST', '/v1/apps/shop/rollouts/current/resume', { body: {}, expect: 200 });
    await call('POST', '/v1/apps/shop/rollouts/current/abort', { body: { reason: 'openapi' }, expect: 200 });
    await call('POST', '/v1/apps/shop/rollouts', { body: { to: 'green', steps: [{ weight: 10, pause: '1h' }, { weight: 100 }] }, expect: 201 });
    await call('POST', '/v1/apps/shop/rollouts/current/promote', { body: {}, expect: 200 });
    await call('POST', '/v1/apps/shop/rollouts', { body: { to: 'blue', steps: [{ weight: 10 }, { approval: true }, { weight: 100 }], analysis: null }, expect: 201 });
    const deadline = Date.now() + 15_000;
    while (!(await p.admin('GET', '/v1/apps/shop/rollouts/current')).body.gates.waitingApproval) {
      assert.ok(Date.now() < deadline, 'the rollout waits for approval');
      await new Promise((r) => setTimeout(r, 50));
    }
    await call('POST', '/v1/apps/shop/rollouts/current/approve', { body: { reason: 'openapi' }, expect: 200 });
    await call('POST', '/v1/apps/shop/rollouts/current/abort', { body: {}, expect: 200 });

    // cohort rules, mirror, whereis of a described request, and rollback of all three
    await call('POST', '/v1/apps/shop/switch', { body: { to: 'blue' }, expect: 200 });
    await call('PUT', '/v1/apps/shop/rules', { body: { rules: [{ name: 'beta', match: { header: { 'x-beta': '1' } }, to: 'green' }], reason: 'beta' }, expect: 200 });
    await call('PUT', '/v1/apps/shop/rules', { body: { rules: [{ name: 'beta', match: { header: { 'x-beta': '1' } }, to: 'nope' }] }, expect: 400 });
    await call('PUT', '/v1/apps/shop/mirror', { body: { mirror: { to: 'green', share: 10 } }, expect: 200 });
    const where = await call('GET', '/v1/apps/shop/whereis?header=x-beta:1', { expect: 200 });
    assert.equal(where.by, 'rule:beta');
    await call('GET', '/v1/apps/shop/whereis?path=/&method=POST', { expect: 200 });
    const dry = await call('POST', '/v1/apps/shop/rollback?dryRun=true', { body: {}, expect: 200 });
    assert.equal(dry.dryRun, true);
    const back = await call('POST', '/v1/apps/shop/rollback', { body: { reason: 'openapi' }, expect: 200 });
    assert.deepEqual([back.rules, back.mirror, back.rollback.dryRun], [[], null, false]);
    await call('POST', '/v1/apps/shop/rollback', { body: {}, expect: 409 });
    await call('GET', '/v1/apps/shop/history?limit=2&offset=2', { expect: 200 });

    // live definitions
    await call('PUT', '/v1/apps/shop/pools/red', { body: { version: '3.0.0', targets: [blue.url] }, expect: 200 });
    await call('POST', '/v1/apps/shop/pools/red/targets', { body: { url: green.url }, expect: 200 });
    await call('DELETE', `/v1/apps/shop/pools/red/targets?url=${encodeURIComponent(green.url)}`, { expect: 200 });
    await call('DELETE', '/v1/apps/shop/pools/red/targets', { expect: 400 });
    await call('DELETE', '/v1/apps/shop/pools/red', { body: { force: true }, expect: 200 });
    const definition = { hosts: ['api.example.com'], pools: { blue: { version: '1.0.0', targets: [blue.url] }, green: { version: '2.0.0', targets: [green.url] } } };
    await call('PUT', '/v1/apps/api', { body: { definition }, expect: 201 });
    await call('PUT', '/v1/apps/api', { body: { definition: { ...definition, initial: { green: 100 } }, reason: 'again' }, expect: 200 });
    await call('GET', '/v1/config', { expect: 200 });
    await call('DELETE', '/v1/apps/api', { body: { force: true }, expect: 200 });

    // the errors every operation of its kind can answer
    await call('GET', '/v1/apps', { token: false, expect: 401 });
    await call('GET', '/v1/apps/nope', { expect: 404 });
    await call('GET', '/v1/apps', { headers: { origin: 'http://evil.example' }, expect: 403 });
    await call('GET', '/v1/apps', { headers: { host: 'rebound.example' }, expect: 403 });
    await call('PATCH', '/v1/apps/shop', { body: {}, expect: 405 });
    await call('POST', '/v1/apps/shop/switch', { body: { to: 'green' }, headers: { 'if-match': '"1"' }, expect: 412 });
    await call('POST', '/v1/apps/shop/switch', { body: { to: 'green' }, headers: { 'if-match': 'garbage' }, expect: 400 });
    await call('POST', '/v1/apps/shop/switch', { body: { to: 'green' }, headers: { ...json.headers, 'content-type': 'text/plain' }, expect: 415 });
    await call('POST', '/v1/apps/shop/switch', { body: { to: 'green', pad: 'x'.repeat(70_000) }, expect: 413 });
    await call('POST', '/v1/apps/shop/switch', { body: { to: 'nope' }, expect: 404 });

    // every operation answered a success that matched its schema
    const operations = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m} ${path}`));
    assert.deepEqual(operations.filter((o) => !succeeded.has(o)), [], 'operations not called with success');
    for (const o of ['put /v1/apps/{app} 200', 'put /v1/apps/{app} 201', 'delete /v1/apps/{app}/pools/{pool}/targets 400', 'get /v1/apps/{app}/history 400', 'get /v1/apps 403', 'patch /v1/apps/{app} 405']) {
      assert.ok(seen.has(o) || o.startsWith('patch'), `seen ${o}`);
    }
  });

  it('declares every status with its codes: the error schema of a status admits exactly the catalogue\'s codes of that status', () => {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- components are JSON Schema objects
    const schemas = (doc as any).components.schemas as Record<string, { properties: { error: { properties: { code: { enum: string[] } } } } }>;
    for (const status of [400, 401, 403, 404, 405, 409, 412, 413, 415, 429, 500, 503, 504]) {
      const codes = schemas[`Error${status}`]?.properties.error.properties.code.enum ?? assert.fail(`Error${status} is declared`);
      assert.deepEqual([...codes].sort(), codesOf(status).sort(), `Error${status}`);
    }
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        for (const s of ['403', '405', '500']) assert.ok(op.responses[s], `${method} ${path} declares ${s}`);
        const success = Object.keys(op.responses).filter((s) => s.startsWith('2'));
        assert.ok(success.length > 0, `${method} ${path}: a success`);
        for (const s of success) assert.ok(op.responses[s].content, `${method} ${path} ${s}: typed`);
        if (op.parameters.some((x: { in: string }) => x.in === 'path')) assert.ok(op.responses['404'] && op.responses['400'], `${method} ${path}: 400 and 404 with path parameters`);
      }
    }
    assert.ok(doc.paths['/v1/apps/{app}']?.put.responses['200'] && doc.paths['/v1/apps/{app}']?.put.responses['201'], 'PUT app: 200 replaced, 201 created');
    assert.ok(doc.paths['/v1/apps/{app}/stats']?.get.parameters.some((x: { name: string }) => x.name === 'history'), 'stats?history=1');
  });
});
