#!/usr/bin/env node
// The published package runs the compiled dist/; a checkout runs the TypeScript source, which
// Node (>= 22.18) strips of its types by itself.
import { existsSync } from 'node:fs';
import process from 'node:process';
import { URL } from 'node:url';

const dist = new URL('../dist/cli/main.js', import.meta.url);
const entry = existsSync(dist) ? dist : new URL('../src/cli/main.ts', import.meta.url);
const { runCli } = await import(entry.href);
const code = await runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env });
if (code !== 0) process.exitCode = code;
