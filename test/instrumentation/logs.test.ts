import assert from 'node:assert/strict';
import { SeverityNumber } from '@opentelemetry/api-logs';
import { Pool, type Alert, type PoolOptions } from '../../src';
import { plainFactory, type FakeResource } from '../support/fake-factory';
import { hr, Telemetry } from './telemetry';
import { useFakeClock } from '../support/fake-clock';

const T0 = 1_700_000_000_000;

describe('PoolInstrumentation: logs', () => {
  const env = useFakeClock<Pool<FakeResource>>({ now: T0 });
  const pools = env.open;
  let telemetry: Telemetry | undefined;
  afterEach(async () => {
    await telemetry?.shutdown();
    telemetry = undefined;
  });

  function pool(options: Omit<PoolOptions<FakeResource>, 'factory'>): Pool<FakeResource> {
    const p = new Pool({ factory: plainFactory(), detectSelfDeadlock: false, ...options });
    pools.push(p);
    return p;
  }

  it('emits one record per alert, with severity, attributes and a link to the hold', async () => {
    const t = (telemetry = new Telemetry());
    const alerts: Alert[] = [];
    const p = pool({
      name: 'p',
      max: 1,
      leakDetectionThresholdMillis: 1000,
      captureStacks: 'always',
      health: { intervalMillis: 2000, leakCountThreshold: 1, maxHoldMillis: 1500 },
      onAlert: (alert) => alerts.push(alert),
    });
    const lease = await t.tracer.startActiveSpan('request', async (span) => {
      const l = await p.acquire();
      span.end();
      return l;
    });
    const id = lease.info.id;
    const waiting = p.acquire(); // exhausts the pool
    await env.clock.tickAsync(2000);
    lease.release(); // returned late, and the waiter is served
    (await waiting).release();
    await p.close();

    const [hold] = t.spans('poolwatch.hold');
    const holdSpan = hold!.spanContext();
    const records = t.logs();
    // Leak findings reach the pool's `leak` and `alert` channels: each is logged once.
    assert.deepEqual(
      records.map((r) => [r.eventName, r.severityNumber, r.severityText]),
      [
        ['poolwatch.leak.suspected', SeverityNumber.WARN, 'WARN'],
        ['poolwatch.alert.leak_count', SeverityNumber.WARN, 'WARN'],
        ['poolwatch.alert.hold_age', SeverityNumber.WARN, 'WARN'],
        ['poolwatch.alert.exhausted', SeverityNumber.WARN, 'WARN'],
        ['poolwatch.leak.returned', SeverityNumber.INFO, 'INFO'],
      ],
    );
    assert.equal(alerts.length, records.length);
    records.forEach((record, i) => {
      assert.equal(record.body, alerts[i]!.message);
      assert.deepEqual(record.hrTime, hr(alerts[i]!.timestamp));
      assert.equal(record.instrumentationScope.name, 'poolwatch');
    });
    const [suspected, leakCount, holdAge, exhausted, returned] = records;
    const stack = alerts[0]!.stack!;
    assert.match(stack, /logs\.test\.ts/);
    // The first frame, as code.* attributes (an anonymous function has no code.function.name).
    const [, line, column] = /^at <anonymous> \(.*logs\.test\.ts:(\d+):(\d+)\)/.exec(stack)!;
    const code = {
      'code.stacktrace': stack,
      'code.file.path': 'test/instrumentation/logs.test.ts',
      'code.line.number': Number(line),
      'code.column.number': Number(column),
    };
    const P = { 'db.client.connection.pool.name': 'p' };
    assert.deepEqual(suspected!.attributes, {
      ...P,
      'poolwatch.alert.kind': 'leak',
      'poolwatch.leak.kind': 'suspected',
      'poolwatch.lease.id': id,
      'poolwatch.lease.age': 1,
      ...code,
    });
    assert.deepEqual(leakCount!.attributes, {
      ...P,
      'poolwatch.alert.kind': 'leak_count',
      'poolwatch.alert.value': 1,
      'poolwatch.alert.threshold': 1,
    });
    assert.deepEqual(holdAge!.attributes, {
      ...P,
      'poolwatch.alert.kind': 'hold_age',
      'poolwatch.lease.id': id,
      'poolwatch.lease.age': 2,
      'poolwatch.alert.value': 2000,
      'poolwatch.alert.threshold': 1500,
      ...code,
    });
    assert.deepEqual(exhausted!.attributes, {
      ...P,
      'poolwatch.alert.kind': 'exhausted',
      'poolwatch.alert.value': 1,
      'poolwatch.alert.threshold': 1,
    });
    assert.deepEqual(returned!.attributes, {
      ...P,
      'poolwatch.alert.kind': 'leak',
      'poolwatch.leak.kind': 'returned',
      'poolwatch.lease.id': id,
      'poolwatch.lease.age': 2,
      ...code,
    });
    // Per-lease records link to the hold span; pool-wide ones to no trace at all.
    for (const record of [suspected, holdAge, returned]) {
      assert.equal(record!.spanContext?.spanId, holdSpan.spanId);
      assert.equal(record!.spanContext?.traceId, holdSpan.traceId);
    }
    assert.equal(leakCount!.spanContext, undefined);
    assert.equal(exhausted!.spanContext, undefined);
  });

  it('logs reclaimed leases as errors, linked to the caller when hold spans are off', async () => {
    const t = (telemetry = new Telemetry({ holdSpans: false }));
    const p = pool({ name: 'r', reclaimAfterMillis: 1000, leakDetectionThresholdMillis: 0 });
    const parent = await t.tracer.startActiveSpan('request', async (span) => {
      await p.acquire();
      span.end();
      return span.spanContext();
    });
    await env.clock.tickAsync(1000);
    const [record] = t.logs();
    assert.equal(record!.eventName, 'poolwatch.leak.reclaimed');
    assert.equal(record!.severityNumber, SeverityNumber.ERROR);
    assert.equal(record!.severityText, 'ERROR');
    assert.equal(record!.attributes['poolwatch.leak.kind'], 'reclaimed');
    assert.equal(record!.attributes['error.type'], 'poolwatch.lease.reclaimed');
    assert.equal(record!.spanContext?.spanId, parent.spanId);
    assert.equal(t.spans('poolwatch.hold').length, 0);
  });
});
