import type { Server } from 'node:net';

/**
 * A listening socket as the kernel holds it, passed between processes on a hand-over (nginx's
 * inherited fds, HAProxy's `-x`): the libuv handle under a net.Server. Opaque on purpose: only
 * `handleOf`, `adopt` and the IPC channel (`send(msg, handle)`, which passes the fd with
 * SCM_RIGHTS) touch it.
 *
 * Why the raw handle and not the net.Server: a net.Server received over IPC is listening at once,
 * so a process that only carries the socket on (the primary of `workers: N`, between its old
 * workers and the new process) would accept connections it never serves. A raw handle received
 * over IPC is an open socket nobody accepts on until a server adopts it. `_handle` is how Node's
 * own `server.listen(handle)` reads a server's socket (documented there as "an underlying
 * `_handle` member").
 */
export type ListenHandle = object & { readonly __listenHandle?: never };

/** What a listening socket is for, as the old process describes it to the new one. */
export interface ListenerInfo {
  /** proxy: the plain proxy port (its first socket and `listen.acceptors`); tls: the TLS port; admin: the admin API */
  readonly role: 'proxy' | 'tls' | 'admin';
  /** the worker slot that served it (0 in one process): the new process keeps sockets of one group together */
  readonly group: number;
  readonly host: string;
  readonly port: number;
}

export interface InheritedListener extends ListenerInfo {
  readonly handle: ListenHandle;
  /** this process only carries a copy (the primary's, from a worker): closed here once passed on */
  readonly carried?: boolean;
}

/** The listening socket under a server, or null when it has none of its own (not listening, or node:cluster's round robin). */
export function handleOf(server: Server): ListenHandle | null {
  const h = (server as unknown as { _handle?: { fd?: number } | null })._handle;
  // node:cluster's round-robin worker handle is a stand-in object with no fd
  return h !== null && h !== undefined && typeof h.fd === 'number' && h.fd >= 0 ? (h as ListenHandle) : null;
}

/** Makes `server` accept on an inherited socket (Node's `server.listen(handle)`); resolves once it listens. */
export function adopt(server: Server, handle: ListenHandle): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(handle as never, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/** Closes this process's copy of a socket it only carried (the socket lives on in whoever adopted it). */
export function closeHandle(handle: ListenHandle): void {
  (handle as { close?: () => void }).close?.();
}

/** Whether an inherited socket is the one the config asks for (port 0 in the config takes any port). */
export function matches(l: ListenerInfo, host: string, port: number): boolean {
  return l.host === host && (port === 0 || l.port === port);
}

/**
 * After a hand-over, how long the old process leaves its connections be before closing idle ones:
 * one accepted just before it stopped accepting may still have its request unread in the kernel
 * (a loaded event loop can take a while to get to it), and closing it would reset that request.
 */
export const HANDOVER_SETTLE_MS = 2_000;
