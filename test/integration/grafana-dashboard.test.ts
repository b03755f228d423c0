import assert from 'node:assert/strict';
import { closeSync, openSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { parser as promqlParser } from '@prometheus-io/lezer-promql';
import { request } from 'undici';
import { LogSink } from '../../src/logger.ts';
import { createTestCa, type TestCa } from '../helpers/certs.ts';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.ts';
import { parseMetrics, type Series } from '../helpers/prometheus.ts';
import { startProxy, twoPools, type TestProxy } from '../helpers/proxy.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

const DASHBOARD = new URL('../../deploy/grafana/switchyard-dashboard.json', import.meta.url);
type SyntaxNode = ReturnType<typeof promqlParser.parse>['topNode'];

/** labels Prometheus adds to every series it scrapes, which /metrics itself never carries */
const TARGET_LABELS = new Set(['job', 'instance']);

interface Selector {
  metric: string;
  matchers: { label: string; op: string; value: string }[];
}

interface Query {
  where: string;
  expr: string;
}

/** Every PromQL expression of the dashboard: panel targets and template variables. */
function queries(dashboard: { panels: { title: string; targets?: { expr: string }[] }[]; templating: { list: { name: string; query: { query: string } }[] } }): Query[] {
  const out: Query[] = [];
  for (const p of dashboard.panels) for (const t of p.targets ?? []) out.push({ where: `panel "${p.title}"`, expr: t.expr });
  for (const v of dashboard.templating.list) {
    // label_values(SELECTOR, LABEL): the selector is PromQL, the label must exist on it
    const m = /^label_values\((.*),\s*(\w+)\)$/.exec(v.query.query);
    assert.ok(m, `variable ${v.name}: label_values(selector, label)`);
    out.push({ where: `variable ${v.name}`, expr: `${m[1]} and on (${m[2]}) ${m[1]}` });
  }
  return out;
}

/**
 * The metric selectors and the grouping labels of a PromQL expression, read from its syntax tree
 * by the Prometheus project's own PromQL grammar (the one Prometheus' and Grafana's query editors
 * use); an expression it cannot parse fails. Grafana's interval variables are not PromQL, so they
 * are given a duration first; `$app`-style variables only occur inside label values.
 */
function readExpr(expr: string): { selectors: Selector[]; grouping: string[] } {
  const promql = expr.replace(/\$__(?:rate_interval|interval|range)\b/g, '1m');
  const tree = promqlParser.parse(promql);
  const text = (n: SyntaxNode) => promql.slice(n.from, n.to);
  const selectors: Selector[] = [];
  const grouping: string[] = [];
  tree.iterate({
    enter(ref) {
      assert.ok(!ref.type.isError, `PromQL parses: error at ${ref.from} in ${promql}`);
      const n = ref.node;
      if (n.name === 'VectorSelector') {
        const id = n.getChild('Identifier');
        assert.ok(id !== null, `a selector names its metric: ${text(n)}`);
        const matchers = (n.getChild('LabelMatchers')?.getChildren('UnquotedLabelMatcher') ?? []).map((m) => ({
          label: text(m.getChild('LabelName') as SyntaxNode),
          op: text(m.getChild('MatchOp') as SyntaxNode),
          value: JSON.parse(text(m.getChild('StringLiteral') as SyntaxNode)) as string,
        }));
        selectors.push({ metric: text(id), matchers });
      } else if (n.name === 'GroupingLabels') {
        grouping.push(...n.getChildren('LabelName').map(text));
      }
    },
  });
  return { selectors, grouping };
}

/** Whether a series satisfies a matcher whose value is fixed (template variables like `$app` are not). */
function satisfies(s: Series, m: Selector['matchers'][number]): boolean {
  const v = s.labels[m.label] ?? '';
  const re = new RegExp(`^(?:${m.value})$`);
  return m.op === '=' ? v === m.value : m.op === '!=' ? v !== m.value : m.op === '=~' ? re.test(v) : !re.test(v);
}

describe('the Grafana dashboard (deploy/grafana)', () => {
  let blue: Upstream;
  let green: Upstream;
  let p: TestProxy;
  /** the edge of the dashboard's lower rows: TLS with ACME, DNS discovery, a log sink */
  let edge: TestProxy;
  let ca: TestCa;
  let dns: DnsServer;
  let logFd: number;
  let scraped: Series[];
  let qs: Query[];

  before(async () => {
    [blue, green] = await Promise.all([startUpstream('blue'), startUpstream('green')]);
    p = await startProxy({ apps: [twoPools(blue.url, green.url)] });
    // a canary that served some requests on each pool, then a switch
    assert.equal((await p.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 50, green: 50 } })).status, 200);
    for (let i = 0; i < 40; i++) await p.get('/');
    assert.equal((await p.admin('POST', '/v1/apps/shop/switch', { to: 'green' })).status, 200);
    const r = await request(`${p.adminUrl}/metrics`);
    assert.equal(r.statusCode, 200);
    scraped = parseMetrics(await r.body.text());

    // the series that exist only with listen.tls, acme, discover or a log destination, from a
    // second proxy that has them all; its ACME directory does not answer, so orders fail
    ca = createTestCa();
    // a file certificate for another name, so shop.test has none and ACME orders one
    const cert = ca.issue('other', ['other.test']);
    dns = await startDnsServer({ 'blue.test': { a: ['127.0.0.1'] } });
    logFd = openSync('/dev/null', 'w');
    edge = await startProxy(
      {
        listen: { host: '127.0.0.1', port: 0, tls: { port: 0, certs: [{ cert: cert.cert, key: cert.key }], acme: { directory: 'http://127.0.0.1:9/directory', email: 'ops@example.com', hosts: ['shop.test'], retry: '100ms' } } },
        discovery: { servers: [dns.address], timeout: '200ms' },
        apps: [{ name: 'shop', hosts: ['*'], pools: { blue: { version: '1.0.0', discover: { dns: 'blue.test', port: blue.port, interval: '100ms' } }, green: { version: '2.0.0', targets: [green.url] } } }],
      },
      { logSink: new LogSink(logFd), edge: { acmeSyncMs: 100 } },
    );
    const has = (series: Series[], name: string) => series.some((s) => s.name === name);
    let edgeSeries: Series[] = [];
    for (const deadline = Date.now() + 30_000; Date.now() < deadline; await new Promise((res) => setTimeout(res, 100))) {
      const e = await request(`${edge.adminUrl}/metrics`);
      edgeSeries = parseMetrics(await e.body.text());
      if (['switchyard_acme_order_failures_total', 'switchyard_discovery_targets', 'switchyard_discovery_lookups_total'].every((n) => has(edgeSeries, n))) break;
    }
    scraped.push(...edgeSeries.filter((s) => !has(scraped, s.name)));
    qs = queries(JSON.parse(await readFile(DASHBOARD, 'utf8')));
  });
  after(async () => {
    await Promise.all([p?.close(), edge?.close()]);
    await Promise.all([blue?.close(), green?.close(), dns?.close()]);
    ca?.close();
    if (logFd !== undefined) closeSync(logFd);
  });

  it('has a query for each thing an operator watches during a release', () => {
    const all = qs.map((q) => q.expr).join('\n');
    for (const [what, pattern] of [
      ['traffic share per pool', /sum by \(pool\) \(rate\(switchyard_requests_total/],
      ['error rate per pool', /class=~"5xx\|error"/],
      ['p99 per pool', /histogram_quantile\(0\.99, sum by \(pool, le\)/],
      ['in flight', /switchyard_inflight_requests/],
      ['draining', /== 0\)/],
      ['routing changes over time', /max_over_time\(switchyard_routing_revision.*offset/],
      ['rollouts and their rollbacks', /increase\(switchyard_rollouts_total/],
      ['weights (the rollout state)', /switchyard_pool_weight_ratio/],
      ['healthy targets per pool', /switchyard_pool_healthy_targets/],
      ['targets down', /switchyard_target_up\{[^}]*\}\) == 0/],
      ['client connections and their limit', /switchyard_client_connections_max/],
      ['the fd limit', /switchyard_fd_limit/],
      ['log sink failures', /switchyard_log_write_errors_total[\s\S]*switchyard_log_dropped_lines_total/],
      ['shutdown cuts', /switchyard_shutdown_cut_total/],
      ['discovery', /switchyard_discovery_failing/],
      ['certificate expiry', /switchyard_tls_certificate_expiry_seconds/],
      ['ACME failures', /switchyard_acme_order_failures_total/],
    ] as const) assert.match(all, pattern, what);
  });

  it('queries only metrics that a running proxy that served requests exposes, with labels and values they carry', () => {
    const names = new Set(scraped.map((s) => s.name));
    assert.ok(scraped.some((s) => s.name === 'switchyard_requests_total' && s.labels['pool'] === 'green' && s.value > 0), 'the scrape saw traffic on green');
    let checked = 0;
    for (const q of qs) {
      const { selectors, grouping } = readExpr(q.expr);
      assert.ok(selectors.length > 0, `${q.where}: queries a metric`);
      for (const sel of selectors) {
        assert.ok(names.has(sel.metric), `${q.where}: ${sel.metric} is not in /metrics (${q.expr})`);
        const series = scraped.filter((s) => s.name === sel.metric);
        for (const m of sel.matchers) {
          if (TARGET_LABELS.has(m.label)) continue;
          assert.ok(series.some((s) => m.label in s.labels), `${q.where}: ${sel.metric} has no label ${m.label}`);
          if (!m.value.includes('$')) assert.ok(series.some((s) => satisfies(s, m)), `${q.where}: no ${sel.metric} series has ${m.label}${m.op}"${m.value}"`);
        }
        checked++;
      }
      for (const label of grouping) {
        if (TARGET_LABELS.has(label)) continue;
        assert.ok(selectors.some((sel) => scraped.some((s) => s.name === sel.metric && label in s.labels)), `${q.where}: groups by ${label}, which none of its metrics carries`);
      }
    }
    assert.ok(checked >= 40, `selectors checked: ${checked}`);
  });

  it('reads a template variable that lists the app the proxy serves', () => {
    const app = qs.find((q) => q.where === 'variable app');
    assert.ok(app);
    const { selectors } = readExpr(app.expr);
    assert.ok(selectors.every((sel) => scraped.some((s) => s.name === sel.metric && s.labels['app'] === 'shop')));
  });
});
