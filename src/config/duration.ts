const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const RE = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/;

/** `250ms`, `5s`, `10m`, `1h`, `1d` (or a bare number of milliseconds) into milliseconds. */
export function parseDuration(input: string | number): number | undefined {
  if (typeof input === 'number') return Number.isFinite(input) && input >= 0 ? input : undefined;
  const m = RE.exec(input.trim());
  if (!m) return undefined;
  return Math.round(Number(m[1]) * (UNITS[m[2] as string] as number));
}

export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
