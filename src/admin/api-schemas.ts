import { z } from 'zod';
import type { InstancesFigure, PoolCounts } from '../control/counts.ts';
import type { TargetFigure } from '../control/target-figures.ts';
import type { DiscoveryStatus } from '../discovery/discovery.ts';
import type { AcmeHostStatus } from '../edge/acme.ts';
import type { TargetStateView } from '../health/monitor.ts';
import type { StatsView } from '../metrics/stats.ts';
import type { RolloutView } from '../rollout/view.ts';
import type { RollbackDryRun } from './rollback-view.ts';
import type { AppStateView, DrainView, HistoryEntryView } from './views.ts';

/**
 * The answers of the admin API as zod schemas: what the OpenAPI document (openapi.ts) declares
 * for each success, and what test/integration/openapi.test.ts checks real answers against. The
 * view functions that shape the answers are typed by their own interfaces; `shapes` at the end
 * of this file makes the compiler check that each of those fits its schema here, so a field
 * added to a view and not here fails `npm run typecheck`, and the test catches the rest.
 */

const iso = z.string().describe('ISO 8601 time');
const pct = z.number().min(0).max(100).describe('percent, two decimals at most');
/** pool → percent, in the app's pool order */
const weights = z.record(z.string(), pct);

const lastCheck = z.object({ at: iso, ok: z.boolean(), status: z.number().int().nullable(), error: z.string().nullable() });
const targetDiscovery = z.object({ lookup: z.string(), stale: z.boolean(), answeredAt: iso.nullable(), error: z.string().nullable() });
export const targetState = z.object({
  url: z.string(),
  state: z.enum(['up', 'down', 'ejected', 'dropped']).describe('`dropped`: a discovery answer that is not a routable unicast address, never routed to'),
  reportedVersion: z.string().nullable().optional(),
  ejectedUntil: iso.optional(),
  lastCheck: lastCheck.nullable().optional(),
  discovery: targetDiscovery.optional(),
});
export const discoveryStatus = z.object({
  lookup: z.string().describe('`A/AAAA NAME:PORT` or `SRV NAME`'),
  interval: z.number().describe('ms between lookups'),
  targets: z.array(z.string()),
  answeredAt: iso.nullable(),
  lastLookup: z.object({ at: iso, ok: z.boolean(), error: z.string().nullable() }).nullable(),
  failing: z.boolean(),
  consecutiveFailures: z.number().int(),
  dropped: z.array(z.object({ url: z.string(), reason: z.string() })).describe('what the last answer named that cannot be a target (0.0.0.0, multicast, link-local, port 0…), with why: never used'),
});
export const targetFigure = z.object({
  url: z.string(),
  phase: z.enum(['serving', 'retiring']),
  inflight: z.number().int(),
  upgraded: z.number().int(),
  removedAt: iso.optional(),
  deadline: iso.optional(),
});
const poolCounts = z.object({ inflight: z.number().int(), upgraded: z.number().int(), pinned: z.number().int() });
const instances = z.union([
  z.object({ applied: z.number().int(), total: z.number().int() }),
  z.object({ applied: z.number().int(), total: z.null(), unknown: z.literal(true), reason: z.string() }),
]);

export const poolState = z.object({
  version: z.string(),
  targets: z.array(z.string()),
  weight: pct,
  inflight: z.number().int(),
  upgraded: z.number().int(),
  pinned: z.number().int(),
  drained: z.boolean(),
  healthy: z.boolean().optional(),
  health: z.enum(['healthy', 'unhealthy', 'unknown']).optional(),
  targetStates: z.array(targetState).optional(),
  discovery: discoveryStatus.optional(),
  targetFigures: z.array(targetFigure).optional(),
});

/** docs/admin-api.md §2 `AppState`, the answer of every routing and definition write. */
export const appState = z.object({
  app: z.string(),
  revision: z.number().int(),
  weights,
  active: z.string().nullable().describe('the pool at 100 %, null during a split'),
  updatedAt: iso,
  updatedBy: z.string().describe('the name of the token that wrote it'),
  reason: z.string().nullable(),
  pools: z.record(z.string(), poolState),
  rules: z.array(z.unknown()).describe('the cohort rules, in order, as written (docs/cohorts.md §2): `{ name, match, to, share? }`; [] when none'),
  mirror: z.unknown().describe('the mirror as written (`{ to, share, methods, maxBody, maxInflight, compare }`), or null'),
  instances: instances.describe('live instances routing on this revision, of all; `total` null while the fleet cannot be read'),
});

