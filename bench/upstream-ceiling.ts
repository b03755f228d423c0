import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { cpuFor, envInt, findCommand, fmt, freePort, installCleanup, pinSelf, startProcess, stopAll, waitForHttp } from './common.ts';
import { pickDriver, runLoad } from './load.ts';
import { nginxPreamble, startNginxUpstream } from './targets.ts';

/**
 * The ceiling of the upstream + load-driver core, two ways (issue 31): the nginx upstream as
 * `npm run bench` had it (the body served from a file by try_files, a file open per request) and
 * as it is now (`return 200`), hit directly by the driver, ROUNDS × DURATION s interleaved.
 */

const DURATION = envInt('DURATION', 3);
const ROUNDS = envInt('ROUNDS', 3);

installCleanup();
pinSelf(cpuFor('load'));
const nginx = findCommand('nginx');
if (nginx === undefined) {
  process.stderr.write('nginx not installed\n');
  process.exit(2);
}
const tmp = mkdtempSync(join(tmpdir(), 'switchyard-bench-ceiling-'));
try {
  const dir = mkdtempSync(join(tmp, 'file-'));
  const filePort = await freePort();
  writeFileSync(join(dir, 'body'), 'ok');
  writeFileSync(join(dir, 'upstream.conf'), `${nginxPreamble(dir, 'upstream', 8192)}
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  server {
    listen 127.0.0.1:${filePort} backlog=4096;
    default_type text/plain;
    etag off;
    location / { root ${dir}; try_files /body =404; add_header x-upstream upstream; }
  }
}
`);
  chmodSync(dir, 0o755);
  chmodSync(dirname(dir), 0o711);
  chmodSync(join(dir, 'body'), 0o644);
  startProcess('upstream-file', nginx, ['-e', join(dir, 'upstream-error.log'), '-p', dir, '-c', join(dir, 'upstream.conf')], { cpu: cpuFor('upstream') });
  await waitForHttp(`http://127.0.0.1:${filePort}/`);
  const ret = await startNginxUpstream(0, mkdtempSync(join(tmp, 'return-')), cpuFor('upstream'));
  const driver = pickDriver();
  const seen: Record<string, string[]> = { 'file (try_files)': [], 'return 200': [] };
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, port] of [['file (try_files)', filePort], ['return 200', ret.port]] as const) {
      const x = await runLoad({ url: `http://127.0.0.1:${port}/`, connections: envInt('CONNECTIONS', 50), durationSec: DURATION, driver, cpu: cpuFor('load') });
      seen[name]!.push(fmt(x.rps));
    }
  }
  for (const [name, xs] of Object.entries(seen)) process.stdout.write(`${name.padEnd(17)} ${xs.join(' / ')} rps\n`);
} finally {
  await stopAll();
  rmSync(tmp, { recursive: true, force: true });
}
