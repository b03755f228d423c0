import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import WebSocket, { WebSocketServer } from 'ws';
import { startUpstream, type Upstream } from './upstream.ts';

export interface WsUpstream extends Upstream {
  readonly wss: WebSocketServer;
  /** close codes the upstream's WebSockets received */
  readonly closeCodes: number[];
  /** SSE streams currently open */
  readonly streams: number;
  /** the upgrade requests the upstream accepted */
  readonly upgrades: IncomingMessage[];
}

/**
 * An upstream that says who it is: plain requests answer `{ pool }`, `/events` is an endless SSE
 * stream (`data: n` every 50 ms), WebSockets echo `NAME:message` (`die` makes it drop the TCP
 * connection without a close frame).
 */
export async function startWsUpstream(name: string, first?: (req: IncomingMessage, res: ServerResponse) => boolean): Promise<WsUpstream> {
  const live = { streams: 0 };
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    if (first?.(req, res) === true) return;
    if (req.url === '/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      let n = 0;
      live.streams++;
      const t = setInterval(() => {
        res.write(`data: ${n++}\n\n`);
      }, 50);
      res.on('close', () => {
        clearInterval(t);
        live.streams--;
      });
      return;
    }
    if (req.url === '/events-die') {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: 0\n\n');
      setTimeout(() => res.socket?.destroy(), 100);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ pool: name }));
  };
  const up = await startUpstream(name, handler);
  const wss = new WebSocketServer({ server: up.server });
  const closeCodes: number[] = [];
  const upgrades: IncomingMessage[] = [];
  wss.on('connection', (ws, req) => {
    upgrades.push(req);
    ws.on('message', (data: Buffer) => {
      if (data.length > 1000) return; // a flood from the client: taken, not echoed
      const text = String(data);
      if (text === 'die') ws.terminate();
      else if (text === 'flood') for (let i = 0; i < 100; i++) ws.send(Buffer.alloc(100_000, i));
      else ws.send(`${name}:${text}`);
    });
    ws.on('close', (code) => closeCodes.push(code));
  });
  return {
    ...up,
    wss,
    closeCodes,
    upgrades,
    get streams() {
      return live.streams;
    },
    async close() {
      for (const c of wss.clients) c.terminate();
      wss.close();
      await up.close();
    },
  };
}

export function wsUrl(proxyUrl: string, path = '/ws'): string {
  return proxyUrl.replace(/^http/, 'ws') + path;
}

/** Opens a WebSocket through the proxy; resolves once open, rejects with the refusal's status and body. */
export async function openWs(url: string, headers: Record<string, string> = {}): Promise<WebSocket> {
  const ws = new WebSocket(url, { headers });
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => reject(Object.assign(new Error(`refused ${res.statusCode}`), { status: res.statusCode, body, servedBy: res.headers['x-served-by'] })));
    });
    ws.once('error', reject);
  });
}

/** Sends `msg` and resolves with the next message. */
export async function echo(ws: WebSocket, msg: string): Promise<string> {
  const reply = once(ws, 'message') as Promise<[Buffer]>;
  ws.send(msg);
  const [data] = await reply;
  return String(data);
}

export function closed(ws: WebSocket): Promise<{ code: number; reason: string; at: number }> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.reject(new Error('already closed'));
  return new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: String(reason), at: Date.now() })));
}

