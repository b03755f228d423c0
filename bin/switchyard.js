#!/usr/bin/env node
// A checkout runs the TypeScript source (Node >= 22.18 strips the types itself), so a stale
// dist/ can never shadow it; the published package and the image have only dist/.
import { existsSync } from 'node:fs';
import process from 'node:process';
import { URL } from 'node:url';

const source = new URL('../src/cli/main.ts', import.meta.url);
const fromSource = existsSync(source);
const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
if (fromSource && (major < 22 || (major === 22 && minor < 18))) {
  process.stderr.write(`switchyard: running from source needs Node >= 22.18 (this is ${process.version}); run it through npx or npm, which use the project's Node 24\n`);
  process.exit(1);
}
const entry = fromSource ? source : new URL('../dist/cli/main.js', import.meta.url);
const { runCli } = await import(entry.href);
const code = await runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env });
if (code !== 0) process.exitCode = code;
