import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { diag, DiagLogLevel, type Tracer, type TracerProvider } from '@opentelemetry/api';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import {
  LoggerProvider,
  SimpleLogRecordProcessor,
  type LogRecordExporter,
} from '@opentelemetry/sdk-logs';
import {
  BasicTracerProvider,
  SimpleSpanProcessor,
  type SpanExporter,
} from '@opentelemetry/sdk-trace-base';
import sinon from 'sinon';
import { channels, Pool, PoolInstrumentation, type ChannelMessages } from '../../src';
import { plainFactory, type FakeResource } from '../support/fake-factory';
import { Telemetry } from './telemetry';

/** The channels the instrumentation listens on. */
const LISTENED: (keyof ChannelMessages)[] = [
  'acquireStart',
  'acquireEnd',
  'holdEnd',
  'timeout',
  'create',
  'leak',
  'alert',
];

function subscribed(): (keyof ChannelMessages)[] {
  return LISTENED.filter((name) => channels[name].hasSubscribers);
}

describe('PoolInstrumentation: lifecycle', () => {
  let telemetry: Telemetry | undefined;
  const pools: Pool<FakeResource>[] = [];

  afterEach(async () => {
    await Promise.all(pools.splice(0).map((p) => p.close()));
    await telemetry?.shutdown();
    telemetry = undefined;
    sinon.restore();
    diag.disable();
  });

  function pool(name: string): Pool<FakeResource> {
    const p = new Pool({ factory: plainFactory(), name });
    pools.push(p);
    return p;
  }

  async function cycle(p: Pool<FakeResource>): Promise<void> {
    const lease = await p.acquire();
    lease.release();
  }

  function spyOnDiag(): sinon.SinonSpy {
    const errors = sinon.spy();
    const ignore = () => {};
    diag.setLogger(
      { error: errors, warn: ignore, info: ignore, debug: ignore, verbose: ignore },
      DiagLogLevel.ERROR,
    );
    return errors;
  }

  it('is named after the package, with its version, and patches pg-pool, knex and mysql2', () => {
    const instrumentation = new PoolInstrumentation({ enabled: false });
    const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };
    assert.equal(instrumentation.instrumentationName, 'poolwatch');
    assert.equal(instrumentation.instrumentationVersion, pkg.version);
    assert.deepEqual(
      instrumentation.getModuleDefinitions().map((d) => [d.name, d.supportedVersions]),
      [
        ['pg-pool', ['>=2 <4']],
        ['knex', ['>=3 <4']],
        ['mysql2', ['>=3 <4']],
      ],
    );
    assert.deepEqual(instrumentation.getConfig(), {
      enabled: false,
      leakSpans: true,
      maxCodeLocationsPerPool: 20,
      holdSpans: true,
      waitSpans: false,
      requireParentSpan: false,
      captureStacks: true,
    });
  });

  it('listens only while enabled; enable and disable are idempotent', async () => {
    assert.deepEqual(subscribed(), [], 'nothing else listens in this process');
    const t = (telemetry = new Telemetry());
    const p = pool('cycle');
    assert.deepEqual(subscribed(), LISTENED);

    t.instrumentation.enable();
    await cycle(p);
    assert.equal(t.spans('poolwatch.hold').length, 1, 'enabling twice does not listen twice');

    t.instrumentation.disable();
    t.instrumentation.disable();
    assert.deepEqual(subscribed(), []);
    const stats = sinon.spy(p, 'stats');
    await cycle(p);
    const metrics = await t.metrics();
    assert.equal(t.spans('poolwatch.hold').length, 1, 'no span while disabled');
    assert.equal(stats.callCount, 0, 'no observation while disabled');
    const waits = metrics.get('db.client.connection.wait_time')!.dataPoints;
    assert.equal((waits[0]!.value as { count: number }).count, 1, 'no record while disabled');

    t.instrumentation.enable();
    await cycle(p);
    assert.equal(t.spans('poolwatch.hold').length, 2);
    await t.metrics();
    assert.equal(stats.callCount, 1);
  });

  it('starts through registerInstrumentations() with the given providers', async () => {
    const t = (telemetry = new Telemetry({ enabled: false }, { providers: false }));
    assert.deepEqual(subscribed(), []);
    const unregister = registerInstrumentations({
      instrumentations: [t.instrumentation],
      tracerProvider: t.tracerProvider,
      meterProvider: t.meterProvider,
      loggerProvider: t.loggerProvider,
    });
    assert.deepEqual(subscribed(), LISTENED);
    const p = pool('registered');
    await t.tracer.startActiveSpan('request', async (span) => {
      await cycle(p);
      span.end();
    });
    assert.equal(t.spans('poolwatch.hold').length, 1);
    const metrics = await t.metrics();
    assert.ok(metrics.has('db.client.connection.count'));
    assert.ok(metrics.has('db.client.connection.use_time'));
    unregister();
    assert.deepEqual(subscribed(), []);
  });

  it('lets two instances trace the same acquires, each under the caller', async () => {
    const t = (telemetry = new Telemetry());
    const second = new Telemetry();
    try {
      const p = pool('twice');
      const parent = await t.tracer.startActiveSpan('request', async (span) => {
        await cycle(p);
        span.end();
        return span.spanContext().spanId;
      });
      // The first instance keeps its state in the message's userData, the second in a WeakMap.
      for (const each of [t, second]) {
        const [hold] = each.spans('poolwatch.hold');
        assert.equal(hold!.parentSpanContext?.spanId, parent);
        assert.equal(hold!.attributes['poolwatch.hold.outcome'], 'released');
      }
    } finally {
      await second.shutdown();
    }
  });

  it('never fails an acquire because an exporter throws', async () => {
    spyOnDiag();
    const broken = sinon.spy(() => {
      throw new Error('exporter down');
    });
    const spanExporter: SpanExporter = { export: broken, shutdown: () => Promise.resolve() };
    const logExporter: LogRecordExporter = {
      export: broken,
      forceFlush: () => Promise.resolve(),
      shutdown: () => Promise.resolve(),
    };
    const instrumentation = new PoolInstrumentation({ waitSpans: true });
    instrumentation.setTracerProvider(
      new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spanExporter)] }),
    );
    instrumentation.setLoggerProvider(
      new LoggerProvider({ processors: [new SimpleLogRecordProcessor({ exporter: logExporter })] }),
    );
    try {
      const p = new Pool({
        factory: plainFactory(),
        name: 'exporter-down',
        leakDetectionThresholdMillis: 10,
        housekeepingIntervalMillis: 10,
      });
      pools.push(p);
      const lease = await p.acquire();
      await new Promise((resolve) => setTimeout(resolve, 40)); // a suspected leak: a log record
      lease.release();
      await cycle(p);
      // Spans (wait and hold) and log records all reached the exporter, which threw each time;
      // an exception escaping into the pool would have surfaced as uncaught and failed the test.
      await new Promise((resolve) => setImmediate(resolve));
      assert.ok(broken.callCount >= 5, `exporter called ${broken.callCount} times`);
      assert.equal(p.stats().used, 0);
    } finally {
      instrumentation.disable();
    }
  });

  it('reports a throwing tracer through diag and keeps recording metrics', async () => {
    const errors = spyOnDiag();
    const t = (telemetry = new Telemetry());
    const tracer = {
      startSpan: () => {
        throw new Error('tracer bug');
      },
    } as unknown as Tracer;
    t.instrumentation.setTracerProvider({ getTracer: () => tracer } as TracerProvider);
    const p = pool('survivor');
    await cycle(p);
    assert.equal(errors.callCount, 1);
    assert.deepEqual(errors.firstCall.args.slice(0, 2), [
      'poolwatch',
      'failed to handle the acquireEnd event',
    ]);
    assert.equal((errors.firstCall.args[2] as Error).message, 'tracer bug');
    const metrics = await t.metrics();
    assert.ok(metrics.has('db.client.connection.wait_time'));
    assert.ok(metrics.has('db.client.connection.use_time'));
  });
});
