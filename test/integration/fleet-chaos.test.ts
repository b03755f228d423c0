import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { request } from 'undici';
import { redisKeys } from '../../src/state/redis-store.ts';
import { allRouteOn, revisionOf, startFleet as startFleetOn, type FleetOptions } from '../helpers/fleet.ts';
import type { TestProxy } from '../helpers/proxy.ts';
import { redisClient } from '../helpers/redis-server.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { until } from '../helpers/wait.ts';

// Chaos on a real redis-server (SIGKILL, SIGSTOP, restarted empty) under three in-process
// instances: what an operator relies on is that the fleet ends on one state, that `applied`
// says so only when true, and that the answer a write got is what happened.

let blue: Upstream;
let green: Upstream;

before(async () => {
  blue = await startUpstream('blue');
  green = await startUpstream('green');
});
after(async () => {
  await blue.close();
  await green.close();
});

const startFleet = (t: TestContext, n: number, extra: Partial<FleetOptions> = {}) => startFleetOn(t, n, { blue: blue.url, green: green.url, ...extra });

interface AuditLine {
  audit?: boolean;
  observed?: boolean;
  app?: string;
  after?: { revision: number };
}

/** A pino logger per instance whose lines are kept, parsed, for the audit assertions. */
function recordingLoggers(): { lines: Map<string, AuditLine[]>; deps: (id: string) => { logger: pino.Logger } } {
  const lines = new Map<string, AuditLine[]>();
  return {
    lines,
    deps: (id) => {
      const mine: AuditLine[] = lines.get(id) ?? [];
      lines.set(id, mine);
      const sink = new Writable({
        write(chunk: Buffer, _enc, done) {
          for (const line of chunk.toString().split('\n')) if (line !== '') mine.push(JSON.parse(line) as AuditLine);
          done();
        },
      });
      return { logger: pino({ level: 'info' }, sink) };
    },
  };
}

async function appState(p: TestProxy): Promise<{ revision: number; instances: { applied: number; total: number | null } }> {
  return (await p.admin('GET', '/v1/apps/shop')).body;
}

/** Every instance answers `applied 3/3` on the one final revision. */
async function allApplied(t: TestContext, instances: readonly TestProxy[], revision: number): Promise<void> {
  await until(t, `applied ${instances.length}/${instances.length} on revision ${revision} everywhere`, async () => {
    for (const p of instances) {
      const s = await appState(p);
      if (s.revision !== revision || s.instances.applied !== instances.length || s.instances.total !== instances.length) return false;
    }
    return true;
  });
}

