import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import { isOurs, type ListenMode, type ToPrimary, type ToWorker } from './ipc.ts';
import { closeHandle, type InheritedListener, type ListenHandle } from '../upgrade/handles.ts';
import { ProcessError } from '../errors.ts';

/** How long a worker has to pass its listening sockets for an upgrade. */
const COLLECT_MS = 5_000;

export interface SupervisorOptions {
  readonly workers: number;
  /** the script a worker runs (main.ts, which hands a cluster worker to `startWorker`) */
  readonly exec: string;
  readonly args?: readonly string[];
  readonly logger: Logger;
  /** the `init` for a worker that said hello: states and health as they are at that moment */
  readonly init: (slot: number) => ToWorker;
  /** every message of ours from a worker, `sy:hello` aside */
  readonly onMessage: (slot: number, msg: ToPrimary) => void;
  /** the worker of a slot stopped being live (it exited, or is being replaced) */
  readonly onGone: (slot: number) => void;
  /** sockets handed over by a previous Switchyard for a slot's worker (src/upgrade), sent before its init */
  readonly inherited?: (slot: number) => readonly InheritedListener[];
  /** ms from fork to listening before a worker is killed @default 30000 */
  readonly startTimeout?: number;
  /** first restart delay, doubled on every crash in a row @default 100 */
  readonly backoffMs?: number;
  /** @default 5000 */
  readonly maxBackoffMs?: number;
}

/** A worker that ran this long before dying starts its slot's backoff afresh. */
const STABLE_MS = 10_000;

/** One of the N places a worker runs in; a crashed worker's replacement takes its slot. */
interface Slot {
  readonly index: number;
  worker: Worker | null;
  /** answered its hello: it gets every state broadcast from now on */
  initialized: boolean;
  ready: boolean;
  readyAt: number;
  listen: ListenMode | null;
  restarts: number;
  /** crashes in a row, for the backoff */
  crashes: number;
  restartTimer: NodeJS.Timeout | null;
  startTimer: NodeJS.Timeout | null;
}

export interface SlotView {
  slot: number;
  pid: number | null;
  ready: boolean;
  listen: ListenMode | null;
  restarts: number;
}

/**
 * The primary's workers (node:cluster): forks them, answers their hello with `init`, passes
 * messages on, restarts one that dies (with a backoff, logged), and stops them all on shutdown.
 */
export class Supervisor {
  private readonly opts: SupervisorOptions;
  private readonly logger: Logger;
  private readonly slots: Slot[];
  private stopping = false;
  /** an upgrade's collection of the workers' sockets, by slot */
  private collecting: Map<number, { got: InheritedListener[]; done: (n: number) => void }> | null = null;
  /** pending `start()`: a worker that dies before the first all-ready fails the start */
  private starting: PromiseWithResolvers<void> | null = null;

  constructor(opts: SupervisorOptions) {
    this.opts = opts;
    this.logger = opts.logger;
    this.slots = Array.from({ length: opts.workers }, (_, index) => ({ index, worker: null, initialized: false, ready: false, readyAt: 0, listen: null, restarts: 0, crashes: 0, restartTimer: null, startTimer: null }));
  }

  /** Forks every worker; resolves once all listen, rejects (and stops the others) if one fails first. */
  async start(): Promise<void> {
    cluster.setupPrimary({ exec: this.opts.exec, args: [...(this.opts.args ?? [])] });
    this.starting = Promise.withResolvers<void>();
    for (const slot of this.slots) this.fork(slot);
    try {
      await this.starting.promise;
    } catch (err) {
      await this.stop(2_000);
      throw err;
    } finally {
      this.starting = null;
    }
  }

  /** To every worker that got its init (a later one gets the then current state in its init). */
  broadcast(msg: ToWorker): void {
    for (const s of this.slots) if (s.initialized) this.send(s, msg);
  }

  /** To the slots whose worker is listening; returns them. */
  sendReady(msg: ToWorker): number[] {
    const sent: number[] = [];
    for (const s of this.slots) if (s.ready && this.send(s, msg)) sent.push(s.index);
    return sent;
  }

