import assert from 'node:assert/strict';
import { Validator } from '@seriousme/openapi-schema-validator';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { OPERATIONS, routeTable } from '../../src/admin/openapi.ts';
import type { AdminRoute } from '../../src/admin/router.ts';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
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
      const r = await p.admin(method.toUpperCase(), path.replace('{app}', 'shop').replace('{pool}', 'green'), { notAField: 1 });
      assert.equal(r.status, 400, `${method} ${path}: ${JSON.stringify(r.body)}`);
      assert.deepEqual(
        r.body.error.details.find((d: { path: string }) => d.path === 'notAField'),
        { path: 'notAField', message: 'unknown field' },
      );
      for (const required of schema.required ?? []) assert.ok(schema.properties[required], `${required} is described`);
    }
    const sw = doc.paths['/v1/apps/{app}/switch']?.post;
    assert.deepEqual(sw.requestBody.content['application/json'].schema.required, ['to']);
    assert.ok(sw.responses['412'] && sw.responses['409'] && sw.responses['401'], 'a switch documents its stale-revision, refusal and auth answers');
  });
});
