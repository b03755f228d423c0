import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { demoLines } from '../../scripts/demo-lines.ts';

const run = promisify(execFile);
const ROOT = new URL('../../', import.meta.url).pathname;
/** npm, npx and the package's bin on this test's Node (24), as the project's scripts pin it */
const PATH = `${dirname(process.execPath)}${delimiter}${process.env['PATH'] ?? ''}`;

async function freePort(): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as AddressInfo;
  s.close();
  await once(s, 'close');
  return port;
}

/** The commands of a printed block: comments and blank lines left out, `\` continuations joined. */
function commands(lines: readonly string[]): string[] {
  const out: string[] = [];
  let pending = '';
  for (const raw of lines) {
    const line = raw.trim();
    if (pending === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    out.push(pending + line);
    pending = '';
  }
  return out;
}

/** The README's Quick start block: the ```sh lines after "prints the lines below". */
async function quickStart(): Promise<string[]> {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
  const at = readme.indexOf('and prints the lines below:');
  assert.ok(at > 0, 'the Quick start says what the demo prints');
  const block = /```sh\n([\s\S]*?)```/.exec(readme.slice(at));
  assert.ok(block, 'a sh block follows');
  return (block[1] as string).trimEnd().split('\n');
}

/** Ends the demo's process group (npm and the node it started), if it still runs. */
function stop(proc: ChildProcess): void {
  if (proc.exitCode === null && proc.signalCode === null && proc.pid !== undefined) process.kill(-proc.pid, 'SIGTERM');
}

/** Starts `npm run demo` and resolves with its printed lines once it has printed them. */
async function startDemo(env: NodeJS.ProcessEnv): Promise<{ proc: ChildProcess; printed: string[] }> {
  // its own process group, so the test stops npm and the node it runs, and nothing else
  const proc = spawn('npm', ['run', '--silent', 'demo'], { cwd: ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stderr?.on('data', (c: Buffer) => (err += c.toString()));
  const printed = await new Promise<string[]>((resolve, reject) => {
    const timer = setTimeout(() => {
      stop(proc);
      reject(new Error(`the demo printed nothing in time:\n${out}\n${err}`));
    }, 60_000);
    proc.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      const start = out.indexOf('In another terminal:\n\n');
      // the last line printed ends with the switch over HTTP
      const end = start < 0 ? -1 : out.indexOf('/v1/apps/shop/switch\n', start);
      if (start < 0 || end < 0) return;
      clearTimeout(timer);
      resolve(out.slice(start + 'In another terminal:\n\n'.length, end + '/v1/apps/shop/switch'.length).split('\n'));
    });
    proc.once('exit', (code) => reject(new Error(`the demo exited with ${code}:\n${out}\n${err}`)));
  });
  return { proc, printed };
}

describe('the first run works as printed', { timeout: 400_000 }, () => {
  it('every command npm run demo prints, which the README Quick start shows, succeeds in order', { timeout: 400_000 }, async (t) => {
    const [proxy, admin, blue, green] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const dir = await mkdtemp(join(tmpdir(), 'switchyard-demo-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const env: NodeJS.ProcessEnv = { ...process.env, PATH, NO_COLOR: '1', SWITCHYARD_DEMO_PORTS: `${proxy},${admin},${blue},${green}`, SWITCHYARD_STATE: join(dir, 'state.json') };
    delete env['SWITCHYARD_TOKEN'];
    delete env['SWITCHYARD_ADMIN_URL'];
    const { proc, printed } = await startDemo(env);
    t.after(async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = once(proc, 'exit');
      stop(proc);
      await exited;
    });

    // the README shows exactly what the demo prints, on the default ports
    const P = `http://127.0.0.1:${proxy}`;
    const A = `http://127.0.0.1:${admin}`;
    const token = 'demo-token-change-me';
    assert.deepEqual(printed.map((l) => l.replace(/^ {2}/, '')), demoLines(P, A, token));
    assert.deepEqual(await quickStart(), demoLines('http://127.0.0.1:8080', 'http://127.0.0.1:8081', token));

    const [exportLine, ...rest] = commands(demoLines(P, A, token));
    assert.match(exportLine as string, /^export SWITCHYARD_ADMIN_URL=/);
    const outputs: string[] = [];
    for (const cmd of rest) {
      const started = Date.now();
      const r = await run('bash', ['-o', 'pipefail', '-c', `${exportLine}\n${cmd}`], { cwd: ROOT, env, timeout: 120_000 }).catch((err: { code?: number; stdout?: string; stderr?: string }) => {
        assert.fail(`\`${cmd}\` failed (exit ${err.code}):\n${err.stdout ?? ''}\n${err.stderr ?? ''}`);
      });
      outputs.push(r.stdout);
      t.diagnostic(`${Date.now() - started} ms  ${cmd}`);
    }
    const out = (needle: string): string => outputs[rest.findIndex((c) => c.includes(needle))] ?? '';
    assert.match(outputs[0] as string, /hello from blue 1\.0\.0/);
    assert.match(out('preview-header'), /hello from green 2\.0\.0/);
    assert.match(out('--wait'), /blue is drained/);
    assert.match(out('--dry-run'), /rollback would restore revision \d+/);
    assert.match(out('trying it'), /restored the routing of revision \d+[\s\S]*blue 100%/);
    assert.match(out('history'), /rollback: blue 100 %, green 0 %/);
    assert.match(outputs.at(-1) as string, /"active":"green"/);
  });
});
