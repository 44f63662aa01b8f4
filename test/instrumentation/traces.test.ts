import assert from 'node:assert/strict';
import { diag, DiagLogLevel, SpanKind, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import sinon from 'sinon';
import {
  Pool,
  type HoldSpanInfo,
  type Lease,
  type LeaseInfo,
  type PoolOptions,
  type PoolInstrumentationConfig,
} from '../../src';
import { plainFactory, type FakeFactory, type FakeResource } from '../support/fake-factory';
import { hr, settle, Telemetry } from './telemetry';
import { useFakeClock } from '../support/fake-clock';

const T0 = 1_700_000_000_000;
const SERVER = { system: 'postgresql', address: 'db.internal', port: 5432, namespace: 'app' };

describe('PoolInstrumentation: traces', () => {
  const env = useFakeClock<Pool<FakeResource>>({ now: T0 });
  const pools = env.open;
  let telemetry: Telemetry | undefined;
  afterEach(async () => {
    await telemetry?.shutdown();
    telemetry = undefined;
    sinon.restore();
    diag.disable();
  });

  function setup(config: PoolInstrumentationConfig = {}): Telemetry {
    telemetry = new Telemetry(config);
    return telemetry;
  }

  function pool(
    options: Omit<PoolOptions<FakeResource>, 'factory'> = {},
    factory: FakeFactory = plainFactory(),
  ): Pool<FakeResource> {
    const p = new Pool({ factory, ...options });
    pools.push(p);
    return p;
  }

  /** Runs `fn` inside a parent span and returns that span's id. */
  async function inParent(t: Telemetry, fn: () => Promise<void>): Promise<string> {
    return t.tracer.startActiveSpan('request', async (parent: Span) => {
      await fn();
      parent.end();
      return parent.spanContext().spanId;
    });
  }

  function only(spans: ReadableSpan[]): ReadableSpan {
    assert.equal(spans.length, 1, `expected one span, got ${spans.map((s) => s.name).join(', ')}`);
    return spans[0]!;
  }

  it("makes the hold span the active span inside use(), so the driver's spans nest under it", async () => {
    const t = setup();
    for (const detectSelfDeadlock of [true, false]) {
      t.spanExporter.reset();
      const p = pool({ name: `use-${String(detectSelfDeadlock)}`, detectSelfDeadlock });
      let activeInside: string | undefined;
      const requestId = await inParent(t, async () => {
        await p.use(async () => {
          activeInside = trace.getActiveSpan()?.spanContext().spanId;
          await Promise.resolve(); // across an await too
          t.tracer.startSpan('pg.query').end(); // what a driver instrumentation does
        });
        // After use(): the caller's span again.
        t.tracer.startSpan('after').end();
      });
      const hold = only(t.spans('poolwatch.hold'));
      assert.equal(hold.parentSpanContext?.spanId, requestId);
      assert.equal(activeInside, hold.spanContext().spanId);
      assert.equal(only(t.spans('pg.query')).parentSpanContext?.spanId, hold.spanContext().spanId);
      assert.equal(only(t.spans('after')).parentSpanContext?.spanId, requestId);
    }
  });

  it('records one hold span per lease, under the caller, timed by the pool', async () => {
    const t = setup();
    const p = pool({ name: 'orders' }, Object.assign(plainFactory(), { server: SERVER }));
    let info!: LeaseInfo;
    const parentId = await inParent(t, async () => {
      const lease = await p.acquire();
      info = lease.info;
      await env.clock.tickAsync(250);
      lease.release();
    });

    const hold = only(t.spans('poolwatch.hold'));
    assert.equal(hold.kind, SpanKind.INTERNAL);
    assert.equal(hold.parentSpanContext?.spanId, parentId);
    assert.equal(hold.instrumentationScope.name, 'poolwatch');
    assert.equal(hold.instrumentationScope.version, '0.1.0');
    assert.deepEqual(hold.attributes, {
      'db.client.connection.pool.name': 'orders',
      'db.system.name': 'postgresql',
      'server.address': 'db.internal',
      'server.port': 5432,
      'db.namespace': 'app',
      'poolwatch.lease.id': info.id,
      'poolwatch.resource.id': info.resourceId,
      'poolwatch.acquire.wait_time': 0,
      'poolwatch.hold.outcome': 'released',
    });
    assert.deepEqual(hold.startTime, hr(T0));
    assert.deepEqual(hold.endTime, hr(T0 + 250));
    assert.deepEqual(hold.duration, [0, 250_000_000]);
    assert.equal(hold.status.code, SpanStatusCode.UNSET);
    assert.deepEqual(hold.events, []);
    assert.equal(t.spans('poolwatch.acquire').length, 0, 'wait spans are off by default');
  });

  it('parents each hold on its own caller, even when another caller hands the lease over', async () => {
    const t = setup();
    // The test holds one lease and waits for another on purpose.
    const p = pool({ max: 1, detectSelfDeadlock: false });
    const first = await p.acquire();
    let waiterParent = '';
    const waiting = inParent(t, async () => {
      const lease = await p.acquire();
      lease.release();
    });
    await env.clock.tickAsync(40);
    // Released under an unrelated span: the lease goes to the waiter from this context.
    const releaserParent = await inParent(t, async () => first.release());
    waiterParent = await waiting;

    const [firstHold, secondHold] = t.spans('poolwatch.hold');
    assert.equal(firstHold!.parentSpanContext, undefined, 'acquired outside any span');
    assert.equal(secondHold!.parentSpanContext?.spanId, waiterParent);
    assert.notEqual(secondHold!.parentSpanContext?.spanId, releaserParent);
    assert.equal(secondHold!.attributes['poolwatch.acquire.wait_time'], 0.04);
    assert.deepEqual(secondHold!.startTime, hr(T0 + 40));
  });

  it('keeps two pools apart', async () => {
    const t = setup();
    const a = pool({ name: 'a' }, Object.assign(plainFactory(), { server: SERVER }));
    const b = pool({ name: 'b' });
    await inParent(t, async () => {
      const la = await a.acquire();
      const lb = await b.acquire();
      lb.release();
      la.release();
    });
    const [hb, ha] = t.spans('poolwatch.hold');
    assert.equal(ha!.attributes['db.client.connection.pool.name'], 'a');
    assert.equal(ha!.attributes['server.address'], 'db.internal');
    assert.deepEqual(hb!.attributes, {
      'db.client.connection.pool.name': 'b',
      'poolwatch.lease.id': hb!.attributes['poolwatch.lease.id'],
      'poolwatch.resource.id': hb!.attributes['poolwatch.resource.id'],
      'poolwatch.acquire.wait_time': 0,
      'poolwatch.hold.outcome': 'released',
    });
  });

  it('records no span without a parent under requireParentSpan', async () => {
    const t = setup({ requireParentSpan: true });
    const p = pool();
    (await p.acquire()).release();
    assert.equal(t.spans('poolwatch.hold').length, 0);
    await inParent(t, async () => (await p.acquire()).release());
    assert.equal(t.spans('poolwatch.hold').length, 1);
  });

  it('records no hold span under holdSpans: false', async () => {
    const t = setup({ holdSpans: false });
    const p = pool();
    await inParent(t, async () => (await p.acquire()).release());
    assert.deepEqual(
      t.spans().map((s) => s.name),
      ['request'],
    );
  });

  it('records the wait as a span under waitSpans, with failures and their codes', async () => {
    const t = setup({ waitSpans: true });
    const factory = plainFactory();
    const p = pool({ max: 1, detectSelfDeadlock: false }, factory);
    let second!: LeaseInfo;
    const parentId = await inParent(t, async () => {
      const first = await p.acquire();
      const waiting = p.acquire();
      await env.clock.tickAsync(100);
      first.release();
      const lease = await waiting;
      second = lease.info;
      lease.release();
    });
    const [w1, w2] = t.spans('poolwatch.acquire');
    assert.equal(w1!.parentSpanContext?.spanId, parentId);
    assert.equal(w1!.kind, SpanKind.INTERNAL);
    assert.deepEqual(w2!.startTime, hr(T0));
    assert.deepEqual(w2!.endTime, hr(T0 + 100));
    assert.deepEqual(w2!.attributes, {
      'db.client.connection.pool.name': p.name,
      'poolwatch.lease.id': second.id,
      'poolwatch.resource.id': second.resourceId,
    });
    assert.equal(w2!.status.code, SpanStatusCode.UNSET);

    // A timeout: the pool's own summary is kept, but not the other holders' stacks that the
    // error's message goes on to list (other callers' code).
    t.spanExporter.reset();
    const held = await p.acquire();
    const timedOut = settle(p.acquire({ timeoutMillis: 50 }));
    await env.clock.tickAsync(50);
    assert.equal(timedOut.error?.name, 'AcquireTimeoutError');
    // The message goes on to list the longest holders with their stacks; the span keeps only its
    // first line (pool, elapsed time and counts).
    const [summary, ...rest] = timedOut.error!.message.split('\n');
    assert.match(
      summary!,
      /^Pool "poolwatch-\d+": timed out after 50 ms waiting for a resource \(total=1 used=1 idle=0 pending=1 max=1\b.*\)\.$/,
    );
    assert.match(rest.join('\n'), /lease #\d+ held 0\.1 s, acquired at:\n {4}at /);
    const timeoutSpan = t.spans('poolwatch.acquire')[1]!;
    assert.equal(timeoutSpan.status.code, SpanStatusCode.ERROR);
    assert.equal(timeoutSpan.status.message, summary);
    assert.equal(timeoutSpan.attributes['error.type'], 'POOL_ACQUIRE_TIMEOUT');
    assert.deepEqual(
      timeoutSpan.events.map((e) => [e.name, e.attributes]),
      [
        [
          'exception',
          {
            'exception.type': 'AcquireTimeoutError',
            'exception.message': summary,
          },
        ],
      ],
    );
    assert.deepEqual(timeoutSpan.endTime, hr(T0 + 150));
    held.release();

    // A failed create quotes the driver's message: only the class and code are recorded.
    t.spanExporter.reset();
    factory.failCreates = 1;
    factory.createError = new Error('password authentication failed for user "app"');
    const p2 = pool({ name: 'failing' }, factory);
    const failed = await p2.acquire().then(
      () => undefined,
      (error: Error) => error,
    );
    assert.equal(failed?.name, 'CreateFailedError');
    const failedSpan = only(t.spans('poolwatch.acquire'));
    assert.equal(failedSpan.status.code, SpanStatusCode.ERROR);
    assert.equal(failedSpan.status.message, 'POOL_CREATE_FAILED');
    assert.equal(failedSpan.attributes['error.type'], 'POOL_CREATE_FAILED');
    assert.deepEqual(failedSpan.events[0]!.attributes, { 'exception.type': 'CreateFailedError' });
    const recorded = JSON.stringify([failedSpan.attributes, failedSpan.events, failedSpan.status]);
    assert.ok(!recorded.includes('password'), recorded);

    // A timeout after that failure quotes it too (as its cause): no message either.
    t.spanExporter.reset();
    factory.createDelayMillis = 1000;
    const late = settle(p2.acquire({ timeoutMillis: 50 }));
    await env.clock.tickAsync(50);
    assert.match(late.error!.message, /password authentication failed/);
    const lateSpan = only(t.spans('poolwatch.acquire'));
    assert.equal(lateSpan.attributes['error.type'], 'POOL_ACQUIRE_TIMEOUT');
    assert.deepEqual(lateSpan.events[0]!.attributes, { 'exception.type': 'AcquireTimeoutError' });
    assert.equal(lateSpan.status.message, 'POOL_ACQUIRE_TIMEOUT');
    await env.clock.tickAsync(1000); // the slow create finishes
  });

  it('adds a suspected-leak event with age and stack, then a returned event', async () => {
    const t = setup();
    const p = pool({ leakDetectionThresholdMillis: 2000, captureStacks: 'always' });
    let lease!: Lease<FakeResource>;
    await inParent(t, async () => {
      lease = await acquireHere(p);
    });
    await env.clock.tickAsync(2000);
    assert.equal(p.stats().suspectedLeaks, 1);
    await env.clock.tickAsync(500);
    lease.release();

    const hold = only(t.spans('poolwatch.hold'));
    const [suspected, returned] = hold.events;
    assert.equal(suspected!.name, 'poolwatch.leak.suspected');
    assert.deepEqual(suspected!.time, hr(T0 + 2000));
    assert.equal(suspected!.attributes!['poolwatch.lease.age'], 2);
    const stack = String(suspected!.attributes!['code.stacktrace']);
    assert.match(stack.split('\n')[0]!, /acquireHere .*traces\.test\.ts/);
    // The acquiring line, as the code.* attributes of the semantic conventions.
    const [, line, column] = /traces\.test\.ts:(\d+):(\d+)/.exec(stack)!;
    assert.equal(suspected!.attributes!['code.function.name'], 'acquireHere');
    assert.equal(suspected!.attributes!['code.file.path'], 'test/instrumentation/traces.test.ts');
    assert.equal(suspected!.attributes!['code.line.number'], Number(line));
    assert.equal(suspected!.attributes!['code.column.number'], Number(column));
    const log = t.logs().find((l) => l.eventName === 'poolwatch.leak.suspected')!;
    assert.equal(log.attributes['code.function.name'], 'acquireHere');
    assert.equal(log.attributes['code.line.number'], Number(line));
    assert.equal(returned!.name, 'poolwatch.leak.returned');
    assert.deepEqual(returned!.time, hr(T0 + 2500));
    assert.equal(returned!.attributes!['poolwatch.lease.age'], 2.5);
    assert.equal(hold.status.code, SpanStatusCode.UNSET, 'returned late is not an error');
    assert.equal(hold.attributes['poolwatch.hold.outcome'], 'released');
  });

  it('leaves stacks out under captureStacks: false', async () => {
    const t = setup({ captureStacks: false });
    const p = pool({ leakDetectionThresholdMillis: 1000, captureStacks: 'always' });
    const lease = await p.acquire();
    await env.clock.tickAsync(1000);
    lease.release();
    const [suspected] = only(t.spans('poolwatch.hold')).events;
    assert.deepEqual(suspected!.attributes, { 'poolwatch.lease.age': 1 });
    assert.ok(!('code.stacktrace' in t.logs()[0]!.attributes));
  });

  it('marks a reclaimed hold as an error', async () => {
    const t = setup();
    const p = pool({ leakDetectionThresholdMillis: 1000, reclaimAfterMillis: 3000 });
    const lease = await p.acquire();
    await env.clock.tickAsync(3000);
    assert.equal(lease.active, false);
    const hold = only(t.spans('poolwatch.hold'));
    assert.deepEqual(
      hold.events.map((e) => [e.name, e.attributes!['poolwatch.lease.age']]),
      [
        ['poolwatch.leak.suspected', 1],
        ['poolwatch.leak.reclaimed', 3],
      ],
    );
    assert.deepEqual(hold.status, { code: SpanStatusCode.ERROR, message: 'lease reclaimed' });
    assert.equal(hold.attributes['poolwatch.hold.outcome'], 'reclaimed');
    assert.equal(hold.attributes['error.type'], 'poolwatch.lease.reclaimed');
    assert.deepEqual(hold.endTime, hr(T0 + 3000));
  });

  it('ends holds destroyed by the caller or taken back at close', async () => {
    const t = setup();
    const p = pool({ closeTimeoutMillis: 100 });
    const a = await p.acquire();
    const b = await p.acquire();
    a.destroy(new Error('broken'));
    const closed = p.close();
    await env.clock.tickAsync(100);
    await closed;
    assert.equal(b.active, false);
    const outcomes = t
      .spans('poolwatch.hold')
      .map((s) => [s.attributes['poolwatch.hold.outcome'], s.status.code]);
    assert.deepEqual(outcomes, [
      ['destroyed', SpanStatusCode.UNSET],
      ['closed', SpanStatusCode.UNSET],
    ]);
  });

  it('runs holdHook, and survives one that throws', async () => {
    const errors = sinon.spy();
    diag.setLogger(
      { error: errors, warn() {}, info() {}, debug() {}, verbose() {} },
      DiagLogLevel.ERROR,
    );
    const hook = sinon.spy((span: Span, info: HoldSpanInfo) => {
      span.setAttribute('app.resource', info.lease.resourceId);
    });
    const t = setup({ holdHook: hook });
    const p = pool();
    const first = await p.acquire();
    const { id, resourceId } = first.info;
    first.release();
    assert.equal(hook.callCount, 1);
    assert.equal(hook.firstCall.args[1].lease.id, id);
    assert.equal(only(t.spans('poolwatch.hold')).attributes['app.resource'], resourceId);

    t.instrumentation.setConfig({
      holdHook: () => {
        throw new Error('hook bug');
      },
    });
    const lease = await p.acquire();
    lease.release();
    assert.equal(t.spans('poolwatch.hold').length, 2);
    assert.equal(errors.callCount, 1);
    assert.match(errors.firstCall.args.join(' '), /span customization hook/);
  });
});

describe('PoolInstrumentation: collected leaks (real garbage collection)', () => {
  let telemetry: Telemetry | undefined;
  afterEach(async () => {
    await telemetry?.shutdown();
  });

  it('marks the hold span, counts the leak and logs an error', async function () {
    if (typeof global.gc !== 'function') this.skip();
    const t = (telemetry = new Telemetry());
    // The pool starts watching a held lease for collection at its next housekeeping tick.
    const p = new Pool({
      factory: plainFactory(),
      name: 'gc',
      captureStacks: 'always',
      housekeepingIntervalMillis: 10,
    });
    try {
      await t.tracer.startActiveSpan('request', async (parent) => {
        await dropALease(p);
        parent.end();
      });
      for (let i = 0; i < 100 && p.stats().collectedLeaks === 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 5));
        global.gc!();
      }
      assert.equal(p.stats().collectedLeaks, 1, 'the dropped lease was collected');

      const hold = only(t.spans('poolwatch.hold'));
      assert.deepEqual(
        hold.events.map((e) => e.name),
        ['poolwatch.leak.collected'],
      );
      assert.match(String(hold.events[0]!.attributes!['code.stacktrace']), /dropALease/);
      assert.deepEqual(hold.status, { code: SpanStatusCode.ERROR, message: 'lease collected' });
      assert.equal(hold.attributes['poolwatch.hold.outcome'], 'collected');
      assert.equal(hold.attributes['error.type'], 'poolwatch.lease.collected');

      const [log] = t.logs();
      assert.equal(log!.eventName, 'poolwatch.leak.collected');
      assert.equal(log!.severityText, 'ERROR');
      assert.equal(log!.spanContext?.spanId, hold.spanContext().spanId);
      assert.equal(log!.attributes['error.type'], 'poolwatch.lease.collected');

      const leaks = (await t.metrics()).get('poolwatch.leaks')!;
      assert.deepEqual(
        leaks.dataPoints.map((d) => [d.attributes, d.value]),
        [[{ 'db.client.connection.pool.name': 'gc', 'poolwatch.leak.kind': 'collected' }, 1]],
      );
    } finally {
      await p.close();
    }
  });

  function only(spans: ReadableSpan[]): ReadableSpan {
    const holds = spans.filter((s) => s.name === 'poolwatch.hold');
    assert.equal(holds.length, 1);
    return holds[0]!;
  }
});

/** Acquires from a named frame, so the captured stack can be checked. */
async function acquireHere(p: Pool<FakeResource>): Promise<Lease<FakeResource>> {
  return p.acquire();
}

/** Acquires and drops the lease: nothing keeps it reachable after this returns. */
async function dropALease(p: Pool<FakeResource>): Promise<void> {
  await p.acquire();
}
