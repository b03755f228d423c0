import pino, { type Logger } from 'pino';

/**
 * JSON lines for machines; human-readable lines (pino-pretty) when stdout is a terminal.
 * Tokens never reach a log line: the redact list is the last line of defence.
 */
export function createLogger(level: string, pretty: boolean): Logger {
  const redact = { paths: ['token', '*.token', 'req.headers.authorization', 'headers.authorization'], censor: '[redacted]' };
  if (pretty) {
    return pino({ level, redact, transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' } } });
  }
  return pino({ level, redact });
}
