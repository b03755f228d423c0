import assert from 'node:assert/strict';
import { it } from 'node:test';
import { fuzzAll, SURFACES } from '../fuzz/run.ts';

// A short seeded round of the edge's properties (test/fuzz/edge.ts) in every test run, bounded in
// time so CI stays quick; `npm run fuzz` runs them for minutes with fresh seeds (FUZZ_SECONDS).
it('fuzz: no input from a client or an upstream crashes, hangs or smuggles (seeded, bounded)', async () => {
  const seed = Number(process.env['FUZZ_SEED'] ?? 22);
  const ran = await fuzzAll({ seed, numRuns: 150, msPerSurface: 2000 });
  for (const s of SURFACES) assert.ok((ran[s] ?? 0) > 0, `${s}: no case ran`);
});
