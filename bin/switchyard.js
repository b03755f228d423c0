#!/usr/bin/env node
// The published package runs the compiled dist/; a checkout runs the TypeScript source, which
// Node (>= 22.18) strips of its types by itself.
import { existsSync } from 'node:fs';
import process from 'node:process';
import { URL } from 'node:url';

const dist = new URL('../dist/cli/main.js', import.meta.url);
const fromSource = !existsSync(dist);
const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
if (fromSource && (major < 22 || (major === 22 && minor < 18))) {
  process.stderr.write(`switchyard: running from source needs Node >= 22.18 (this is ${process.version}); run \`npm run build\` or use a newer Node\n`);
  process.exit(1);
}
const entry = fromSource ? new URL('../src/cli/main.ts', import.meta.url) : dist;
const { runCli } = await import(entry.href);
const code = await runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env });
if (code !== 0) process.exitCode = code;
