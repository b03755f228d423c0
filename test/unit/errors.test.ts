import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Writable } from 'node:stream';
import pino from 'pino';
import { codesOf } from '../../src/admin/openapi.ts';
import { writeError } from '../../src/admin/router.ts';
import { ConfigError, ERRORS, NOT_THE_POOLS_FAULT, PROCESS_ERRORS, ProcessError, SwitchyardError, type ErrorCode, type ProcessErrorCode } from '../../src/errors.ts';
import { errorResponse, sendError } from '../../src/dataplane/responses.ts';
import { grpcStatusFor } from '../../src/dataplane/grpc.ts';

// The catalogue kept honest, in the manner of fastify's test/internals/errors.test.js: every code
// made, its status and envelope checked on the wire, and the README's tables checked against the
// catalogue both ways (a code added to one and not the other fails here).

const CODES = Object.keys(ERRORS) as ErrorCode[];
const PROCESS_CODES = Object.keys(PROCESS_ERRORS) as ProcessErrorCode[];
const answersOn = (code: ErrorCode, plane: 'admin' | 'data'): boolean => ERRORS[code].plane === plane || ERRORS[code].plane === 'both';

/** The rows of the first Markdown table after `heading` whose header row starts with `| code |`, as cells. */
function readmeTables(heading: string): string[][][] {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const at = readme.indexOf(`\n${heading}\n`);
  assert.ok(at >= 0, `README has a "${heading}" section`);
  const next = readme.slice(at + heading.length + 2).search(/\n#{2,3} /);
  const section = readme.slice(at, next < 0 ? undefined : at + heading.length + 2 + next);
  const tables: string[][][] = [];
  let rows: string[][] | null = null;
  for (const line of section.split('\n')) {
    if (!line.startsWith('|')) {
      rows = null;
      continue;
    }
    const cells = line.slice(1, -1).split(' | ').map((c) => c.trim());
    const first = cells[0] ?? '';
    if (first === 'code') tables.push((rows = []));
    else if (rows !== null && !/^-+$/.test(first.replace(/\|/g, '-'))) rows.push(cells);
  }
  return tables;
}

/** `code` of a row's first cell, written as inline code. */
function codeOf(cell: string): string {
  const m = /^`([A-Z_]+)`$/.exec(cell);
  assert.ok(m?.[1] !== undefined, `"${cell}" is a code in backquotes`);
  return m[1];
}

describe('the error catalogue (src/errors.ts)', () => {
  let server: Server;
  let base: string;
  before(async () => {
    server = createServer((req, res) => {
      const [, plane, code] = (req.url ?? '').split('/') as [string, string, ErrorCode];
      if (plane === 'admin') writeError(res, new SwitchyardError(code));
      else sendError(res, code, 'req-1', plane === 'data-close');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('gives every code an error status (4xx or 5xx), a message, and the listener that answers with it', () => {
    assert.ok(CODES.length >= 30);
    for (const code of CODES) {
      const { status, message, plane } = ERRORS[code];
      assert.ok(Number.isInteger(status) && status >= 400 && status <= 599, `${code}: status ${status}`);
      assert.ok(message.length > 0 && message === message.trim(), `${code}: message`);
      assert.ok(['admin', 'data', 'both'].includes(plane), `${code}: plane ${plane}`);
      assert.match(code, /^[A-Z][A-Z_]*[A-Z]$/);
    }
  });

  it('makes each code a SwitchyardError with its status, message, and the `{ error: { code, message, details? } }` envelope', () => {
    for (const code of CODES) {
      const err = new SwitchyardError(code);
      assert.ok(err instanceof Error);
      assert.equal(err.name, 'SwitchyardError');
      assert.equal(err.code, code);
      assert.equal(err.status, ERRORS[code].status);
      assert.equal(err.message, ERRORS[code].message);
      assert.deepEqual(JSON.parse(JSON.stringify(err)), { error: { code, message: ERRORS[code].message } });
      const cause = new Error('under it');
      const detailed = new SwitchyardError(code, `${code} in words`, { cause, details: [{ path: 'weights.green', message: 'at most two decimals' }] });
      assert.equal(detailed.cause, cause);
      assert.equal(detailed.status, ERRORS[code].status);
      assert.deepEqual(detailed.toJSON(), { error: { code, message: `${code} in words`, details: [{ path: 'weights.green', message: 'at most two decimals' }] } });
    }
  });

  it('answers each admin code on the wire with its status and the JSON envelope', async () => {
    for (const code of CODES.filter((c) => answersOn(c, 'admin'))) {
      const res = await fetch(`${base}/admin/${code}`);
      assert.equal(res.status, ERRORS[code].status, code);
      assert.match(res.headers.get('content-type') ?? '', /^application\/json/, code);
      assert.deepEqual(await res.json(), { error: { code, message: ERRORS[code].message } }, code);
    }
  });

  it('answers each data-plane code on the wire with its status, a short text body and X-Request-Id, over HTTP and over an upgrade', async () => {
    for (const code of CODES.filter((c) => answersOn(c, 'data'))) {
      const { status, message } = ERRORS[code];
      const res = await fetch(`${base}/data/${code}`);
      assert.equal(res.status, status, code);
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain/, code);
      assert.equal(res.headers.get('x-request-id'), 'req-1', code);
      assert.equal(await res.text(), `${status} ${message}\n`, code);
      const closing = await fetch(`${base}/data-close/${code}`);
      await closing.arrayBuffer();
      assert.equal(closing.headers.get('connection'), 'close', code);
      const raw = errorResponse(code, 'req-2');
      assert.match(raw, new RegExp(`^HTTP/1\\.1 ${status} `), code);
      assert.match(raw, /\r\nx-request-id: req-2\r\n/i, code);
      assert.ok(raw.endsWith(`\r\n\r\n${status} ${message}\n`), code);
    }
  });

  it('answers each data-plane code to a gRPC call as HTTP 200 with its grpc-status and the message', async () => {
    for (const code of CODES.filter((c) => answersOn(c, 'data'))) {
      const res = await fetch(`${base}/data/${code}`, { method: 'POST', headers: { 'content-type': 'application/grpc' }, body: new Uint8Array(5) });
      await res.arrayBuffer();
      assert.equal(res.status, 200, code);
      assert.equal(res.headers.get('grpc-status'), String(grpcStatusFor(ERRORS[code].status)), code);
      assert.equal(decodeURIComponent(res.headers.get('grpc-message') ?? ''), ERRORS[code].message, code);
      assert.equal(res.headers.get('x-request-id'), 'req-1', code);
    }
  });

  it('lists in the OpenAPI document exactly the admin codes of each status', () => {
    for (const status of new Set(CODES.map((c) => ERRORS[c].status))) {
      assert.deepEqual(codesOf(status).sort(), CODES.filter((c) => ERRORS[c].status === status && answersOn(c, 'admin')).sort(), `status ${status}`);
    }
  });

  it('counts only codes of the catalogue as the proxy\'s own doing, and each of them is the data plane\'s', () => {
    for (const code of NOT_THE_POOLS_FAULT) assert.ok(answersOn(code, 'data'), code);
  });

  it('makes each process error a ProcessError with its code and message, and a bad configuration a ConfigError naming the key paths', () => {
    for (const code of PROCESS_CODES) {
      const err = new ProcessError(code);
      assert.ok(err instanceof Error);
      assert.equal(err.name, 'ProcessError');
      assert.equal(err.code, code);
      assert.equal(err.message, PROCESS_ERRORS[code].message);
      assert.equal(new ProcessError(code, 'said otherwise').message, 'said otherwise');
      assert.ok(!(code in ERRORS), `${code} is not also an answer's code`);
    }
    const config = new ConfigError(['listen.port: must be an integer', 'apps[0].name: required']);
    assert.deepEqual(config.issues, ['listen.port: must be an integer', 'apps[0].name: required']);
    assert.equal(config.message, 'invalid configuration:\n  listen.port: must be an integer\n  apps[0].name: required');
  });

  it('logs a process error with its code, as the fatal line at start carries it', () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk: Buffer, _enc, done) => (lines.push(chunk.toString()), done()) });
    const logger = pino({ base: null }, sink);
    for (const code of PROCESS_CODES) logger.fatal({ err: new ProcessError(code) }, 'switchyard failed to start');
    const logged = lines.map((l) => (JSON.parse(l) as { err: { type: string; code: string; message: string } }).err);
    assert.deepEqual(logged.map((e) => [e.type, e.code, e.message]), PROCESS_CODES.map((c) => ['ProcessError', c, PROCESS_ERRORS[c].message]));
  });

  it("matches the README's error table both ways: every code with its status, listener and gRPC status, and no code the catalogue lacks", () => {
    const [answers, process] = readmeTables('### Error codes');
    assert.ok(answers !== undefined && process !== undefined, 'two tables: answers and process errors');
    const listed = new Map(answers.map((cells) => [codeOf(cells[0] ?? ''), cells]));
    assert.equal(listed.size, answers.length, 'no code listed twice');
    for (const code of CODES) assert.ok(listed.has(code), `${code} is in the catalogue but not in the README`);
    for (const [code, [, status, where, grpc]] of listed) {
      assert.ok(code in ERRORS, `${code} is in the README but not in the catalogue`);
      const e = ERRORS[code as ErrorCode];
      assert.equal(Number(status), e.status, `${code}: status`);
      assert.equal(where, e.plane === 'both' ? 'admin, data' : e.plane, `${code}: where`);
      assert.equal(grpc, e.plane === 'admin' ? '—' : String(grpcStatusFor(e.status)), `${code}: gRPC`);
    }
    const processListed = new Map(process.map((cells) => [codeOf(cells[0] ?? ''), cells]));
    assert.equal(processListed.size, process.length);
    for (const code of PROCESS_CODES) assert.ok(processListed.has(code), `${code} is in the catalogue but not in the README`);
    for (const [code, [, when]] of processListed) {
      assert.ok(code in PROCESS_ERRORS, `${code} is in the README but not in the catalogue`);
      assert.equal(when, PROCESS_ERRORS[code as ProcessErrorCode].when, `${code}: when`);
    }
  });
});
