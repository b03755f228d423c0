import { parseDefinition, type AppDefinition, type KeyPathIssue } from '../config/definition.ts';
import { SwitchyardError } from '../errors.ts';
import type { RoutingState } from '../state/types.ts';
import type { Controller, WriteOptions } from './controller.ts';

/**
 * The routing writes of docs/cohorts.md §5: an app's cohort `rules` and its `mirror`, each one
 * compare-and-set of the app's document (Controller.change) like a weights write (If-Match, 412,
 * history actions `rules` and `mirror`, audit line, fleet propagation).
 *
 * Where they live: in the app's definition (`RoutingState.definition.rules` and `.mirror`, as
 * written), under the same revision as the weights, so the config file, `PUT /v1/apps/:app`,
 * `GET /v1/config` and `switchyard apply` carry them too, and a state read back from the store or
 * its history restores them with its weights (`routingOf` below). Validation is the config's own
 * schema, so errors name the same key paths (`rules[1].match.cookie.team.regex`).
 */

/** An app's routing as docs/cohorts.md defines it: its weights, rules and mirror (as written). */
export interface Routing {
  readonly weights: RoutingState['weights'];
  readonly rules: readonly unknown[];
  readonly mirror: unknown;
}

/** The routing of a state (the rules and mirror of its definition; none when it has no definition). */
export function routingOf(state: RoutingState): Routing {
  const def = state.definition ?? {};
  return { weights: state.weights, rules: (def.rules as readonly unknown[] | undefined) ?? [], mirror: def.mirror ?? null };
}

/** `definition` with `rules` and `mirror` replaced by the given ones (an empty list and null remove the keys). */
export function withRouting(definition: AppDefinition, rules: readonly unknown[], mirror: unknown): AppDefinition {
  const { rules: _r, mirror: _m, ...rest } = definition as Record<string, unknown>;
  return { ...rest, ...(rules.length === 0 ? {} : { rules: [...rules] }), ...(mirror === null || mirror === undefined ? {} : { mirror }) };
}

export function checked(app: string, def: AppDefinition): AppDefinition {
  const r = parseDefinition(def, app);
  if (r.ok) return r.definition;
  throw bad(r.issues);
}

function bad(issues: readonly KeyPathIssue[]): SwitchyardError {
  return new SwitchyardError('BAD_REQUEST', issues.map((i) => `${i.path}: ${i.message}`).join('; '), { details: issues });
}

/** `PUT /v1/apps/:app/rules`: replaces the app's rules (an empty list removes them). */
export function setRules(controller: Controller, app: string, rules: readonly unknown[], opts: WriteOptions): Promise<RoutingState> {
  return controller.change(app, 'rules', (cur) => {
    const def = controller.definition(app);
    return { weights: cur.weights, definition: checked(app, withRouting(def, rules, def.mirror ?? null)) };
  }, opts);
}

/** `PUT /v1/apps/:app/mirror`: sets the app's mirror, or removes it (null). */
export function setMirror(controller: Controller, app: string, mirror: unknown, opts: WriteOptions): Promise<RoutingState> {
  return controller.change(app, 'mirror', (cur) => {
    const def = controller.definition(app);
    return { weights: cur.weights, definition: checked(app, withRouting(def, (def.rules as readonly unknown[] | undefined) ?? [], mirror)) };
  }, opts);
}
