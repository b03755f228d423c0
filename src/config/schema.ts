import { isIP } from 'node:net';
import { z } from 'zod';
import { parseDuration } from './duration.ts';
import { tracingSchema } from './tracing.ts';
import { parseWeights } from './weights.ts';
import { mirrorSchema, routingIssues, rulesSchema } from './routing-schema.ts';

/**
 * Listening sockets per data-plane process, sharing the port through SO_REUSEPORT. Since libuv
 * 1.45 (Node ≥ 20) a listener accepts one connection per event-loop turn (libuv#3696), and under
 * load a turn lasts as long as it takes to serve every ready socket: with 1,000 busy clients a
 * turn took ~120 ms, so a burst of new connections waited in the accept queue for seconds
 * (measured: 450 queued connections draining at ~35/s, wrk timeouts and a multi-second p99).
 * The kernel spreads new connections over the group's queues and each listener accepts one per
 * turn: 256 of them accept 256 (config `listen.acceptors`). nginx's `multi_accept` answers the
 * same problem. Measured with 1,000 clients connecting at once (wrk, 10 s, 3 runs each): 16
 * listeners p99 ~1.2 s with wrk timeouts; 64: ~0.8 s (620 queued connections drained 64 per
 * ~100 ms turn); 256: ~0.5 s and 13 % more requests/s; 1,024: no better. Each listener costs a
 * file descriptor and a few KB (RSS at rest 74.2 MiB with 16, 75.9 MiB with 256).
 */
export const DEFAULT_ACCEPTORS = 256;

/**
 * The one zod schema of the configuration file; every config type in the code is inferred
 * from it. Unknown keys are rejected everywhere (`strictObject`) so a typo is an error, not a
 * silently ignored setting.
 */

const duration = (fallback: string) =>
  z
    .union([z.string(), z.number()])
    .default(fallback)
    .transform((v, ctx) => {
      const ms = parseDuration(v);
      if (ms === undefined) {
        ctx.addIssue({ code: 'custom', message: 'must be a duration like 250ms, 5s, 10m or 1h' });
        return z.NEVER;
      }
      return ms;
    });

const positiveDuration = (fallback: string) => duration(fallback).refine((ms) => ms > 0, 'must be more than 0');

const port = z.number().int().min(0).max(65535);

const httpUrl = z.string().refine((s) => {
  try {
    const u = new URL(s);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '' && (u.pathname === '/' || u.pathname === '') && u.search === '';
  } catch {
    return false;
  }
}, 'must be an http(s) URL with no path, like http://10.0.0.1:8080');

export const NAME_RE = /^[a-z0-9-]{1,63}$/;
const name = z.string().regex(NAME_RE, 'must match [a-z0-9-]{1,63}');

/**
 * A pool's version: an HTTP token (RFC 9110 §5.6.2), since it is sent in every response's
 * `X-Served-By: POOL@VERSION`. A version holding CR LF or a byte over 0x7F once went through the
 * admin API and injected response headers.
 */
export const versionLabel = z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$/, 'must be 1 to 128 of A-Z a-z 0-9 and !#$%&\'*+.^_`|~- (it is sent in the X-Served-By header)');

/**
 * A host an app answers to: a name, `*.domain` or `*`, without a port. Apps are matched by name
 * whatever the port (the Host's port is dropped first); a host written with a port once matched
 * only requests carrying that port, ahead of the app that owns the name, and no host conflict
 * was seen.
 */
