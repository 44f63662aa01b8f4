/**
 * Per-cycle cost of the instrumentation on a bare pool: one acquire + release of a trivial
 * resource, concurrency 1, pool defaults. Not a test; run with `npx tsx bench/instrumentation-overhead.ts`.
 *
 * Variants, each in its own process: no instrumentation; created then disabled; enabled on the
 * API's no-op providers; enabled with SDK providers that record everything (spans to a discarding
 * exporter through a batch processor, a metric reader, a logger); the same with wait spans; metrics
 * only. The AsyncLocalStorage context manager is on in every variant, as in a traced application.
 * `STACKS=never` turns the pool's stack sampling off.
 */
import { execFileSync } from 'node:child_process';
import { context } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { ExportResultCode } from '@opentelemetry/core';
import { LoggerProvider } from '@opentelemetry/sdk-logs';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  type SpanExporter,
} from '@opentelemetry/sdk-trace-base';
import { Pool, PoolInstrumentation } from '../src';

class Reader extends MetricReader {
  protected override onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
  protected override onShutdown(): Promise<void> {
    return Promise.resolve();
  }
}

const discard: SpanExporter = {
  export: (_spans, done) => done({ code: ExportResultCode.SUCCESS }),
  shutdown: () => Promise.resolve(),
};

const CYCLES = 200_000;
const ROUNDS = 7;

async function run(pool: Pool<object>, cycles: number): Promise<number> {
  const start = process.hrtime.bigint();
  for (let i = 0; i < cycles; i++) {
    const lease = await pool.acquire();
    lease.release();
  }
  return Number(process.hrtime.bigint() - start) / cycles;
}

async function measure(label: string, pool: Pool<object>): Promise<number> {
  await run(pool, 50_000); // warm-up
  const rounds: number[] = [];
  for (let r = 0; r < ROUNDS; r++) rounds.push(await run(pool, CYCLES));
  rounds.sort((a, b) => a - b);
  const median = rounds[Math.floor(ROUNDS / 2)]!;
  console.log(
    `${label.padEnd(44)} ${median.toFixed(0).padStart(6)} ns/cycle  (min ${rounds[0]!.toFixed(0)}, max ${rounds[ROUNDS - 1]!.toFixed(0)})`,
  );
  return median;
}

type Variant = 'none' | 'disabled' | 'noop' | 'sdk' | 'sdk+wait' | 'sdk-metrics';
const VARIANTS: Record<Variant, string> = {
  none: 'no instrumentation',
  disabled: 'instrumentation created, then disabled',
  noop: 'enabled, API no-op providers',
  sdk: 'enabled, SDK: hold spans + metrics + logs',
  'sdk+wait': 'enabled, SDK, waitSpans too',
  'sdk-metrics': 'enabled, SDK, metrics only (no spans)',
};

/** One variant per process, so that JIT state and heap of one do not colour the next. */
async function measureVariant(variant: Variant): Promise<void> {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  const pool = new Pool<object>({
    name: 'bench',
    factory: { create: async () => ({}), destroy: () => {} },
    ...(process.env.STACKS ? { captureStacks: process.env.STACKS as 'never' } : {}),
  });
  const instrumentation = variant === 'none' ? undefined : new PoolInstrumentation();
  if (variant === 'disabled') instrumentation!.disable();
  const tracerProvider = new BasicTracerProvider({
    spanProcessors: [new BatchSpanProcessor(discard, { maxQueueSize: 100_000 })],
  });
  const meterProvider = new MeterProvider({ readers: [new Reader()] });
  if (instrumentation && variant.startsWith('sdk')) {
    instrumentation.setTracerProvider(tracerProvider);
    instrumentation.setMeterProvider(meterProvider);
    instrumentation.setLoggerProvider(new LoggerProvider());
    if (variant === 'sdk+wait') instrumentation.setConfig({ waitSpans: true });
    if (variant === 'sdk-metrics') instrumentation.setConfig({ holdSpans: false });
  }
  await measure(VARIANTS[variant], pool);
  await pool.close();
  await tracerProvider.shutdown();
  await meterProvider.shutdown();
}

async function main(): Promise<void> {
  const variant = process.argv[2] as Variant | undefined;
  if (variant !== undefined) return measureVariant(variant);
  for (const name of Object.keys(VARIANTS)) {
    execFileSync(process.execPath, [...process.execArgv, __filename, name], { stdio: 'inherit' });
  }
}

void main();
