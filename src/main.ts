import { spawn } from 'node:child_process';
import { existsSync, writeSync } from 'node:fs';
import cluster from 'node:cluster';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { build } from './app.ts';
import { isOurs, type ToWorker, type WorkerChannel } from './cluster/ipc.ts';
import { startPrimary, workerCount } from './cluster/primary.ts';
import { startWorker } from './cluster/worker.ts';
import { loadConfig } from './config/load.ts';
import { ConfigError } from './errors.ts';
import { createLogger, LogSink } from './logger.ts';
import { releaseStartupMemory } from './memory.ts';
import { removePidFileIfOurs, writePidFile } from './pid-file.ts';
import { setClaimStatus } from './dataplane/port-claim.ts';
import type { InheritedListener, ListenHandle } from './upgrade/handles.ts';
import { handOver } from './upgrade/hand-over.ts';
import { UPGRADE_ENV } from './upgrade/protocol.ts';
import { reload, type Reloadable } from './reload.ts';
import { announceReady, receiveListeners, type SuccessorChannel } from './upgrade/successor.ts';
import { relaunchTuned } from './tuned-runtime.ts';

/**
 * Process wiring, the only module that touches `process`: config from `--config` or
 * $SWITCHYARD_CONFIG, signals, exit codes (0 clean stop, 1 runtime failure, 2 bad config).
 */
