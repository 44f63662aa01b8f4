import assert from 'node:assert/strict';
import { ValueType } from '@opentelemetry/api';
import {
  AggregationTemporality,
  DataPointType,
  InstrumentType,
  MeterProvider,
  type Histogram,
  type MetricData,
  type MetricDescriptor,
} from '@opentelemetry/sdk-metrics';
import sinon from 'sinon';
import { Pool, type PoolOptions } from '../../src';
import { plainFactory, type FakeFactory, type FakeResource } from '../support/fake-factory';
import { ManualReader, points, settle, Telemetry } from './telemetry';
import { useFakeClock } from '../support/fake-clock';

const BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];

describe('PoolInstrumentation: metrics', () => {
  const env = useFakeClock<Pool<FakeResource>>();
  const pools = env.open;
  let telemetry: Telemetry | undefined;
  afterEach(async () => {
    await telemetry?.shutdown();
    telemetry = undefined;
  });

  function pool(
    options: Omit<PoolOptions<FakeResource>, 'factory'>,
    factory: FakeFactory = plainFactory(),
  ): Pool<FakeResource> {
    const p = new Pool({ factory, detectSelfDeadlock: false, ...options });
    pools.push(p);
    return p;
  }

  function describe_(metric: MetricData | undefined) {
    assert.ok(metric !== undefined, 'metric not found');
    // The SDK's descriptor carries the instrument type at runtime (its internal InstrumentDescriptor).
    const { name, unit, type } = metric.descriptor as MetricDescriptor & { type: InstrumentType };
    return { name, unit, type, dataPointType: metric.dataPointType };
  }

  it('reports the spec instruments with their units and kinds, each pool on its own', async () => {
    const t = (telemetry = new Telemetry());
    const slow = plainFactory();
    slow.createDelayMillis = 20;
    const a = pool({ name: 'a', min: 1, max: 4 }, slow);
    await env.clock.tickAsync(20); // min refill: one idle
    const a1 = await a.acquire(); // idle: no wait
    const a2Waiting = a.acquire(); // creates: waits 20 ms
    await env.clock.tickAsync(20);
    const a2 = await a2Waiting;
    await env.clock.tickAsync(100);
    a2.release(); // held 100 ms
    const b = pool({ name: 'b', max: 1 });
    const b1 = await b.acquire();
    const b2 = b.acquire();
    b2.catch(() => {}); // rejected at close if the test fails first

    const metrics = await t.metrics();
    const gauge = (name: string, unit = '{connection}') => ({
      name,
      unit,
      type: InstrumentType.OBSERVABLE_UP_DOWN_COUNTER,
      dataPointType: DataPointType.SUM,
    });
    const histogram = (name: string) => ({
      name,
      unit: 's',
      type: InstrumentType.HISTOGRAM,
      dataPointType: DataPointType.HISTOGRAM,
    });
    assert.deepEqual([...metrics.values()].map(describe_), [
      gauge('db.client.connection.count'),
      gauge('db.client.connection.idle.max'),
      gauge('db.client.connection.idle.min'),
      gauge('db.client.connection.max'),
      gauge('db.client.connection.pending_requests', '{request}'),
      {
        name: 'poolwatch.leaks.suspected',
        unit: '{lease}',
        type: InstrumentType.OBSERVABLE_GAUGE,
        dataPointType: DataPointType.GAUGE,
      },
      histogram('db.client.connection.create_time'),
      histogram('db.client.connection.wait_time'),
      histogram('db.client.connection.use_time'),
      {
        name: 'poolwatch.hold.oldest_age',
        unit: 's',
        type: InstrumentType.OBSERVABLE_GAUGE,
        dataPointType: DataPointType.GAUGE,
      },
    ]);
    const count = metrics.get('db.client.connection.count')!;
    assert.equal(count.dataPointType === DataPointType.SUM && count.isMonotonic, false);
    assert.equal(count.aggregationTemporality, AggregationTemporality.CUMULATIVE);

    const A = { 'db.client.connection.pool.name': 'a' };
    const B = { 'db.client.connection.pool.name': 'b' };
    assert.deepEqual(points(count), [
      [{ ...A, 'db.client.connection.state': 'idle' }, 1],
      [{ ...A, 'db.client.connection.state': 'used' }, 1],
      [{ ...B, 'db.client.connection.state': 'idle' }, 0],
      [{ ...B, 'db.client.connection.state': 'used' }, 1],
    ]);
    assert.deepEqual(points(metrics.get('db.client.connection.idle.max')), [
      [A, 4],
      [B, 1],
    ]);
    assert.deepEqual(points(metrics.get('db.client.connection.idle.min')), [
      [A, 1],
      [B, 0],
    ]);
    assert.deepEqual(points(metrics.get('db.client.connection.max')), [
      [A, 4],
      [B, 1],
    ]);
    assert.deepEqual(points(metrics.get('db.client.connection.pending_requests')), [
      [A, 0],
      [B, 1],
    ]);
    assert.deepEqual(points(metrics.get('poolwatch.leaks.suspected')), [
      [A, 0],
      [B, 0],
    ]);

    const summary = (name: string) =>
      points<Histogram>(metrics.get(name)).map(([attributes, h]) => [
        attributes,
        { count: h.count, sum: h.sum, counts: h.buckets.counts.join('') },
      ]);
    for (const name of ['create_time', 'wait_time', 'use_time']) {
      const [[, h]] = points<Histogram>(metrics.get(`db.client.connection.${name}`));
      assert.deepEqual(h!.buckets.boundaries, BUCKETS, `${name} has second-scale buckets`);
    }
    // 0 s lands in the first bucket, 0.02 s in (0.01, 0.025], 0.1 s in (0.05, 0.1].
    assert.deepEqual(summary('db.client.connection.create_time'), [
      [A, { count: 2, sum: 0.04, counts: '00000200000000000' }],
      [B, { count: 1, sum: 0, counts: '10000000000000000' }],
    ]);
    assert.deepEqual(summary('db.client.connection.wait_time'), [
      [A, { count: 2, sum: 0.02, counts: '10000100000000000' }],
      [B, { count: 1, sum: 0, counts: '10000000000000000' }],
    ]);
    assert.deepEqual(summary('db.client.connection.use_time'), [
      [A, { count: 1, sum: 0.1, counts: '00000001000000000' }],
    ]);

    a1.release();
    b1.release();
    (await b2).release();
  });

  it('declares counts as integers and times as doubles, as the conventions hint', async () => {
    const t = (telemetry = new Telemetry());
    const p = pool({ name: 'int', max: 1, leakDetectionThresholdMillis: 100 });
    const held = await p.acquire();
    const late = settle(p.acquire({ timeoutMillis: 50 }));
    await env.clock.tickAsync(1000); // a timeout, and a suspected leak at the housekeeping tick
    assert.equal(late.error?.name, 'AcquireTimeoutError');
    // Collected while the suspect is still held, so that every gauge has a point.
    const valueTypes = [...(await t.metrics()).values()]
      .map((m) => [m.descriptor.name, m.descriptor.valueType])
      .sort();
    held.release();
    assert.deepEqual(valueTypes, [
      ['db.client.connection.count', ValueType.INT],
      ['db.client.connection.create_time', ValueType.DOUBLE],
      ['db.client.connection.idle.max', ValueType.INT],
      ['db.client.connection.idle.min', ValueType.INT],
      ['db.client.connection.max', ValueType.INT],
      ['db.client.connection.pending_requests', ValueType.INT],
      ['db.client.connection.timeouts', ValueType.INT],
      ['db.client.connection.wait_time', ValueType.DOUBLE],
      ['poolwatch.code_location.leaks', ValueType.INT],
      ['poolwatch.code_location.leaks.suspected', ValueType.INT],
      ['poolwatch.hold.oldest_age', ValueType.DOUBLE],
      ['poolwatch.leaks', ValueType.INT],
      ['poolwatch.leaks.suspected', ValueType.INT],
    ]);
  });

  it('reads each open pool once per collection, and forgets closed pools', async () => {
    const t = (telemetry = new Telemetry());
    const a = pool({ name: 'a' });
    const b = pool({ name: 'b' });
    const statsA = sinon.spy(a, 'stats');
    const statsB = sinon.spy(b, 'stats');
    await t.metrics();
    await t.metrics();
    assert.equal(statsA.callCount, 2);
    assert.equal(statsB.callCount, 2);

    // A closed pool is no longer observed. (sdk-metrics 2.x still exports its last values:
    // opentelemetry-js#4096, against the spec's "SHOULD NOT" for unobserved attribute sets.)
    await b.close();
    await t.metrics();
    assert.equal(statsA.callCount, 3);
    assert.equal(statsB.callCount, 2);
  });

  it('counts timeouts and leak findings, and gauges current suspects', async () => {
    const t = (telemetry = new Telemetry());
    const p = pool({ name: 'p', max: 2, leakDetectionThresholdMillis: 1000 });
    const a = await p.acquire();
    const b = await p.acquire();
    const late = settle(p.acquire({ timeoutMillis: 10 }));
    await env.clock.tickAsync(10);
    assert.equal(late.error?.name, 'AcquireTimeoutError');
    await env.clock.tickAsync(990);
    assert.equal(p.stats().suspectedLeaks, 2);
    a.release(); // returned late: no longer suspected, and not counted again

    const metrics = await t.metrics();
    const P = { 'db.client.connection.pool.name': 'p' };
    const timeouts = metrics.get('db.client.connection.timeouts')!;
    assert.deepEqual(describe_(timeouts), {
      name: 'db.client.connection.timeouts',
      unit: '{timeout}',
      type: InstrumentType.COUNTER,
      dataPointType: DataPointType.SUM,
    });
    assert.deepEqual(points(timeouts), [[P, 1]]);
    const leaks = metrics.get('poolwatch.leaks')!;
    assert.deepEqual(describe_(leaks), {
      name: 'poolwatch.leaks',
      unit: '{lease}',
      type: InstrumentType.COUNTER,
      dataPointType: DataPointType.SUM,
    });
    assert.ok(leaks.dataPointType === DataPointType.SUM && leaks.isMonotonic);
    assert.deepEqual(points(leaks), [[{ ...P, 'poolwatch.leak.kind': 'suspected' }, 2]]);
    assert.deepEqual(points(metrics.get('poolwatch.leaks.suspected')), [[P, 1]]);
    b.release();
  });

  it('picks up a meter provider set after pools exist, and leaves the old one', async () => {
    const t = (telemetry = new Telemetry({}, { providers: false }));
    const p = pool({ name: 'early' });
    const lease = await p.acquire();
    lease.release();
    // The instrumentation started on the global no-op meter: nothing was recorded anywhere.
    t.instrumentation.setMeterProvider(t.meterProvider);
    let metrics = await t.metrics();
    assert.deepEqual(points(metrics.get('db.client.connection.count')), [
      [{ 'db.client.connection.pool.name': 'early', 'db.client.connection.state': 'idle' }, 1],
      [{ 'db.client.connection.pool.name': 'early', 'db.client.connection.state': 'used' }, 0],
    ]);
    assert.equal(metrics.has('db.client.connection.wait_time'), false);

    const secondReader = new ManualReader();
    const second = new MeterProvider({ readers: [secondReader] });
    t.instrumentation.setMeterProvider(second);
    (await p.acquire()).release();
    metrics = await t.metrics(secondReader);
    assert.equal(points(metrics.get('db.client.connection.count')).length, 2);
    assert.equal(points<Histogram>(metrics.get('db.client.connection.wait_time'))[0]![1].count, 1);
    // The first provider's batch callback was removed: it observes nothing more.
    const statsSpy = sinon.spy(p, 'stats');
    await t.metrics();
    assert.equal(statsSpy.callCount, 0);
    await t.metrics(secondReader);
    assert.equal(statsSpy.callCount, 1);
    await second.shutdown();
  });
});