const hostPattern = z
  .string()
  .min(1)
  .transform((s) => s.toLowerCase())
  .refine((s) => !/:\d*$/.test(s), 'must not carry a port: an app answers to its host names on every port')
  // (a port is named by the refinement above alone)
  .refine((s) => s === '*' || /:\d*$/.test(s) || /^(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/.test(s), 'must be a host name, "*.domain" or "*"');

const stickySource = z
  .string()
  .regex(/^(header:[A-Za-z0-9!#$%&'*+.^_`|~-]+|cookie:[^\s;=,]+|ip)$/, 'must be header:NAME, cookie:NAME or ip');

const cidr = z.string().refine((s) => {
  const [addr, bits, ...rest] = s.split('/');
  if (rest.length > 0 || addr === undefined) return false;
  const family = isIP(addr);
  if (family === 0) return false;
  if (bits === undefined) return true;
  const n = Number(bits);
  return Number.isInteger(n) && n >= 0 && n <= (family === 4 ? 32 : 128);
}, 'must be an IP address or CIDR like 10.0.0.0/8');

// a placeholder left in a manifest (deploy/kubernetes/secret.yaml's REPLACE-ME-…) is a publicly known value, not a secret
const notPlaceholder = (v: string): boolean => !/REPLACE-?ME/i.test(v);
const PLACEHOLDER = 'is a placeholder (REPLACE-ME…), not a secret: generate one, e.g. openssl rand -hex 32';
const secret = z.string().min(16, 'must be at least 16 characters').refine(notPlaceholder, PLACEHOLDER);

/** `200`, `"2xx"` or `"200-399"` as an inclusive range. */
const statusRange = z
  .union([z.number(), z.string()])
  .default('200-399')
  .transform((v, ctx) => {
    const s = String(v).trim().toLowerCase();
    const m = /^([1-5])xx$/.exec(s) ?? /^([1-5]\d\d)(?:-([1-5]\d\d))?$/.exec(s);
    if (m === null) {
      ctx.addIssue({ code: 'custom', message: 'must be a status like 200, "2xx" or "200-399"' });
      return z.NEVER;
    }
    const range = s.endsWith('xx') ? { min: Number(m[1]) * 100, max: Number(m[1]) * 100 + 99 } : { min: Number(m[1]), max: Number(m[2] ?? m[1]) };
    if (range.min > range.max) {
      ctx.addIssue({ code: 'custom', message: 'the range must go from low to high' });
      return z.NEVER;
    }
    return range;
  });

const versionFrom = z
  .strictObject({
    /** a field of the JSON body, dots for nesting: `version`, `build.version` */
    json: z.string().regex(/^[^.\s]+(\.[^.\s]+)*$/, 'must be a field name, dots for nesting').optional(),
    /** a response header */
    header: z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, 'must be a header name').transform((s) => s.toLowerCase()).optional(),
  })
  .refine((v) => (v.json === undefined) !== (v.header === undefined), 'needs exactly one of json or header');

const passive = z.strictObject({
  /** consecutive 5xx responses or connect/protocol errors that eject a target @default 5 */
  failures: z.number().int().min(1).default(5),
  /** how long an ejected target is left out @default 30s */
  ejectFor: duration('30s'),
  /** at most this share of a pool's targets ejected at once; one always stays @default 0.5 */
  maxEjectedShare: z.number().min(0).max(1).default(0.5),
  /**
   * a target with `failures` requests waiting this long for a response head, that answered none
   * in that time, is ejected at once (a hanging target); 0 turns it off @default 5s
   */
  stallAfter: duration('5s'),
});

/** A DNS name (a trailing dot allowed): labels of letters, digits, `-` and `_` (SRV's `_http._tcp`). */
const dnsName = z
  .string()
  .max(253)
  .regex(/^(?!-)[A-Za-z0-9_-]{1,63}(\.[A-Za-z0-9_-]{1,63})*\.?$/, 'must be a DNS name like web.default.svc.cluster.local');

/** A pool's DNS discovery (src/discovery/, README "Discovery"): exactly one of `dns` (A/AAAA, with `port`) or `srv`. */
const discover = z
  .strictObject({
    /** a name whose A and AAAA records are the targets' addresses (a Kubernetes headless Service) */
    dns: dnsName.optional(),
    /** a name whose SRV records are the targets (host names resolved with the same servers, and ports) */
    srv: dnsName.optional(),
    /** the targets' port, with `dns` */
    port: z.number().int().min(1).max(65535).optional(),
    /** @default http */
    scheme: z.enum(['http', 'https']).default('http'),
    /** how often each instance resolves the name again @default 10s */
    interval: duration('10s').refine((ms) => ms >= 50, 'must be at least 50ms'),
    /**
     * At most this many targets from one answer (the first, in sorted order, so every instance
     * takes the same ones); the rest are dropped and shown. A DNS answer can name thousands of
     * addresses (over TCP), each a target with its pool, health checks and metric series: the
     * answer must not decide how much the proxy holds, as HAProxy's server-template has a fixed
     * number of slots. @default 256
     */
    maxTargets: z.number().int().min(1).max(4096).default(256),
  })
  .superRefine((d, ctx) => {
    if ((d.dns === undefined) === (d.srv === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'needs exactly one of dns or srv' });
      return;
    }
    if (d.dns !== undefined && d.port === undefined) ctx.addIssue({ code: 'custom', path: ['port'], message: 'required with dns (the targets\' port)' });
    if (d.srv !== undefined && d.port !== undefined) ctx.addIssue({ code: 'custom', path: ['port'], message: 'not used with srv: each SRV record names its port' });
  });

const pool = z
  .strictObject({
    version: versionLabel,
    // may be empty (the last target removed from an idle pool, or one fed by discovery): such a pool
    // answers 503 and a write that gives it weight is refused (409) unless forced. A URL listed twice
    // is two targets (twice the share, a connection pool each), as two nginx `server` lines are.
    targets: z.array(httpUrl).optional(),
    /** targets found in DNS by each instance, beside `targets` (src/discovery/) */
    discover: discover.optional(),
    /**
     * How the targets are spoken to: `http1`, or `h2` (HTTP/2: h2c with prior knowledge for
     * http:// targets, ALPN h2 for https:// ones; src/dataplane/engine/h2-client.ts), which gRPC
     * services need. @default "http1"
     */
    protocol: z.enum(['http1', 'h2']).optional(),
  })
  .superRefine((p, ctx) => {
    if (p.targets === undefined && p.discover === undefined) ctx.addIssue({ code: 'custom', message: 'needs targets or discover (or both)' });
  })
  // absent targets (a pool fed by discovery alone) are the empty list everywhere past the schema
  .transform(({ targets, ...rest }) => ({ ...rest, targets: targets ?? [] }));

/** `host`, `host:port`, `[v6]:port` or a bare IPv6 address, as node:dns `Resolver#setServers` takes them. */
const dnsServer = z.string().refine((s) => {
  const m = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(s) ?? /^([^:]+)(?::(\d{1,5}))?$/.exec(s);
  const [addr, portText] = m === null ? [s, undefined] : [m[1] as string, m[2]];
  if (isIP(addr) === 0) return false;
  return portText === undefined || (Number(portText) >= 1 && Number(portText) <= 65535);
}, 'must be an IP address with an optional port, like 10.0.0.2:53 or [fd00::2]:53');

/** One `apps[]` entry: the schema of an app's definition, from the config file or the admin API alike. */
export const appSchema = z
  .strictObject({
    name,
    hosts: z.array(hostPattern).min(1, 'needs at least one host'),
    pools: z.record(name, pool).refine((p) => Object.keys(p).length >= 2, 'an app needs two or more pools'),
    /** Weights written when the store has no state for the app. @default first pool 100 */
    initial: z.record(z.string(), z.number()).optional(),
    sticky: z.strictObject({ key: z.array(stickySource).min(1) }).optional(),
    affinity: z
      .strictObject({
        cookie: z.string().regex(/^[A-Za-z0-9_-]+$/).default('sy_pin'),
        window: duration('10m'),
        /** Signs the pin cookie; every instance of a fleet must share it. */
        secret,
      })
      .optional(),
    drain: z.strictObject({ timeout: duration('5m') }).prefault({}),
    preview: z
      .strictObject({
        header: z.string().regex(/^[A-Za-z0-9-]+$/).default('x-switchyard-preview').transform((s) => s.toLowerCase()),
        secret,
      })
      .optional(),
    timeouts: z
      .strictObject({ connect: duration('5s'), response: duration('60s'), idle: duration('60s') })
      .prefault({}),
    /**
     * Connections to each target at most (nginx's `max_conns`); requests beyond wait in a queue
     * inside the proxy. @default no limit: one connection per request in flight
     */
    maxConnections: z.number().int().min(1).max(65_536).optional(),
    /** Active and passive health checks of every target (src/health); omitted: no checks, no 409 gate. */
    health: z
      .strictObject({
        path: z.string().startsWith('/').default('/healthz'),
        interval: duration('2s'),
        timeout: duration('1s'),
        /** consecutive passes that bring a down target back @default 2 */
        rise: z.number().int().min(1).default(2),
        /** consecutive failures that take a target down @default 3 */
        fall: z.number().int().min(1).default(3),
        /** statuses that pass: 200, "2xx" or "200-399" @default "200-399" (HAProxy's httpchk) */
        expectStatus: statusRange,
        /** where the health answer carries the running version, for `switch --expect-version` */
        versionFrom: versionFrom.optional(),
        /** check with the gRPC health protocol (`grpc.health.v1.Health/Check` over h2; SERVING is up) instead of a GET of `path` @default false */
        grpc: z.boolean().optional(),
        /** outlier detection on live traffic (Envoy's consecutive_5xx); `false` turns it off (null once parsed) */
        // a preprocess rather than a union, so an error inside the object keeps its key path
        passive: z.preprocess((v) => (v === false ? null : v), passive.nullable()).prefault({}),
      })
      .optional(),
    /** Cohort rules, in order (src/config/routing-schema.ts, docs/cohorts.md §2); part of the app's routing. */
    rules: rulesSchema.optional(),
    /** Shadow traffic: a share of requests copied to a pool (src/dataplane/mirror.ts); part of the app's routing. */
    mirror: mirrorSchema.optional(),
  })
  .superRefine((a, ctx) => {
    for (const i of routingIssues(a)) ctx.addIssue({ code: 'custom', path: i.path, message: i.message });
    const pools = Object.keys(a.pools);
    if (a.initial !== undefined && pools.length > 0) {
      const r = parseWeights(a.initial, pools, ['initial']);
      if (!r.ok) for (const i of r.issues) ctx.addIssue({ code: 'custom', path: i.path, message: i.message });
    }
  });

const store = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('file'),
    path: z.string().min(1).default('./data/state.json'),
    /** History entries kept per app. @default 1000 */
    historyLimit: z.number().int().min(1).max(100_000).default(1000),
  }),
  z.strictObject({
    kind: z.literal('redis'),
    url: z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL').refine(notPlaceholder, 'holds a placeholder (REPLACE-ME…), not a password: put the real one in the Secret').default('redis://127.0.0.1:6379/0'),
    prefix: z.string().regex(/^[A-Za-z0-9:_-]+$/).default('switchyard'),
    password: z.string().refine(notPlaceholder, PLACEHOLDER).optional(),
    sentinels: z.array(z.strictObject({ host: z.string(), port: port })).min(1).optional(),
    name: z.string().optional(),
    historyLimit: z.number().int().min(1).max(100_000).default(1000),
    /** Local copy of the last known state, read when Redis is down at start. */
    cachePath: z.string().default('./data/redis-cache.json'),
    commandTimeout: duration('2s'),
    /** Replicas that must acknowledge a write (WAIT) before it is answered 200 (README "Sentinel and what a 200 guarantees"). @default 0 */
    replicas: z.number().int().min(0).max(64).default(0),
    /** How long a write waits for those acknowledgements; shorter than commandTimeout. @default 500ms */
    replicaTimeout: duration('500ms'),
    /** How long an instance that stopped heartbeating without leaving stays unaccounted (drain figures unknown); longer than any drain.timeout. @default 10m */
    unaccountedWindow: duration('10m'),
  }),
]);

