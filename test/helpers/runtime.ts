import { configDefinitions } from '../../src/config/definition.ts';
import type { Config } from '../../src/config/schema.ts';
import { initialState } from '../../src/control/next-state.ts';
import { initialWeights } from '../../src/control/seed.ts';
import { Runtime, type RuntimeOptions } from '../../src/dataplane/runtime.ts';
import { buildAppRoute, buildSnapshot } from '../../src/routing/snapshot.ts';

/** A Runtime following the config's apps as a first snapshot would (slots in config order), for unit tests. */
export function runtimeFor(config: Config, opts: RuntimeOptions = {}): Runtime {
  const runtime = new Runtime(opts);
  const defs = configDefinitions(config);
  runtime.sync(buildSnapshot(config.apps.map((a, i) => buildAppRoute(i, a, initialState(a.name, initialWeights(a), 0, defs.get(a.name))))));
  return runtime;
}
