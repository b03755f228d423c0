import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import openapiTS, { astToString } from 'openapi-typescript';
import ts from 'typescript';
import { startProxy, twoPools } from '../helpers/proxy.ts';

/** A script a client of the admin API would write, against the types generated from the document. */
const SCRIPT = `import type { components, paths } from './api.ts';

type AppState = components['schemas']['AppState'];
type GetApp = paths['/v1/apps/{app}']['get']['responses']['200']['content']['application/json'];
type Switch = paths['/v1/apps/{app}/switch']['post'];

export function describeApp(s: GetApp): string {
  const revision: number = s.revision;
  const active: string | null = s.active;
  const pools = Object.entries(s.pools).map(([name, p]) => \`\${name}@\${p.version}: \${p.weight} %, \${p.inflight} in flight, drained \${String(p.drained)}\`);
  return \`\${s.app} r\${revision} active \${active ?? 'split'}: \${pools.join('; ')}; \${s.instances.applied} instance(s) applied\`;
}

export const body: Switch['requestBody']['content']['application/json'] = { to: 'green', reason: 'release 2.0.0' };
export const conflict: Switch['responses']['412']['content']['application/json']['error']['code'] = 'STALE_REVISION';
export const same = (a: AppState, b: GetApp): boolean => a.revision === b.revision;

// the generated types are not \`any\`: a field AppState does not have, a wrong type and a code of another status are errors
// @ts-expect-error AppState has no field nope
export const nope = (s: AppState) => s.nope;
// @ts-expect-error revision is a number
export const wrong: string = ({} as AppState).revision;
// @ts-expect-error a 412 is STALE_REVISION, not POOL_IN_USE
export const other: Switch['responses']['412']['content']['application/json']['error']['code'] = 'POOL_IN_USE';
`;

describe('a typed client generated from the OpenAPI document', () => {
  it('type-checks a script that reads an AppState with the types openapi-typescript generates', async (t) => {
    const p = await startProxy({ apps: [twoPools('http://127.0.0.1:9', 'http://127.0.0.1:9')] });
    const dir = await mkdtemp(join(tmpdir(), 'switchyard-client-'));
    t.after(async () => {
      await p.close();
      await rm(dir, { recursive: true, force: true });
    });
    const doc = (await p.admin('GET', '/v1/openapi.json')).body as Parameters<typeof openapiTS>[0];
    const types = astToString(await openapiTS(doc));
    assert.match(types, /AppState: \{/);
    await writeFile(join(dir, 'api.ts'), types);
    await writeFile(join(dir, 'client.ts'), SCRIPT);
    const program = ts.createProgram([join(dir, 'client.ts')], {
      strict: true,
      noEmit: true,
      noUncheckedIndexedAccess: true,
      exactOptionalPropertyTypes: true,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      target: ts.ScriptTarget.ES2022,
      allowImportingTsExtensions: true,
      skipLibCheck: true,
      types: [],
    });
    const problems = ts.getPreEmitDiagnostics(program).map((d) => `${d.file?.fileName ?? ''}:${d.start ?? 0}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
    assert.deepEqual(problems, []);
  });
});
