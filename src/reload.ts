import type { Logger } from 'pino';
import { configDefinitions } from './config/definition.ts';
import type { Config } from './config/schema.ts';
import type { Controller } from './control/controller.ts';
import type { CountsSource } from './control/counts.ts';
import { defineApp } from './control/definitions.ts';

/** What a running Switchyard can change without a restart (SIGHUP), one process or a primary. */
export interface Reloadable {
  readonly controller: Controller;
  readonly counts: CountsSource;
  /** the log level of this process and its workers */
  setLogLevel(level: Config['log']['level']): void;
  /** re-reads the certificate files now; null without `listen.tls` */
  reloadCertificates(): { reloaded: number; failed: number } | null;
}

export interface ReloadReport {
  /** what changed now, as short phrases for the log */
  readonly done: string[];
  /** app → the key paths where the file differs from the store (without --apply-config) */
  readonly drift: Record<string, string[]>;
  /** apps whose definition could not be applied, and why */
  readonly failed: Record<string, string>;
  /** the config keys that differ and take effect only after a restart or `switchyard upgrade` */
  readonly needsRestart: string[];
}

/** Config keys a reload takes up itself; every other difference needs a restart. */
const RELOADED = new Set(['apps', 'log.level']);

/** The key paths (top-level, `log.*` and `listen.tls.*` one level down) where two configs differ. */
export function configChanges(a: Config, b: Config): string[] {
  const out: string[] = [];
  const same = (x: unknown, y: unknown): boolean => JSON.stringify(x) === JSON.stringify(y);
  for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const x = (a as Record<string, unknown>)[key];
    const y = (b as Record<string, unknown>)[key];
    if (same(x, y)) continue;
    if ((key === 'log' || key === 'listen') && typeof x === 'object' && typeof y === 'object' && x !== null && y !== null) {
      for (const sub of new Set([...Object.keys(x), ...Object.keys(y)])) if (!same((x as Record<string, unknown>)[sub], (y as Record<string, unknown>)[sub])) out.push(`${key}.${sub}`);
    } else out.push(key);
  }
  return out;
}

/**
 * SIGHUP: takes up what can change while running — the log level, the certificate files (read
 * again even when unchanged, as nginx does), the config file's app definitions (written as a
 * new revision with `applyConfig`, the file winning as at `serve --apply-config`; else drift is
 * measured against them and reported) — and names what only a restart takes up.
 */
export async function reload(target: Reloadable, current: Config, next: Config, opts: { applyConfig: boolean; logger: Logger; now: () => number }): Promise<ReloadReport> {
  const done: string[] = [];
  const failed: Record<string, string> = {};
  const changed = configChanges(current, next);
  if (current.log.level !== next.log.level) {
    target.setLogLevel(next.log.level);
    done.push(`log.level ${current.log.level} → ${next.log.level}`);
  }
  const certs = target.reloadCertificates();
  if (certs !== null) done.push(`certificates re-read: ${certs.reloaded} loaded${certs.failed > 0 ? `, ${certs.failed} failed (the previous ones keep serving)` : ''}`);
  const { controller } = target;
  controller.setFileApps(next.apps);
  if (opts.applyConfig) {
    const definitions = configDefinitions(next);
    for (const [app, definition] of definitions) {
      if (controller.has(app) && controller.drift()[app] === undefined) continue;
      try {
        const { state, created } = await defineApp({ controller, counts: target.counts, now: opts.now }, app, definition, { by: 'switchyard', reason: 'SIGHUP with --apply-config: the config file wins' });
        done.push(`apps.${app} ${created ? 'created' : 'applied'} at revision ${state.revision}`);
      } catch (err) {
        failed[app] = err instanceof Error ? err.message : String(err);
      }
    }
  }
  const needsRestart = changed.filter((k) => !RELOADED.has(k));
  return { done, drift: controller.drift(), failed, needsRestart };
}