const certFiles = z.strictObject({ cert: z.string().min(1), key: z.string().min(1) });

/** ACME (RFC 8555): certificates ordered and renewed by the proxy (src/edge/acme.ts). */
const acme = z.strictObject({
  directory: z.string().url('must be the URL of an ACME directory'),
  email: z.string().email().optional(),
  /** @default every exact host of every app */
  hosts: z.array(z.string().regex(/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/, 'must be an exact DNS name')).min(1).optional(),
  challenge: z.enum(['http-01', 'tls-alpn-01']).default('http-01'),
  /** a CA to trust for the directory itself (a test CA such as pebble's) */
  caFile: z.string().min(1).optional(),
  /** first retry after a failed order; doubles up to 1h @default 1m */
  retry: duration('1m'),
});

/** The TLS port (src/edge): certificates by SNI, HTTP/2 by ALPN, optional ACME. */
const tls = z
  .strictObject({
    port: port.default(8443),
    certs: z.array(certFiles).default([]),
    http2: z.boolean().default(true),
    minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
    /** h2 streams per connection @default 128 (nginx's default) */
    maxConcurrentStreams: z.number().int().min(1).max(10_000).default(128),
    acme: acme.optional(),
  })
  .refine((t) => t.certs.length > 0 || t.acme !== undefined, { message: 'needs certs, acme or both', path: ['certs'] });

