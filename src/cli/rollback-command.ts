import type { RollbackDryRun } from '../admin/rollback-view.ts';
import type { AppStateView } from '../admin/views.ts';
import type { Command } from './commands.ts';
import { appPath, printJson, writeFields, writeOptions } from './command-kit.ts';
import { appLine, pct, table } from './format.ts';

/**
 * What a rollback restores (or restored), for a person: the revision, and per pool its weight now
 * → then and its version then and now, flagging a pool redeployed since.
 */
export function rollbackLines(r: RollbackDryRun): string[] {
  const head = r.dryRun ? `${r.app}: rollback would restore revision ${r.restores.revision} (${r.restores.at}), undoing revisions ${r.restores.releaseFrom}–${r.revision}` : `${r.app}: restored the routing of revision ${r.restores.revision} (${r.restores.at}), undoing revisions ${r.restores.releaseFrom}–${r.revision}`;
  const rows = [['pool', r.dryRun ? 'weight now → then' : 'weight was → now', 'version then', 'version now']];
  for (const [pool, p] of Object.entries(r.pools)) {
    const changed = r.versionChanged.includes(pool) ? '  (redeployed since)' : '';
    rows.push([pool, `${pct(p.weight.now)} → ${pct(p.weight.then)}`, p.version.then ?? '(not recorded)', `${p.version.now ?? '(gone)'}${changed}`]);
  }
  const lines = [head, ...table(rows, '  ')];
  if (r.refused !== null) lines.push(`refused: ${r.refused.code}: ${r.refused.message}`);
  return lines;
}

export const rollbackCommand: Command = {
  usage: 'rollback APP [--dry-run] [--reason R] [--force]',
  summary: 'back to the last known-good (stable) routing: shows what it restores (weights, each pool\'s version then and now); --dry-run writes nothing',
  args: [1, 1],
  options: { ...writeOptions, 'dry-run': { type: 'boolean' } },
  async run(ctx) {
    const [app] = ctx.args as [string];
    if (ctx.values['dry-run'] === true) {
      const plan = await ctx.client.post<RollbackDryRun>(`${appPath(app)}/rollback?dryRun=true`, writeFields(ctx));
      if (ctx.json) printJson(ctx, plan);
      else for (const line of rollbackLines(plan)) ctx.out(line);
      return 0;
    }
    const state = await ctx.client.post<AppStateView & { rollback?: RollbackDryRun }>(`${appPath(app)}/rollback`, writeFields(ctx));
    if (ctx.json) printJson(ctx, state);
    else {
      if (state.rollback !== undefined) for (const line of rollbackLines(state.rollback)) ctx.out(line);
      ctx.out(appLine(state));
    }
    return 0;
  },
};
