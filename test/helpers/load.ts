import { request } from 'undici';

/** What a `startLoad` run saw once stopped: 200s, every other answer or error, the distinct 200 bodies. */
export interface LoadResult {
  readonly ok: number;
  readonly failures: readonly string[];
  readonly served: ReadonlySet<string>;
}

/**
 * `clients` loops of GET `url` until `stop()`, for "0 failed requests while X changes" tests:
 * every non-200 answer and every error is kept with its text.
 */
export function startLoad(url: string, clients = 16): { stop(): Promise<LoadResult> } {
  let stopped = false;
  let ok = 0;
  const failures: string[] = [];
  const served = new Set<string>();
  const client = async (): Promise<void> => {
    while (!stopped) {
      try {
        const r = await request(url);
        const body = await r.body.text();
        if (r.statusCode === 200) {
          ok++;
          served.add(body);
        } else failures.push(`${r.statusCode} ${body}`);
      } catch (err) {
        failures.push(String(err));
      }
    }
  };
  const running = Array.from({ length: clients }, client);
  return {
    async stop() {
      stopped = true;
      await Promise.all(running);
      return { ok, failures, served };
    },
  };
}