describe('fleet chaos on a real redis', () => {
  it('100 switches under load across 3 instances: every request answered, all end on the last revision, applied 3/3', async (t) => {
    const { instances } = await startFleet(t, 3);
    await until(t, 'every instance to see three', () => instances.every((p) => p.sy.counts.instances('shop', revisionOf(p)).total === 3), { timeout: 3_000 });
    let stop = false;
    let answered = 0;
    const failures: string[] = [];
    const client = async (k: number): Promise<void> => {
      for (let i = k; !stop; i++) {
        try {
          const r = await request(`${instances[i % 3]!.proxyUrl}/`);
          await r.body.text();
          if (r.statusCode === 200) answered++;
          else failures.push(`${r.statusCode} from i${i % 3}`);
        } catch (err) {
          failures.push(String(err));
        }
      }
    };
    const clients = Array.from({ length: 6 }, (_, k) => client(k));
    let last = 0;
    const started = Date.now();
    for (let i = 0; i < 100; i++) {
      const w = await instances[i % 3]!.admin('POST', '/v1/apps/shop/switch', { to: i % 2 === 0 ? 'green' : 'blue', reason: `s${i}` });
      assert.equal(w.status, 200, `switch ${i}: ${JSON.stringify(w.body)}`);
      assert.ok(w.body.revision > last, `switch ${i} answered revision ${w.body.revision} after ${last}`);
      last = w.body.revision;
    }
    const switchMs = Date.now() - started;
    // a little more traffic after the last switch, whose failures are the check
    await sleep(200);
    stop = true;
    await Promise.all(clients);
    assert.deepEqual(failures, []);
    assert.ok(answered > 100, `only ${answered} requests answered during ${switchMs} ms of switching`);
    // the last switch (i = 99) was to blue
    await allRouteOn(t, instances, last, 'blue@1.0.0');
    await allApplied(t, instances, last);
  });

  it('redis killed and restarted empty while a stale instance restarts from its disk cache: the fleet settles on the highest revision', async (t) => {
    const fleet = await startFleet(t, 3);
    const [a, b, c] = fleet.instances as [TestProxy, TestProxy, TestProxy];
    // c holds revision N (blue) in its cache, then stops
    const n = revisionOf(c);
    await until(t, "c's cache to hold revision N", async () => JSON.parse(await readFile(join(c.dir, 'cache.json'), 'utf8').catch(() => '{}')).states?.shop?.revision === n);
    await c.close();
    fleet.instances.splice(fleet.instances.indexOf(c), 1);
    // a and b move on to N + 2 (green)
    await a.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: 50, green: 50 } });
    const top = await a.admin('POST', '/v1/apps/shop/switch', { to: 'green' });
    assert.equal(top.body.revision, n + 2);
    await allRouteOn(t, [a, b], n + 2, 'green@2.0.0');

    await fleet.redis.kill();
    const stale = await fleet.add('i2', c.dir);
    assert.equal(revisionOf(stale), n, 'c restarted on its cached revision N');
    // back empty, and c's re-seed of N lands before a and b reconnect (their backoff is ~1 s by
    // now): written here at once, from c's cache, so that order is certain rather than likely
    await fleet.redis.restart();
    const admin = redisClient(fleet.redis.url);
    t.after(() => admin.disconnect());
    const cached = JSON.parse(await readFile(join(c.dir, 'cache.json'), 'utf8')).states.shop;
    assert.equal(cached.revision, n);
    assert.equal(await admin.set(redisKeys(fleet.prefix).state('shop'), JSON.stringify({ ...cached, action: 'reseed' }), 'NX'), 'OK', 'the stale state went in first');
    const all = [a, b, stale];
    await allRouteOn(t, all, n + 2, 'green@2.0.0');
    assert.equal(JSON.parse((await admin.get(redisKeys(fleet.prefix).state('shop')))!).revision, n + 2);
    await allApplied(t, all, n + 2);
    // and it stays settled: the next write goes on from N + 2
    const next = await stale.admin('POST', '/v1/apps/shop/switch', { to: 'blue' });
    assert.equal(next.status, 200);
    assert.equal(next.body.revision, n + 3);
    await allRouteOn(t, all, n + 3, 'blue@1.0.0');
  });

  it('redis paused (SIGSTOP) during writes: a write answered 503 or 504 (outcome unknown) never lands, accepted ones do, and every change is audited on every instance', async (t) => {
    const logs = recordingLoggers();
    const fleet = await startFleet(t, 3, { deps: logs.deps });
    const instances = fleet.instances;
    const accepted: string[] = [];
    const refused: string[] = [];
    let k = 0;
    const write = async (p: TestProxy): Promise<number> => {
      const reason = `w${k++}`;
      // every write changes the weights (a write that changes nothing is answered 200 without touching the store)
      const r = await p.admin('PUT', '/v1/apps/shop/weights', { weights: { blue: k, green: 100 - k }, reason });
      if (r.status === 200) accepted.push(reason);
      // 504 WRITE_OUTCOME_UNKNOWN: Redis could not be read back to settle it (paused); here it never lands either
      else if (r.status === 503 || r.status === 504) refused.push(reason);
      else assert.fail(`${reason}: ${r.status} ${JSON.stringify(r.body)}`);
      return r.status;
    };
    for (const p of instances) assert.equal(await write(p), 200);
    await until(t, 'all on the same revision', () => instances.every((p) => revisionOf(p) === revisionOf(instances[0]!)));

    fleet.redis.pause();
    t.after(() => fleet.redis.resume());
    const started = Date.now();
    // one write through each instance at once: each sits in its socket until the command timeout (1 s),
    // then cannot be settled by a read (Redis answers nothing): outcome unknown, never a plain 503
    assert.deepEqual(await Promise.all(instances.map(write)), [504, 504, 504]);
    assert.ok(Date.now() - started < 3_000, `504 after ${Date.now() - started} ms`);
    fleet.redis.resume();
    // what the paused Redis queued runs now; a bounded window after the resume for a late write to land (it must not)
    await sleep(1_500);
    for (const p of instances) assert.equal(await write(p), 200);

    const admin = redisClient(fleet.redis.url);
    t.after(() => admin.disconnect());
    const history = (await admin.lrange(redisKeys(fleet.prefix).history('shop'), 0, -1)).map((e) => JSON.parse(e) as { revision: number; reason: string | null });
    const landed = history.map((e) => e.reason).filter((r): r is string => r !== null && r.startsWith('w'));
    assert.deepEqual(landed.sort(), [...accepted].sort(), 'exactly the accepted writes are in the history');
    for (const r of refused) assert.ok(!landed.includes(r), `${r} was answered 503 and landed`);
    const final = history[0]!.revision;
    await until(t, 'all on the final revision', () => instances.every((p) => revisionOf(p) === final));

    // every revision after the first is in every instance's audit trail: the writer's line or an observed one
    for (let revision = 2; revision <= final; revision++) {
      for (const [id, lines] of logs.lines) {
        const audit = lines.filter((l) => l.audit === true && l.app === 'shop' && l.after?.revision === revision);
        assert.equal(audit.length, 1, `${id}: ${audit.length} audit lines for revision ${revision}`);
      }
    }
  });
});
