import { fuzzAll, SURFACES } from '../test/fuzz/run.ts';

/**
 * `npm run fuzz`: the edge's properties (test/fuzz/edge.ts) for a long time, a fresh seed per
 * round. FUZZ_SECONDS (default 600) bounds the whole run; FUZZ_SEED replays one round. A failure
 * prints fast-check's report (seed, path, counterexample) and exits 1: add the case to the
 * hostile corpus or a regression test once fixed.
 */
const seconds = Number(process.env['FUZZ_SECONDS'] ?? 600);
const fixedSeed = process.env['FUZZ_SEED'];
const deadline = Date.now() + seconds * 1000;
const totals: Record<string, number> = Object.fromEntries(SURFACES.map((s) => [s, 0]));
let rounds = 0;
try {
  do {
    const seed = fixedSeed === undefined ? (Math.random() * 2 ** 31) | 0 : Number(fixedSeed);
    // a round gives each surface an equal share of what is left, at most 60 s
    const msPerSurface = Math.max(1000, Math.min(60_000, Math.floor((deadline - Date.now()) / SURFACES.length)));
    console.log(`round ${rounds + 1}: seed ${seed}, ${Math.round(msPerSurface / 1000)} s per surface`);
    const ran = await fuzzAll({ seed, numRuns: Number.MAX_SAFE_INTEGER, msPerSurface, log: (l) => console.log(`  ${l}`) });
    for (const [k, v] of Object.entries(ran)) totals[k] = (totals[k] ?? 0) + v;
    rounds++;
  } while (fixedSeed === undefined && Date.now() < deadline - 10_000);
  console.log(`no failure in ${rounds} round(s): ${Object.entries(totals).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  process.exit(0);
} catch (err) {
  console.error((err as Error).message);
  process.exit(1);
}
