import { createRequire } from 'node:module';
import type { RE2JS } from 're2js';

const require = createRequire(import.meta.url);
let re2: typeof RE2JS | undefined;

/**
 * A regex compiled by RE2JS (linear-time matching: see config/routing-schema.ts). The module
 * (~260 KB of JavaScript) is loaded on the first pattern, so a proxy whose rules have no regex
 * never pays for it at start.
 */
export function compileLinear(source: string): RE2JS {
  re2 ??= (require('re2js') as { RE2JS: typeof RE2JS }).RE2JS;
  return re2.compile(source);
}
