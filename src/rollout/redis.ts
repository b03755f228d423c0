import type { Redis } from 'ioredis';
import { ProcessError, SwitchyardError } from '../errors.ts';
import type { Rollout } from './model.ts';
import type { PutResult, RolloutStore } from './store.ts';

/**
 * Writes the record only if the stored one has the expected version (0: none).
 * KEYS: record. ARGV: expected version, record JSON. Answers 1, or the current JSON (nil if none).
 */
const PUT_SCRIPT = `
local cur = redis.call('GET', KEYS[1])
local version = 0
if cur then version = cjson.decode(cur).version end
if version ~= tonumber(ARGV[1]) then
  if cur then return cur end
  return false
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
`;

/**
 * Rollout records in Redis, one key per app beside the routing state (same `{sy}` hash slot),
 * written with a compare-and-set script, on the RedisStore's command connection (fail-fast: an
 * unreachable Redis is a STORE_UNAVAILABLE at once, never a queued command).
 */
export class RedisRolloutStore implements RolloutStore {
  readonly #client: Redis;
  readonly #key: (app: string) => string;

  constructor(client: Redis, key: (app: string) => string) {
    this.#client = client;
    this.#key = key;
  }

  async get(app: string): Promise<Rollout | null> {
    const text = await this.#run('GET', () => this.#client.get(this.#key(app)));
    return text === null ? null : parseRollout(text);
  }

  async put(next: Rollout, expected: number): Promise<PutResult> {
    if (next.version !== expected + 1) throw new ProcessError('BUG', `rollout put(${next.app}): version must be ${expected + 1}, got ${next.version}`);
    const json = JSON.stringify(next);
    const res = await this.#run('rollout compare-and-set', () => this.#client.eval(PUT_SCRIPT, 1, this.#key(next.app), String(expected), json));
    if (res === 1) return { ok: true, rollout: parseRollout(json) };
    return { ok: false, current: typeof res === 'string' ? parseRollout(res) : null };
  }

  async #run<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw new SwitchyardError('STORE_UNAVAILABLE', `redis ${what} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }
}

function parseRollout(text: string): Rollout {
  const r = JSON.parse(text) as Rollout;
  if (typeof r !== 'object' || r === null || typeof r.id !== 'string' || !Number.isInteger(r.version)) throw new ProcessError('ROLLOUT_RECORD_INVALID', 'not a rollout record');
  return Object.freeze(r);
}
