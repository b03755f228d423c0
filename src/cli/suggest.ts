import type { AdminClient } from './client.ts';

/**
 * Edit distance (insert, delete, substitute, swap of neighbours), small inputs only. Written here
 * rather than taken from a package: a dozen lines over names of at most 63 characters.
 */
function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const row = d[i] as number[];
      const up = d[i - 1] as number[];
      row[j] = Math.min((up[j] as number) + 1, (row[j - 1] as number) + 1, (up[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j] as number, ((d[i - 2] as number[])[j - 2] as number) + 1);
    }
  }
  return (d[a.length] as number[])[b.length] as number;
}

/** The candidate closest to `word` when it is close enough to be a typo (a third of its length, at least 1), else undefined. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  const w = word.toLowerCase();
  let best: string | undefined;
  let bestD = Math.max(1, Math.floor(word.length / 3)) + 1;
  for (const c of candidates) {
    const d = c.toLowerCase().startsWith(w) && w.length >= 2 ? 1 : distance(w, c.toLowerCase());
    if (d < bestD) {
      best = c;
      bestD = d;
    }
  }
  return best;
}

/** `valid apps: blog, shop; did you mean "shop"?` */
export function namesHint(what: string, word: string, names: readonly string[]): string {
  const guess = closest(word, names);
  return `valid ${what}: ${names.length === 0 ? '(none)' : names.join(', ')}${guess === undefined ? '' : `; did you mean "${guess}"?`}`;
}

/**
 * The hint line for an unknown app or pool the admin API reported, listing the valid names
 * (read from the API, so the list is the server's); undefined for other errors or when the names
 * cannot be read.
 */
export async function unknownNameHint(client: AdminClient, code: string, message: string): Promise<string | undefined> {
  try {
    if (code === 'UNKNOWN_APP') {
      const app = /unknown app "([^"]*)"/.exec(message)?.[1];
      if (app === undefined) return undefined;
      const { apps } = await client.get<{ apps: { app: string }[] }>('/v1/apps');
      return namesHint('apps', app, apps.map((a) => a.app));
    }
    if (code === 'UNKNOWN_POOL') {
      const m = /app "([^"]*)" has no pool "([^"]*)"/.exec(message);
      if (m === null) return undefined;
      const state = await client.get<{ pools: Record<string, unknown> }>(`/v1/apps/${encodeURIComponent(m[1] as string)}`);
      return namesHint(`pools of ${m[1] as string}`, m[2] as string, Object.keys(state.pools));
    }
  } catch {
    // the hint is a courtesy: the error itself has been printed
  }
  return undefined;
}
