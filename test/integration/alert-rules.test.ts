import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { before, describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';

// The alert rules (deploy/prometheus/switchyard-rules.yaml, README "Alerts") are checked and
// unit-tested by Prometheus' own promtool, series by series (switchyard-rules.test.yaml); this
// file runs it and keeps the rules, their tests, the PrometheusRule and the metrics in step.

const DIR = new URL('../../deploy/prometheus/', import.meta.url);
const RULES = fileURLToPath(new URL('switchyard-rules.yaml', DIR));
const TESTS = fileURLToPath(new URL('switchyard-rules.test.yaml', DIR));
const OPERATOR = new URL('../../deploy/kubernetes/prometheusrule.yaml', import.meta.url);

interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}
interface Group {
  name: string;
  rules: Rule[];
}
interface UnitTest {
  name: string;
  input_series: { series: string; values: string }[];
  alert_rule_test: { eval_time: string; alertname: string; exp_alerts: unknown[] }[];
}

/**
 * promtool, from Debian's `prometheus` package. When it is missing and the tests run as root (CI
 * images, the dev container), it is installed; otherwise the test fails saying what to install.
 */
function promtool(): string {
  const probe = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
  if (probe.error === undefined && probe.status === 0) return 'promtool';
  if (process.getuid?.() === 0) {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    let install = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'prometheus'], { encoding: 'utf8', env });
    if (install.status !== 0) {
      spawnSync('apt-get', ['update'], { encoding: 'utf8', env });
      install = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'prometheus'], { encoding: 'utf8', env });
    }
    if (install.status === 0 && spawnSync('promtool', ['--version']).status === 0) return 'promtool';
    assert.fail(`promtool is missing and \`apt-get install prometheus\` failed: ${install.stderr}`);
  }
  assert.fail('promtool is missing: install Debian\'s `prometheus` package (apt-get install prometheus), which provides it');
}

function run(tool: string, args: string[]): string {
  const r = spawnSync(tool, args, { encoding: 'utf8' });
  assert.equal(r.error, undefined);
  assert.equal(r.status, 0, `${tool} ${args.join(' ')}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** Every metric name the sources register (`name: 'switchyard_…'` and the computed ones). */
function registeredMetrics(): Set<string> {
  const names = new Set<string>();
  const walk = (dir: URL): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) walk(new URL(`${e.name}/`, dir));
      else if (e.name.endsWith('.ts')) for (const [, n] of readFileSync(new URL(e.name, dir), 'utf8').matchAll(/'(switchyard_[a-z_]+)'/g)) names.add(n as string);
    }
  };
  walk(new URL('../../src/', import.meta.url));
  return names;
}

describe('the Prometheus alert rules (deploy/prometheus)', () => {
  let tool: string;
  let groups: Group[];
  let tests: UnitTest[];
  before(() => {
    tool = promtool();
    groups = (parseYaml(readFileSync(RULES, 'utf8')) as { groups: Group[] }).groups;
    tests = (parseYaml(readFileSync(TESTS, 'utf8')) as { tests: UnitTest[] }).tests;
  });

  it('pass promtool check rules', () => {
    assert.match(run(tool, ['check', 'rules', RULES]), /SUCCESS: \d+ rules found/);
  });

  it('pass their promtool unit tests', () => {
    assert.match(run(tool, ['test', 'rules', TESTS]), /SUCCESS/);
  });

  it('have, each alert, a unit test where it fires and one where it must not (yet)', () => {
    const alerts = groups.flatMap((g) => g.rules.map((r) => r.alert));
    assert.ok(alerts.length >= 10, `alerts: ${alerts.length}`);
    for (const alert of alerts) {
      const cases = tests.flatMap((t) => t.alert_rule_test.filter((c) => c.alertname === alert));
      assert.ok(cases.some((c) => c.exp_alerts.length > 0), `${alert}: a test where it fires`);
      const rule = groups.flatMap((g) => g.rules).find((r) => r.alert === alert) as Rule;
      // an alert with `for` is tested just before it may fire; one without, before its condition holds
      assert.ok(cases.some((c) => c.exp_alerts.length === 0) || alert === 'SwitchyardCertificateExpiringSoon', `${alert}: a test where it stays quiet`);
      assert.ok(['critical', 'warning'].includes(rule.labels.severity ?? ''), `${alert}: severity`);
      assert.ok(rule.annotations.summary && rule.annotations.description, `${alert}: summary and description`);
    }
  });

  it('query only metrics Switchyard registers, and their tests feed those same metrics', () => {
    const registered = registeredMetrics();
    const used = new Set(groups.flatMap((g) => g.rules.flatMap((r) => [...r.expr.matchAll(/\b(switchyard_[a-z_]+)/g)].map((m) => m[1] as string))));
    for (const name of used) assert.ok(registered.has(name), `${name} is registered in src/`);
    for (const t of tests) for (const s of t.input_series) assert.ok(used.has(/^(\w+)/.exec(s.series)?.[1] ?? ''), `${t.name}: ${s.series} is a metric the rules read`);
    // the README lists each alert with what to do
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    for (const g of groups) for (const r of g.rules) assert.ok(readme.includes(`\`${r.alert}\``), `README names ${r.alert}`);
  });

  it('are the same rules in the PrometheusRule for the Prometheus Operator (deploy/kubernetes)', () => {
    const obj = parseYaml(readFileSync(OPERATOR, 'utf8')) as { apiVersion: string; kind: string; spec: { groups: Group[] } };
    assert.equal(obj.apiVersion, 'monitoring.coreos.com/v1');
    assert.equal(obj.kind, 'PrometheusRule');
    assert.deepEqual(obj.spec.groups, groups);
  });
});
