import { parseArgs } from 'node:util';
import { build } from './app.ts';
import { loadConfig } from './config/load.ts';
import { ConfigError } from './errors.ts';
import { createLogger } from './logger.ts';

/**
 * Process wiring, the only module that touches `process`: config from `--config` or
 * $SWITCHYARD_CONFIG, signals, exit codes (0 clean stop, 1 runtime failure, 2 bad config).
 */
export async function serve(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' } }, allowPositionals: false });
  const file = values.config ?? process.env['SWITCHYARD_CONFIG'] ?? 'config/switchyard.yaml';
  let config;
  try {
    config = await loadConfig(file, process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`switchyard: ${file}: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config.log.level, process.stdout.isTTY === true);
  let app;
  try {
    app = await build(config, { logger });
    await app.listen();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`switchyard: ${err.message}\n`);
      process.exit(2);
    }
    logger.fatal({ err }, 'switchyard failed to start');
    process.exit(1);
  }
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'signal received');
    app.shutdown().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.fatal({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

if (import.meta.main) {
  const [cmd, ...rest] = process.argv.slice(2);
  serve(cmd === 'serve' || cmd === undefined ? rest : process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`switchyard: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
