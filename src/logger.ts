import { write as fsWrite, writeSync } from 'node:fs';
import pino, { type DestinationStream, type Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';

/** Most bytes of log lines held while the destination is slow; past it lines are dropped (and counted). */
export const LOG_QUEUE_LIMIT = 4 * 1024 * 1024;
/**
 * Lines are gathered for up to BATCH_MS, or until BATCH_BYTES wait, and written in one write: one
 * write per access line cost a thread-pool round trip per request (5 % of the proxy's CPU at
 * tiny bodies), as sonic-boom's `minLength` batches for the same reason.
 */
export const BATCH_MS = 10;
const BATCH_BYTES = 64 * 1024;
/** Pause before writing again when the destination is full (EAGAIN), as sonic-boom does. */
const RETRY_MS = 100;
/** The destination is gone for good: nothing written later can arrive. */
const FATAL = new Set(['EPIPE', 'EBADF', 'ECONNRESET', 'EINVAL']);

/** What the log destination lost, for `/readyz` and the metrics. */
export interface LogSinkView {
  /** failed writes to the destination (each may have carried several lines) */
  readonly writeErrors: number;
  /** lines that never reached the destination: failed writes, a full queue, a broken destination */
  readonly droppedLines: number;
  /** the destination refused for good (EPIPE: its reader is gone); lines are dropped from then on */
  readonly broken: boolean;
  readonly lastError: string | null;
}

/**
 * pino's destination for the JSON log on a file descriptor (stdout): asynchronous writes, a
 * bounded queue, and a write error is counted and never waited on.
 *
 * Written here rather than using pino's default (sonic-boom 4.2.1): sonic-boom's final
 * synchronous flush sleeps 100 ms and retries on *every* write error, so once stdout's reader is
 * gone (EPIPE) the process loops forever at exit; its async `flush()` cannot tell when a
 * queue is empty either. A log that cannot be written must never block shutdown or the data plane.
 */
export class LogSink implements DestinationStream {
  private readonly fd: number;
  private readonly limit: number;
  private queue: string[] = [];
  private queued = 0;
  private writing = false;
  private batch: NodeJS.Timeout | null = null;
  private idle: (() => void)[] = [];
  private readonly flushNow = (): void => {
    if (this.batch !== null) clearTimeout(this.batch);
    this.batch = null;
    if (!this.writing) this.next();
  };
  writeErrors = 0;
  droppedLines = 0;
  broken = false;
  lastError: string | null = null;

  /** @param fd @default 1 (stdout) @param limit bytes queued at most @default LOG_QUEUE_LIMIT */
  constructor(fd = 1, limit = LOG_QUEUE_LIMIT) {
    this.fd = fd;
    this.limit = limit;
  }

  write(line: string): void {
    if (this.broken || this.queued + line.length > this.limit) {
      this.droppedLines++;
      return;
    }
    this.queue.push(line);
    this.queued += line.length;
    if (this.writing) return;
    if (this.queued >= BATCH_BYTES) this.flushNow();
    else this.batch ??= setTimeout(this.flushNow, BATCH_MS).unref();
  }

  private next(): void {
    if (this.queue.length === 0) {
      this.writing = false;
      for (const fn of this.idle.splice(0)) fn();
      return;
    }
    const lines = this.queue.length;
    const buf = Buffer.from(this.queue.join(''));
    this.queue = [];
    this.queued = 0;
    this.writing = true;
    this.send(buf, lines);
  }

  /** A write is done: lines that came meanwhile wait for their batch too, unless there are many. */
  private written(): void {
    if (this.queue.length === 0 || this.queued >= BATCH_BYTES) return this.next();
    this.writing = false;
    this.batch ??= setTimeout(this.flushNow, BATCH_MS).unref();
  }

  private send(buf: Buffer, lines: number): void {
    fsWrite(this.fd, buf, 0, buf.length, null, (err, n) => {
      if (err === null) {
        if (n < buf.length) return this.send(buf.subarray(n), lines);
        return this.written();
      }
      if (err.code === 'EAGAIN') {
        setTimeout(() => this.send(buf, lines), RETRY_MS).unref();
        return;
      }
      this.failed(err.code ?? err.message, lines);
      this.next();
    });
  }

  private failed(code: string, lines: number): void {
    this.writeErrors++;
    this.droppedLines += lines;
    this.lastError = code;
    if (FATAL.has(code)) {
      this.broken = true;
      this.droppedLines += this.queue.length;
      this.queue = [];
      this.queued = 0;
    }
  }

  /** Resolves once every queued line is written (or dropped), or after `ms`: never waits longer. */
  settle(ms: number): Promise<void> {
    if (this.batch !== null) this.flushNow();
    if (!this.writing) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms).unref();
      this.idle.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /**
   * At process exit: one synchronous attempt at what is still queued, no retry. Not while an
   * asynchronous write is still under way: the destination is stuck, a blocking write could hang
   * the exit, and the queued lines are counted as dropped instead.
   */
  writeRemainingSync(): void {
    if (this.batch !== null) clearTimeout(this.batch);
    this.batch = null;
    if (this.broken || this.queue.length === 0) return;
    const lines = this.queue.length;
    if (this.writing) {
      this.droppedLines += lines;
      return;
    }
    const data = this.queue.join('');
    this.queue = [];
    this.queued = 0;
    try {
      writeSync(this.fd, data);
    } catch (err) {
      this.failed((err as NodeJS.ErrnoException).code ?? String(err), lines);
    }
  }

  /** One line for stderr at exit when lines were lost (the log itself cannot say so), else null. */
  lostSummary(): string | null {
    if (this.droppedLines === 0 && this.writeErrors === 0) return null;
    return `switchyard: ${this.droppedLines} log lines could not be written (${this.writeErrors} failed writes, last error ${this.lastError ?? 'none: the queue was full'})\n`;
  }

  view(): LogSinkView {
    return { writeErrors: this.writeErrors, droppedLines: this.droppedLines, broken: this.broken, lastError: this.lastError };
  }
}

/** `switchyard_log_write_errors_total` and `switchyard_log_dropped_lines_total`, read from the sink at scrape time. */
export function registerLogMetrics(registry: Registry, sink: LogSink): void {
  new Counter({
    name: 'switchyard_log_write_errors_total',
    help: 'Failed writes to the log destination (stdout); the proxy goes on without waiting',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(sink.writeErrors);
    },
  });
  new Counter({
    name: 'switchyard_log_dropped_lines_total',
    help: 'Log lines (access and others) that never reached the log destination',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(sink.droppedLines);
    },
  });
}

/**
 * JSON lines for machines (into `sink` when given, else stdout through pino's default);
 * human-readable lines (pino-pretty) when stdout is a terminal.
 * Tokens never reach a log line: the redact list is the last line of defence.
 */
export function createLogger(level: string, pretty: boolean, sink?: LogSink): Logger {
  const redact = { paths: ['token', '*.token', 'req.headers.authorization', 'headers.authorization'], censor: '[redacted]' };
  if (pretty) {
    return pino({ level, redact, transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' } } });
  }
  return sink === undefined ? pino({ level, redact }) : pino({ level, redact }, sink);
}
