import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SwitchyardError } from '../../src/errors.ts';
import { roundVerdict, type GateCheck } from '../../src/rollout/gate-model.ts';
import { message, slackText } from '../../src/rollout/notify.ts';
import { maskHeaders, maskUrl } from '../../src/rollout/outbound.ts';
import { judgeValue, readAnswer, substitute } from '../../src/rollout/prometheus.ts';
import { parseRolloutBody, rolloutBody } from '../../src/rollout/spec.ts';
import type { Rollout } from '../../src/rollout/model.ts';

const vector = (...values: string[]) => JSON.stringify({ status: 'success', data: { resultType: 'vector', result: values.map((v) => ({ metric: {}, value: [1700000000, v] })) } });

describe('Prometheus answers: no data is never a number', () => {
  it('reads one series or a scalar, and refuses empty, several series, NaN and Inf with why', () => {
    assert.deepEqual(readAnswer(200, vector('0.995')), { value: 0.995 });
    assert.deepEqual(readAnswer(200, JSON.stringify({ status: 'success', data: { resultType: 'scalar', result: [1, '3'] } })), { value: 3 });
    assert.deepEqual(readAnswer(200, vector()), { value: null, why: 'no data (empty result)' });
    assert.deepEqual(readAnswer(200, vector('1', '2')), { value: null, why: '2 series; the query must come down to one (sum, avg, max…)' });
    assert.deepEqual(readAnswer(200, vector('NaN')), { value: null, why: 'NaN (no data behind a ratio?)' });
    assert.deepEqual(readAnswer(200, vector('+Inf')), { value: null, why: '+Inf' });
    assert.deepEqual(readAnswer(400, JSON.stringify({ status: 'error', errorType: 'bad_data', error: 'parse error' })), { value: null, why: 'query error (bad_data): parse error' });
    assert.deepEqual(readAnswer(502, '<html>bad gateway</html>'), { value: null, why: 'HTTP 502, not a Prometheus answer' });
    assert.equal(readAnswer(200, JSON.stringify({ status: 'success', data: { resultType: 'matrix', result: [] } })).value, null);
  });

  it('judges against min and max; a missing value is inconclusive, never a pass', () => {
    const q = { name: 'ok', prometheus: 'x', min: 0.99, max: 1 };
    assert.equal(judgeValue(q, { value: 0.995 }, 1).verdict, 'pass');
    assert.deepEqual(judgeValue(q, { value: 0.9 }, 1), { kind: 'query', name: 'ok', verdict: 'fail', value: 0.9, why: 'below min 0.99', ms: 1 });
    assert.equal(judgeValue(q, { value: 1.5 }, 1).why, 'above max 1');
    assert.equal(judgeValue(q, { value: null, why: 'no data' }, 1).verdict, 'inconclusive');
  });

  it('substitutes {{app}}, {{pool}} and {{version}}, escaped for a PromQL string', () => {
    assert.equal(substitute('x{app="{{app}}",pool="{{ pool }}",version="{{version}}"}', { app: 'shop', pool: 'green', version: '2.0"1\\' }), 'x{app="shop",pool="green",version="2.0\\"1\\\\"}');
  });

  it('a round fails on any fail, else is inconclusive on any inconclusive', () => {
    const c = (verdict: GateCheck['verdict']): GateCheck => ({ kind: 'query', name: 'q', verdict, ms: 0 });
    assert.equal(roundVerdict([c('pass'), c('inconclusive'), c('fail')]), 'fail');
    assert.equal(roundVerdict([c('pass'), c('inconclusive')]), 'inconclusive');
    assert.equal(roundVerdict([c('pass')]), 'pass');
  });
});

describe('secrets', () => {
  it('URLs keep scheme and host only; header values are masked', () => {
    assert.equal(maskUrl('https://hooks.slack.com/services/T0/B0/xyz'), 'https://hooks.slack.com/…');
    assert.equal(maskUrl('http://user:pw@ci.internal:8080/'), 'http://ci.internal:8080/…');
    assert.equal(maskUrl('http://ci.internal/?token=1'), 'http://ci.internal/…');
    assert.equal(maskUrl('http://ci.internal/'), 'http://ci.internal/');
    assert.equal(maskUrl('not a url'), '…');
    assert.deepEqual(maskHeaders({ authorization: 'Bearer x' }), { authorization: '***' });
  });
});