export const appList = z.object({ apps: z.array(appState) });

export const historyEntry = z.object({
  revision: z.number().int(),
  weights,
  action: z.string().describe('switch, weights, rollback, rollout, pool, targets, define, delete, …'),
  by: z.string(),
  reason: z.string().nullable(),
  at: iso,
  changes: z.array(z.string()).optional().describe('a definition change: the key paths it changed'),
  summary: z.string().describe('what the entry did, in words (`green → 3.0.0 on 2 targets`, `switch to green`)'),
  pools: z.record(z.string(), z.object({ version: z.string(), targets: z.number().int() })).optional().describe("each pool's version and target count at this revision"),
  revert: z.string().optional().describe('set when the entry took traffic back: `rollback`, `analysis` (a rollout\'s automatic rollback), `abort`'),
  rules: z.array(z.unknown()).optional().describe('the cohort rules in force after this revision'),
  mirror: z.unknown().optional().describe('the mirror in force after this revision'),
});
export const history = z.object({ entries: z.array(historyEntry), next: z.number().int().nullable().describe('the offset of the next page, null after the last') });

export const drain = z.object({
  pool: z.string(),
  weight: pct,
  inflight: z.number().int(),
  upgraded: z.number().int(),
  pinned: z.number().int(),
  drainingSince: iso.nullable(),
  deadline: iso.nullable(),
  remainingMs: z.number().nullable(),
  drained: z.boolean(),
  reason: z.string().nullable(),
  blockedBy: z.object({ by: z.enum(['weight', 'affinity', 'drain-timeout']), until: iso.nullable(), remainingMs: z.number().nullable() }).optional().describe('the deadline a pool that is not drained waits for'),
  unknown: z.literal(true).optional(),
  instances: z.record(z.string(), poolCounts).optional(),
  targets: z.array(targetFigure).optional(),
});

const gateCheck = z.object({ kind: z.enum(['query', 'webhook', 'hook']), name: z.string(), verdict: z.enum(['pass', 'fail', 'inconclusive']), value: z.number().nullable().optional(), status: z.number().int().nullable().optional(), why: z.string().optional(), ms: z.number() });
const analysisFigures = z.object({ requests: z.number(), errors: z.number(), errorRate: z.number(), p99: z.number().nullable() });
export const rollout = z.object({
  id: z.string(),
  app: z.string(),
  to: z.string(),
  state: z.enum(['running', 'paused', 'succeeded', 'rolled-back', 'aborted']),
  step: z.number().int().describe('the step in effect, 1-based'),
  steps: z.array(z.object({ weight: pct, pause: z.string().nullable(), approval: z.literal(true).optional(), timeout: z.string().nullable().optional() })),
  weight: pct,
  from: weights,
  startedAt: iso,
  stepStartedAt: iso,
  nextAt: iso.nullable(),
  nextInMs: z.number().nullable(),
  remainingMs: z.number().nullable(),
  endedAt: iso.nullable(),
  analysis: z.object({ maxErrorRate: z.number(), maxP99Ms: z.number().optional(), minRequests: z.number().int(), maxWaitMs: z.number().optional() }).nullable(),
  onFailure: z.enum(['rollback', 'pause']),
  reason: z.string().nullable(),
  lastAnalysis: z.object({ at: iso, window: z.string(), verdict: z.enum(['pass', 'fail', 'waiting']), to: analysisFigures, others: analysisFigures, why: z.string().optional() }).nullable(),
  by: z.string(),
  revision: z.number().int(),
  driver: z.string().nullable().optional(),
  gates: z.object({
    config: z.object({ intervalMs: z.number(), inconclusiveLimit: z.number().int(), onInconclusive: z.enum(['pause', 'rollback']), prometheus: z.unknown().describe('`{ url, headers? }` or null; header values masked'), queries: z.array(z.unknown()).readonly().describe('`{ name, prometheus, min?, max? }`'), webhooks: z.array(z.unknown()).readonly().describe('`{ name, url, timeout }`, URLs masked'), hooks: z.unknown().describe('`{ preRollout, preStep, postRollout, onRollback }`, URLs masked'), notify: z.array(z.unknown()).readonly().describe('`{ url, format, events }`, URLs masked') }).describe('the gates as started (docs/gates.md §2, §3, §4)'),
    rounds: z.array(z.object({ step: z.number().int(), phase: z.enum(['analysis', 'preStep']), round: z.number().int(), at: iso, verdict: z.enum(['pass', 'fail', 'inconclusive']), checks: z.array(gateCheck).readonly(), by: z.string(), lost: z.boolean().optional() })),
    calling: z.object({ step: z.number().int(), phase: z.enum(['analysis', 'preStep']), round: z.number().int(), at: iso, deadline: iso, by: z.string() }).nullable(),
    inconclusive: z.number().int(),
    approvals: z.array(z.object({ step: z.number().int(), by: z.string(), reason: z.string().nullable(), at: iso })),
    waitingApproval: z.boolean(),
  }),
});
export const currentRollout = z.object({ current: rollout.nullable() });

