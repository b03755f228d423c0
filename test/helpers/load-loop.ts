import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';

export interface LoopResult {
  ok: number;
  /** every failure: connect refused/reset, an empty reply, a status other than 200 */
  failures: string[];
}

/**
 * A new connection every `everyMs` (no keep-alive: each request opens and closes its own), until
 * `stop()`: what an upgrade must lose none of. Requests overlap when one takes longer than `everyMs`.
 * `tls`: HTTPS to that SNI name, trusting `ca` (a handshake each time).
 */
export function loadLoop(port: number, everyMs = 5, tls?: { servername: string; ca: string }): { answered(more: number): Promise<void>; stop(): Promise<LoopResult> } {
  const result: LoopResult = { ok: 0, failures: [] };
  const waiters: { at: number; resolve: () => void }[] = [];
  const answered = (): void => {
    for (const w of waiters.splice(0)) {
      if (result.ok + result.failures.length >= w.at) w.resolve();
      else waiters.push(w);
    }
  };
  const pending = new Set<Promise<void>>();
  let running = true;
  const one = (): Promise<void> =>
    new Promise<void>((resolve) => {
      const options = { host: '127.0.0.1', port, path: '/', agent: false, headers: { connection: 'close', ...(tls === undefined ? {} : { host: tls.servername }) } } as const;
      const req = (tls === undefined ? httpRequest : httpsRequest)(tls === undefined ? options : { ...options, servername: tls.servername, ca: tls.ca }, (res) => {
        res.resume();
        res.on('end', () => {
          if (res.statusCode === 200) result.ok++;
          else result.failures.push(`status ${res.statusCode}`);
          resolve();
        });
        res.on('error', (e) => {
          result.failures.push(`response ${(e as NodeJS.ErrnoException).code ?? e.message}`);
          resolve();
        });
      });
      req.setTimeout(30_000, () => req.destroy(new Error('timeout')));
      req.on('error', (e) => {
        result.failures.push((e as NodeJS.ErrnoException).code ?? e.message);
        resolve();
      });
      req.end();
    });
  const loop = (async () => {
    while (running) {
      const p = one();
      pending.add(p);
      void p.then(() => {
        pending.delete(p);
        answered();
      });
      await sleep(everyMs);
    }
  })();
  return {
    /** Resolves once `more` requests beyond those answered now have been answered (well or not): the loop ran that long. */
    answered(more) {
      return new Promise((resolve) => {
        waiters.push({ at: result.ok + result.failures.length + more, resolve });
      });
    },
    async stop() {
      running = false;
      await loop;
      await Promise.all(pending);
      return result;
    },
  };
}
