import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { runCliCaptured } from '../helpers/cli.ts';
import { startHookServer, type HookServer } from '../helpers/hook-server.ts';
import { startProxy, twoPools, TOKEN, type TestProxy } from '../helpers/proxy.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { until } from '../helpers/wait.ts';

/**
 * docs/gates.md §1, §3, §4 on a whole proxy: approval steps, preRollout/preStep hooks, webhook gates,
 * notifications (JSON and Slack) and masked secrets, with real HTTP servers as the hooks.
 */

let blue: Upstream;
let green: Upstream;
let hooks: HookServer;

before(async () => {
  blue = await startUpstream('blue');
  green = await startUpstream('green');
  hooks = await startHookServer();
});
after(async () => {
  await Promise.all([blue.close(), green.close(), hooks.close()]);
});

/** Driver rounds every 20 ms; notifications retried quickly. */
const FAST = { rollouts: { tickMs: 20, notify: { backoffMs: 50, retries: 2, timeoutMs: 2000 } } };

async function proxy(t: TestContext, deps: Parameters<typeof startProxy>[1] = {}): Promise<TestProxy> {
  const p = await startProxy({ apps: [twoPools(blue.url, green.url)] }, { ...FAST, ...deps });
  t.after(() => p.close());
  return p;
}

/** Real requests through the proxy until stopped: what the proxy's own analysis needs to judge a step. */
function traffic(t: TestContext, p: TestProxy): void {
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      await p.get('/').catch(() => undefined);
      await sleep(5);
    }
  })();
  t.after(async () => {
    stopped = true;
    await loop;
  });
}

const current = async (p: TestProxy) => (await p.admin('GET', '/v1/apps/shop/rollouts/current')).body;
const inState = (t: TestContext, p: TestProxy, state: string, timeout?: number) => until(t, `rollout ${state}`, async () => ((await current(p)).state === state ? current(p) : undefined), { timeout: timeout ?? 15_000 });
const weights = async (p: TestProxy) => (await p.admin('GET', '/v1/apps/shop')).body.weights;
const history = async (p: TestProxy, limit = 5) => (await p.admin('GET', `/v1/apps/shop/history?limit=${limit}`)).body.entries as { revision: number; reason: string | null; by: string }[];

