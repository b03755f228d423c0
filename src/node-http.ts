import type * as Http from 'node:http';
import type * as Https from 'node:https';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/**
 * node:http and node:https, loaded with require().
 *
 * Why not `import { createServer } from 'node:http'`: an ES import of a built-in builds a module
 * namespace from all its exports, which runs node:http's lazy getters (`WebSocket`,
 * `CloseEvent`, `MessageEvent`), and they load Node's bundled copy of undici, fetch and all:
 * 13 MB of RSS the proxy never uses (measured on Node 24: 57.9 MB after the import, 44.9 MB
 * after the require). `import type` is free and stays as it is.
 */
export const http = require('node:http') as typeof Http;

let httpsModule: typeof Https | undefined;

/** node:https (TLS, OpenSSL's setup: ~5 MB) on first use, for https targets only. */
export function https(): typeof Https {
  return (httpsModule ??= require('node:https') as typeof Https);
}
