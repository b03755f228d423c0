import { setTimeout as sleep } from 'node:timers/promises';
import { Redis, type RedisOptions } from 'ioredis';

// Settling a compare-and-set whose reply never came back in time. CAS_SCRIPT refuses to run after
// its deadline D (Redis's clock), so once Redis's clock is past D the write's outcome can no longer
// change: a read that runs on Redis after D tells for good whether it landed. The read goes over a
// fresh connection, since the command connection may be the stuck part.

/**
 * KEYS: state, history. ARGV: the write's history entry JSON. Answers Redis's TIME
 * (seconds, microseconds), the stored state JSON (nil if none), the history entry when the history
 * holds exactly it (nil if not), and the oldest revision the history still holds (nil when empty),
 * so a trimmed history reads as "cannot tell".
 */
export const SETTLE_SCRIPT = `
local t = redis.call('TIME')
local cur = redis.call('GET', KEYS[1])
local found = false
local oldest = false
for _, e in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  local ok, doc = pcall(cjson.decode, e)
  if ok and type(doc) == 'table' and tonumber(doc.revision) then
    oldest = tonumber(doc.revision)
    if e == ARGV[1] then found = e end
  end
end
return {t[1], t[2], cur, found, oldest}
`;

export type Settled = 'landed' | 'not-landed' | 'unknown';

export interface SettleInput {
  /** options of a client like the command connection's (redisOptions) */
  readonly options: RedisOptions;
  readonly stateKey: string;
  readonly historyKey: string;
  /**
   * the write's state and history entry JSON, exactly as sent to CAS_SCRIPT. The entry must be
   * this write's alone (it carries a write id): two writers' entries for one revision can
   * otherwise read the same (same weights, action, actor, reason, millisecond and changed paths,
   * different definitions), and the loser would be told it landed.
   */
  readonly json: string;
  readonly entry: string;
  readonly revision: number;
  /** CAS_SCRIPT's deadline, epoch ms by Redis's clock */
  readonly deadline: number;
  /** how long settling may take in all (connect and every read) */
  readonly budgetMs: number;
  /** replicas that must have a landed write (store.replicas) @default 0 */
  readonly replicas?: number;
  /** ms to WAIT for them @default 500 */
  readonly replicaTimeout?: number;
  /** a key to write, so this connection has something to WAIT on (redisKeys().waitProbe) */
  readonly probeKey?: string;
}

export interface SettleAnswer {
  readonly settled: Settled;
  /** the state JSON Redis holds, from the read that settled it (null when none or unread) */
  readonly current: string | null;
  /** for `landed` with `replicas`: how many replicas acknowledged it (null: not asked) */
  readonly replicated: number | null;
}

/**
 * Whether a write whose compare-and-set gave no answer landed: `landed` (our state is stored, or
 * our own entry, write id and all, is in the history), `not-landed` (read after the deadline and not
 * there: it never will be), or `unknown` (no read after the deadline could be made in the budget).
 */
export async function settleWrite(input: SettleInput): Promise<SettleAnswer> {
  // the budget bounds the whole settling: ioredis's timeouts do not cover a connection whose
  // ready check is never answered (a paused Redis accepts the TCP connection)
  const budget = new AbortController();
  const unknown: SettleAnswer = { settled: 'unknown', current: null, replicated: null };
  const outOfTime = sleep(input.budgetMs, unknown, { signal: budget.signal }).catch(() => unknown);
  const client = new Redis({ ...input.options, connectionName: 'switchyard-settle', lazyConnect: true, connectTimeout: input.budgetMs, commandTimeout: input.budgetMs, retryStrategy: () => null, failoverDetector: false });
  client.on('error', () => undefined); // each failure is the read's answer below
  try {
    return await Promise.race([readBack(client, input), outOfTime]);
  } finally {
    budget.abort();
    client.disconnect();
  }
}

async function readBack(client: Redis, input: SettleInput): Promise<SettleAnswer> {
  const started = Date.now();
  const left = (): number => input.budgetMs - (Date.now() - started);
  try {
    await client.connect();
    for (;;) {
      const [sec, usec, cur, found, oldest] = (await client.eval(SETTLE_SCRIPT, 2, input.stateKey, input.historyKey, input.entry)) as [string, string, string | null, string | null, number | null];
      const redisNow = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
      if (cur === input.json || found === input.entry) return { settled: 'landed', current: cur, replicated: await replicated(client, input) };
      if (redisNow > input.deadline) {
        // our revision's entry may have been trimmed away by later writes: then the history cannot tell
        if (found === null && oldest !== null && oldest > input.revision) return { settled: 'unknown', current: cur, replicated: null };
        return { settled: 'not-landed', current: cur, replicated: null };
      }
      // read before the deadline: the script may still run; read again once it has passed
      const wait = input.deadline - redisNow + 5;
      if (wait >= left()) return { settled: 'unknown', current: cur, replicated: null };
      await sleep(wait);
    }
  } catch {
    return { settled: 'unknown', current: null, replicated: null };
  }
}

/**
 * How many replicas have a write this connection found landed: it writes a probe key after the
 * read and WAITs on that. Replication is in order, so a replica that has the probe has the write.
 */
async function replicated(client: Redis, input: SettleInput): Promise<number | null> {
  const n = input.replicas ?? 0;
  if (n === 0 || input.probeKey === undefined) return null;
  try {
    await client.set(input.probeKey, '1', 'PX', 60_000);
    return Number(await client.call('WAIT', String(n), String(input.replicaTimeout ?? 500)));
  } catch {
    return 0;
  }
}

/**
 * Whether a failed compare-and-set may have reached Redis and run: not when Redis answered with
 * an error (the script refused or failed before writing), nor when the command was never sent
 * (no connection, so ioredis refused it at once); yes after a timeout or a connection lost mid-command.
 */
export function mayHaveRun(err: unknown): boolean {
  if (err instanceof Error && err.name === 'ReplyError') return false;
  const message = err instanceof Error ? err.message : String(err);
  return !/Stream isn't writeable|enableOfflineQueue/.test(message);
}
