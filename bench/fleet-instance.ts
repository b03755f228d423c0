import pino from 'pino';
import { build } from '../src/app.ts';
import { parseConfig } from '../src/config/load.ts';
import type { RoutingState } from '../src/state/types.ts';
import { BENCH_TOKEN } from './common.ts';

// One Switchyard instance of bench/fleet-scale.ts, in its own process: it prints `ready ADMIN_PORT`,
// then `applied REVISION EPOCH_MS` (sub-millisecond, this machine's clock) each time it routes on a
// new revision, and stops on SIGTERM.

const env = (name: string): string => {
  const v = process.env[name];
  if (v === undefined) throw new Error(`${name} is required`);
  return v;
};

const config = parseConfig({
  listen: { host: '127.0.0.1', port: 0 },
  admin: { host: '127.0.0.1', port: 0, tokens: [{ name: 'bench', token: BENCH_TOKEN }] },
  store: { kind: 'redis', url: env('REDIS_URL'), prefix: env('PREFIX'), cachePath: env('CACHE_PATH') },
  apps: [{ name: 'bench', hosts: ['*'], pools: { blue: { version: '1', targets: [env('TARGET')] }, green: { version: '2', targets: [env('TARGET')] } } }],
  log: { level: 'silent' },
});
// with a hundred instances starting on two busy cores, Redis may not answer a first start within
// the command timeout (and with no cache yet the start fails): try again, as a supervisor would
async function start(): Promise<Awaited<ReturnType<typeof build>>> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await build(config, { logger: pino({ level: 'silent' }), instanceId: env('ID') });
    } catch (err) {
      if (attempt >= 10) throw err;
      await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
    }
  }
}
const sy = await start();
sy.controller.on('applied', (state: RoutingState) => process.stdout.write(`applied ${state.revision} ${(performance.timeOrigin + performance.now()).toFixed(3)}\n`));
const { adminPort } = await sy.listen();
process.stdout.write(`ready ${adminPort}\n`);
process.on('SIGTERM', () => {
  void sy.close().finally(() => process.exit(0));
});