export const configSchema = z
  .strictObject({
    listen: z
      .strictObject({
        host: z.string().default('0.0.0.0'),
        port: port.default(8080),
        /**
         * Listening sockets in one SO_REUSEPORT group per data-plane process (see ACCEPTORS in
         * src/dataplane/server.ts); 1: a single plain socket, so a port already taken by anything,
         * another Switchyard included, fails the start. @default 256 (DEFAULT_ACCEPTORS)
         */
        acceptors: z.number().int().min(1).max(1024).default(DEFAULT_ACCEPTORS),
        /** the plain port answers 308 to https (ACME challenge paths excepted); needs `tls` @default false */
        redirect: z.boolean().default(false),
        /** HTTP/2 with prior knowledge (h2c, gRPC without TLS) on the plain port beside HTTP/1.1 @default false */
        h2c: z.boolean().default(false),
        tls: tls.optional(),
      })
      .prefault({}),
    admin: z
      .strictObject({
        host: z.string().default('127.0.0.1'),
        port: port.default(8081),
        tokens: z.array(z.strictObject({ name, token: secret })).default([]),
        /** Failed logins from one address before 429. @default 10 per minute */
        maxFailedLogins: z.number().int().min(1).default(10),
        /** Whether /metrics needs a token. @default false */
        metricsAuth: z.boolean().default(false),
        /**
         * Host names (besides localhost, IP addresses and `host`) the admin API answers to, e.g.
         * the name of a reverse proxy in front of it; other Host headers get 403 (DNS rebinding).
         * @default []
         */
        allowedHosts: z.array(z.string().min(1).max(253)).default([]),
        /** serve the admin API over TLS */
        tls: certFiles.optional(),
      })
      .prefault({}),
    /**
     * What forwards requests to http targets: `native`, Switchyard's own HTTP/1.1 client on
     * node:net with Node's llhttp (src/dataplane/engine), or `undici`, the previous path, kept
     * reachable while the native one proves itself. https targets always use undici.
     * @default native
     */
    engine: z.enum(['native', 'undici']).default('native'),
    store: store.prefault({ kind: 'file' }),
    // may be empty: apps can live in the store alone (created by the API or `switchyard apply`)
    apps: z.array(appSchema).default([]),
    trustedProxies: z.array(cidr).default([]),
    /** The DNS servers pools' `discover` asks (src/discovery/). @default the system's (/etc/resolv.conf) */
    discovery: z
      .strictObject({
        servers: z.array(dnsServer).min(1, 'needs at least one server').optional(),
        /** one lookup's deadline (each of A and AAAA, each SRV target) @default 2s */
        timeout: duration('2s').refine((ms) => ms >= 10, 'must be at least 10ms'),
      })
      .prefault({}),
    shutdown: z
      .strictObject({
        /** After SIGTERM, keep accepting connections this long (readyz already 503) so load balancers notice. */
        delay: duration('0s'),
        grace: duration('30s'),
        hardStop: duration('60s'),
        /** SIGUSR2 / `switchyard upgrade`: how long the new process may take to be ready before it is stopped (src/upgrade) */
        upgradeTimeout: positiveDuration('60s'),
      })
      .prefault({}),
    /** Connection and request limits of each data-plane process (src/dataplane/limits.ts); README "Limits". */
    limits: z
      .strictObject({
        /**
         * Client connections open at once per process, across its listeners (HAProxy's `maxconn`);
         * more are closed at accept. @default "auto": (fd limit − listen.acceptors − 256) / 2
         */
        maxConnections: z.union([z.literal('auto'), z.number().int().min(1).max(10_000_000)]).default('auto'),
        /** a new connection must send its first request's header within this (nginx `client_header_timeout`) @default 60s */
        headerTimeout: positiveDuration('60s'),
        /** a request body with no byte for this long while the proxy reads it: 408 (nginx `client_body_timeout`) @default 60s */
        bodyTimeout: positiveDuration('60s'),
        /** a client that reads nothing of the response for this long is cut (nginx `send_timeout`) @default 60s */
        sendTimeout: positiveDuration('60s'),
        /** a request waiting this long for an upstream connection (app `maxConnections`) gets 503 (HAProxy `timeout queue`) @default 10s */
        queueTimeout: positiveDuration('10s'),
      })
      .prefault({}),
    /** Rollout analysis (docs/gates.md §2): the Prometheus that queries of rollouts naming none go to. */
    analysis: z
      .strictObject({
        prometheus: z.strictObject({ url: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }), headers: z.record(z.string(), z.string()).default({}) }).optional(),
      })
      .prefault({}),
    workers: z.union([z.number().int().min(1).max(64), z.literal('auto')]).default(1),
    log: z
      .strictObject({
        level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
        /** Share of requests that get an access log line, 0..1. @default 1 */
        accessSample: z.number().min(0).max(1).default(1),
      })
      .prefault({}),
    /** OpenTelemetry tracing over OTLP/HTTP (src/config/tracing.ts); omitted: off, nothing loaded */
    tracing: tracingSchema.optional(),
  })
  .superRefine((c, ctx) => {
    const seenApps = new Set<string>();
    const seenHosts = new Map<string, string>();
    c.apps.forEach((a, i) => {
      if (seenApps.has(a.name)) ctx.addIssue({ code: 'custom', path: ['apps', i, 'name'], message: `duplicate app name "${a.name}"` });
      seenApps.add(a.name);
      a.hosts.forEach((h, j) => {
        const other = seenHosts.get(h);
        if (other !== undefined) ctx.addIssue({ code: 'custom', path: ['apps', i, 'hosts', j], message: `host "${h}" already belongs to app "${other}"` });
        seenHosts.set(h, a.name);
      });
    });
    if (c.shutdown.hardStop < c.shutdown.grace) {
      ctx.addIssue({ code: 'custom', path: ['shutdown', 'hardStop'], message: 'must not be shorter than shutdown.grace' });
    }
    const loopback = c.admin.host === '127.0.0.1' || c.admin.host === '::1' || c.admin.host === 'localhost';
    if (!loopback && c.admin.tokens.length === 0) {
      ctx.addIssue({ code: 'custom', path: ['admin', 'tokens'], message: 'an admin listener on a non-loopback address needs tokens' });
    }
    if (c.listen.redirect && c.listen.tls === undefined) {
      ctx.addIssue({ code: 'custom', path: ['listen', 'redirect'], message: 'needs listen.tls (there is no https port to redirect to)' });
    }
    if (c.store.kind === 'redis' && c.store.sentinels !== undefined && c.store.name === undefined) {
      ctx.addIssue({ code: 'custom', path: ['store', 'name'], message: 'required with sentinels' });
    }
    if (c.store.kind === 'redis' && c.store.replicas > 0 && c.store.replicaTimeout >= c.store.commandTimeout) {
      ctx.addIssue({ code: 'custom', path: ['store', 'replicaTimeout'], message: 'must be shorter than store.commandTimeout (the WAIT runs under it)' });
    }
  });

export type Config = z.output<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
export type AppConfig = Config['apps'][number];
export type PoolConfig = AppConfig['pools'][string];
export type DiscoverConfig = NonNullable<PoolConfig['discover']>;
export type DiscoveryConfig = Config['discovery'];
export type HealthConfig = NonNullable<AppConfig['health']>;
export type StoreConfig = Config['store'];
export type TlsConfig = NonNullable<Config['listen']['tls']>;
export type AcmeConfig = NonNullable<TlsConfig['acme']>;
