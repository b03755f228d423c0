import type { HistoryEntry, PoolRecord } from '../state/types.ts';
import { bpToPct, ownOf, TOTAL_BP } from '../config/weights.ts';
import { revertOf } from './rollback-plan.ts';

// What a history entry did, in words, for `switchyard history` and the dashboard: the weights it
// wrote, or for a definition change what changed (a deploy: `blue → 3.0.0 on 2 targets`).

/** `blue 80 %, green 20 %` in the app's pool order. */
function weightWords(e: HistoryEntry, order: readonly string[]): string {
  const names = [...order.filter((p) => Object.hasOwn(e.weights, p)), ...Object.keys(e.weights).filter((p) => !order.includes(p))];
  return names.map((p) => `${p} ${bpToPct(ownOf(e.weights, p) ?? 0)} %`).join(', ');
}

function poolWords(name: string, p: PoolRecord): string {
  return `${p.version} on ${p.targets} target${p.targets === 1 ? '' : 's'}`;
}

/** The pools a definition change touched (from its key paths), each in words. */
function definitionWords(e: HistoryEntry, previous: HistoryEntry | undefined): string[] {
  const touched = new Set<string>();
  const other: string[] = [];
  for (const path of e.changes ?? []) {
    const m = /^pools\.([^.[]+)/.exec(path);
    if (m !== null) touched.add(m[1] as string);
    else other.push(path);
  }
  const out: string[] = [];
  for (const name of touched) {
    const now = e.pools === undefined ? undefined : ownOf(e.pools, name);
    const then = previous?.pools === undefined ? undefined : ownOf(previous.pools, name);
    if (now === undefined && e.pools !== undefined) out.push(`${name} removed`);
    else if (now === undefined) out.push(`${name} changed`);
    else if (then === undefined && previous?.pools !== undefined) out.push(`${name} added: ${poolWords(name, now)}`);
    else if (then !== undefined && then.version === now.version) out.push(`${name} targets: ${then.targets} → ${now.targets}`);
    else out.push(`${name} → ${poolWords(name, now)}`);
  }
  if (other.length > 0) out.push(`changed ${other.join(', ')}`);
  return out;
}

/** One entry in words; `previous` is the entry before it (older), when the history has it. */
export function describeEntry(e: HistoryEntry, previous: HistoryEntry | undefined, order: readonly string[]): string {
  const weights = weightWords(e, order);
  const full = Object.entries(e.weights).find(([, bp]) => bp === TOTAL_BP)?.[0];
  switch (revertOf(e)) {
    case 'rollback':
      return `rollback: ${weights}`;
    case 'analysis':
      return `automatic rollback of a rollout: ${weights}`;
    case 'abort':
      return `rollout aborted: ${weights}`;
    case null:
      break;
  }
  switch (e.action) {
    case 'initial':
      return `initial: ${weights}`;
    case 'switch':
      return full === undefined ? `switch: ${weights}` : `switch to ${full}`;
    case 'weights':
      return `weights: ${weights}`;
    case 'rollout':
      return `rollout step: ${weights}`;
    case 'reseed':
      return `re-seeded: ${weights}`;
    case 'delete':
      return 'app deleted';
    case 'define':
      return previous === undefined || previous.pools === undefined ? `app defined: ${weights}` : `definition: ${definitionWords(e, previous).join('; ') || 'no change'}`;
    case 'pool':
    case 'targets': {
      const words = definitionWords(e, previous);
      return words.length === 0 ? `${e.action}: ${weights}` : words.join('; ');
    }
    default:
      return `${e.action}: ${weights}`;
  }
}
