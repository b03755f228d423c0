import fc from 'fast-check';
import { checkBaseline, h2Property, http1Property, openFds, rawUpstream, startFuzzTarget, tlsProperty, upstreamProperty } from './edge.ts';

export interface FuzzRun {
  /** fast-check's seed: the same seed replays the same cases */
  readonly seed: number;
  /** cases per surface at most */
  readonly numRuns: number;
  /** time per surface at most, ms (cases stop there; not a failure) */
  readonly msPerSurface: number;
  readonly log?: (line: string) => void;
}

/** The surfaces, each against the engines and fronts that serve it. */
export const SURFACES = ['http1 native (raw front)', 'http1 undici (node:http)', 'h2 (TLS)', 'TLS ClientHello/SNI', 'upstream responses native', 'upstream responses undici'] as const;

/**
 * Runs every property of test/fuzz/edge.ts with one seed; throws fast-check's report (seed,
 * path, counterexample) on the first failure. Used by test/integration/fuzz.test.ts (short) and
 * scripts/fuzz.ts (`npm run fuzz`, long).
 */
export async function fuzzAll(run: FuzzRun): Promise<Record<string, number>> {
  const ran: Record<string, number> = {};
  const params = (surface: string): fc.Parameters<unknown> => ({
    seed: run.seed,
    numRuns: run.numRuns,
    interruptAfterTimeLimit: run.msPerSurface,
    markInterruptAsFailure: false,
    endOnFailure: true,
    includeErrorInReport: true,
    reporter: (details) => {
      ran[surface] = details.numRuns;
      if (details.failed) throw new Error(fc.defaultReportMessage(details) ?? `fuzz ${surface} failed`);
    },
  });
  const check = async <T extends unknown[]>(surface: string, p: fc.IAsyncPropertyWithHooks<T>): Promise<void> => {
    await fc.assert(p, params(surface) as fc.Parameters<T>);
    run.log?.(`${surface}: ${ran[surface] ?? 0} cases`);
  };
  for (const engine of ['native', 'undici'] as const) {
    const t = await startFuzzTarget(engine, engine === 'undici');
    const fds = openFds();
    try {
      await check(engine === 'native' ? SURFACES[0] : SURFACES[1], http1Property(t));
      if (engine === 'undici') {
        const h2 = h2Property(t);
        try {
          await check(SURFACES[2], h2.property);
        } finally {
          h2.close();
        }
        await check(SURFACES[3], tlsProperty(t));
      }
      await checkBaseline(t, fds);
    } finally {
      await t.close();
    }
  }
  for (const engine of ['native', 'undici'] as const) {
    const raw = await rawUpstream();
    const t = await startFuzzTarget(engine, false, `http://127.0.0.1:${raw.port}`);
    const fds = openFds();
    try {
      await check(engine === 'native' ? SURFACES[4] : SURFACES[5], upstreamProperty(t, raw));
      await checkBaseline(t, fds);
    } finally {
      await t.close();
      await raw.close();
    }
  }
  return ran;
}
