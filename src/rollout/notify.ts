import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { bpToPct } from '../config/weights.ts';
import { NOTIFY_EVENTS, type NotifyEvent, type NotifySpec } from './gate-model.ts';
import type { GateBody } from './gates.ts';
import type { Rollout } from './model.ts';
import { call, maskUrl } from './outbound.ts';

/** The labels of switchyard_rollout_notifications_total: what was sent, and how it ended. */
export const NOTIFY_KINDS = ['notify', 'postRollout', 'onRollback'] as const;
export const NOTIFY_RESULTS = ['sent', 'failed'] as const;

export interface NotifierOptions {
  readonly logger: Logger;
  readonly registry?: Registry | undefined;
  /** deliveries after the first, for a transport error, a 5xx or a 429 @default 4 */
  readonly retries?: number | undefined;
  /** the first retry's delay, doubled each time (1 s, 2 s, 4 s, 8 s) @default 1000 */
  readonly backoffMs?: number | undefined;
  /** one delivery's deadline @default 5000 */
  readonly timeoutMs?: number | undefined;
}

/** The JSON notification: the record as the transition that sent it wrote it, never a later read. */
export interface NotifyMessage {
  event: NotifyEvent;
  app: string;
  rollout: string;
  to: string;
  version: string;
  state: Rollout['state'];
  step: number;
  steps: number;
  /** `to`'s weight in the step in effect, % */
  weight: number;
  reason: string | null;
  by: string;
  at: string;
}

const VERB: Record<NotifyEvent, string> = {
  started: 'started',
  step: 'moved to a step',
  'waiting-approval': 'is waiting for approval',
  approved: 'was approved',
  paused: 'paused',
  resumed: 'resumed',
  succeeded: 'succeeded',
  'rolled-back': 'was rolled back',
  aborted: 'was aborted',
};

/** The Slack incoming-webhook shape: a `text` (mrkdwn) line, which every Slack-compatible receiver shows. */
export function slackText(m: NotifyMessage): string {
  const why = m.reason === null ? '' : ` — ${m.reason}`;
  return `*${m.app}*: rollout \`${m.rollout}\` to ${m.to} ${m.version} ${VERB[m.event]} (step ${m.step}/${m.steps}, ${m.to} at ${m.weight}%)${why}`;
}

export function message(r: Rollout, event: NotifyEvent, version: string, at: number): NotifyMessage {
  return { event, app: r.app, rollout: r.id, to: r.to, version, state: r.state, step: r.step, steps: r.steps.length, weight: bpToPct(r.steps[r.step - 1]?.weight ?? 0), reason: r.reason, by: r.by, at: new Date(at).toISOString() };
}

/**
 * Notifications and after-the-fact hooks (postRollout, onRollback): sent in the background, so
 * they never hold or fail a rollout; retried with backoff on a transport error, a 5xx or a 429
 * (never on another 4xx: the receiver refused the message, sending it again changes nothing);
 * a delivery that gives up is logged (URL masked) and counted. Pending retries end with close().
 */
export class Notifier {
  readonly #logger: Logger;
  readonly #retries: number;
  readonly #backoffMs: number;
  readonly #timeoutMs: number;
  readonly #counter: Counter | null;
  readonly #stop = new AbortController();
  readonly #pending = new Set<Promise<void>>();

  constructor(opts: NotifierOptions) {
    this.#logger = opts.logger;
    this.#retries = opts.retries ?? 4;
    this.#backoffMs = opts.backoffMs ?? 1000;
    this.#timeoutMs = opts.timeoutMs ?? 5000;
    this.#counter =
      opts.registry === undefined ? null : new Counter({ name: 'switchyard_rollout_notifications_total', help: 'Notifications and after-the-fact hooks (postRollout, onRollback) of rollouts, by kind and result (sent, failed: given up after its retries).', labelNames: ['kind', 'result'], registers: [opts.registry] });
    for (const kind of NOTIFY_KINDS) for (const result of NOTIFY_RESULTS) this.#counter?.labels(kind, result).inc(0);
  }

  /** Sends `event` of the record to each notify target that listens for it. */
  notify(targets: readonly NotifySpec[], r: Rollout, event: NotifyEvent, version: string, at: number): void {
    if (!NOTIFY_EVENTS.includes(event)) return;
    const m = message(r, event, version, at);
    for (const t of targets) {
      if (!t.events.includes(event)) continue;
      const body = t.format === 'slack' ? { text: slackText(m) } : m;
      this.#deliver('notify', t.url, JSON.stringify(body), { app: r.app, rollout: r.id, event });
    }
  }

  /** postRollout / onRollback: called after the fact, never awaited. */
  hook(kind: 'postRollout' | 'onRollback', urls: readonly string[], body: GateBody): void {
    for (const url of urls) this.#deliver(kind, url, JSON.stringify(body), { app: body.app, rollout: body.rollout, event: kind });
  }

  #deliver(kind: string, url: string, body: string, log: Record<string, string>): void {
    const run = (async () => {
      let last = '';
      for (let attempt = 0; attempt <= this.#retries; attempt++) {
        if (attempt > 0) await delay(this.#backoffMs * 2 ** (attempt - 1), this.#stop.signal);
        if (this.#stop.signal.aborted) return;
        const a = await call(url, { method: 'POST', body, timeoutMs: this.#timeoutMs, retries: 0, signal: this.#stop.signal });
        if (a.status !== null && a.status >= 200 && a.status < 300) {
          this.#counter?.labels(kind, 'sent').inc();
          return;
        }
        last = a.status === null ? (a.error ?? 'no answer') : `HTTP ${a.status}`;
        const retryable = a.status === null || a.status >= 500 || a.status === 429;
        if (!retryable) break;
      }
      if (this.#stop.signal.aborted) return;
      this.#counter?.labels(kind, 'failed').inc();
      this.#logger.warn({ ...log, url: maskUrl(url), kind }, `rollout ${kind} to ${maskUrl(url)} failed: ${last}`);
    })();
    this.#pending.add(run);
    void run.finally(() => this.#pending.delete(run));
  }

  /** Deliveries in flight end now (their retries are dropped). */
  async close(): Promise<void> {
    this.#stop.abort();
    await Promise.allSettled([...this.#pending]);
  }
}

function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(resolve, ms);
    t.unref();
    signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });
}
