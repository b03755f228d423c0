import type { InheritedListener, ListenHandle } from './handles.ts';
import { isUpgradeMessage, type ToPredecessor, type ToSuccessor } from './protocol.ts';
import { ProcessError } from '../errors.ts';

/** The new process's end of the IPC channel to the process that started it (main.ts wraps `process`). */
export interface SuccessorChannel {
  send(msg: ToPredecessor): void;
  onMessage(fn: (msg: unknown, handle: unknown) => void): void;
  onDisconnect(fn: () => void): void;
  disconnect(): void;
}

/** How long the old process has to pass its sockets once asked (they are in its hands already). */
const RECEIVE_TIMEOUT_MS = 30_000;

/**
 * The new process's side of a hand-over: asks the old process for its listening sockets and
 * resolves with them (not accepting yet: each is adopted by the server that serves it).
 */
export function receiveListeners(channel: SuccessorChannel, timeoutMs = RECEIVE_TIMEOUT_MS): Promise<InheritedListener[]> {
  return new Promise((resolve, reject) => {
    const got: InheritedListener[] = [];
    const timer = setTimeout(() => reject(new ProcessError('UPGRADE_FAILED', `upgrade: the old process did not pass its sockets within ${timeoutMs} ms`)), timeoutMs);
    channel.onDisconnect(() => {
      clearTimeout(timer);
      reject(new ProcessError('UPGRADE_FAILED', 'upgrade: the old process went away before it passed its sockets'));
    });
    channel.onMessage((msg, handle) => {
      if (!isUpgradeMessage<ToSuccessor>(msg)) return;
      if (msg.type === 'sy:up-listener' && handle !== undefined && handle !== null) {
        got.push({ role: msg.role, group: msg.group, host: msg.host, port: msg.port, handle: handle as ListenHandle });
      } else if (msg.type === 'sy:up-listeners-done') {
        clearTimeout(timer);
        if (got.length === msg.count) resolve(got);
        else reject(new ProcessError('UPGRADE_FAILED', `upgrade: ${msg.count} sockets announced, ${got.length} received`));
      }
    });
    channel.send({ type: 'sy:up-want' });
  });
}

/**
 * Tells the old process this one accepts now; resolves once it stopped accepting (or went away),
 * when this process may take the port claim. The channel is closed then: nothing else is said on it.
 */
export function announceReady(channel: SuccessorChannel, pid: number): Promise<void> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      channel.disconnect();
      resolve();
    };
    channel.onDisconnect(finish);
    channel.onMessage((msg) => {
      if (isUpgradeMessage<ToSuccessor>(msg) && msg.type === 'sy:up-released') finish();
    });
    channel.send({ type: 'sy:up-ready', pid });
  });
}

/** The sockets of one role, of the groups given (all when omitted), that match the configured address. */
export function pick(inherited: readonly InheritedListener[], role: InheritedListener['role'], match: (l: InheritedListener) => boolean, groups?: readonly number[]): InheritedListener[] {
  return inherited.filter((l) => l.role === role && match(l) && (groups === undefined || groups.includes(l.group)));
}
