import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { it } from 'node:test';
import pino from 'pino';
import type { RequestRecord } from '../../src/dataplane/types.ts';
import { createLogger, LogSink } from '../../src/logger.ts';
import { createAccessLog, directLine } from '../../src/metrics/access-log.ts';

function record(path: string, status: number, error: RequestRecord['outcome']['error']): RequestRecord {
  return {
    app: { name: 'shop', revision: 7 },
    pool: { name: 'blue', version: '1.0.0-"rc"' },
    by: 'weights',
    requestId: 'abcdef012345-1z',
    method: 'GET',
    path,
    outcome: { status, error, startedAt: 1000, headAt: 1004, endedAt: 1012 },
  } as unknown as RequestRecord;
}

const RECORDS = [
  record('/cart/items?token=s3cret', 200, null),
  record('/odd "quoted" \\ path\u0001é', 404, null),
  record('/down', 503, 'NO_TARGET'),
];

it('the access line written straight into the log sink is byte for byte what pino writes for it (up to the time)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'access-log-'));
  t.after(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  const fd = openSync(join(dir, 'log'), 'w');
  const sink = new LogSink(fd);
  const logger = createLogger('info', false, sink);
  assert.ok(directLine(logger) !== null, 'the log sink gets the line written directly');
  const direct = createAccessLog(logger);
  const viaPino: string[] = [];
  const generic = createAccessLog(pino({ level: 'info' }, new Writable({ write: (c: Buffer, _e, cb) => (viaPino.push(c.toString()), cb()) })));
  for (const r of RECORDS) {
    direct(r);
    generic(r);
  }
  await sink.settle(1000);
  closeSync(fd);
  const time = /"time":\d+/g;
  const written = readFileSync(join(dir, 'log'), 'utf8').replace(time, '"time":0');
  assert.equal(written, viaPino.join('').replace(time, '"time":0'));
  assert.equal(written.split('\n').length, RECORDS.length + 1);
  assert.ok(!written.includes('s3cret'), 'never the query');
  // the whole response's time and its time to the head, both
  assert.match(written, /"ms":12,"headMs":4,/);
});
