/**
 * Section "otel": the bare acquire + release cycle of bench/peers.ts (poolwatch defaults, trivial
 * resource, max 10) with OpenTelemetry set up the way an application does it, and the set-ups
 * themselves (`installOtel`), which bench/postgres.ts and bench/memory.ts reuse.
 *
 * Modes, from nothing to everything (each row in its own process, see bench/isolation.ts):
 *  - `none`: no OpenTelemetry at all (the group's baseline).
 *  - `sdk`: what the OTel SDK alone costs the application, without poolwatch's instrumentation:
 *    the AsyncLocalStorage context manager (on Node 20 an enabled AsyncLocalStorage runs a
 *    PromiseHook for every promise in the process, see bench/micro.ts), global tracer, meter and
 *    logger providers, and requests running inside a sampled parent span.
 *  - `disabled`: `sdk` plus `PoolInstrumentation` registered with `registerInstrumentations()`,
 *    then `disable()`d. It must be indistinguishable from `sdk`.
 *  - `full`: `sdk` plus the instrumentation enabled with its defaults: a hold span per lease
 *    (child of the request span) through a BatchSpanProcessor, the metrics (histograms recorded
 *    per acquire and release; observable gauges read by a reader every second), log records
 *    for alerts.
 *  - `sampled-out`: `full`, but requests run under a parent span that was sampled out (started
 *    by a tracer with AlwaysOffSampler), so the SDK's default ParentBased sampler makes every
 *    hold span a non-recording one: the cost of the instrumentation on unsampled traffic.
 *
 * Exporters discard everything (no I/O): the rows measure producing telemetry, not shipping it.
 * Nothing here is global for longer than a sample: `installOtel()` registers, `teardown()`
 * unregisters (context manager, providers, instrumentation), so rows stay independent even with
 * `--in-process`.
 *
 * The OTel packages and poolwatch's src/ are imported lazily, when a row needs them, so that the
 * child processes of other rows never load them.
 */
import type * as OtelApi from '@opentelemetry/api';
import type * as OtelApiLogs from '@opentelemetry/api-logs';
import type * as OtelContextAsyncHooks from '@opentelemetry/context-async-hooks';
import type * as OtelCore from '@opentelemetry/core';
import type * as OtelInstrumentation from '@opentelemetry/instrumentation';
import type * as OtelSdkLogs from '@opentelemetry/sdk-logs';
import type * as OtelSdkMetrics from '@opentelemetry/sdk-metrics';
import type * as OtelSdkTrace from '@opentelemetry/sdk-trace-base';
import type * as Poolwatch from '../src';
import type { PoolInstrumentation } from '../src';
import type { Case } from './harness';
import { drive } from './harness';
import { MAX, resourceFactory } from './resource';

export type OtelMode = 'none' | 'sdk' | 'disabled' | 'full' | 'sampled-out';

/** Row labels, shared by every section that has OTel rows. */
export const OTEL_LABELS: Record<OtelMode, string> = {
  none: 'no OpenTelemetry',
  sdk: 'OTel SDK, no instrumentation',
  disabled: 'OTel SDK, instrumentation disabled',
  full: 'OTel SDK + instrumentation',
  'sampled-out': 'OTel SDK + instrumentation, sampled-out parent',
};

export const OTEL_MODES = Object.keys(OTEL_LABELS) as OtelMode[];

export interface OtelEnvironment {
  /** Runs `fn` the way a request of this mode runs: inside its parent span, if it has one. */
  run<T>(fn: () => T): T;
  /** Exports what the batch processors hold (memory probes call it before reading the heap). */
  flush(): Promise<void>;
  /** Unregisters everything `installOtel()` registered. */
  teardown(): Promise<void>;
}

const NO_OTEL: OtelEnvironment = {
  run: (fn) => fn(),
  flush: async () => {},
  teardown: async () => {},
};

/**
 * One instrumentation per process, created disabled and enabled by `registerInstrumentations()`
 * in each sample: its constructor installs a module hook (for pg-pool) that would pile up if a
 * new instance were made per sample.
 */
let instrumentation: PoolInstrumentation | undefined;

/**
 * Loads a module the first time a row needs it (see the header). `require`, not `import()`: the
 * same CommonJS instance as src/ gets, so there is one copy of @opentelemetry/api in the process.
 */
export function lazyRequire<T>(id: string): T {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- lazy on purpose (header)
  return require(id) as T;
}

let poolwatchPath = '../src';

/** poolwatch, loaded lazily: src/ (through tsx), or the build after `useBuiltPoolwatch()`. */
export function loadPoolwatch(): typeof Poolwatch {
  return lazyRequire<typeof Poolwatch>(poolwatchPath);
}

/** Makes `loadPoolwatch()` load the built package, dist/cjs (bench/profile.ts profiles it). */
export function useBuiltPoolwatch(): string {
  poolwatchPath = require.resolve('../dist/cjs');
  return poolwatchPath;
}

