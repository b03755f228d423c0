import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { COMMANDS } from '../../src/cli/commands.ts';
import { EXIT } from '../../src/cli/exit-codes.ts';
import { HELP_WIDTH } from '../../src/cli/main.ts';
import { runCliCaptured } from '../helpers/cli.ts';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

describe('the CLI contract pipelines rely on', () => {
  it('--version and `version` print the package version and exit 0', async () => {
    for (const argv of [['--version'], ['-V'], ['version']]) {
      const r = await runCliCaptured(argv, {});
      assert.equal(r.code, 0);
      assert.match(r.stdout, new RegExp(`^switchyard ${pkg.version.replaceAll('.', '\\.')} `));
    }
  });

  it('--help, -h and `help COMMAND` answer for every command, serve included, within 80 columns', async () => {
    const outputs = [await runCliCaptured(['--help'], {}), await runCliCaptured(['-h'], {})];
    for (const name of Object.keys(COMMANDS)) {
      outputs.push(await runCliCaptured([name, '--help'], {}), await runCliCaptured([name, '-h'], {}), await runCliCaptured(['help', name], {}));
    }
    for (const r of outputs) {
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^usage: switchyard /);
      for (const line of r.stdout.split('\n')) assert.ok(line.length <= HELP_WIDTH, `longer than ${HELP_WIDTH} columns: ${line}`);
    }
    assert.match((await runCliCaptured(['serve', '--help'], {})).stdout, /serve \[--config FILE\] \[--apply-config\]/);
  });

  it('a bad flag or command prints the usage and exits 2, never a stack trace', async () => {
    for (const argv of [['serve', '--bogus'], ['status', '--bogus'], ['-x'], ['frobnicate'], ['switch']]) {
      const r = await runCliCaptured(argv, {});
      assert.equal(r.code, EXIT.usage, `${argv.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /usage: switchyard/);
      assert.doesNotMatch(r.stderr, /\n\s+at |ERR_PARSE_ARGS/);
    }
  });

  it('distinct exit codes: 1 the API refused, 4 the admin API unreachable; with --json the error is JSON on stderr with its code', async (t) => {
    const api = createServer((_req, res) => {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'UNKNOWN_APP', message: 'unknown app "nope"' } }));
    });
    api.listen(0, '127.0.0.1');
    await once(api, 'listening');
    t.after(() => api.close());
    const url = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;
    const refused = await runCliCaptured(['status', 'nope', '--json', '--admin-url', url], {});
    assert.equal(refused.code, EXIT.refused);
    assert.deepEqual(JSON.parse(refused.stderr.split('\n')[0] as string), { error: { code: 'UNKNOWN_APP', message: 'unknown app "nope"', exit: 1, status: 404 } });
    const down = await runCliCaptured(['status', '--json', '--admin-url', 'http://127.0.0.1:1'], {});
    assert.equal(down.code, EXIT.unreachable);
    assert.equal((JSON.parse(down.stderr) as { error: { code: string } }).error.code, 'UNREACHABLE');
    const usage = await runCliCaptured(['switch', '--json'], {});
    assert.equal(usage.code, EXIT.usage);
    assert.equal((JSON.parse(usage.stderr) as { error: { code: string; exit: number } }).error.code, 'USAGE');
    assert.deepEqual([...new Set(Object.values(EXIT))].sort(), [0, 1, 2, 3, 4, 5], 'one code per outcome (drain --wait keeps docs/cli.md §2\'s 1)');
    // a command that runs on this machine rather than against the admin API answers the same way
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-cli-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const config = join(dir, 'switchyard.yaml');
    writeFileSync(config, `listen: { host: 127.0.0.1, port: ${url.split(':').at(-1)} }\n`);
    const none = await runCliCaptured(['upgrade', '--config', config, '--json'], {});
    assert.equal(none.code, EXIT.refused);
    assert.equal((JSON.parse(none.stderr) as { error: { code: string; exit: number } }).error.code, 'NOT_RUNNING', 'no Switchyard holds that port (a plain HTTP server does)');
  });

  it('the image has no config of its own: serve without one exits 2 at once, saying where to mount it', async () => {
    const dockerfile = readFileSync(new URL('../../Dockerfile', import.meta.url), 'utf8');
    const runtime = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    assert.doesNotMatch(runtime, /^COPY\b.*\bconfig\b/m, 'the runtime stage copies no config');
    assert.match(runtime, /^ENTRYPOINT \["switchyard"\]$/m);
    assert.match(runtime, /ln -s \/app\/bin\/switchyard\.js \/usr\/local\/bin\/switchyard/, 'switchyard on PATH');
    const path = /SWITCHYARD_CONFIG=(\S+)/.exec(runtime)?.[1] as string;
    // what the image's entrypoint runs: `switchyard serve` with $SWITCHYARD_CONFIG and nothing there
    const bin = new URL('../../bin/switchyard.js', import.meta.url).pathname;
    const started = Date.now();
    const r = await promisify(execFile)(process.execPath, [bin, 'serve'], { env: { ...process.env, SWITCHYARD_CONFIG: `/nonexistent${path}` }, timeout: 30_000 }).then(
      () => assert.fail('serve started without a config'),
      (err: { code: number; stderr: string }) => err,
    );
    assert.equal(r.code, EXIT.usage);
    assert.match(r.stderr, new RegExp(`^switchyard: no config file at /nonexistent${path.replaceAll('.', '\\.')} \\(\\$SWITCHYARD_CONFIG\\); nothing started\\.\n`));
    assert.match(r.stderr, /docker run -v "\$PWD\/switchyard\.yaml:\/nonexistent\/etc\/switchyard\/switchyard\.yaml:ro"/);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
    assert.ok(Date.now() - started < 15_000, 'at once, not after a retry');
  });
});