  /** To one slot's worker (an answer to its request); false when it is gone. */
  sendTo(slot: number, msg: ToWorker): boolean {
    const s = this.slots[slot];
    return s !== undefined && this.send(s, msg);
  }

  get readyCount(): number {
    return this.slots.filter((s) => s.ready).length;
  }

  view(): SlotView[] {
    return this.slots.map((s) => ({ slot: s.index, pid: s.worker?.process.pid ?? null, ready: s.ready, listen: s.listen, restarts: s.restarts }));
  }

  /**
   * No more restarts; asks every worker for its graceful shutdown and waits for them to exit,
   * killing whatever still runs after `deadlineMs`.
   */
  async stop(deadlineMs: number, opts: { handedOver?: boolean } = {}): Promise<void> {
    this.stopping = true;
    const exits: Promise<unknown>[] = [];
    for (const s of this.slots) {
      if (s.restartTimer !== null) clearTimeout(s.restartTimer);
      s.restartTimer = null;
      const w = s.worker;
      if (w === null) continue;
      exits.push(new Promise((resolve) => (w.process.exitCode !== null || w.process.signalCode !== null ? resolve(null) : w.process.once('exit', resolve))));
      if (!this.send(s, opts.handedOver === true ? { type: 'sy:shutdown', handedOver: true } : { type: 'sy:shutdown' })) w.process.kill('SIGTERM');
    }
    const timer = setTimeout(() => {
      for (const s of this.slots) {
        if (s.worker === null) continue;
        this.logger.error({ slot: s.index, workerPid: s.worker.process.pid }, 'worker still running at the shutdown deadline: killing it');
        s.worker.process.kill('SIGKILL');
      }
    }, deadlineMs);
    await Promise.all(exits);
    clearTimeout(timer);
  }

  /**
   * An upgrade: every listening worker's sockets (group: its slot), as copies this process carries.
   * Rejects when a worker does not answer in time or has none of its own (node:cluster's shared mode).
   */
  async collectSockets(timeoutMs = COLLECT_MS): Promise<InheritedListener[]> {
    const live = this.slots.filter((s) => s.ready);
    if (live.length < this.slots.length) throw new ProcessError('UPGRADE_FAILED', `${this.slots.length - live.length} of ${this.slots.length} workers are not listening; try again once they are`);
    const shared = live.filter((s) => s.listen === 'shared');
    if (shared.length > 0) throw new ProcessError('UPGRADE_FAILED', 'the workers share node:cluster\'s socket (listen.port 0, or no SO_REUSEPORT here): there is no socket of theirs to hand over');
    this.collecting = new Map();
    try {
      const answers = live.map(
        (s) =>
          new Promise<InheritedListener[]>((resolve, reject) => {
            const got: InheritedListener[] = [];
            const timer = setTimeout(() => reject(new ProcessError('UPGRADE_FAILED', `worker ${s.index} did not pass its sockets within ${timeoutMs} ms`)), timeoutMs);
            this.collecting?.set(s.index, { got, done: (n) => {
              clearTimeout(timer);
              if (n === got.length) resolve(got);
              else reject(new ProcessError('UPGRADE_FAILED', `worker ${s.index} announced ${n} sockets and passed ${got.length}`));
            } });
            if (!this.send(s, { type: 'sy:sockets' })) reject(new ProcessError('UPGRADE_FAILED', `worker ${s.index} is gone`));
          }),
      );
      return (await Promise.all(answers)).flat();
    } finally {
      this.collecting = null;
    }
  }

  /** An upgrade handed the sockets over: the workers stop accepting (their drain follows with `stop`). */
  stopAccepting(): void {
    this.broadcast({ type: 'sy:stop-accepting' });
  }

  private send(s: Slot, msg: ToWorker, handle?: ListenHandle): boolean {
    const w = s.worker;
    if (w === null || !w.isConnected()) return false;
    try {
      w.send(msg, handle as never);
      return true;
    } catch {
      return false; // the channel closed under us: its exit is on the way
    }
  }