export async function installOtel(mode: OtelMode): Promise<OtelEnvironment> {
  if (mode === 'none') return NO_OTEL;
  const api = lazyRequire<typeof OtelApi>('@opentelemetry/api');
  const { logs } = lazyRequire<typeof OtelApiLogs>('@opentelemetry/api-logs');
  const { AsyncLocalStorageContextManager } = lazyRequire<typeof OtelContextAsyncHooks>(
    '@opentelemetry/context-async-hooks',
  );
  const { ExportResultCode } = lazyRequire<typeof OtelCore>('@opentelemetry/core');
  const { registerInstrumentations } = lazyRequire<typeof OtelInstrumentation>(
    '@opentelemetry/instrumentation',
  );
  const { BatchLogRecordProcessor, LoggerProvider } =
    lazyRequire<typeof OtelSdkLogs>('@opentelemetry/sdk-logs');
  const { MeterProvider, PeriodicExportingMetricReader } = lazyRequire<typeof OtelSdkMetrics>(
    '@opentelemetry/sdk-metrics',
  );
  const { AlwaysOffSampler, BasicTracerProvider, BatchSpanProcessor } = lazyRequire<
    typeof OtelSdkTrace
  >('@opentelemetry/sdk-trace-base');
  const done = (callback: (result: { code: number }) => void): void =>
    callback({ code: ExportResultCode.SUCCESS });

  const contextManager = new AsyncLocalStorageContextManager().enable();
  api.context.setGlobalContextManager(contextManager);
  const tracerProvider = new BasicTracerProvider({
    spanProcessors: [
      new BatchSpanProcessor({
        export: (_spans, callback) => done(callback),
        shutdown: async () => {},
      }),
    ],
  });
  const meterProvider = new MeterProvider({
    readers: [
      new PeriodicExportingMetricReader({
        exporter: {
          export: (_metrics, callback) => done(callback),
          forceFlush: async () => {},
          shutdown: async () => {},
        },
        exportIntervalMillis: 1000,
      }),
    ],
  });
  const loggerProvider = new LoggerProvider({
    processors: [
      new BatchLogRecordProcessor({
        exporter: {
          export: (_records, callback) => done(callback),
          forceFlush: async () => {},
          shutdown: async () => {},
        },
      }),
    ],
  });
  api.trace.setGlobalTracerProvider(tracerProvider);
  api.metrics.setGlobalMeterProvider(meterProvider);
  logs.setGlobalLoggerProvider(loggerProvider);

  let unregister: (() => void) | undefined;
  if (mode !== 'sdk') {
    instrumentation ??= new (loadPoolwatch().PoolInstrumentation)({ enabled: false });
    unregister = registerInstrumentations({
      instrumentations: [instrumentation],
      tracerProvider,
      meterProvider,
      loggerProvider,
    });
    if (mode === 'disabled') instrumentation.disable();
  }

  // The request span every acquire of a row runs under.
  const parentTracer =
    mode === 'sampled-out'
      ? new BasicTracerProvider({ sampler: new AlwaysOffSampler() }).getTracer('poolwatch-bench')
      : tracerProvider.getTracer('poolwatch-bench');
  const parent = parentTracer.startSpan('request');
  const parentContext: OtelApi.Context = api.trace.setSpan(api.ROOT_CONTEXT, parent);

  return {
    run: (fn) => api.context.with(parentContext, fn),
    flush: async () => {
      await tracerProvider.forceFlush();
      await loggerProvider.forceFlush();
    },
    async teardown() {
      unregister?.();
      parent.end();
      await Promise.all([
        tracerProvider.shutdown(),
        meterProvider.shutdown(),
        loggerProvider.shutdown(),
      ]);
      api.trace.disable();
      api.metrics.disable();
      logs.disable();
      api.context.disable(); // disables the AsyncLocalStorage, removing its PromiseHook
    },
  };
}

/** Groups of this section, one per concurrency (as in the peers section). */
export const OTEL_CONCURRENCIES = [1, 64];

/** One bare-cycle row: a fresh poolwatch pool with defaults under the given OTel mode. */
function otelCase(mode: OtelMode, concurrency: number): Case {
  const name = `poolwatch default, ${OTEL_LABELS[mode]}`;
  return {
    suite: 'otel',
    group: `bare cycle max=${MAX} c=${concurrency}`,
    name,
    baseline: mode === 'none',
    async prepare() {
      const { Pool } = loadPoolwatch();
      const env = await installOtel(mode);
      const { create, destroy, check } = resourceFactory(name);
      const pool = new Pool({ factory: { create, destroy }, max: MAX });
      const cycle = async (): Promise<void> => {
        const lease = await pool.acquire();
        lease.release();
      };
      return {
        run: (n) => env.run(() => drive(cycle, n, concurrency)),
        async teardown() {
          await pool.close();
          await env.teardown();
          check();
        },
      };
    },
  };
}

export function otelCases(): Case[] {
  return OTEL_CONCURRENCIES.flatMap((c) => OTEL_MODES.map((mode) => otelCase(mode, c)));
}
