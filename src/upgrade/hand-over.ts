import type { ChildProcess } from 'node:child_process';
import type { Logger } from 'pino';
import { closeHandle, type InheritedListener } from './handles.ts';
import { isUpgradeMessage, type ToPredecessor, type ToSuccessor } from './protocol.ts';

export interface HandOverOptions {
  readonly logger: Logger;
  /** the sockets to pass on (a `carried` one is closed here once sent) */
  readonly listeners: () => Promise<InheritedListener[]>;
  /** starts the program as installed now with an IPC channel (main.ts: the only place that touches `process`) */
  readonly spawn: () => ChildProcess;
  /** how long the new process may take to say it is ready (`shutdown.upgradeTimeout`) */
  readonly readyTimeoutMs: number;
  /** the new process is ready: stop accepting (resolve once the listeners are closed); the caller drains afterwards */
  readonly stopAccepting: () => Promise<void>;
  /** aborts a hand-over still waiting for the new process (this one got SIGTERM): the new one is stopped */
  readonly signal?: AbortSignal;
  /** after a SIGTERM to a new process that was not ready, how long before SIGKILL @default 10000 */
  readonly killAfterMs?: number;
}

export type HandOverOutcome = { readonly ok: true; readonly pid: number } | { readonly ok: false; readonly reason: string };

/**
 * The running process's side of an upgrade (SIGUSR2): starts the new program, hands it the
 * listening sockets once it asks, and, when it reports ready, stops accepting so the new one alone
 * takes new connections (the sockets stay open in the new process, so no queued connection is
 * reset and no connect is refused). A new process that exits or is not ready in time is stopped
 * and this one keeps serving; the outcome says why.
 */
export async function handOver(opts: HandOverOptions): Promise<HandOverOutcome> {
  const { logger } = opts;
  const listeners = await opts.listeners();
  const child = opts.spawn();
  const pid = child.pid ?? 0;
  logger.info({ newPid: pid, sockets: listeners.length, timeoutMs: opts.readyTimeoutMs }, 'upgrade: started the program as installed now; handing it the listening sockets');
  const done = Promise.withResolvers<HandOverOutcome>();
  let copiesClosed = false;
  const closeCopies = (): void => {
    if (copiesClosed) return;
    copiesClosed = true;
    for (const l of listeners) if (l.carried === true) closeHandle(l.handle);
  };
  let settled = false;
  const fail = (reason: string): void => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      setTimeout(() => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'), opts.killAfterMs ?? 10_000).unref();
    }
    if (child.connected) child.disconnect();
    done.resolve({ ok: false, reason });
  };
  const timer = setTimeout(() => fail(`the new process (pid ${pid}) was not ready within ${opts.readyTimeoutMs} ms: stopped it`), opts.readyTimeoutMs);
  const send = (msg: ToSuccessor, handle?: object): Promise<void> =>
    new Promise((resolve, reject) => {
      child.send(msg, handle as never, {}, (err) => (err === null ? resolve() : reject(err)));
    });
  opts.signal?.addEventListener('abort', () => fail('this process is stopping: stopped the new one'), { once: true });
  child.on('error', (err) => fail(`could not start the new process: ${err.message}`));
  child.once('exit', (code, signal) => fail(`the new process (pid ${pid}) exited before it was ready (code ${code}, signal ${signal}); see its log lines above`));
  child.on('message', (msg: unknown) => {
    if (!isUpgradeMessage<ToPredecessor>(msg) || settled) return;
    if (msg.type === 'sy:up-want') {
      void (async () => {
        for (const l of listeners) await send({ type: 'sy:up-listener', role: l.role, group: l.group, host: l.host, port: l.port }, l.handle);
        await send({ type: 'sy:up-listeners-done', count: listeners.length });
        // the new process holds them now: a copy this process only carried must not stay open here
        closeCopies();
      })().catch((err: unknown) => fail(`could not pass the sockets: ${(err as Error).message}`));
      return;
    }
    // ready: it accepts on the sockets; from here on this process stops accepting and drains
    settled = true;
    clearTimeout(timer);
    void opts.stopAccepting().then(
      () => {
        if (child.connected) child.send({ type: 'sy:up-released' } satisfies ToSuccessor, () => child.connected && child.disconnect());
        child.unref();
        done.resolve({ ok: true, pid: msg.pid });
      },
      (err: unknown) => done.resolve({ ok: false, reason: `could not stop accepting: ${(err as Error).message}` }),
    );
  });
  const outcome = await done.promise;
  closeCopies();
  return outcome;
}