describe('approval steps', () => {
  it('holds at the weight before it until approved, records the approver and reason, and tells Slack and JSON receivers', async (t) => {
    const p = await proxy(t);
    const slack = `/slack/T0/B0/${'s'.repeat(24)}`;
    const json = '/json/secret-token-123';
    const r = await p.admin('POST', '/v1/apps/shop/rollouts', {
      to: 'green',
      steps: [{ weight: 20 }, { approval: true, timeout: '10m' }, { weight: 100 }],
      analysis: null,
      notify: [{ url: hooks.url + slack, format: 'slack', events: ['waiting-approval', 'approved', 'succeeded'] }, { url: hooks.url + json }],
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.deepEqual(r.body.steps, [{ weight: 20, pause: null }, { weight: 20, pause: null, approval: true, timeout: '10m' }, { weight: 100, pause: null }]);
    const waiting = await until(t, 'step 2 waiting for approval', async () => {
      const c = await current(p);
      return c.step === 2 && c.gates.waitingApproval ? c : undefined;
    }, { timeout: 15_000 });
    assert.equal(waiting.state, 'running');
    // three driver rounds run now (not a sleep that hopes one ran): none moves it on
    for (let i = 0; i < 3; i++) await p.sy.rollouts.tick();
    assert.equal((await current(p)).step, 2, 'held: no step without the approval');
    assert.deepEqual(await weights(p), { blue: 80, green: 20 });
    // the notify URLs are secrets: masked in the answer
    assert.deepEqual(waiting.gates.config.notify.map((n: { url: string }) => n.url), [`${hooks.url}/…`, `${hooks.url}/…`]);
    assert.ok(!JSON.stringify(waiting).includes('secret-token-123') && !JSON.stringify(waiting).includes('s'.repeat(24)));

    const approved = await p.admin('POST', '/v1/apps/shop/rollouts/current/approve', { reason: 'QA signed off' });
    assert.equal(approved.status, 200, JSON.stringify(approved.body));
    assert.equal(approved.body.gates.approvals.length, 1);
    assert.equal(approved.body.gates.approvals[0].by, 'tester');
    assert.equal(approved.body.gates.approvals[0].reason, 'QA signed off');
    assert.equal(approved.body.gates.approvals[0].step, 2);
    const done = await inState(t, p, 'succeeded');
    assert.equal(done.gates.approvals[0].by, 'tester');
    assert.deepEqual(await weights(p), { blue: 0, green: 100 });
    const [last] = await history(p, 1);
    assert.match(last?.reason ?? '', /step 3\/3: green 100%; approved by tester: QA signed off$/);
    assert.equal((await p.admin('POST', '/v1/apps/shop/rollouts/current/approve', {})).status, 409, 'nothing to approve once it ended');

    // notifications: the JSON receiver hears every event, the Slack one the three it chose, as { text }
    const events = await until(t, 'the JSON notifications', async () => {
      const seen = hooks.on(json).map((c) => c.body.event as string);
      return seen.includes('succeeded') && seen.length >= 5 ? seen : undefined;
    }, { timeout: 15_000 });
    // the last step ends the rollout: `succeeded`, not `step`
    assert.deepEqual([...events].sort(), ['approved', 'started', 'step', 'succeeded', 'waiting-approval'].sort());
    const jsonMsg = hooks.on(json).find((c) => c.body.event === 'approved')?.body;
    assert.equal(jsonMsg.app, 'shop');
    assert.equal(jsonMsg.rollout, r.body.id);
    assert.equal(jsonMsg.to, 'green');
    assert.equal(jsonMsg.version, '2.0.0');
    assert.equal(jsonMsg.step, 2);
    const slackMsgs = await until(t, 'the Slack notifications', async () => (hooks.on(slack).length >= 3 ? hooks.on(slack) : undefined), { timeout: 15_000 });
    for (const m of slackMsgs) assert.deepEqual(Object.keys(m.body), ['text']);
    assert.deepEqual(slackMsgs.map((m) => /rollout `r-[0-9a-f]+` to green 2\.0\.0 (.*?) \(/.exec(m.body.text)?.[1]).sort(), ['is waiting for approval', 'succeeded', 'was approved'].sort());
  });

  it('past its timeout, onFailure applies: rolled back to the starting weights', async (t) => {
    const p = await proxy(t);
    const r = await p.admin('POST', '/v1/apps/shop/rollouts', { to: 'green', steps: [{ weight: 30 }, { approval: true, timeout: '1s' }], analysis: null, onFailure: 'rollback' });
    assert.equal(r.status, 201);
    const rolled = await inState(t, p, 'rolled-back');
    assert.equal(rolled.reason, 'approval timed out: step 2 was not approved within 1s');
    assert.deepEqual(await weights(p), { blue: 100, green: 0 });
    assert.match((await history(p, 1))[0]?.reason ?? '', /rolled back: step 2 was not approved within 1s$/);
  });

  it('approve answers 409 on a step that is not an approval step, and the CLI approves and shows who did', async (t) => {
    const p = await proxy(t);
    const r = await p.admin('POST', '/v1/apps/shop/rollouts', { to: 'green', steps: [{ weight: 10, pause: '10m' }, { approval: true }], analysis: null });
    assert.equal(r.status, 201);
    const no = await p.admin('POST', '/v1/apps/shop/rollouts/current/approve', {});
    assert.equal(no.status, 409);
    assert.match(no.body.error.message, /step 1 of rollout r-[0-9a-f]+ is not an approval step/);
    assert.equal((await p.admin('POST', '/v1/apps/shop/rollouts/current/approve', { extra: 1 })).status, 400);
    // a second rollout whose approval step comes at once
    await p.admin('POST', '/v1/apps/shop/rollouts/current/abort', {});
    const again = await p.admin('POST', '/v1/apps/shop/rollouts', { to: 'green', steps: [{ weight: 10 }, { approval: true }], analysis: null });
    assert.equal(again.status, 201);
    await until(t, 'waiting for approval', async () => (await current(p)).gates.waitingApproval, { timeout: 15_000 });
    const env = { SWITCHYARD_ADMIN_URL: p.adminUrl, SWITCHYARD_TOKEN: TOKEN };
    const status = await runCliCaptured(['rollout', 'shop', 'status'], env);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /steps: 10% → approval → 100%/);
    assert.match(status.stdout, /waiting for approval of step 2: switchyard rollout shop approve --reason R/);
    const cli = await runCliCaptured(['rollout', 'shop', 'approve', '--reason', 'go'], env);
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /step 2 approved by tester at \S+: go/);
    await inState(t, p, 'succeeded');
  });
});

describe('hooks', () => {
  it('a failing preRollout hook refuses the start with 409 and writes nothing; a passing one gets the body of docs/gates.md §3', async (t) => {
    const p = await proxy(t);
    const before = (await p.admin('GET', '/v1/apps/shop')).body.revision;
    hooks.reply('/pre/not-ready-key', () => ({ status: 503, body: 'database migration still running' }));
    const refused = await p.admin('POST', '/v1/apps/shop/rollouts', { to: 'green', preset: 'canary10-5m', hooks: { preRollout: [hooks.url + '/pre/not-ready-key'] } });
    assert.equal(refused.status, 409);
    assert.equal(refused.body.error.code, 'CONFLICT');
    assert.match(refused.body.error.message, /preRollout hook refused the rollout: preRollout\[0\] http:\/\/127\.0\.0\.1:\d+\/…: 503 \(HTTP 503: database migration still running\)/);
    assert.ok(!JSON.stringify(refused.body).includes('not-ready-key'), 'the hook URL is masked');
    assert.equal((await p.admin('GET', '/v1/apps/shop/rollouts/current')).status, 404, 'no rollout recorded');
    assert.equal((await p.admin('GET', '/v1/apps/shop')).body.revision, before, 'no weights written');
    // unreachable is no go either
    const down = await p.admin('POST', '/v1/apps/shop/rollouts', { to: 'green', preset: 'canary10-5m', hooks: { preRollout: ['http://127.0.0.1:1/ready'] } });
    assert.equal(down.status, 409);
    assert.match(down.body.error.message, /unreachable/);

    const ok = await p.admin('POST', '/v1/apps/shop/rollouts', { to: 'green', preset: 'canary10-5m', hooks: { preRollout: [hooks.url + '/pre/ok'] } });
    assert.equal(ok.status, 201);
    const [call] = hooks.on('/pre/ok');
    assert.ok(call);
    assert.deepEqual(Object.keys(call.body).sort(), ['app', 'figures', 'phase', 'rollout', 'round', 'step', 'to', 'version', 'weights'].sort());
    assert.equal(call.body.app, 'shop');
    assert.equal(call.body.rollout, ok.body.id);
    assert.equal(call.body.to, 'green');
    assert.equal(call.body.version, '2.0.0');
    assert.deepEqual(call.body.weights, { blue: 100, green: 0 });
    assert.equal(call.body.phase, 'preRollout');
    assert.equal(call.headers['content-type'], 'application/json');
  });

  it('a failing preStep hook applies onFailure (pause) before the step is written; after a resume it is called again', async (t) => {
    const p = await proxy(t);
    let status = 500;
    hooks.reply('/prestep/k', () => ({ status }));
    const r = await p.admin('POST', '/v1/apps/shop/rollouts', { to: 'green', steps: [{ weight: 10 }, { weight: 50 }], analysis: null, onFailure: 'pause', hooks: { preStep: [hooks.url + '/prestep/k'] } });
    assert.equal(r.status, 201);
    const paused = await inState(t, p, 'paused');
    assert.match(paused.reason, /^gate failed: preStep of step 2: preStep\[0\] http:\/\/127\.0\.0\.1:\d+\/… 500 \(HTTP 500\); paused \(onFailure: pause\)$/);
    assert.equal(paused.step, 1);
    assert.deepEqual(await weights(p), { blue: 90, green: 10 }, 'step 2 was not written');
    const calls = hooks.on('/prestep/k');
    assert.equal(calls.length, 1);
    assert.equal(calls[0]?.body.step, 2);
    assert.equal(calls[0]?.body.phase, 'preStep');
    status = 200;
    await p.admin('POST', '/v1/apps/shop/rollouts/current/resume', {});
    await inState(t, p, 'succeeded');
    // step 2 once more after the resume, then the final 100 % step (appended) once
    assert.deepEqual(hooks.on('/prestep/k').map((c) => c.headers['x-switchyard-gate']), [`${r.body.id}/2/preStep/1`, `${r.body.id}/2/preStep/2`, `${r.body.id}/3/preStep/1`]);
    const entries = await history(p, 3);
    assert.match(entries.find((e) => e.reason?.includes('step 2/3') === true)?.reason ?? '', /; preStep 200$/);
  });

  it('postRollout and onRollback are called after the fact, and a dead one never holds the rollout', async (t) => {
    const p = await proxy(t);
    const r = await p.admin('POST', '/v1/apps/shop/rollouts', { to: 'green', steps: [{ weight: 50 }], analysis: null, hooks: { postRollout: [hooks.url + '/post/x', 'http://127.0.0.1:1/dead'] } });
    assert.equal(r.status, 201);
    await inState(t, p, 'succeeded');
    const post = await until(t, 'the postRollout call', async () => hooks.on('/post/x')[0], { timeout: 15_000 });
    assert.equal(post.body.phase, 'postRollout');
    assert.equal(post.body.state, 'succeeded');
  });
});

describe('webhook gates', () => {
  it('are called every interval while a step holds; a failing answer rolls back with the webhook status kept and shown', async (t) => {
    const p = await proxy(t);
    traffic(t, p);
    hooks.reply('/smoke/token-abc', (_c, n) => (n <= 2 ? { status: 200 } : { status: 500, body: '3 of 40 checks failed' }));
    const r = await p.admin('POST', '/v1/apps/shop/rollouts', {
      to: 'green',
      steps: [{ weight: 50, pause: '1m' }],
      // 1 s apart: the third round comes after a whole second of traffic on green (figures count whole seconds)
      analysis: { minRequests: 1, interval: '1s', webhooks: [{ name: 'smoke', url: hooks.url + '/smoke/token-abc', timeout: '5s' }] },
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const rolled = await inState(t, p, 'rolled-back', 20_000);
    assert.equal(rolled.reason, 'gate failed: smoke 500 (HTTP 500: 3 of 40 checks failed)');
    assert.deepEqual(await weights(p), { blue: 100, green: 0 });
    const rounds = rolled.gates.rounds as { round: number; verdict: string; checks: { status: number }[] }[];
    assert.deepEqual(rounds.map((x) => [x.round, x.verdict, x.checks[0]?.status]), [[1, 'pass', 200], [2, 'pass', 200], [3, 'fail', 500]]);
    assert.equal(rolled.gates.config.webhooks[0].url, `${hooks.url}/…`);
    const calls = hooks.on('/smoke/token-abc');
    assert.equal(calls.length, 3, 'one call per round');
    assert.equal(calls[0]?.headers['x-switchyard-gate'], `${r.body.id}/1/analysis/1`);
    assert.ok(calls[2]?.body.figures.to.requests >= 1, 'the proxy figures come along');
    // the driver's round times, not the arrival times (one call's connect can be slower than the next's)
    const startedAt = (rolled.gates.rounds as { at: string }[]).map((x) => Date.parse(x.at));
    assert.ok((startedAt[1] ?? 0) - (startedAt[0] ?? 0) >= 250 && (startedAt[2] ?? 0) - (startedAt[1] ?? 0) >= 250, `rounds are an interval apart: ${startedAt.join(', ')}`);
    assert.match((await history(p, 1))[0]?.reason ?? '', /rolled back: smoke 500/);
    const env = { SWITCHYARD_ADMIN_URL: p.adminUrl, SWITCHYARD_TOKEN: TOKEN };
    const status = await runCliCaptured(['rollout', 'shop', 'status'], env);
    assert.match(status.stdout, /step 1 analysis round 3: fail — smoke 500 fail \(HTTP 500: 3 of 40 checks failed\)/);
    assert.ok(!status.stdout.includes('token-abc'));
  });

  it('a step is left only after a round passed, and a webhook that cannot be reached pauses it after inconclusiveLimit rounds', async (t) => {
    const p = await proxy(t);
    traffic(t, p);
    const r = await p.admin('POST', '/v1/apps/shop/rollouts', {
      to: 'green',
      steps: [{ weight: 20, pause: '100ms' }],
      analysis: { minRequests: 1, interval: '200ms', inconclusiveLimit: 2, webhooks: [{ name: 'smoke', url: 'http://127.0.0.1:1/run', timeout: '2s' }] },
    });
    assert.equal(r.status, 201);
    const paused = await inState(t, p, 'paused', 20_000);
    assert.match(paused.reason, /^inconclusive: 2 inconclusive rounds in a row, the last: smoke no answer \(unreachable: .*ECONNREFUSED.*\); paused \(onInconclusive: pause\), never promoted without evidence$/);
    assert.equal(paused.step, 1);
    assert.deepEqual(await weights(p), { blue: 80, green: 20 }, 'never promoted');
  });
});

describe('notifications', () => {
  it('never hold a rollout; failed deliveries are retried with backoff, then logged (masked) and counted', async (t) => {
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, new Writable({ write: (chunk: Buffer, _e, cb) => (lines.push(chunk.toString()), cb()) }));
    const p = await proxy(t, { logger });
    hooks.reply('/notify/broken-key', () => ({ status: 502 }));
    const r = await p.admin('POST', '/v1/apps/shop/rollouts', { to: 'green', steps: [{ weight: 50 }], analysis: null, notify: [{ url: hooks.url + '/notify/broken-key', events: ['started'] }] });
    assert.equal(r.status, 201);
    await inState(t, p, 'succeeded', 5000);
    const metrics = await until(t, 'the failure counted', async () => {
      const text = await (await fetch(`${p.adminUrl}/metrics`)).text();
      return /switchyard_rollout_notifications_total\{kind="notify",result="failed"\} 1/.test(text) ? text : undefined;
    }, { timeout: 15_000 });
    assert.match(metrics, /switchyard_rollout_notifications_total\{kind="notify",result="sent"\} 0/);
    assert.equal(hooks.on('/notify/broken-key').length, 3, 'the first delivery and 2 retries');
    const [a, b, c] = hooks.on('/notify/broken-key').map((x) => x.at);
    assert.ok((b as number) - (a as number) >= 40 && (c as number) - (b as number) >= 90, 'backoff doubles');
    const failure = lines.find((l) => l.includes('rollout notify to'));
    assert.ok(failure, 'the failure is logged');
    assert.match(failure, /failed: HTTP 502/);
    assert.ok(!lines.some((l) => l.includes('broken-key')), 'no log line shows the secret URL');
  });
});

describe('the CLI', () => {
  it('rollout start takes the gate flags and -f rollout.json; bad calls exit 2 naming the flag', async (t) => {
    const p = await proxy(t);
    const env = { SWITCHYARD_ADMIN_URL: p.adminUrl, SWITCHYARD_TOKEN: TOKEN };
    const started = await runCliCaptured(
      ['rollout', 'shop', 'start', '--to', 'green', '--steps', '10:10m,100', '--approval-after', '1', '--query', 'ok=sum(up{version="{{version}}"})', '--min', '1', '--prometheus', 'http://127.0.0.1:1', '--webhook', `smoke=${hooks.url}/cli/smoke-key`, '--notify', `${hooks.url}/cli/notify-key`, '--json'],
      env,
    );
    assert.equal(started.code, 0, started.stderr);
    const r = JSON.parse(started.stdout);
    assert.deepEqual(r.steps, [{ weight: 10, pause: '10m' }, { weight: 10, pause: null, approval: true, timeout: null }, { weight: 100, pause: null }]);
    assert.deepEqual(r.gates.config.queries, [{ name: 'ok', prometheus: 'sum(up{version="{{version}}"})', min: 1 }]);
    assert.deepEqual(r.gates.config.webhooks, [{ name: 'smoke', url: `${hooks.url}/…`, timeoutMs: 10_000 }]);
    assert.deepEqual(r.gates.config.notify, [{ url: `${hooks.url}/…`, format: 'json', events: ['started', 'step', 'waiting-approval', 'approved', 'paused', 'resumed', 'succeeded', 'rolled-back', 'aborted'] }]);
    assert.equal(r.gates.config.prometheus.url, 'http://127.0.0.1:1');
    await p.admin('POST', '/v1/apps/shop/rollouts/current/abort', {});

    const dir = await mkdtemp(join(tmpdir(), 'switchyard-cli-gates-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'rollout.json');
    await writeFile(file, JSON.stringify({ to: 'green', steps: [{ weight: 25 }, { approval: true, timeout: '2h' }], analysis: null, notify: [{ url: 'https://hooks.slack.com/services/T0/B0/x', format: 'slack' }] }));
    const fromFile = await runCliCaptured(['rollout', 'shop', 'start', '-f', file, '--reason', 'from a file'], env);
    assert.equal(fromFile.code, 0, fromFile.stderr);
    assert.match(fromFile.stdout, /steps: 25% → approval \(timeout 2h\) → 100%/);
    assert.match(fromFile.stdout, /notify: https:\/\/hooks\.slack\.com\/… \(slack\)/);
    assert.match(fromFile.stdout, /reason: from a file/);
    await p.admin('POST', '/v1/apps/shop/rollouts/current/abort', {});

    const bad = await runCliCaptured(['rollout', 'shop', 'start', '--to', 'green', '--preset', 'canary10-5m', '--min', '1'], env);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /each --min and --max goes with a --query/);
    const misplaced = await runCliCaptured(['rollout', 'shop', 'approve', '--query', 'a=b'], env);
    assert.equal(misplaced.code, 2);
    assert.match(misplaced.stderr, /--query goes with start only/);
    const noSteps = await runCliCaptured(['rollout', 'shop', 'start', '--to', 'green', '--preset', 'canary10-5m', '--approval-after', '1'], env);
    assert.equal(noSteps.code, 2);
    assert.match(noSteps.stderr, /--approval-after needs --steps/);
  });
});
