import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.ts';
import { EXIT, jsonError } from './exit-codes.ts';
import { AdminClient, ApiError, UnreachableError } from './client.ts';
import { COMMANDS, UsageError, type ApiCommand, type CommandContext } from './commands.ts';
import { closest, unknownNameHint } from './suggest.ts';

/** Where the CLI writes and what it reads of its environment, so tests run it in-process. */
export interface CliIo {
  readonly stdout: { write(chunk: string): unknown };
  readonly stderr: { write(chunk: string): unknown };
  readonly env: Readonly<Record<string, string | undefined>>;
  /** @default Date.now */
  readonly now?: () => number;
  /** @default node:timers/promises setTimeout */
  readonly sleep?: (ms: number) => Promise<unknown>;
}

export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:8081';

export const GLOBAL_OPTIONS = {
  'admin-url': { type: 'string' },
  token: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsOptionsConfig;

const GLOBAL_USAGE = '[--admin-url URL] [--token TOKEN] [--json]';

/** Help lines stay within a terminal's 80 columns. */
export const HELP_WIDTH = 80;

/** `text` broken at spaces into lines of at most `width` columns, each starting with `indent`. */
export function wrap(text: string, indent: string, width = HELP_WIDTH): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter((w) => w !== '')) {
    if (line !== '' && indent.length + line.length + 1 + word.length > width) {
      lines.push(indent + line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  if (line !== '') lines.push(indent + line);
  return lines;
}

function usage(): string {
  const lines = Object.values(COMMANDS).flatMap((c) => [...wrap(c.usage, '  '), ...wrap(c.summary, '      ')]);
  return [
    ...wrap(`usage: switchyard COMMAND ${GLOBAL_USAGE}`, ''),
    ...wrap('switchyard --version | switchyard help COMMAND', '       '),
    '',
    ...lines,
    '',
    ...wrap(`The admin API is --admin-url, $SWITCHYARD_ADMIN_URL or ${DEFAULT_ADMIN_URL}; the token --token or $SWITCHYARD_TOKEN.`, ''),
    ...wrap('Exit codes: 0 done, 1 the API refused, 2 a bad call, 3 a --wait ran out, 4 the admin API unreachable, 5 a rollout rolled back or aborted.', ''),
  ].join('\n');
}

/** One command's help: its usage line and what it does, within HELP_WIDTH. */
function commandHelp(cmd: { usage: string; summary: string }): string {
  return [...wrap(`usage: switchyard ${cmd.usage} ${GLOBAL_USAGE}`, '', HELP_WIDTH), '', ...wrap(cmd.summary, '')].join('\n');
}

/** The package's version (package.json sits two levels above src/cli/ and dist/cli/ alike). */
export function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { name: string; version: string };
  return `switchyard ${pkg.version} (${pkg.name}, Node ${process.versions.node})`;
}

/** The command name is the first argument that is neither an option nor a global option's value. */
function splitCommand(argv: readonly string[]): { name: string | undefined; rest: string[]; after: string[] } {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--admin-url' || a === '--token') i++;
    else if (!a.startsWith('-')) return { name: a, rest: [...argv.slice(0, i), ...argv.slice(i + 1)], after: argv.slice(i + 1) };
  }
  return { name: undefined, rest: [...argv], after: [] };
}

