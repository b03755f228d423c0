import { after } from 'node:test';

/**
 * Loaded into every test file's process by `npm test` (`--import`). The suite runs without
 * `--test-force-exit`, so a file whose tests leave something open (a server, a socket, a child
 * process, a timer: often on a failure path, where a test's teardown was registered too late)
 * would keep its process, and with it the whole run, waiting forever. Once the file's tests and
 * hooks are done, this gives it 30 s to end on its own, then fails it, naming what is still open,
 * so a leak is a red test with its cause, never a hang (and never hidden, as a forced exit would).
 */
const LIMIT_MS = 30_000;

// only in a test file's own process: not in the processes its tests start with the same options
if (/\.test\.[cm]?[jt]s$/.test(process.argv[1] ?? '')) {
  after(() => {
    const timer = setTimeout(() => {
      process.stderr.write(`${process.argv[1]}: still running ${LIMIT_MS / 1000} s after its last test, held open by: ${process.getActiveResourcesInfo().join(', ')}\n`);
      process.exit(1);
    }, LIMIT_MS);
    // never what keeps the process alive: it fires only if something else does
    timer.unref();
  });
}
