#!/usr/bin/env node
// The published package and the image have only dist/. A checkout runs dist/ when it is the build
// of src/ as it is now (dist/.source-hash, written by `npm run build` and by `npm install`'s
// `prepare`, matches a hash of src/: ./dist-stamp.js), and the TypeScript source otherwise (Node
// >= 22.18 strips the types itself), so a stale dist/ never runs. Why not always the source: the
// same process from dist/ holds 4-5 MiB less, and 20 MiB less after a change to src/ (the type
// stripper, README Performance, "Memory by start path"). SWITCHYARD_FROM_SOURCE=1 runs the source.
import { existsSync, readFileSync } from 'node:fs';
import process from 'node:process';
import { fileURLToPath, URL } from 'node:url';
import module from 'node:module';
import { distIsCurrent } from './dist-stamp.js';

const source = new URL('../src/cli/main.ts', import.meta.url);
const checkout = existsSync(source);
// the floor is package.json's `engines` (undici 8's own floor), so this message and the
// package's claim cannot drift apart; the source also needs type stripping (22.18)
const { engines } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const [needMajor = 0, needMinor = 0] = (/(\d+)\.(\d+)/.exec(engines?.node ?? '') ?? []).slice(1).map(Number);
const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
if (major < needMajor || (major === needMajor && minor < needMinor)) {
  const hint = checkout ? '; run it through npx or npm, which use the project\'s Node 24' : '';
  process.stderr.write(`switchyard: needs Node ${engines.node} (this is ${process.version})${hint}\n`);
  process.exit(1);
}
const fromSource = checkout && (process.env.SWITCHYARD_FROM_SOURCE === '1' || !existsSync(new URL('../dist/cli/main.js', import.meta.url)) || !distIsCurrent(fileURLToPath(new URL('..', import.meta.url))));
// From source, Node strips the types of every module at each start, and the stripper (a
// WebAssembly build of swc) keeps ~20 MiB resident for the life of the process (measured: 128
// MiB peak at ready against 102 from dist/). Node's compile cache keeps the stripped and compiled
// modules on disk, so later starts load no stripper (107 MiB). The env variable carries it to
// the process re-executed below with the tuned runtime.
if (fromSource && process.env.NODE_COMPILE_CACHE === undefined) {
  const cache = fileURLToPath(new URL('../node_modules/.cache/switchyard-compile', import.meta.url));
  process.env.NODE_COMPILE_CACHE = cache;
  module.enableCompileCache?.(cache);
}
// `serve` runs with Switchyard's tuned runtime (V8 heap flags, glibc arenas: src/tuned-runtime.ts),
// which needs a fresh process: this one is replaced now (same pid, stdio and signals), before it
// loads the program, which the new process would load (and a checkout's, strip) a second time
if (process.argv[2] === 'serve') {
  const tuning = new URL(fromSource ? '../src/tuned-runtime.ts' : '../dist/tuned-runtime.js', import.meta.url);
  const { relaunchTuned } = await import(tuning.href);
  if (relaunchTuned(fileURLToPath(import.meta.url), process.argv.slice(2))) await new Promise(() => {});
}
const entry = fromSource ? source : new URL('../dist/cli/main.js', import.meta.url);
const { runCli } = await import(entry.href);
const code = await runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env });
if (code !== 0) process.exitCode = code;
