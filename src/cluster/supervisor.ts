import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import { isOurs, type ListenMode, type ToPrimary, type ToWorker } from './ipc.ts';

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
  async stop(deadlineMs: number): Promise<void> {
    this.stopping = true;
    const exits: Promise<unknown>[] = [];
    for (const s of this.slots) {
      if (s.restartTimer !== null) clearTimeout(s.restartTimer);
      s.restartTimer = null;
      const w = s.worker;
      if (w === null) continue;
      exits.push(new Promise((resolve) => (w.process.exitCode !== null || w.process.signalCode !== null ? resolve(null) : w.process.once('exit', resolve))));
      if (!this.send(s, { type: 'sy:shutdown' })) w.process.kill('SIGTERM');
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

  private send(s: Slot, msg: ToWorker): boolean {
    const w = s.worker;
    if (w === null || !w.isConnected()) return false;
    try {
      w.send(msg);
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
    worker.on('message', (msg: unknown) => {
      if (!isOurs<ToPrimary>(msg) || s.worker !== worker) return;
      if (msg.type === 'sy:hello') {
        if (this.stopping) return void this.send(s, { type: 'sy:shutdown' });
        s.initialized = this.send(s, this.opts.init(s.index));
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
      this.starting.reject(new Error(`worker ${s.index} exited before it was listening (code ${code}, signal ${signal}); see its log line above`));
      return;
    }
    s.crashes = wasReady && Date.now() - s.readyAt >= STABLE_MS ? 1 : s.crashes + 1;
    const delay = Math.min(this.opts.maxBackoffMs ?? 5_000, (this.opts.backoffMs ?? 100) * 2 ** (s.crashes - 1));
    s.restarts++;
    this.logger.error({ ...where, restartInMs: delay }, 'worker died unexpectedly: starting a replacement');
    s.restartTimer = setTimeout(() => this.fork(s), delay);
  }
}
