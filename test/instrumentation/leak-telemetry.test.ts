import assert from 'node:assert/strict';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import {
  context,
  diag,
  DiagLogLevel,
  ROOT_CONTEXT,
  SpanStatusCode,
  TraceFlags,
  trace,
  type Span,
} from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import sinon from 'sinon';
import {
  InvalidOptionError,
  Pool,
  PoolInstrumentation,
  type Lease,
  type PoolInstrumentationConfig,
  type PoolOptions,
} from '../../src';
import { useFakeClock } from '../support/fake-clock';
import { plainFactory, type FakeResource } from '../support/fake-factory';
import { hr, points, Telemetry } from './telemetry';

/** This file as code locations name it: relative to the working directory. */
const FILE = path.relative(process.cwd(), __filename);

const T0 = 1_700_000_000_000;
const SERVER = { system: 'postgresql', address: 'db.internal', port: 5432, namespace: 'app' };

/** The line of this file that ends with `marker`, 1-based. */
function lineOf(marker: string): number {
  const lines = readFileSync(__filename, 'utf8').split('\n');
  const index = lines.findIndex((line) => line.endsWith(marker));
  assert.ok(index >= 0, marker);
  return index + 1;
}

// Acquiring functions with names and lines the assertions can point at.
function checkoutHandler(p: Pool<FakeResource>): Promise<Lease<FakeResource>> {
  return p.acquire(); // @checkout
}
function reportJob(p: Pool<FakeResource>): Promise<Lease<FakeResource>> {
  return p.acquire(); // @report
}
function auditJob(p: Pool<FakeResource>): Promise<Lease<FakeResource>> {
  return p.acquire(); // @audit
}

const CHECKOUT = {
  'code.function.name': 'checkoutHandler',
  'code.file.path': FILE,
  'code.line.number': lineOf('// @checkout'),
};
const REPORT = {
  'code.function.name': 'reportJob',
  'code.file.path': FILE,
  'code.line.number': lineOf('// @report'),
};