  private fork(s: Slot): void {
    s.restartTimer = null;
    const worker = cluster.fork();
    s.worker = worker;
    s.initialized = false;
    s.ready = false;
    s.listen = null;
    s.startTimer = setTimeout(() => {
      this.logger.error({ slot: s.index, workerPid: worker.process.pid }, 'worker did not start listening in time: killing it');
      worker.process.kill('SIGKILL');
    }, this.opts.startTimeout ?? 30_000);
    s.startTimer.unref();
    worker.on('message', (msg: unknown, handle: unknown) => {
      if (!isOurs<ToPrimary>(msg) || s.worker !== worker) return;
      if (msg.type === 'sy:hello') {
        if (this.stopping) return void this.send(s, { type: 'sy:shutdown' });
        // the sockets a previous Switchyard handed over for this slot go first: the init makes the worker listen
        for (const { handle: h, carried: _carried, ...info } of this.opts.inherited?.(s.index) ?? []) this.send(s, { type: 'sy:listener', ...info }, h);
        s.initialized = this.send(s, this.opts.init(s.index));
        return;
      }
      if (msg.type === 'sy:socket' || msg.type === 'sy:sockets-done') {
        const c = this.collecting?.get(s.index);
        if (msg.type === 'sy:sockets-done') c?.done(msg.count);
        else if (handle !== undefined && handle !== null) {
          // a copy nobody asked for any more (the collection timed out) must not keep the socket open here
          if (c === undefined) closeHandle(handle as ListenHandle);
          else c.got.push({ role: msg.role, group: msg.group, host: msg.host, port: msg.port, handle: handle as ListenHandle, carried: true });
        }
        return;
      }
      if (msg.type === 'sy:ready') {
        if (s.startTimer !== null) clearTimeout(s.startTimer);
        s.ready = true;
        s.readyAt = Date.now();
        s.listen = msg.listen;
        if (s.restarts > 0) this.logger.info({ slot: s.index, workerPid: msg.pid, listen: msg.listen }, 'replacement worker listening');
        if (this.starting !== null && this.slots.every((x) => x.ready)) this.starting.resolve();
      } else if (msg.type === 'sy:fatal') {
        this.logger.error({ slot: s.index, workerPid: worker.process.pid, error: msg.message }, 'worker could not start');
      }
      this.opts.onMessage(s.index, msg);
    });
    // 'error' on the channel (EPIPE while it dies): the exit handler below deals with it
    worker.on('error', (err: Error) => this.logger.debug({ err, slot: s.index }, 'worker channel error'));
    worker.process.once('exit', (code: number | null, signal: NodeJS.Signals | null) => this.exited(s, worker, code, signal));
  }

  private exited(s: Slot, worker: Worker, code: number | null, signal: NodeJS.Signals | null): void {
    if (s.worker !== worker) return;
    if (s.startTimer !== null) clearTimeout(s.startTimer);
    const wasReady = s.ready;
    s.worker = null;
    s.initialized = false;
    s.ready = false;
    this.opts.onGone(s.index);
    const where = { slot: s.index, workerPid: worker.process.pid, code, signal };
    if (this.stopping) {
      this.logger.info(where, 'worker stopped');
      return;
    }
    if (this.starting !== null) {
      this.starting.reject(new ProcessError('WORKER_START_FAILED', `worker ${s.index} exited before it was listening (code ${code}, signal ${signal}); see its log line above`));
      return;
    }
    s.crashes = wasReady && Date.now() - s.readyAt >= STABLE_MS ? 1 : s.crashes + 1;
    const delay = Math.min(this.opts.maxBackoffMs ?? 5_000, (this.opts.backoffMs ?? 100) * 2 ** (s.crashes - 1));
    s.restarts++;
    this.logger.error({ ...where, restartInMs: delay }, 'worker died unexpectedly: starting a replacement');
    s.restartTimer = setTimeout(() => this.fork(s), delay);
  }
}