const windowStats = z.object({ requests: z.number(), rps: z.number(), errors: z.number(), errorRate: z.number(), p50: z.number().nullable().describe('time to the response head (TTFB), ms'), p95: z.number().nullable(), p99: z.number().nullable(), streamP99: z.number().nullable().describe('how long responses stayed open after their head, p99 ms') });
const compareStats = z.object({ pairs: z.number(), mismatches: z.number(), mismatchRate: z.number() });
export const stats = z.object({
  app: z.string(),
  at: iso,
  windows: z.object({ '10s': z.record(z.string(), windowStats), '60s': z.record(z.string(), windowStats) }),
  fleet: z.boolean(),
  instances: z.number().int(),
  history: z.array(z.object({ at: iso, pools: z.record(z.string(), windowStats) })).optional().describe('with `?history=1`: the 10 s window at each second of the last minute, oldest first'),
  mirror: z.object({ pool: z.string(), windows: z.object({ '10s': windowStats, '60s': windowStats }), compare: z.object({ '10s': compareStats, '60s': compareStats }) }).optional().describe("the app's mirror pool: its copies' figures and, with compare, the mismatches"),
});

export const whereis = z.object({
  key: z.string().nullable().describe('the sticky key that placed the request, null when none'),
  revision: z.number().int(),
  bucket: z.number().int().min(0).max(9999).nullable().describe('the bucket the weights (or a rule\'s share) read; null for preview, pin or a random split'),
  pool: z.string().nullable().describe('null when the answer depends on the per-request random draw (`random: true`)'),
  version: z.string().nullable(),
  by: z.string().nullable().describe('which step decided: `preview`, `pin`, `weights` or `rule:NAME` (docs/cohorts.md §7); null with `random`'),
  random: z.literal(true).optional(),
  message: z.string().optional(),
});

const rollbackPool = z.object({ weight: z.object({ now: pct, then: pct }), version: z.object({ now: z.string().nullable(), then: z.string().nullable().describe('null: not recorded then') }) });
/** `POST /v1/apps/:app/rollback?dryRun=true`, and the `rollback` field of the write's answer (docs/cohorts.md §6). */
export const rollbackDryRun = z.object({
  dryRun: z.boolean(),
  app: z.string(),
  revision: z.number().int().describe('the revision routed on now'),
  restores: z.object({ revision: z.number().int(), at: iso, releaseFrom: z.number().int().describe('the first revision of the release undone') }).describe('the revision whose stable routing is restored'),
  weights,
  rules: z.array(z.unknown()).describe('the cohort rules restored'),
  mirror: z.unknown().describe('the mirror restored, or null'),
  pools: z.record(z.string(), rollbackPool),
  versionChanged: z.array(z.string()).describe('pools it sends traffic to that run another version now than then'),
  refused: z.object({ code: z.string(), message: z.string() }).nullable().describe('what the write would answer (VERSION_CHANGED unless sent with force), or null'),
});
/** The answer of `POST /v1/apps/:app/rollback`: the AppState written and what it restored. */
export const rolledBack = appState.extend({ rollback: rollbackDryRun });
export const previewHeader = z.object({ header: z.string(), value: z.string() });

