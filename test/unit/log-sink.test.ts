import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { LogSink } from '../../src/logger.ts';
import { until } from '../helpers/wait.ts';

/** A log file in a temp dir, open for writing, removed after the test. */
async function tempLog(t: TestContext): Promise<{ file: string; fd: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'switchyard-log-'));
  const file = join(dir, 'out.log');
  const fd = openSync(file, 'w');
  t.after(async () => {
    closeSync(fd);
    await rm(dir, { recursive: true, force: true });
  });
  return { file, fd };
}

describe('LogSink (the JSON log destination)', () => {
  it('holds at most `limit` bytes until they are written: further lines are dropped and counted, the rest written in order', async (t) => {
    const { file, fd } = await tempLog(t);
    const sink = new LogSink(fd, 100);
    const line = (i: number): string => `{"line":${String(i).padStart(2, '0')},"pad":"xxxxxxxxx"}\n`; // 30 bytes
    // lines wait for the batch to be written: three fit the 100-byte queue
    for (let i = 0; i < 10; i++) sink.write(line(i));
    await sink.settle(1000);
    assert.equal(readFileSync(file, 'utf8'), [0, 1, 2].map(line).join(''));
    assert.deepEqual(sink.view(), { writeErrors: 0, droppedLines: 7, broken: false, lastError: null });
    assert.match(sink.lostSummary() ?? '', /^switchyard: 7 log lines could not be written/);
  });

  it('gathers lines for BATCH_MS and writes them together, without anyone asking it to flush', async (t) => {
    const { file, fd } = await tempLog(t);
    const sink = new LogSink(fd);
    sink.write('{"a":1}\n');
    sink.write('{"a":2}\n');
    assert.equal(readFileSync(file, 'utf8'), '', 'nothing written at once');
    await until(t, 'the lines in the file', () => readFileSync(file, 'utf8') !== '', { timeout: 2000, interval: 2 });
    assert.equal(readFileSync(file, 'utf8'), '{"a":1}\n{"a":2}\n');
  });

  it('a destination that refuses for good (EBADF) is counted, never retried, and settle() does not wait for it', async () => {
    // a descriptor number far above any this process opens: a closed one could be reused meanwhile
    const sink = new LogSink(65_000);
    sink.write('{"a":1}\n');
    sink.write('{"a":2}\n');
    const started = Date.now();
    await sink.settle(5000);
    assert.ok(Date.now() - started < 1000);
    sink.write('{"a":3}\n');
    assert.deepEqual(sink.view(), { writeErrors: 1, droppedLines: 3, broken: true, lastError: 'EBADF' });
  });
});
