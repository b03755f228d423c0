import type { ParseArgsOptionsConfig } from 'node:util';
import type { AppStateView } from '../admin/views.ts';
import type { CommandContext } from './commands.ts';
import { appLine } from './format.ts';

// What every command module shares: the app's API path, the write options and the state printout.

export const appPath = (app: string): string => `/v1/apps/${encodeURIComponent(app)}`;

export const writeOptions: ParseArgsOptionsConfig = { reason: { type: 'string' }, force: { type: 'boolean' } };

/** The body fields every write shares, leaving out what was not given. */
export function writeFields(ctx: CommandContext): { reason?: string; force?: true } {
  const fields: { reason?: string; force?: true } = {};
  if (typeof ctx.values.reason === 'string') fields.reason = ctx.values.reason;
  if (ctx.values.force === true) fields.force = true;
  return fields;
}

export function printJson(ctx: CommandContext, value: unknown): void {
  ctx.out(JSON.stringify(value, null, 2));
}

export function printState(ctx: CommandContext, state: AppStateView): number {
  if (ctx.json) printJson(ctx, state);
  else ctx.out(appLine(state));
  return 0;
}
