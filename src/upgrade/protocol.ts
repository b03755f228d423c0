import type { ListenerInfo } from './handles.ts';

/**
 * The hand-over conversation between the running process (old) and the one it started (new),
 * over the IPC channel of `child_process.spawn`:
 *
 *   new → old  want                      the new one built its state and asks for the sockets
 *   old → new  listener (+ the socket)   one per listening socket, in order
 *   old → new  listeners-done
 *   new → old  ready                     it accepts on them now
 *   old → new  released                  the old one stopped accepting: the new one takes the port claim
 *
 * The old one drains after `ready`; it kills a new one that is not ready by `shutdown.upgradeTimeout`.
 */
export type ToSuccessor =
  | ({ readonly type: 'sy:up-listener' } & ListenerInfo)
  | { readonly type: 'sy:up-listeners-done'; readonly count: number }
  | { readonly type: 'sy:up-released' };

export type ToPredecessor = { readonly type: 'sy:up-want' } | { readonly type: 'sy:up-ready'; readonly pid: number };

/** The environment variable that tells a process it was started by a hand-over, and by whom (a pid). */
export const UPGRADE_ENV = 'SWITCHYARD_UPGRADE_FROM';

export function isUpgradeMessage<T extends { readonly type: string }>(msg: unknown): msg is T {
  return typeof msg === 'object' && msg !== null && typeof (msg as { type?: unknown }).type === 'string' && (msg as { type: string }).type.startsWith('sy:up-');
}
