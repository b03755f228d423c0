import { mkdir, readFile, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { Redis } from 'ioredis';
import { writeFileAtomic } from '../state/atomic-file.ts';

/**
 * Where ACME keeps its account key, its certificates and the pending HTTP-01 answers: the file
 * store's directory for one instance, Redis for a fleet, so every instance serves the same
 * certificate and any instance answers a challenge another one started.
 */
export interface AcmeStorage {
  get(name: string): Promise<string | null>;
  /** `ttlMs`: the value disappears after this long (challenge answers) */
  put(name: string, value: string, ttlMs?: number): Promise<void>;
  delete(name: string): Promise<void>;
}

/** `acme/` beside the state file: one file per name, written atomically, in a directory of mode 0700 (keys inside). */
export class FileAcmeStorage implements AcmeStorage {
  readonly dir: string;
  constructor(statePath: string) {
    this.dir = join(dirname(resolve(statePath)), 'acme');
  }
  #path(name: string): string {
    // names are ours (account-key, cert:HOST, http01:TOKEN); tokens are base64url, hosts DNS names
    return join(this.dir, name.replace(/[^A-Za-z0-9._-]/g, '_'));
  }
  async get(name: string): Promise<string | null> {
    try {
      return await readFile(this.#path(name), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }
  async put(name: string, value: string): Promise<void> {
    // a TTL is not kept on disk: the one instance deletes its challenge answers itself
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.#path(name), value);
  }
  async delete(name: string): Promise<void> {
    await rm(this.#path(name), { force: true });
  }
}

/** `PREFIX:acme:NAME` keys in the fleet's Redis. */
export class RedisAcmeStorage implements AcmeStorage {
  readonly #client: Redis;
  readonly #base: string;
  constructor(client: Redis, prefix: string) {
    this.#client = client;
    this.#base = `${prefix}:acme:`;
  }
  get(name: string): Promise<string | null> {
    return this.#client.get(this.#base + name);
  }
  async put(name: string, value: string, ttlMs?: number): Promise<void> {
    if (ttlMs === undefined) await this.#client.set(this.#base + name, value);
    else await this.#client.set(this.#base + name, value, 'PX', ttlMs);
  }
  async delete(name: string): Promise<void> {
    await this.#client.del(this.#base + name);
  }
}