const acmeHost = z.object({ host: z.string(), notAfter: iso.nullable(), lastError: z.string().nullable(), failures: z.number().int(), retryAt: iso.nullable() });
export const certificates = z.object({
  tls: z.boolean(),
  at: iso.optional(),
  certificates: z.array(z.object({ names: z.array(z.string()), source: z.enum(['file', 'acme']), file: z.string().optional(), notBefore: iso, notAfter: iso, expiresInSeconds: z.number().int(), state: z.enum(['ok', 'expiring', 'expired']) })),
  acme: z.object({ orderer: z.boolean(), hosts: z.array(acmeHost) }).nullable(),
});

export const deletedApp = z.object({ app: z.string(), revision: z.number().int(), deleted: z.literal(true), updatedAt: iso, updatedBy: z.string(), reason: z.string().nullable() });
export const healthz = z.object({ status: z.literal('ok') });
export const readyz = z.object({ status: z.enum(['ready', 'unavailable']), details: z.record(z.string(), z.unknown()).optional().describe('store, revisions, drift, log sink, fleet and TLS details') });
export const openApi = z.object({ openapi: z.string() }).catchall(z.unknown()).describe('this document');

/** true when A and B have the same keys (a field the view has and the schema lacks, or the reverse, makes it false) */
type SameKeys<A, B> = [Exclude<keyof A, keyof B>, Exclude<keyof B, keyof A>] extends [never, never] ? true : false;

/**
 * Compile-time checks that each view's type fits its schema (never called): a view that changes a
 * field's type, or gains or loses a field its schema does not, is a type error here.
 */
export const sameFields: {
  [K in 'appState' | 'rollback' | 'poolState' | 'drain' | 'history' | 'rollout' | 'stats' | 'targetState' | 'discovery' | 'targetFigure']: true;
} = {
  appState: true satisfies SameKeys<AppStateView, z.output<typeof appState>>,
  rollback: true satisfies SameKeys<RollbackDryRun, z.output<typeof rollbackDryRun>>,
  poolState: true satisfies SameKeys<AppStateView['pools'][string], z.output<typeof poolState>>,
  drain: true satisfies SameKeys<DrainView, z.output<typeof drain>>,
  history: true satisfies SameKeys<HistoryEntryView, z.output<typeof historyEntry>>,
  rollout: true satisfies SameKeys<RolloutView, z.output<typeof rollout>>,
  stats: true satisfies SameKeys<StatsView, z.output<typeof stats>>,
  targetState: true satisfies SameKeys<TargetStateView, z.output<typeof targetState>>,
  discovery: true satisfies SameKeys<DiscoveryStatus, z.output<typeof discoveryStatus>>,
  targetFigure: true satisfies SameKeys<TargetFigure, z.output<typeof targetFigure>>,
};

export const shapes = {
  appState: (v: AppStateView): z.output<typeof appState> => v,
  drain: (v: DrainView): z.output<typeof drain> => v,
  rollback: (v: RollbackDryRun): z.output<typeof rollbackDryRun> => v,
  history: (v: HistoryEntryView): z.output<typeof historyEntry> => v,
  rollout: (v: RolloutView): z.output<typeof rollout> => v,
  stats: (v: StatsView): z.output<typeof stats> => v,
  targetState: (v: TargetStateView): z.output<typeof targetState> => v,
  discovery: (v: DiscoveryStatus): z.output<typeof discoveryStatus> => v,
  targetFigure: (v: TargetFigure): z.output<typeof targetFigure> => v,
  instances: (v: InstancesFigure): z.output<typeof instances> => v,
  poolCounts: (v: PoolCounts): z.output<typeof poolCounts> => v,
  acmeHost: (v: AcmeHostStatus): z.output<typeof acmeHost> => v,
};
