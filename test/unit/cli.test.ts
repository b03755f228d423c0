import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { createAdminServer } from '../../src/admin/server.ts';
import { runCliCaptured } from '../helpers/cli.ts';
import { parseConfig } from '../../src/config/load.ts';
import { Controller } from '../../src/control/controller.ts';
import type { CountsSource, PoolCounts } from '../../src/control/counts.ts';
import { FileStore } from '../../src/state/file-store.ts';

const TOKEN = 'ci-token-0123456789abcdef';
const pools = { blue: { version: '1.0.0', targets: ['http://127.0.0.1:9001'] }, green: { version: '2.0.0', targets: ['http://127.0.0.1:9002'] } };

describe('switchyard CLI', () => {
  let dir: string;
  let base: string;
  let close: () => Promise<void>;
  const counts = new Map<string, PoolCounts>();
  const setCounts = (pool: string, c: PoolCounts) => counts.set(`shop/${pool}`, c);
  const fakeCounts: CountsSource = {
    poolCounts: (app, pool) => {
      // scripted counts: each read takes the next, the last one stays (no timer to race a loaded machine)
      const next = script.length > 1 ? script.shift() : script[0];
      if (next !== undefined && `${app}/${pool}` === 'shop/blue') return next;
      return counts.get(`${app}/${pool}`) ?? { inflight: 0, upgraded: 0, pinned: 0 };
    },
    poolCountsByInstance: () => ({}),
    instances: () => ({ applied: 1, total: 1 }),
    figuresUnknown: () => {
      const said = unknown;
      // a set number of reads say "unknown", then the figures are known again (no timer to race a loaded machine)
      if (said !== null && --unknownReads <= 0) unknown = null;
      return said;
    },
  };
  let unknown: string | null = null;
  let script: PoolCounts[] = [];
  let unknownReads = Number.POSITIVE_INFINITY;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'switchyard-cli-'));
    const config = parseConfig({
      admin: { tokens: [{ name: 'ci', token: TOKEN }] },
      store: { kind: 'file', path: join(dir, 'state.json') },
      apps: [
        { name: 'shop', hosts: ['shop.example.com'], pools },
        { name: 'blog', hosts: ['blog.example.com'], pools },
      ],
    });
    const logger = pino({ level: 'silent' });
    const store = await FileStore.open({ path: join(dir, 'state.json'), historyLimit: 100 });
    const controller = await Controller.start({ config, store, logger });
    const server = createAdminServer({ config, controller, counts: fakeCounts, logger, ready: () => true });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    close = async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await controller.close();
      await store.close();
      await rm(dir, { recursive: true, force: true, maxRetries: 5 });
    };
  });
  after(() => close());

  const cli = (...argv: string[]) => runCliCaptured(argv, { SWITCHYARD_ADMIN_URL: base, SWITCHYARD_TOKEN: TOKEN });

  it('shows every app on one line each, with weight bars', async () => {
    const { code, stdout } = await cli('status');
    assert.equal(code, 0);
    assert.deepEqual(stdout.split('\n'), [
      'shop  rev 1  blue 100% ▇▇▇▇▇▇▇▇▇▇ green 0%  active: blue  by switchyard: "initial weights from the config"',
      'blog  rev 1  blue 100% ▇▇▇▇▇▇▇▇▇▇ green 0%  active: blue  by switchyard: "initial weights from the config"',
      '',
    ]);
  });

  it('prints the raw API JSON with --json', async () => {
    const { code, stdout } = await cli('status', 'shop', '--json');
    assert.equal(code, 0);
    const state = JSON.parse(stdout);
    assert.deepEqual([state.app, state.weights, state.pools.green.version], ['shop', { blue: 100, green: 0 }, '2.0.0']);
  });

  it('shows one app in detail with its pools', async () => {
    const { code, stdout } = await cli('status', 'blog');
    assert.equal(code, 0);
    assert.match(stdout, /^ {2}pool +version +weight +inflight/m);
    assert.match(stdout, /^ {2}green +2\.0\.0 +0% +0 +0 +drained +http:\/\/127\.0\.0\.1:9002$/m);
  });

  it('sets a canary split and prints the new state', async () => {
    const { code, stdout } = await cli('weights', 'shop', 'blue=90', 'green=10%', '--reason', 'canary');
    assert.equal(code, 0, stdout);
    assert.equal(stdout, 'shop  rev 2  blue 90% ▇▇▇▇▇▇▇▇▇ green 10% ▇  active: (split)  by ci: "canary"\n');
  });

  it('switches, rolls back and lists the history newest first', async () => {
    assert.match((await cli('switch', 'shop', 'green')).stdout, /^shop {2}rev 3 {2}blue 0% green 100% ▇{10} {2}active: green {2}by ci\n$/);
    const dry = await cli('rollback', 'shop', '--dry-run');
    assert.equal(dry.code, 0, dry.stderr);
    assert.deepEqual(dry.stdout.trim().split('\n').slice(1), ['  pool   weight now → then  version then  version now', '  blue   0% → 100%          1.0.0         1.0.0', '  green  100% → 0%          2.0.0         2.0.0']);
    assert.match(dry.stdout, /^shop: rollback would restore revision 1 \(\S+\), undoing revisions 2–3\n/);
    // a plain rollback prints what it wrote: the routing restored and the versions, then the state
    const back = await cli('rollback', 'shop', '--reason', 'errors');
    assert.match(back.stdout, /^shop: restored the routing of revision 1 \(\S+\), undoing revisions 2–3\n {2}pool +weight was → now/);
    assert.match(back.stdout, /\n {2}blue +0% → 100% +1\.0\.0 +1\.0\.0\n/);
    assert.match(back.stdout, /rev 4 {2}blue 100% .* {2}active: blue {2}by ci: "errors"\n$/);
    const history = await cli('history', 'shop', '--limit', '3');
    assert.equal(history.code, 0);
    const lines = history.stdout.trim().split('\n');
    assert.match(lines[0] as string, /^rev +at +action +by +what it did +reason$/);
    assert.match(lines[1] as string, /^4 +\S+ +rollback +ci +rollback: blue 100 %, green 0 % +errors$/);
    assert.match(lines[2] as string, /^3 +\S+ +switch +ci +switch to green/);
    assert.match(lines[3] as string, /^2 +\S+ +weights +ci +weights: blue 90 %, green 10 % +canary$/);
    assert.equal(lines.length, 4);
    assert.equal(history.stderr, 'note: older entries follow: --offset 3\n');
    // the next page: --offset skips the newest entries, the API's `next` says where the one after starts
    const page = await cli('history', 'shop', '--limit', '2', '--offset', '1');
    assert.equal(page.code, 0, page.stderr);
    assert.deepEqual(page.stdout.trim().split('\n').slice(1).map((l) => l.split(/ +/)[0]), ['3', '2']);
    assert.equal(page.stderr, 'note: older entries follow: --offset 3\n');
    const last = await cli('history', 'shop', '--offset', '3');
    assert.deepEqual([last.code, last.stdout.trim().split('\n').slice(1).map((l) => l.split(/ +/)[0]), last.stderr], [0, ['1'], '']);
    const json = await cli('history', 'shop', '--limit', '1', '--offset', '2', '--json');
    assert.deepEqual(JSON.parse(json.stdout).entries.map((e: { revision: number }) => e.revision), [2]);
    assert.equal(JSON.parse(json.stdout).next, 3);
    for (const bad of ['--offset=-1', '--offset=two', '--offset=1.5']) {
      const r = await cli('history', 'shop', bad);
      assert.equal(r.code, 2, bad);
      assert.match(r.stderr, /--offset must be a whole number/);
    }
  });

  it('exits 2 with the usage line on a bad call', async () => {
    for (const argv of [['weights', 'shop', 'blue'], ['weights', 'shop', 'blue=abc'], ['weights', 'shop', 'blue=50', 'blue=50'], ['weights', 'shop']]) {
      const { code, stderr } = await cli(...argv);
      assert.equal(code, 2, argv.join(' '));
      assert.match(stderr, /usage: switchyard weights APP POOL=PCT…/);
    }
    assert.equal((await cli('switch', 'shop', 'green', '--colour', 'red')).code, 2);
    assert.equal((await cli('drain', 'shop', 'blue', '--wait', '--timeout', 'soon')).code, 2);
    const unknown = await cli('promote', 'shop');
    assert.deepEqual([unknown.code, unknown.stderr.split('\n')[0]], [2, 'error: unknown command "promote"']);
    assert.equal((await cli()).code, 2);
    assert.equal((await cli('--help')).code, 0);
  });

  it('lists the valid apps and pools, with a guess, when the API says an app or pool is unknown', async () => {
    const app = await cli('status', 'shp');
    assert.deepEqual([app.code, app.stderr], [1, 'error UNKNOWN_APP: unknown app "shp"\nhint: valid apps: shop, blog; did you mean "shop"?\n']);
    const pool = await cli('switch', 'shop', 'purple');
    assert.deepEqual([pool.code, pool.stderr], [1, 'error UNKNOWN_POOL: app "shop" has no pool "purple"\nhint: valid pools of shop: blue, green\n']);
    const typo = await cli('drain', 'shop', 'gren');
    assert.equal(typo.stderr.split('\n')[1], 'hint: valid pools of shop: blue, green; did you mean "green"?');
  });

  it('names an unknown option without a stray quote, with the options the command takes and a guess', async () => {
    const { code, stderr } = await cli('switch', 'shop', 'green', '--resaon', 'x');
    assert.equal(code, 2);
    assert.equal(stderr.split('\n')[0], 'error: unknown option --resaon (did you mean --reason?); switch takes --reason, --force, --expect-version, --admin-url, --token, --json, --help/-h; an argument that starts with "-" goes after "--"');
    const cmd = await cli('swich', 'shop', 'green');
    assert.equal(cmd.stderr.split('\n')[0], 'error: unknown command "swich"; did you mean "switch"?');
  });

  it('exits 1 with the API error code on an API error or an unreachable admin API', async () => {
    const sum = await cli('weights', 'shop', 'blue=90', 'green=20');
    assert.deepEqual([sum.code, sum.stderr], [1, 'error BAD_REQUEST: weights: must sum to 100, got 110\n']);
    const app = await cli('status', 'nope');
    assert.deepEqual([app.code, app.stderr], [1, 'error UNKNOWN_APP: unknown app "nope"\nhint: valid apps: shop, blog\n']);
    const auth = await cli('status', '--token', 'wrong-token-xxxxxxxxxxxx');
    assert.deepEqual([auth.code, auth.stderr.split('\n')[0]], [1, 'error UNAUTHORIZED: unknown token']);
    const down = await cli('status', '--admin-url', 'http://127.0.0.1:1');
    assert.equal(down.code, 4, 'the admin API unreachable has its own exit code');
    assert.match(down.stderr, /^error: cannot reach the admin API at http:\/\/127\.0\.0\.1:1 \(ECONNREFUSED\)/);
  });

  it('drain --wait exits 0 once the pool has weight 0 and nothing in flight', async () => {
    await cli('switch', 'blog', 'green');
    const { code, stdout } = await cli('drain', 'blog', 'blue', '--wait', '--interval', '20ms');
    assert.equal(code, 0);
    assert.match(stdout, /^blue {2}weight 0% {2}inflight 0 {2}upgraded 0 {2}pinned 0 {2}drained\nblue is drained\n$/);
  });

  it('drain --wait prints the counts as they change and exits 0 when they reach 0', async (t) => {
    await cli('switch', 'shop', 'green');
    const repeat = (c: PoolCounts): PoolCounts[] => [c, c, c];
    script = [...repeat({ inflight: 2, upgraded: 1, pinned: 0 }), ...repeat({ inflight: 0, upgraded: 1, pinned: 0 }), { inflight: 0, upgraded: 0, pinned: 0 }];
    t.after(() => {
      script = [];
    });
    const { code, stdout } = await cli('drain', 'shop', 'blue', '--wait', '--interval', '20ms', '--timeout', '5s');
    assert.equal(code, 0);
    const lines = stdout.trim().split('\n');
    assert.match(lines[0] as string, /^blue {2}weight 0% {2}inflight 2 {2}upgraded 1 {2}pinned 0 {2}draining since \S+, deadline \S+ \(in (4m5\ds|5m0s)\)$/);
    assert.match(lines[1] as string, /inflight 0 {2}upgraded 1/);
    assert.deepEqual(lines.slice(2), ['blue  weight 0%  inflight 0  upgraded 0  pinned 0  drained', 'blue is drained']);
  });

  it('drain --wait exits 1 on timeout while requests stay in flight (docs/cli.md §2)', async () => {
    setCounts('blue', { inflight: 3, upgraded: 0, pinned: 0 });
    const started = Date.now();
    const { code, stdout, stderr } = await cli('drain', 'shop', 'blue', '--wait', '--interval', '50ms', '--timeout', '300ms');
    assert.equal(code, 1);
    assert.ok(Date.now() - started >= 300);
    assert.equal(stdout.trim().split('\n').length, 1, 'unchanged counts are printed once');
    assert.match(stderr, /^error: blue not drained after 300ms: 3 request\(s\) in flight; what is still open is cut at the drain timeout, \S+\n$/);
    setCounts('blue', { inflight: 0, upgraded: 0, pinned: 0 });
  });

  it('drain --wait keeps waiting while the fleet figures are unknown, even at zero counts, and says why', async () => {
    unknown = "redis is unreachable: the other instances' figures cannot be read";
    unknownReads = 4;
    const { code, stdout } = await cli('drain', 'shop', 'blue', '--wait', '--interval', '20ms', '--timeout', '5s');
    assert.equal(code, 0);
    const lines = stdout.trim().split('\n');
    assert.equal(lines[0], "blue  weight 0%  inflight 0  upgraded 0  pinned 0  unknown: fleet figures unknown: redis is unreachable: the other instances' figures cannot be read");
    assert.deepEqual(lines.slice(1), ['blue  weight 0%  inflight 0  upgraded 0  pinned 0  drained', 'blue is drained']);

    unknown = 'redis is unreachable';
    unknownReads = Number.POSITIVE_INFINITY;
    const timedOut = await cli('drain', 'shop', 'blue', '--wait', '--interval', '50ms', '--timeout', '200ms');
    unknown = null;
    assert.equal(timedOut.code, 1);
    assert.equal(timedOut.stderr, 'error: blue not drained after 200ms: fleet figures unknown: redis is unreachable\n');
  });
});