export async function serve(args: string[]): Promise<void> {
  // `switchyard serve` (bin, npx) and a bare `node dist/main.js`: the same runtime as the image
  // a bad call fails here, before the relaunch below (the CLI prints it with the usage line, exit 2)
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' }, 'apply-config': { type: 'boolean' }, 'pid-file': { type: 'string' } }, allowPositionals: false });
  if (relaunchTunedMain(['serve', ...args])) return;
  const file = values.config ?? process.env['SWITCHYARD_CONFIG'] ?? 'config/switchyard.yaml';
  let config;
  try {
    config = await loadConfig(file, process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(existsSync(file) ? `switchyard: ${file}: ${err.message}\n` : noConfigMessage(file, values.config !== undefined));
      process.exit(2);
    }
    throw err;
  }
  const sink = logSink();
  const logger = createLogger(config.log.level, sink === undefined, sink);
  const exit = exitAfterLog(sink);
  // a reload or an upgrade asked for while still starting is refused, never the default (a stop)
  const early = (signal: string) => (): void => logger.warn({ signal }, `${signal} ignored: still starting`);
  const earlyHup = early('SIGHUP');
  const earlyUsr2 = early('SIGUSR2');
  process.on('SIGHUP', earlyHup);
  process.on('SIGUSR2', earlyUsr2);
  // `--apply-config`: the file's app definitions win over the store's at start (docs/definitions.md §3)
  const logDeps = { ...(sink === undefined ? {} : { logSink: sink }), applyConfig: values['apply-config'] === true };
  // `--pid-file`: written once serving, re-written by a hand-over before the old process exits, removed at exit if still ours
  const pidFile = values['pid-file'] === undefined ? null : resolve(values['pid-file']);
  if (pidFile !== null) process.on('exit', () => removePidFileIfOurs(pidFile, process.pid));
  // started by a running Switchyard's upgrade (SIGUSR2): its listening sockets, instead of binding
  const predecessor = successorChannel();
  let app: ServingApp;
  try {
    const inherited: readonly InheritedListener[] = predecessor === null ? [] : await receiveListeners(predecessor.channel);
    // `workers: N > 1`: this process becomes the primary (src/cluster) and forks N data planes running this file
    const workers = workerCount(config.workers);
    app = workers > 1 ? await startPrimary(config, { logger, ...logDeps, workers, exec: import.meta.filename, inherited }) : await build(config, { logger, ...logDeps, inherited });
    await app.listen();
    // an ordinary start: the file names this process once it serves (a hand-over's new process: the old one wrote it already)
    if (pidFile !== null && predecessor === null) writePidFile(pidFile, process.pid);
    if (predecessor !== null) {
      await announceReady(predecessor.channel, process.pid);
      // the old one wrote this pid before it drains; again here, in case it went away first. Serving
      // already (the old one stopped accepting): a failed write is logged, never a reason to exit
      if (pidFile !== null) {
        try {
          writePidFile(pidFile, process.pid);
        } catch (err) {
          logger.error({ err, pidFile }, 'upgrade: could not write this pid to the pid file');
        }
      }
      logger.info({ from: predecessor.pid }, 'upgrade: this process took over the listening sockets; the old one drains');
      // serving already: a claim not taken only weakens the guard against a second Switchyard on the port
      await takeClaim(app).catch((err: unknown) => logger.warn({ err }, 'upgrade: could not take the proxy port\'s claim; a second Switchyard started on this port would not be refused'));
    }
    releaseStartupMemory();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`switchyard: ${err.message}\n`);
      process.exit(2);
    }
    logger.fatal({ err }, 'switchyard failed to start');
    return exit(1);
  }
  process.off('SIGHUP', earlyHup);
  process.off('SIGUSR2', earlyUsr2);
  let stopping = false;
  let upgrading: AbortController | null = null;
  const stop = (signal: string, opts: { handedOver?: boolean } = {}): void => {
    if (stopping) return;
    stopping = true;
    upgrading?.abort();
    logger.info({ signal }, 'signal received');
    app.shutdown(opts).then(
      () => exit(0),
      (err: unknown) => {
        logger.fatal({ err }, 'shutdown failed');
        return exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // SIGHUP: reload what can change while running, never stop (docs/signals.md §2)
  let running = config;
  let reloading = Promise.resolve();
  process.on('SIGHUP', () => {
    reloading = reloading.then(async () => {
      if (stopping) return;
      let next;
      try {
        next = await loadConfig(file, process.env);
      } catch (err) {
        return void logger.error({ signal: 'SIGHUP', file, err: err instanceof Error ? err.message : String(err) }, 'SIGHUP: the config file cannot be used; nothing changed');
      }
      const report = await reload(app, running, next, { applyConfig: logDeps.applyConfig, logger, now: Date.now });
      running = { ...running, apps: next.apps, log: { ...running.log, level: next.log.level } };
      logger.info({ signal: 'SIGHUP', ...report }, `SIGHUP: ${report.done.length === 0 ? 'nothing to reload' : report.done.join('; ')}`);
      for (const [app, why] of Object.entries(report.failed)) logger.error({ signal: 'SIGHUP', app }, `SIGHUP: apps.${app} not applied: ${why}`);
      if (report.needsRestart.length > 0) logger.warn({ signal: 'SIGHUP', needsRestart: report.needsRestart }, `SIGHUP: ${report.needsRestart.join(', ')} changed in the file and take effect only after a restart or \`switchyard upgrade\``);
    }).catch((err: unknown) => logger.error({ err }, 'SIGHUP: reload failed; this process keeps serving as it was'));
  });
  // SIGUSR2 (`switchyard upgrade`): the program as installed now takes over the listening sockets (docs/signals.md §3)
  process.on('SIGUSR2', () => {
    if (stopping || upgrading !== null) return void logger.warn({ signal: 'SIGUSR2' }, stopping ? 'upgrade ignored: this process is stopping' : 'upgrade ignored: one is already under way');
    if (process.pid === 1) return void logger.error({ signal: 'SIGUSR2' }, 'upgrade refused: this process is pid 1 (a container\'s init) and the container would end with it; replace the container instead');
    const controller = (upgrading = new AbortController());
    setClaimStatus('upgrading');
    handOver({
      logger,
      listeners: () => app.listeningSockets(),
      spawn: () => spawn(process.execPath, [...process.execArgv, process.argv[1] ?? import.meta.filename, ...process.argv.slice(2)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, [UPGRADE_ENV]: String(process.pid) } }),
      readyTimeoutMs: config.shutdown.upgradeTimeout,
      stopAccepting: () => app.stopAccepting(),
      signal: controller.signal,
    }).then(
      (outcome) => {
        upgrading = null;
        if (outcome.ok) {
          // before this process can exit: a supervisor that re-reads the file when its main process
          // exits (systemd's PIDFile=) follows the new one instead of ending the service
          if (pidFile !== null) {
            try {
              writePidFile(pidFile, outcome.pid);
            } catch (err) {
              logger.error({ err, pidFile }, 'upgrade: could not write the new pid to the pid file; a supervisor following it would stop the new process when this one exits');
            }
          }
          setClaimStatus('handed-over');
          logger.info({ newPid: outcome.pid }, 'upgrade: the new process is ready and accepts on the sockets; this one stopped accepting and drains');
          return stop('SIGUSR2', { handedOver: true });
        }
        setClaimStatus('upgrade-failed');
        logger.error({ reason: outcome.reason }, `upgrade failed: ${outcome.reason}; this process keeps serving`);
      },
      (err: unknown) => {
        upgrading = null;
        setClaimStatus('upgrade-failed');
        logger.error({ err }, 'upgrade failed; this process keeps serving');
      },
    );
  });
}

/**
 * A start with no config file says so and how to give one, rather than run a built-in one: the
 * image has none (a demo config would listen on loopback, route to nothing and report healthy).
 */
function noConfigMessage(file: string, given: boolean): string {
  const from = given ? '--config' : process.env['SWITCHYARD_CONFIG'] === undefined ? 'the default path' : '$SWITCHYARD_CONFIG';
  return [
    `switchyard: no config file at ${file} (${from}); nothing started.`,
    '  Give one with --config FILE or $SWITCHYARD_CONFIG (config/switchyard.yaml of the package is an example).',
    `  In the image, mount yours there: docker run -v "$PWD/switchyard.yaml:${file}:ro" -p 8080:8080 IMAGE`,
    '',
  ].join('\n');
}

/** The old process released the claim as it stopped accepting; a few tries cover a slow close. */
async function takeClaim(app: ServingApp): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await app.takeClaim();
    } catch (err) {
      if (attempt >= 20) throw err;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** parseArgs' errors for a bad call (an unknown option, a missing value, a stray argument). */
function isUsageError(err: unknown): boolean {
  return typeof (err as { code?: unknown }).code === 'string' && (err as { code: string }).code.startsWith('ERR_PARSE_ARGS_');
}

/** What serve() runs: one process (`build`) or the primary of `workers: N` (`startPrimary`). */
interface ServingApp extends Reloadable {
  listen(): Promise<unknown>;
  shutdown(opts?: { handedOver?: boolean }): Promise<unknown>;
  listeningSockets(): Promise<InheritedListener[]>;
  stopAccepting(): Promise<void>;
  takeClaim(): Promise<void>;
}

/** The channel to the Switchyard that started this one for an upgrade, or null for an ordinary start. */
function successorChannel(): { pid: string; channel: SuccessorChannel } | null {
  const from = process.env[UPGRADE_ENV];
  if (from === undefined || typeof process.send !== 'function') return null;
  // this process's own upgrades start their successors with their own pid
  delete process.env[UPGRADE_ENV];
  const channel: SuccessorChannel = {
    send: (msg) => process.send?.(msg),
    onMessage: (fn) => process.on('message', fn),
    onDisconnect: (fn) => process.once('disconnect', fn),
    disconnect: () => process.connected && process.disconnect(),
  };
  return { pid: from, channel };
}

export { TUNED_NODE_FLAGS } from './tuned-runtime.ts';

/**
 * `node dist/main.js serve` (or src/main.ts) started without the tuned runtime: this process is
 * replaced by one that has it (./tuned-runtime.ts; `switchyard serve` through the bin has been
 * re-executed before it loaded this module). Only a process that is Switchyard (this file or the
 * bin) is replaced, never one embedding serve().
 */
function relaunchTunedMain(args: readonly string[]): boolean {
  if (!/(?:main\.[jt]s|switchyard(?:\.js)?)$/.test(process.argv[1] ?? '')) return false;
  return relaunchTuned(import.meta.filename, args);
}

/** How long an exit waits for queued log lines to reach stdout: a stuck reader never holds the exit longer. */
const LOG_SETTLE_MS = 1000;

/**
 * The JSON log's stdout destination; whatever is still queued when the process exits gets one
 * synchronous try. None on a terminal: the human-readable lines go through pino-pretty's own
 * transport, whose writes the sink cannot count (so no figure is shown rather than a false 0).
 */
function logSink(): LogSink | undefined {
  if (process.stdout.isTTY === true) return undefined;
  const sink = new LogSink(1);
  process.on('exit', () => {
    sink.writeRemainingSync();
    const lost = sink.lostSummary();
    try {
      if (lost !== null) writeSync(2, lost);
    } catch {
      // stderr is gone too: nothing left to tell
    }
  });
  return sink;
}

/** Exits once the queued log lines are written, or after LOG_SETTLE_MS if stdout does not take them. */
function exitAfterLog(sink: LogSink | undefined): (code: number) => Promise<never> {
  return (code) => (sink?.settle(LOG_SETTLE_MS) ?? Promise.resolve()).then(() => process.exit(code));
}

/** A node:cluster worker of `workers: N`: config and routing state come from the primary over IPC. */
function serveWorker(): void {
  let last: Promise<unknown> = Promise.resolve();
  const channel: WorkerChannel = {
    send(msg, handle) {
      if (process.connected) last = new Promise((resolve) => process.send?.(msg, handle as never, undefined, resolve));
    },
    onMessage: (fn) => process.on('message', (msg: unknown, handle: unknown) => isOurs<ToWorker>(msg) && fn(msg, (handle ?? undefined) as ListenHandle | undefined)),
    onDisconnect: (fn) => process.on('disconnect', fn),
  };
  const sink = logSink();
  const worker = startWorker({ channel, ...(sink === undefined ? {} : { logSink: sink }), logger: (config) => createLogger(config.log.level, sink === undefined, sink) });
  // a signal can reach a worker itself (Ctrl-C, systemd's control-group kill): drain, as the primary asks
  process.on('SIGTERM', () => void worker.shutdown());
  process.on('SIGINT', () => void worker.shutdown());
  // reloads and upgrades are the primary's to run (a terminal's hang-up reaches the whole group): never a stop here
  process.on('SIGHUP', () => undefined);
  process.on('SIGUSR2', () => undefined);
  // exit once the last message (`stopped`, `fatal`) is out, or after a second if the channel is gone
  const exit = (code: number) => () => Promise.race([last, new Promise((r) => setTimeout(r, 1000).unref())]).then(() => exitAfterLog(sink)(code));
  worker.stopped.then(exit(0), exit(1));
}

if (import.meta.main && cluster.isWorker) serveWorker();
else if (import.meta.main) {
  // `node dist/main.js [serve] …` (the relaunch above, an image's entrypoint): serve here, every other
  // command, help and a bad call through the CLI (which imports this module for serve: not from here)
  const args = process.argv.slice(2);
  const serveArgs = args[0] === 'serve' ? args.slice(1) : args.length === 0 || args[0]?.startsWith('-') === true ? args : null;
  const help = serveArgs !== null && (serveArgs.includes('--help') || serveArgs.includes('-h'));
  if (serveArgs === null || help) {
    void import('./cli/main.ts')
      .then(({ runCli }) => runCli(help ? ['serve', '--help'] : args, { stdout: process.stdout, stderr: process.stderr, env: process.env }))
      .then((code) => {
        if (code !== 0) process.exitCode = code;
      });
  } else {
    serve(serveArgs).catch((err: unknown) => {
      if (isUsageError(err)) {
        process.stderr.write(`error: ${(err as Error).message}\nusage: switchyard serve [--config FILE] [--apply-config] [--pid-file FILE]\n`);
        process.exit(2);
      }
      process.stderr.write(`switchyard: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    });
  }
}
