import { setTimeout as sleep } from 'node:timers/promises';

/** Waits until the wall clock enters a new second, so the last second's requests are in the stats windows. */
export async function nextSecond(): Promise<void> {
  await sleep(1000 - (Date.now() % 1000) + 20);
}