describe('PoolInstrumentation: leaks where operators look', () => {
  const env = useFakeClock<Pool<FakeResource>>({ now: T0 });
  let telemetry: Telemetry | undefined;
  afterEach(async () => {
    await telemetry?.shutdown();
    telemetry = undefined;
    diag.disable();
  });

  function setup(config: PoolInstrumentationConfig = {}): Telemetry {
    return (telemetry = new Telemetry(config));
  }

  function pool(options: Omit<PoolOptions<FakeResource>, 'factory'> = {}): Pool<FakeResource> {
    const p = new Pool({
      factory: Object.assign(plainFactory(), { server: SERVER }),
      name: 'orders',
      captureStacks: 'always',
      leakDetectionThresholdMillis: 2000,
      detectSelfDeadlock: false,
      ...options,
    });
    env.open.push(p);
    return p;
  }

  const id = (s: ReadableSpan) => s.spanContext().spanId;

  describe('the poolwatch.leak span', () => {
    it('shows a never-returned lease at once, as request → hold → leak, and ends the hold when taken back', async () => {
      const t = setup();
      const p = pool({ reclaimAfterMillis: 5000 });
      let request!: Span;
      let lease!: Lease<FakeResource>;
      await t.tracer.startActiveSpan('GET /checkout', async (span) => {
        request = span;
        lease = await checkoutHandler(p); // never released
        span.end();
      });
      await env.clock.tickAsync(2000); // suspected

      // Exported now: the request and the finding; the hold is still open.
      assert.deepEqual(
        t.spans().map((s) => s.name),
        ['GET /checkout', 'poolwatch.leak'],
      );
      const [leak] = t.spans('poolwatch.leak');
      const holdId = leak!.parentSpanContext!.spanId;
      assert.equal(leak!.spanContext().traceId, request.spanContext().traceId);
      assert.deepEqual(leak!.startTime, hr(T0 + 2000));
      assert.deepEqual(leak!.endTime, hr(T0 + 2000));
      assert.deepEqual(leak!.status, { code: SpanStatusCode.UNSET });
      assert.deepEqual(leak!.links, []);
      const { 'code.stacktrace': stack, 'code.column.number': column, ...rest } = leak!.attributes;
      assert.deepEqual(rest, {
        'db.client.connection.pool.name': 'orders',
        'db.system.name': 'postgresql',
        'server.address': 'db.internal',
        'server.port': 5432,
        'db.namespace': 'app',
        'poolwatch.leak.kind': 'suspected',
        'poolwatch.lease.id': lease.info.id,
        'poolwatch.resource.id': lease.info.resourceId,
        'poolwatch.lease.age': 2,
        ...CHECKOUT,
      });
      assert.equal(typeof column, 'number');
      assert.match(
        String(stack).split('\n')[0]!,
        /^at checkoutHandler \(.*leak-telemetry\.test\.ts:/,
      );

      await env.clock.tickAsync(3000); // reclaimed: the hold ends, with a second finding
      const hold = t.spans('poolwatch.hold')[0]!;
      assert.equal(id(hold), holdId);
      assert.equal(hold.parentSpanContext!.spanId, request.spanContext().spanId);
      assert.equal(hold.attributes['poolwatch.hold.outcome'], 'reclaimed');
      const reclaimed = t.spans('poolwatch.leak')[1]!;
      assert.deepEqual(
        [
          reclaimed.attributes['poolwatch.leak.kind'],
          reclaimed.attributes['poolwatch.lease.age'],
          reclaimed.parentSpanContext!.spanId,
          reclaimed.status,
        ],
        ['reclaimed', 5, holdId, { code: SpanStatusCode.ERROR, message: 'lease reclaimed' }],
      );
      assert.equal(reclaimed.attributes['error.type'], 'poolwatch.lease.reclaimed');
      assert.equal(hold.attributes['error.type'], 'poolwatch.lease.reclaimed');
    });

    it('ends an open hold span when the pool closes', async () => {
      const t = setup();
      const p = pool({ closeTimeoutMillis: 100, leakDetectionThresholdMillis: 0 });
      await t.tracer.startActiveSpan('job', async (span) => {
        await reportJob(p);
        span.end();
      });
      const closing = p.close();
      await env.clock.tickAsync(100);
      assert.deepEqual((await closing).forced.length, 1);
      const [hold] = t.spans('poolwatch.hold');
      assert.equal(hold!.attributes['poolwatch.hold.outcome'], 'closed');
      assert.deepEqual(hold!.endTime, hr(T0 + 100));
      assert.deepEqual(t.spans('poolwatch.leak'), [], 'closing is not a leak finding');
    });

    it('records a finding of an unsampled trace in a new trace, linked to the original', async () => {
      const t = setup();
      const p = pool();
      const unsampled = trace.setSpanContext(ROOT_CONTEXT, {
        traceId: '0af7651916cd43dd8448eb211c80319c',
        spanId: 'b7ad6b7169203331',
        traceFlags: TraceFlags.NONE,
      });
      const lease = await context.with(unsampled, () => reportJob(p));
      await env.clock.tickAsync(2000);
      assert.deepEqual(t.spans('poolwatch.hold'), [], 'the hold is not sampled');
      const [leak] = t.spans();
      assert.equal(leak!.name, 'poolwatch.leak');
      assert.equal(leak!.parentSpanContext, undefined, 'a root');
      assert.notEqual(leak!.spanContext().traceId, '0af7651916cd43dd8448eb211c80319c');
      assert.equal(leak!.links.length, 1);
      assert.equal(leak!.links[0]!.context.traceId, '0af7651916cd43dd8448eb211c80319c');
      assert.notEqual(leak!.links[0]!.context.spanId, 'b7ad6b7169203331', 'the hold span');
      assert.equal(leak!.attributes['code.function.name'], 'reportJob');
      lease.release();
    });

    it('leaves the stack and the code location out under captureStacks: false', async () => {
      const t = setup({ captureStacks: false });
      const lease = await reportJob(pool());
      await env.clock.tickAsync(2000);
      const [leak] = t.spans('poolwatch.leak');
      assert.deepEqual(
        Object.keys(leak!.attributes).filter((k) => k.startsWith('code.')),
        [],
      );
      lease.release();
    });

    it('without hold spans, is a child of the acquiring span', async () => {
      const t = setup({ holdSpans: false });
      const p = pool();
      let request!: Span;
      const lease = await t.tracer.startActiveSpan('job', async (span) => {
        request = span;
        const l = await reportJob(p);
        span.end();
        return l;
      });
      await env.clock.tickAsync(2000);
      const [leak] = t.spans('poolwatch.leak');
      assert.equal(leak!.parentSpanContext!.spanId, request.spanContext().spanId);
      assert.deepEqual(leak!.links, []);
      lease.release();
    });

    it('is a root without any trace, and is off under leakSpans: false', async () => {
      const t = setup();
      const p = pool();
      const lease = await reportJob(p); // no active span: the hold span is a root of its own
      await env.clock.tickAsync(2000);
      const [leak] = t.spans('poolwatch.leak');
      lease.release();
      const [hold] = t.spans('poolwatch.hold');
      assert.equal(leak!.parentSpanContext!.spanId, id(hold!), 'in the hold span’s trace');

      await telemetry!.shutdown();
      const quiet = setup({ leakSpans: false });
      const other = await reportJob(pool({ name: 'quiet' }));
      await env.clock.tickAsync(2000);
      assert.deepEqual(quiet.spans('poolwatch.leak'), []);
      assert.equal(quiet.logs().length, 1, 'the log record stays');
      other.release();
    });
  });

  describe('metrics', () => {
    it('gauges the oldest hold, and counts and gauges leaks by code location', async () => {
      const t = setup();
      const p = pool();
      const P = { 'db.client.connection.pool.name': 'orders' };
      let metrics = await t.metrics();
      assert.deepEqual(points(metrics.get('poolwatch.hold.oldest_age')), [[P, 0]]);
      assert.equal(metrics.has('poolwatch.code_location.leaks.suspected'), false);

      const a = await checkoutHandler(p);
      await env.clock.tickAsync(1500);
      const b = await reportJob(p);
      const c = await reportJob(p);
      await env.clock.tickAsync(1000); // a: 2.5 s (suspected at 2 s), b and c: 1 s
      metrics = await t.metrics();
      assert.deepEqual(points(metrics.get('poolwatch.hold.oldest_age')), [[P, 2.5]]);
      assert.deepEqual(points(metrics.get('poolwatch.code_location.leaks.suspected')), [
        [{ ...P, ...CHECKOUT }, 1],
      ]);
      await env.clock.tickAsync(1500); // b and c suspected at the 4 s tick
      a.release();
      metrics = await t.metrics();
      assert.deepEqual(points(metrics.get('poolwatch.hold.oldest_age')), [[P, 2.5]]);
      // A location whose suspects are gone says 0, not its last value.
      assert.deepEqual(points(metrics.get('poolwatch.code_location.leaks.suspected')), [
        [{ ...P, ...CHECKOUT }, 0],
        [{ ...P, ...REPORT }, 2],
      ]);
      assert.deepEqual(points(metrics.get('poolwatch.code_location.leaks')), [
        [{ ...P, ...CHECKOUT, 'poolwatch.leak.kind': 'suspected' }, 1],
        [{ ...P, ...REPORT, 'poolwatch.leak.kind': 'suspected' }, 2],
      ]);
      b.release();
      c.release();
    });

    it('bounds the code locations per pool: the rest are "other", no stack is "unknown"', async () => {
      const t = setup({ maxCodeLocationsPerPool: 1 });
      const p = pool();
      const blind = pool({ name: 'blind', captureStacks: 'never' });
      const leases = [await checkoutHandler(p), await reportJob(p), await auditJob(p)];
      leases.push(await blind.acquire());
      await env.clock.tickAsync(2000);
      const metrics = await t.metrics();
      const P = { 'db.client.connection.pool.name': 'orders' };
      assert.deepEqual(points(metrics.get('poolwatch.code_location.leaks')), [
        [
          {
            'db.client.connection.pool.name': 'blind',
            'code.file.path': 'unknown',
            'poolwatch.leak.kind': 'suspected',
          },
          1,
        ],
        [{ ...P, 'code.file.path': 'other', 'poolwatch.leak.kind': 'suspected' }, 2],
        [{ ...P, ...CHECKOUT, 'poolwatch.leak.kind': 'suspected' }, 1],
      ]);
      assert.deepEqual(points(metrics.get('poolwatch.code_location.leaks.suspected')), [
        [{ 'db.client.connection.pool.name': 'blind', 'code.file.path': 'unknown' }, 1],
        [{ ...P, 'code.file.path': 'other' }, 2],
        [{ ...P, ...CHECKOUT }, 1],
      ]);
      for (const lease of leases) lease.release();
      assert.throws(() => new PoolInstrumentation({ enabled: false, maxCodeLocationsPerPool: 0 }), {
        name: 'InvalidOptionError',
        message:
          'PoolInstrumentation: maxCodeLocationsPerPool must be a whole number >= 1, got 0. ' +
          'It bounds the code.* series per pool; use a small number such as 20.',
      });
      assert.throws(
        () => new PoolInstrumentation({ enabled: false, maxCodeLocationsPerPool: 2.5 }),
        InvalidOptionError,
      );
    });

    it('reports a closed pool one last time as 0, and then never as more', async () => {
      const t = setup();
      const open = pool({ name: 'open' });
      const closed = pool({ name: 'closed' });
      const held = await reportJob(closed);
      const kept = await open.acquire();
      await env.clock.tickAsync(2000); // both suspected
      kept.release();
      const gauges = [
        'db.client.connection.count',
        'db.client.connection.idle.max',
        'db.client.connection.idle.min',
        'db.client.connection.max',
        'db.client.connection.pending_requests',
        'poolwatch.leaks.suspected',
        'poolwatch.hold.oldest_age',
        'poolwatch.code_location.leaks.suspected',
      ];
      const closedValues = async () => {
        const metrics = await t.metrics();
        return gauges.map((name) => [
          name,
          points<number>(metrics.get(name))
            .filter(([a]) => a['db.client.connection.pool.name'] === 'closed')
            .map(([, v]) => v),
        ]);
      };
      assert.deepEqual(await closedValues(), [
        ['db.client.connection.count', [0, 1]],
        ['db.client.connection.idle.max', [10]],
        ['db.client.connection.idle.min', [0]],
        ['db.client.connection.max', [10]],
        ['db.client.connection.pending_requests', [0]],
        ['poolwatch.leaks.suspected', [1]],
        ['poolwatch.hold.oldest_age', [2]],
        ['poolwatch.code_location.leaks.suspected', [1]],
      ]);
      const closing = closed.close();
      await env.clock.tickAsync(10_000); // closeTimeoutMillis: the held lease is taken back
      await closing;
      assert.equal(held.active, false);
      const zeros = gauges.map((name) => [
        name,
        name === 'db.client.connection.count' ? [0, 0] : [0],
      ]);
      assert.deepEqual(await closedValues(), zeros, 'the final 0');
      assert.deepEqual(await closedValues(), zeros, 'and 0 from then on (the SDK repeats it)');
      const metrics = await t.metrics();
      assert.deepEqual(
        points(metrics.get('db.client.connection.count')).filter(
          ([a]) => a['db.client.connection.pool.name'] === 'open',
        ),
        [
          [{ 'db.client.connection.pool.name': 'open', 'db.client.connection.state': 'idle' }, 1],
          [{ 'db.client.connection.pool.name': 'open', 'db.client.connection.state': 'used' }, 0],
        ],
      );

      // A new pool with the closed one's name reports its own values, not the zeros.
      const again = pool({ name: 'closed' });
      const lease = await again.acquire();
      assert.deepEqual((await closedValues())[0], ['db.client.connection.count', [0, 1]]);
      lease.release();
    });

    it('warns once, through diag, when auto-numbered pool names are exported', async () => {
      const logger = {
        error: sinon.spy(),
        warn: sinon.spy(),
        info: sinon.spy(),
        debug: sinon.spy(),
        verbose: sinon.spy(),
      };
      diag.setLogger(logger, DiagLogLevel.WARN);
      const t = setup();
      const named = pool({ name: 'named' });
      await t.metrics();
      assert.equal(logger.warn.callCount, 0);
      const unnamed = new Pool({ factory: plainFactory() });
      env.open.push(unnamed);
      const second = new Pool({ factory: plainFactory() });
      env.open.push(second);
      await t.metrics();
      await t.metrics();
      const warnings = logger.warn.getCalls().map((c) => c.args.join(' '));
      assert.deepEqual(warnings, [
        `poolwatch pool "${unnamed.name}" has an auto-numbered name: ` +
          'its metric series change with creation order and across restarts. Name every pool ' +
          '(the pool option name, or pgPool.poolName).',
      ]);
      assert.match(unnamed.name, /^poolwatch-\d+$/);
      void named;
    });
  });
});

describe('PoolInstrumentation: the leak span of a collected lease (real garbage collection)', () => {
  let telemetry: Telemetry | undefined;
  afterEach(async () => {
    await telemetry?.shutdown();
  });

  async function dropALease(p: Pool<FakeResource>): Promise<void> {
    await p.acquire(); // dropped: never released, unreachable once this returns
  }

  it('records the finding under the hold span, which ends collected', async function () {
    if (typeof global.gc !== 'function') this.skip();
    const t = (telemetry = new Telemetry());
    const p = new Pool({
      factory: plainFactory(),
      name: `gc-leak-${process.pid}`,
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
      const [request, leak, hold] = t.spans();
      assert.deepEqual(
        [request!.name, leak!.name, hold!.name],
        ['request', 'poolwatch.leak', 'poolwatch.hold'],
      );
      assert.equal(leak!.parentSpanContext!.spanId, hold!.spanContext().spanId);
      assert.equal(hold!.parentSpanContext!.spanId, request!.spanContext().spanId);
      assert.equal(hold!.attributes['poolwatch.hold.outcome'], 'collected');
      assert.deepEqual(
        [
          leak!.attributes['poolwatch.leak.kind'],
          leak!.attributes['code.function.name'],
          leak!.status.code,
        ],
        ['collected', 'dropALease', SpanStatusCode.ERROR],
      );
    } finally {
      await p.close();
    }
  });
});