/**
 * Runs `switchyard ARGV…` and resolves to its exit code: 0 done, 1 API error or unreachable
 * admin API, 2 a bad call (printed with the usage line).
 */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  const out = (line: string) => void io.stdout.write(`${line}\n`);
  const err = (line: string) => void io.stderr.write(`${line}\n`);
  const { name, rest, after } = splitCommand(argv);
  const json = argv.includes('--json');
  /** an error as the call asked for it: one JSON line on stderr with --json, else text */
  const failure = (exit: number, code: string, message: string, extra: Record<string, unknown> = {}): number => {
    err(json ? jsonError(code, message, exit, extra) : message);
    return exit;
  };

  if (name === undefined && (argv.includes('--version') || argv.includes('-V'))) {
    out(version());
    return EXIT.ok;
  }
  if (name === 'version') {
    out(version());
    return EXIT.ok;
  }
  if (name === undefined || name === 'help') {
    const topic = name === 'help' ? after[0] : undefined;
    const cmd = topic === undefined ? undefined : COMMANDS[topic];
    if (cmd !== undefined) out(commandHelp(cmd));
    else if (name === 'help' || argv.includes('--help') || argv.includes('-h')) out(usage());
    else {
      const unknown = argv.find((a) => a.startsWith('-'));
      if (unknown !== undefined && !json) err(`error: unknown option ${unknown}`);
      err(usage());
      return EXIT.usage;
    }
    return EXIT.ok;
  }
  const cmd = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (cmd === undefined) {
    const guess = closest(name, Object.keys(COMMANDS));
    return failure(EXIT.usage, 'USAGE', `error: unknown command "${name}"${guess === undefined ? '' : `; did you mean "${guess}"?`}\n${usage()}`);
  }
  const usageLine = wrap(`usage: switchyard ${cmd.usage} ${GLOBAL_USAGE}`, '').join('\n');

  if ('raw' in cmd) {
    if (after.includes('--help') || after.includes('-h')) {
      out(commandHelp(cmd));
      return EXIT.ok;
    }
    try {
      return await cmd.raw(after, { out, err });
    } catch (e) {
      if (e instanceof ConfigError) return failure(EXIT.usage, 'BAD_CONFIG', e.message);
      const code = (e as { code?: unknown }).code;
      if (e instanceof UsageError || (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_'))) {
        return failure(EXIT.usage, 'USAGE', `error: ${(e as Error).message}\n${usageLine}`);
      }
      return failure(EXIT.refused, 'FAILED', `error: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  let client: AdminClient | undefined;
  try {
    const { values, positionals } = parseCommandArgs(cmd, rest);
    if (values.help === true) {
      out(commandHelp(cmd));
      return EXIT.ok;
    }
    const [min, max] = cmd.args;
    if (positionals.length < min) throw new UsageError(`missing ${cmd.usage.split(' ').slice(1 + positionals.length, 1 + min).join(' ')}`);
    if (positionals.length > max) throw new UsageError(`unexpected argument "${positionals[max]}"`);
    const baseUrl = str(values['admin-url']) ?? io.env.SWITCHYARD_ADMIN_URL ?? DEFAULT_ADMIN_URL;
    try {
      client = new AdminClient({ baseUrl, token: str(values.token) ?? io.env.SWITCHYARD_TOKEN });
    } catch (e) {
      throw new UsageError(e instanceof TypeError ? `bad admin URL "${baseUrl}": ${e.message}` : String(e));
    }
    const ctx: CommandContext = {
      args: positionals,
      values,
      client,
      json: values.json === true,
      out,
      err,
      now: io.now ?? Date.now,
      sleep: async (ms) => void (await (io.sleep ?? sleep)(ms)),
      env: io.env,
    };
    return await cmd.run(ctx);
  } catch (e) {
    if (e instanceof UsageError) return failure(EXIT.usage, 'USAGE', json ? e.message : `error: ${e.message}\n${usageLine}`);
    if (e instanceof ApiError) {
      if (json) return failure(EXIT.refused, e.code, e.message, { status: e.status });
      err(`error ${e.code}: ${e.message}`);
      if (e.status === 401) err('hint: pass the admin token with --token or $SWITCHYARD_TOKEN');
      // neither "done" nor "not done": retrying blindly could apply it twice
      if (e.code === 'WRITE_OUTCOME_UNKNOWN') err('hint: the write may or may not have landed; check `switchyard status` and `switchyard history` before retrying');
      const names = client === undefined ? undefined : await unknownNameHint(client, e.code, e.message);
      if (names !== undefined) err(`hint: ${names}`);
      return EXIT.refused;
    }
    if (e instanceof UnreachableError) return failure(EXIT.unreachable, 'UNREACHABLE', json ? e.message : `error: ${e.message}`);
    return failure(EXIT.refused, 'FAILED', json ? String((e as Error).message ?? e) : `error: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    await client?.close();
  }
}

function parseCommandArgs(cmd: ApiCommand, args: string[]): { values: Record<string, string | boolean | undefined>; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({ args, options: { ...GLOBAL_OPTIONS, ...cmd.options }, allowPositionals: true, strict: true });
    return { values: values as Record<string, string | boolean | undefined>, positionals };
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    const option = /'(-{1,2}[^'\s]+)'/.exec(e instanceof Error ? e.message : '')?.[1];
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && option !== undefined) {
      // parseArgs' own message for this one ends in a stray quote and names no valid option
      const known = Object.entries({ ...cmd.options, ...GLOBAL_OPTIONS }).map(([long, o]) => `--${long}${'short' in o && o.short !== undefined ? `/-${o.short}` : ''}`);
      const guess = option.startsWith('--') ? closest(option, Object.keys({ ...GLOBAL_OPTIONS, ...cmd.options }).map((k) => `--${k}`)) : undefined;
      throw new UsageError(`unknown option ${option}${guess === undefined ? '' : ` (did you mean ${guess}?)`}; ${cmd.usage.split(' ')[0] ?? ''} takes ${known.join(', ')}; an argument that starts with "-" goes after "--"`);
    }
    // parseArgs says what is wrong (a missing value, a value given to a flag) in its message
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

// The one place that touches the process: only when this file is the entry point.
if (import.meta.main) {
  const code = await runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env });
  if (code !== 0) process.exitCode = code;
}
