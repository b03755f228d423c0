import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { parseDuration } from '../config/duration.ts';
import { loadConfig } from '../config/load.ts';
import { claimHolder } from '../dataplane/port-claim.ts';
import { EXIT, fail } from './exit-codes.ts';
import type { RawCommand } from './commands.ts';
import { UsageError } from './usage-error.ts';

/** How often the port claim is asked who holds it now. */
const POLL_MS = 200;

/**
 * `switchyard upgrade`: the hand-over of docs/signals.md §3 started from a shell or a unit file. Finds
 * the Switchyard serving the config's `listen.port` on this machine (its port claim answers its
 * pid), sends it SIGUSR2, and waits until another process holds the claim (0), the old one says
 * the upgrade failed (1), or `--timeout` passes (3).
 */
export const upgradeCommand: RawCommand = {
  usage: 'upgrade [--config FILE] [--timeout D] [--json]',
  summary: 'hand the running Switchyard of this machine over to the program as installed now (SIGUSR2), and wait for the outcome',
  async raw(argv, io) {
    const { values } = parseArgs({ args: argv, options: { config: { type: 'string', short: 'c' }, timeout: { type: 'string' }, json: { type: 'boolean' } }, allowPositionals: false });
    const print = io?.out ?? ((line: string) => void process.stdout.write(`${line}\n`));
    const ctx = { json: values.json === true, err: io?.err ?? ((line: string) => void process.stderr.write(`${line}\n`)) };
    /** a step: text, or with --json one JSON line (`event`, the pids, the port) */
    const out = (event: string, fields: Record<string, unknown>, text: string): void => print(ctx.json ? JSON.stringify({ event, ...fields }) : text);
    const timeout = parseDuration(values.timeout ?? '90s');
    if (timeout === undefined || timeout <= 0) throw new UsageError(`--timeout must be a duration like 30s or 2m, got "${values.timeout}"`);
    const file = values.config ?? process.env['SWITCHYARD_CONFIG'] ?? 'config/switchyard.yaml';
    const { port } = (await loadConfig(file, process.env)).listen;
    const holder = port === 0 ? null : await claimHolder(port);
    if (holder === null) return fail(ctx, EXIT.refused, 'NOT_RUNNING', `no Switchyard holds listen.port ${port} of ${file} on this machine (the claim needs Linux and a fixed port)`);
    process.kill(holder.pid, 'SIGUSR2');
    out('signalled', { pid: holder.pid, port }, `sent SIGUSR2 to pid ${holder.pid}; waiting for the new process to take over`);
    const deadline = Date.now() + timeout;
    // a failure is this upgrade's once 'upgrading' was seen, or at once when the holder did not
    // already say 'upgrade-failed' before the signal: a new program that fails at load can come and
    // go between two polls, and waiting for an 'upgrading' never seen would run to --timeout
    let started = holder.status !== 'upgrade-failed';
    while (Date.now() < deadline) {
      await sleep(POLL_MS);
      const now = await claimHolder(port);
      if (now === null) continue; // between the old one's release and the new one's claim
      if (now.pid !== holder.pid) {
        out('upgraded', { pid: now.pid, oldPid: holder.pid, port }, `upgraded: pid ${now.pid} serves listen.port ${port}; pid ${holder.pid} drains and exits`);
        return EXIT.ok;
      }
      if (now.status === 'upgrading') started = true;
      else if (started && now.status === 'upgrade-failed') {
        return fail(ctx, EXIT.refused, 'UPGRADE_FAILED', `the upgrade failed; pid ${holder.pid} keeps serving (its log says why)`);
      }
    }
    return fail(ctx, EXIT.waitTimedOut, 'WAIT_TIMED_OUT', `no new process took over listen.port ${port} within ${values.timeout ?? '90s'}`);
  },
};
