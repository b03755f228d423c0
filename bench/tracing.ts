import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { tracingSchema } from '../src/config/tracing.ts';
import { createOtelTracing } from '../src/tracing/otel.ts';
import { envInt, median } from './common.ts';

/**
 * `npx node bench/tracing.ts`: what tracing adds to one request, in-process (no sockets, so a busy
 * machine moves it far less than a throughput run): the data plane's calls, start() on the
 * forwarded header list and end() for the sampled share, at `TRACE_SAMPLE` (default 0.01) and at
 * 1 (every request), against the tracing-off path (a null check), exporting to a local OTLP sink.
 * ITERATIONS per round (default 200,000), ROUNDS (default 5); prints CPU ns per request, median.
 */
const ITERATIONS = envInt('ITERATIONS', 200_000);
const ROUNDS = envInt('ROUNDS', 5);
const SAMPLE = Number(process.env['TRACE_SAMPLE'] ?? '0.01');

const sink = createServer((req, res) => {
  req.resume();
  req.on('end', () => res.end('{}'));
}).listen(0, '127.0.0.1');
await new Promise((r) => sink.once('listening', r));
const otlp = `http://127.0.0.1:${(sink.address() as AddressInfo).port}/v1/traces`;

const route = { app: { name: 'bench', revision: 7 }, pool: { name: 'green', version: '2.0.0' }, by: 'sticky' };
const headers = (): string[] => ['host', 'bench.example', 'user-agent', 'wrk', 'accept', '*/*', 'x-forwarded-for', '10.0.0.1', 'x-forwarded-proto', 'http', 'x-forwarded-host', 'bench.example', 'via', '1.1 switchyard', 'x-request-id', 'abc'];

function run(tracing: ReturnType<typeof createOtelTracing> | null): number {
  // CPU time, not wall time: on a shared machine the wall clock counts the neighbours too
  const c0 = process.cpuUsage();
  for (let i = 0; i < ITERATIONS; i++) {
    const h = headers();
    const now = Date.now();
    // as DataPlane.handle and requestDone do
    const span = tracing === null ? null : tracing.start(h, 'GET', '/x', 'bench.example', now);
    if (span !== null) tracing?.end(span, route, 'http://10.0.0.2:8080', { status: 200, error: null, endedAt: now + 1 });
  }
  const c = process.cpuUsage(c0);
  return ((c.user + c.system) * 1000) / ITERATIONS;
}

const logger = pino({ level: 'silent' });
const at = (sample: number) => createOtelTracing(tracingSchema.parse({ otlp, sample, exportEvery: '1s' }), { logger, instanceId: 'bench' });
const rows: [string, ReturnType<typeof createOtelTracing> | null][] = [['off', null], [`sample ${SAMPLE}`, at(SAMPLE)], ['sample 1', at(1)]];
const results = new Map<string, number[]>(rows.map(([n]) => [n, []]));
for (let r = 0; r < ROUNDS; r++) for (const [name, t] of r % 2 === 0 ? rows : [...rows].reverse()) results.get(name)?.push(run(t));
const off = median(results.get('off') ?? []);
process.stdout.write(`tracing cost per request (CPU ns, median of ${ROUNDS} rounds of ${ITERATIONS.toLocaleString('en')}; the header list's own allocation included in every row)\n`);
for (const [name] of rows) {
  const ns = median(results.get(name) ?? []);
  process.stdout.write(`  ${name.padEnd(12)} ${ns.toFixed(0).padStart(6)} ns   +${(ns - off).toFixed(0)} ns over off\n`);
}
await Promise.all(rows.map(([, t]) => t?.shutdown()));
sink.close();