describe('gate fields of a rollout body', () => {
  const parse = (body: unknown, prometheus: { url: string; headers: Record<string, string> } | null = null) => parseRolloutBody(rolloutBody.parse(body), ['blue', 'green'], prometheus);
  const details = (fn: () => unknown) => {
    try {
      fn();
    } catch (err) {
      assert.ok(err instanceof SwitchyardError);
      return err.details;
    }
    assert.fail('expected a 400');
  };

  it('approval steps hold at the weight before them', () => {
    const s = parse({ to: 'green', steps: [{ weight: 10, pause: '5m' }, { approval: true, timeout: '1h' }, { weight: 100 }] });
    assert.deepEqual(s.steps, [{ weight: 1000, pauseMs: 300_000 }, { weight: 1000, pauseMs: 0, approval: { timeoutMs: 3_600_000 } }, { weight: 10_000, pauseMs: 0 }]);
    assert.deepEqual(parse({ to: 'green', steps: [{ approval: true }] }).steps, [{ weight: 0, pauseMs: 0, approval: { timeoutMs: null } }, { weight: 10_000, pauseMs: 0 }]);
  });

  it('names every bad field', () => {
    assert.deepEqual(details(() => parse({ to: 'green', steps: [{ approval: true, weight: 10 }, { weight: 20, timeout: '1m' }, {}] })), [
      { path: 'steps[0].weight', message: 'an approval step holds at the weight of the step before it; give weight or approval, not both' },
      { path: 'steps[1].timeout', message: 'goes with approval: true (a weight step has pause)' },
      { path: 'steps[2].weight', message: 'required (or approval: true)' },
    ]);
    assert.deepEqual(
      details(() => parse({ to: 'green', preset: 'canary10-5m', analysis: { interval: 'soon', queries: [{ name: 'a', prometheus: 'x' }, { name: 'a', prometheus: 'y', min: 2, max: 1 }], webhooks: [{ name: 'w', url: 'http://x/', timeout: '1h' }] } })),
      [
        { path: 'analysis.queries[0]', message: 'needs min or max (a query without a bound judges nothing)' },
        { path: 'analysis.queries[1].name', message: '"a" is used twice' },
        { path: 'analysis.queries[1].max', message: 'below min 2' },
        { path: 'analysis.prometheus', message: 'required for queries (or set analysis.prometheus in the process config)' },
        { path: 'analysis.webhooks[0].timeout', message: 'at most 10m' },
        { path: 'analysis.interval', message: 'must be a duration like 30s, 5m or 250ms (or milliseconds), at least 100ms' },
      ],
    );
    // the process config's Prometheus is enough
    assert.equal(parse({ to: 'green', preset: 'canary10-5m', analysis: { queries: [{ name: 'a', prometheus: 'x', min: 1 }] } }, { url: 'http://prom:9090', headers: {} }).gates.prometheus, null);
    assert.throws(() => rolloutBody.parse({ to: 'green', preset: 'canary10-5m', hooks: { preRollout: ['ftp://x'] } }), /must be an http\(s\) URL/);
    assert.throws(() => rolloutBody.parse({ to: 'green', preset: 'canary10-5m', notify: [{ url: 'http://x/', events: ['exploded'] }] }));
  });

  it('defaults: every 30s, pause after 3 inconclusive rounds, every event notified as JSON', () => {
    const g = parse({ to: 'green', preset: 'canary10-5m', notify: [{ url: 'http://n/' }] }).gates;
    assert.equal(g.intervalMs, 30_000);
    assert.equal(g.inconclusiveLimit, 3);
    assert.equal(g.onInconclusive, 'pause');
    assert.deepEqual(g.notify[0], { url: 'http://n/', format: 'json', events: ['started', 'step', 'waiting-approval', 'approved', 'paused', 'resumed', 'succeeded', 'rolled-back', 'aborted'] });
  });
});

describe('notification messages', () => {
  it('JSON from the record the transition wrote; Slack as one text line', () => {
    const r = { id: 'r-1', app: 'shop', to: 'green', state: 'running', step: 2, steps: [{ weight: 1000 }, { weight: 1000, approval: { timeoutMs: null } }, { weight: 10000 }], reason: null, by: 'ci' } as unknown as Rollout;
    const m = message(r, 'waiting-approval', '2.0.0', Date.UTC(2026, 0, 1));
    assert.deepEqual(m, { event: 'waiting-approval', app: 'shop', rollout: 'r-1', to: 'green', version: '2.0.0', state: 'running', step: 2, steps: 3, weight: 10, reason: null, by: 'ci', at: '2026-01-01T00:00:00.000Z' });
    assert.equal(slackText(m), '*shop*: rollout `r-1` to green 2.0.0 is waiting for approval (step 2/3, green at 10%)');
  });
});
