/**
 * An in-memory OpenTelemetry SDK for instrumentation tests: spans, metrics and logs are kept in
 * memory and read back with exact assertions. Every test builds its own and tears it down, so
 * no subscriber or global outlives the test that made it.
 */
import { context, type Attributes, type Tracer } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  InMemoryLogRecordExporter,
  LoggerProvider,
  SimpleLogRecordProcessor,
  type ReadableLogRecord,
} from '@opentelemetry/sdk-logs';
import {
  MeterProvider,
  MetricReader,
  type DataPoint,
  type MetricData,
} from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type ReadableSpan,
} from '@opentelemetry/sdk-trace-base';
import { PoolInstrumentation, type PoolInstrumentationConfig } from '../../src';

/** A reader collected by hand: no export timer, so fake clocks do not interfere. */
export class ManualReader extends MetricReader {
  protected override onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
  protected override onShutdown(): Promise<void> {
    return Promise.resolve();
  }
}

export class Telemetry {
  readonly spanExporter = new InMemorySpanExporter();
  readonly tracerProvider = new BasicTracerProvider({
    spanProcessors: [new SimpleSpanProcessor(this.spanExporter)],
  });
  readonly logExporter = new InMemoryLogRecordExporter();
  readonly loggerProvider = new LoggerProvider({
    processors: [new SimpleLogRecordProcessor({ exporter: this.logExporter })],
  });
  readonly reader = new ManualReader();
  readonly meterProvider = new MeterProvider({ readers: [this.reader] });
  /** For parent spans in tests. */
  readonly tracer: Tracer = this.tracerProvider.getTracer('test');
  readonly instrumentation: PoolInstrumentation;

  /** `providers: false` leaves the instrumentation on the global (no-op) providers. */
  constructor(config: PoolInstrumentationConfig = {}, options: { providers?: boolean } = {}) {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    this.instrumentation = new PoolInstrumentation(config);
    if (options.providers !== false) {
      this.instrumentation.setTracerProvider(this.tracerProvider);
      this.instrumentation.setMeterProvider(this.meterProvider);
      this.instrumentation.setLoggerProvider(this.loggerProvider);
    }
  }

  spans(name?: string): ReadableSpan[] {
    const spans = this.spanExporter.getFinishedSpans();
    return name === undefined ? spans : spans.filter((s) => s.name === name);
  }

  logs(): ReadableLogRecord[] {
    return this.logExporter.getFinishedLogRecords();
  }

  /** Every metric of the poolwatch scope, by name. */
  async metrics(reader: MetricReader = this.reader): Promise<Map<string, MetricData>> {
    const { resourceMetrics, errors } = await reader.collect();
    if (errors.length > 0) throw new AggregateError(errors, 'metric collection failed');
    const metrics = new Map<string, MetricData>();
    for (const scope of resourceMetrics.scopeMetrics) {
      if (scope.scope.name !== 'poolwatch') continue;
      for (const metric of scope.metrics) metrics.set(metric.descriptor.name, metric);
    }
    return metrics;
  }

  async shutdown(): Promise<void> {
    this.instrumentation.disable();
    context.disable();
    await Promise.all([
      this.tracerProvider.shutdown(),
      this.meterProvider.shutdown(),
      this.loggerProvider.shutdown(),
    ]);
  }
}

/** The data points of one metric, as `[attributes, value]` pairs, sorted for stable comparison. */
export function points<T>(metric: MetricData | undefined): [Attributes, T][] {
  assert(metric !== undefined, 'metric not found');
  return (metric.dataPoints as DataPoint<T>[])
    .map((p): [Attributes, T] => [p.attributes, p.value])
    .sort((a, b) => JSON.stringify(a[0]).localeCompare(JSON.stringify(b[0])));
}

function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(message);
}

export { settle } from '../support/settle';

/** Epoch milliseconds as HrTime, as the instrumentation stamps its spans. */
export function hr(millis: number): [number, number] {
  const seconds = Math.floor(millis / 1000);
  return [seconds, Math.round((millis - seconds * 1000) * 1e6)];
}
