import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { COMMANDS } from '../../src/cli/commands.ts';
import { GLOBAL_OPTIONS } from '../../src/cli/main.ts';

const ROOT = new URL('../../', import.meta.url);
const read = (path: string): string => readFileSync(new URL(path, ROOT), 'utf8');

/** The README's pipeline example: the yaml block after "A complete GitHub Actions job". */
function readmeWorkflow(): string {
  const readme = read('README.md');
  const at = readme.indexOf('A complete GitHub Actions job');
  assert.ok(at >= 0, 'the README has the pipeline example');
  const start = readme.indexOf('```yaml\n', at) + '```yaml\n'.length;
  return readme.slice(start, readme.indexOf('```\n', start));
}

interface Step {
  readonly name?: string;
  readonly run?: string;
}

/**
 * Every `switchyard COMMAND …` the steps run, with its options: continuation lines joined, up to
 * the end of the shell command (`|`, `;`, `&&`, `||`, `)` or the line's end). `kubectl -n
 * switchyard …` names the namespace, not the CLI.
 */
function invocations(steps: readonly Step[]): { command: string; options: string[]; text: string }[] {
  const found: { command: string; options: string[]; text: string }[] = [];
  for (const step of steps) {
    // quoted text (a reason, a URL) may hold spaces, dashes and parentheses: kept out of the parsing
    const script = (step.run ?? '').replace(/\\\n\s*/g, ' ').replace(/"[^"]*"/g, '""');
    for (const m of script.matchAll(/(?<!-n )(?<![\w/-])switchyard (?<rest>[^\n|;)&]*)/g)) {
      const text = m.groups?.['rest'] ?? '';
      const command = text.split(' ')[0] ?? '';
      const options = [...text.matchAll(/(?:^|\s)--([a-z][a-z0-9-]*)/g)].map((o) => o[1] as string);
      found.push({ command, options, text });
    }
  }
  return found;
}

describe('the release workflow the README shows (.github/workflows/release.yml)', () => {
  const file = read('.github/workflows/release.yml');
  const workflow = parseYaml(file) as { jobs: Record<string, { steps: Step[] }> };
  const steps = Object.values(workflow.jobs).flatMap((j) => j.steps);

  it('is the README\'s example, byte for byte, and valid YAML', () => {
    assert.equal(readmeWorkflow(), file, 'README "Pipelines" and .github/workflows/release.yml differ: change both');
    for (const doc of parseAllDocuments(file)) assert.deepEqual(doc.errors, []);
    assert.ok(steps.length > 0);
  });

  it('installs this package under its published name and version', () => {
    const pkg = JSON.parse(read('package.json')) as { name: string; version: string };
    const install = steps.map((s) => s.run ?? '').find((r) => r.includes('npm install'));
    assert.match(install ?? '', new RegExp(`npm install --global ${pkg.name}@${pkg.version.replaceAll('.', '\\.')}(\\s|$)`));
  });

  it('runs only commands and options the CLI knows', () => {
    const calls = invocations(steps);
    assert.ok(calls.length >= 6, `found the switchyard calls: ${JSON.stringify(calls.map((c) => c.command))}`);
    assert.ok(calls.some((c) => c.command === 'rollout' && c.options.includes('max-p99') && c.options.includes('wait')), 'the options are read');
    for (const call of calls) {
      // `switchyard rollout "$APP" start …`: the command is the first word
      const cmd = COMMANDS[call.command];
      assert.ok(cmd !== undefined, `switchyard ${call.text}: no command "${call.command}"`);
      const known = new Set(Object.keys({ ...GLOBAL_OPTIONS, ...('options' in cmd ? cmd.options : {}) }));
      for (const o of call.options) assert.ok(known.has(o), `switchyard ${call.text}: ${call.command} has no option --${o}`);
    }
  });

  it('reaches the admin Service of the Kubernetes manifests', () => {
    const forward = /kubectl -n (\S+) port-forward svc\/(\S+) (\d+):(\d+)/.exec(steps.map((s) => s.run ?? '').join('\n'));
    assert.ok(forward !== null, 'a port-forward to the admin Service');
    const services = parseAllDocuments(read('deploy/kubernetes/services.yaml')).map((d) => d.toJS() as { metadata: { name: string }; spec: { ports: { port: number }[] } });
    const admin = services.find((s) => s.metadata.name === forward[2]);
    assert.ok(admin !== undefined, `the Service ${forward[2]} is in deploy/kubernetes`);
    assert.ok(admin.spec.ports.some((p) => p.port === Number(forward[4])), `it listens on ${forward[4]}`);
    const kustomization = parseYaml(read('deploy/kubernetes/kustomization.yaml')) as { namespace: string };
    assert.equal(forward[1], kustomization.namespace);
  });
});
