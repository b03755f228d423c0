import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { refuse } from './request-target.ts';

/**
 * Pipelined requests a connection may have waiting behind the one being served; the next one is
 * answered 503 and the connection is closed after it. node:http parses every request a client
 * pipelines and emits them all at once (it orders the responses, not the requests), so without
 * this a client could queue any number of them in one connection.
 */
export const MAX_PIPELINED = 32;

const kWaiting = Symbol('switchyard.pipelined');
type PipelinedSocket = Socket & { [kWaiting]?: number };

/**
 * Runs `handle(req, res)` when the response is the one the connection writes next, so pipelined
 * requests reach the upstream one after another, as with nginx and HAProxy, instead of all at
 * once (1,000 pipelined GETs made 1,000 concurrent upstream requests). node:http gives a
 * response its socket (`'socket'` event) when the previous response has finished; a request
 * that is not pipelined has its socket already and runs at once, at no cost.
 */
export function inOrder(req: IncomingMessage, res: ServerResponse, handle: (req: IncomingMessage, res: ServerResponse) => void): void {
  if (res.socket !== null) {
    handle(req, res);
    return;
  }
  const socket = req.socket as PipelinedSocket;
  const waiting = (socket[kWaiting] ?? 0) + 1;
  if (waiting > MAX_PIPELINED) {
    // written when its turn comes; its Connection: close ends the connection there
    refuse(res, 503, `more than ${MAX_PIPELINED} pipelined requests on one connection`);
    return;
  }
  socket[kWaiting] = waiting;
  res.once('socket', () => {
    socket[kWaiting] = (socket[kWaiting] as number) - 1;
    handle(req, res);
  });
}
