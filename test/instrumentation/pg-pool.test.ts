import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { diag, DiagLogLevel } from '@opentelemetry/api';
import {
  InstrumentationBase,
  InstrumentationNodeModuleDefinition,
  isWrapped,
} from '@opentelemetry/instrumentation';
import type { MetricData } from '@opentelemetry/sdk-metrics';
import type * as PgModule from 'pg';
import sinon from 'sinon';
import {
  InvalidOptionError,
  openPools,
  PoolInstrumentation,
  type PoolInstrumentationConfig,
  type PoolRef,
} from '../../src';
import { pgPoolServerInfo } from '../../src/adapters/pg-pool';
import { getPostgres, type PgConfig } from '../support/postgres';
import { ensureBuilt, ROOT } from './built';
import { points, Telemetry } from './telemetry';

type PgPoolClass = typeof PgModule.Pool;

/**
 * `require` that goes through `Module.prototype.require`, where require-in-the-middle hooks: the
 * first `require('pg-pool')` after an instrumentation is enabled applies its patch (under mocha
 * each instrumentation has its own hook, with its own cache).
 */
const load = createRequire(__filename);

/** What register-pg.cjs prints. */
interface Output {
  duringLeak: Metrics;
  atExit: Metrics;
  spans: {
    name: string;
    scope: string;
    spanId: string;
    parentSpanId?: string;
    attributes: Record<string, unknown>;
    events: { name: string; attributes: Record<string, unknown> }[];
  }[];
  logs: {
    eventName: string;
    severityText: string;
    body: string;
    attributes: Record<string, unknown>;
    spanId?: string;
  }[];
}
type Metrics = Record<string, { unit: string; points: { attributes: object; value: unknown }[] }>;
interface HistogramValue {
  count: number;
  min: number;
  max: number;
}

const WORKLOAD = join(ROOT, 'test', 'fixtures', 'pg-workload.cjs');
const HOLD_MILLIS = (load(WORKLOAD) as { HOLD_MILLIS: number }).HOLD_MILLIS;
/** The line of the checkout the workload holds too long. */
const LEAK_LINE =
  readFileSync(WORKLOAD, 'utf8')
    .split('\n')
    .findIndex((line) => line.includes('LEAK-SITE')) + 1;

function poolName(config: PgConfig): string {
  return `${config.host}:${config.port}/${config.database}`;
}

const VARIANTS = [
  {
    title: 'a CommonJS application, instrumentation registered with --require',
    args: ['--require', './test/fixtures/register-pg.cjs', 'test/fixtures/pg-app.cjs'],
  },
  {
    title: 'an ES-module application, instrumentation registered with --import',
    args: ['--import', './test/fixtures/register-pg.mjs', 'test/fixtures/pg-app.mjs'],
  },
];

describe('PoolInstrumentation: existing pg.Pool pools', () => {
  for (const variant of VARIANTS) {
    describe(`an unmodified pg application: ${variant.title} (child process, built package)`, () => {
      let output: Output;
      let stdout: string;
      let stderr: string;
      let config: PgConfig;
      let connectionString: string;
      let base: string;

      before(async function () {
        this.timeout(120_000);
        ensureBuilt();
        const server = await getPostgres();
        config = server.config;
        connectionString = server.connectionString;
        base = poolName(config);
        ({ stdout, stderr } = await promisify(execFile)(process.execPath, variant.args, {
          cwd: ROOT,
          // NODE_OPTIONS emptied: the child must not inherit tsx from the test runner.
          env: { ...process.env, NODE_OPTIONS: '', DATABASE_URL: connectionString },
          timeout: 60_000,
        }));
        output = JSON.parse(stdout) as Output;
      });

      function span(name: string) {
        const found = output.spans.filter((s) => s.name === name);
        assert.equal(found.length, 1, `one ${name} span`);
        return found[0]!;
      }

      it('records a hold span per checkout, under the span that called query() or connect()', () => {
        const requestA = span('request-a');
        const requestB = span('request-b');
        const holds = output.spans.filter((s) => s.name === 'poolwatch.hold');
        assert.deepEqual(
          holds.map((h) => [h.parentSpanId, h.attributes['db.client.connection.pool.name']]).sort(),
          [
            [requestA.spanId, base],
            [requestA.spanId, base],
            [requestA.spanId, base],
            [requestB.spanId, `${base}#2`],
            [requestB.spanId, `${base}#2`],
          ].sort(),
        );
        for (const hold of holds) {
          assert.equal(hold.scope, 'poolwatch');
          assert.deepEqual(
            {
              system: hold.attributes['db.system.name'],
              address: hold.attributes['server.address'],
              port: hold.attributes['server.port'],
              namespace: hold.attributes['db.namespace'],
              outcome: hold.attributes['poolwatch.hold.outcome'],
            },
            {
              system: 'postgresql',
              address: config.host,
              port: config.port,
              namespace: config.database,
              outcome: 'released',
            },
          );
        }
      });

      it('reports each pool separately, as they are while the leak is suspected', () => {
        const during = output.duringLeak;
        const byPool = (name: string) =>
          during[name]!.points.map((p) => [p.attributes, p.value]).sort((a, b) =>
            JSON.stringify(a[0]).localeCompare(JSON.stringify(b[0])),
          );
        const pool = (name: string, extra: object = {}) => ({
          'db.client.connection.pool.name': name,
          ...extra,
        });
        const idle = { 'db.client.connection.state': 'idle' };
        const used = { 'db.client.connection.state': 'used' };
        // "orders" ran two queries at once (two connections, idle again); "reports" has its one
        // connection held past the threshold and a query waiting for it.
        assert.deepEqual(byPool('db.client.connection.count'), [
          [pool(base, idle), 2],
          [pool(base, used), 0],
          [pool(`${base}#2`, idle), 0],
          [pool(`${base}#2`, used), 1],
        ]);
        assert.deepEqual(byPool('db.client.connection.max'), [
          [pool(base), 3],
          [pool(`${base}#2`), 1],
        ]);
        assert.deepEqual(byPool('db.client.connection.idle.max'), [
          [pool(base), 3],
          [pool(`${base}#2`), 1],
        ]);
        assert.deepEqual(byPool('db.client.connection.idle.min'), [
          [pool(base), 0],
          [pool(`${base}#2`), 0],
        ]);
        assert.deepEqual(byPool('db.client.connection.pending_requests'), [
          [pool(base), 0],
          [pool(`${base}#2`), 1],
        ]);
        assert.deepEqual(byPool('poolwatch.leaks.suspected'), [
          [pool(base), 0],
          [pool(`${base}#2`), 1],
        ]);
      });

      it('records waits and uses per pool, in seconds', () => {
        const histogram = (metric: string, name: string) => {
          const m = output.atExit[metric]!;
          assert.equal(m.unit, 's');
          const point = m.points.find(
            (p) =>
              (p.attributes as Record<string, unknown>)['db.client.connection.pool.name'] === name,
          );
          return point!.value as HistogramValue;
        };
        assert.equal(histogram('db.client.connection.wait_time', base).count, 3);
        assert.equal(histogram('db.client.connection.use_time', base).count, 3);
        const waits = histogram('db.client.connection.wait_time', `${base}#2`);
        const uses = histogram('db.client.connection.use_time', `${base}#2`);
        assert.equal(waits.count, 2);
        assert.equal(uses.count, 2);
        // The held checkout, and the query that waited for it.
        assert.ok(uses.max >= HOLD_MILLIS / 1000, `use_time max ${uses.max}`);
        assert.ok(waits.max >= (HOLD_MILLIS / 1000) * 0.75, `wait_time max ${waits.max}`);
        assert.deepEqual(output.atExit['poolwatch.leaks']!.points, [
          {
            attributes: {
              'db.client.connection.pool.name': `${base}#2`,
              'poolwatch.leak.kind': 'suspected',
            },
            value: 1,
          },
        ]);
      });

      it("logs the suspected leak with the stack of the application's checkout", () => {
        const held = output.spans.find((s) => s.events.length > 0)!;
        assert.deepEqual(
          held.events.map((e) => e.name),
          ['poolwatch.leak.suspected', 'poolwatch.leak.returned'],
        );
        assert.deepEqual(
          output.logs.map((l) => [l.eventName, l.severityText, l.spanId]),
          [
            ['poolwatch.leak.suspected', 'WARN', held.spanId],
            ['poolwatch.leak.returned', 'INFO', held.spanId],
          ],
        );
        const [suspected] = output.logs;
        assert.equal(suspected!.attributes['db.client.connection.pool.name'], `${base}#2`);
        assert.equal(
          suspected!.attributes['poolwatch.lease.id'],
          held.attributes['poolwatch.lease.id'],
        );
        const stack = suspected!.attributes['code.stacktrace'] as string;
        assert.match(stack.split('\n')[0]!, new RegExp(`pg-workload\\.cjs:${LEAK_LINE}:\\d+\\)?$`));
        assert.match(
          suspected!.body,
          /^Possible leak: lease #\d+ of pool ".*#2" held for 0\.\d s, acquired at:\n/,
        );
        assert.ok(suspected!.body.includes(`pg-workload.cjs:${LEAK_LINE}:`));
      });

      it('never reports credentials', () => {
        const everything = stdout + stderr;
        assert.equal(stderr, '');
        assert.ok(!everything.includes(connectionString), 'the connection string leaked');
        if (config.password !== '') {
          for (const secret of [config.password, encodeURIComponent(config.password)]) {
            assert.ok(!everything.includes(secret), 'the password leaked');
          }
        }
        // The user name is no attribute value anywhere.
        const values = [
          ...output.spans.flatMap((s) => Object.values(s.attributes)),
          ...output.logs.flatMap((l) => Object.values(l.attributes)),
          ...Object.values(output.atExit).flatMap((m) =>
            m.points.flatMap((p) => Object.values(p.attributes)),
          ),
        ];
        assert.ok(!values.includes(config.user));
      });
    });
  }

  describe('in process', () => {
    let pg: typeof PgModule;
    let PgPool: PgPoolClass;
    let pristine: { connect: unknown; end: unknown };
    let config: PgConfig;
    let base: string;
    let telemetry: Telemetry | undefined;
    const pools: PgModule.Pool[] = [];
    const extra: InstrumentationBase[] = [];

    before(async function () {
      this.timeout(120_000);
      config = (await getPostgres()).config;
      base = poolName(config);
      pg = load('pg') as typeof PgModule;
      PgPool = load('pg-pool') as PgPoolClass;
      pristine = { connect: PgPool.prototype.connect, end: PgPool.prototype.end };
    });

    afterEach(async () => {
      await Promise.all(pools.splice(0).map((p) => (p.ending ? undefined : p.end())));
      await telemetry?.shutdown();
      telemetry = undefined;
      for (const instrumentation of extra.splice(0)) instrumentation.disable();
      sinon.restore();
      diag.disable();
      assert.equal(PgPool.prototype.connect, pristine.connect, 'a test left pg-pool patched');
      assert.equal(PgPool.prototype.end, pristine.end, 'a test left pg-pool patched');
    });

    /** A new instrumentation, and the `require('pg-pool')` that applies its patch. */
    function instrument(pgPool: PoolInstrumentationConfig['pgPool'] = {}): Telemetry {
      telemetry = new Telemetry({ pgPool });
      load('pg-pool');
      return telemetry;
    }

    function pool(options: PgModule.PoolConfig = {}): PgModule.Pool {
      const p = new pg.Pool({ ...config, ...options });
      pools.push(p);
      return p;
    }

    function pgRefs(): PoolRef[] {
      return [...openPools].filter((p) => p.server?.system === 'postgresql');
    }

    function holds(t: Telemetry) {
      return t.spans('poolwatch.hold').map((s) => ({
        pool: s.attributes['db.client.connection.pool.name'],
        outcome: s.attributes['poolwatch.hold.outcome'],
      }));
    }

    function valueOf(metric: MetricData | undefined, name: string): unknown {
      return points(metric).find(([a]) => a['db.client.connection.pool.name'] === name)?.[1];
    }

    describe('patching', () => {
      it('wraps connect() and end() once, however often it is enabled or patched', async () => {
        const t = instrument();
        const wrapped = PgPool.prototype.connect;
        assert.notEqual(wrapped, pristine.connect);
        assert.notEqual(PgPool.prototype.end, pristine.end);
        assert.equal(isWrapped(wrapped), false, 'no shimmer marks (see pg-pool.ts)');

        t.instrumentation.enable();
        const [definition] = t.instrumentation.getModuleDefinitions();
        assert.equal(definition!.name, 'pg-pool');
        assert.deepEqual(definition!.supportedVersions, ['>=2 <4']);
        definition!.patch!(PgPool, '3.14.0');
        definition!.patch!(PgPool, '3.14.0');
        assert.equal(PgPool.prototype.connect, wrapped);

        const p = pool();
        await p.query('SELECT 1');
        await p.query('SELECT 1');
        assert.deepEqual(holds(t), [
          { pool: base, outcome: 'released' },
          { pool: base, outcome: 'released' },
        ]);
        assert.equal(p.listenerCount('release'), 1);
      });

      it('disable() restores the methods, stops observing and takes the pools out of openPools', async () => {
        const clock = sinon.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
        const t = instrument({ leakDetectionThresholdMillis: 1000 });
        const p = pool();
        await p.query('SELECT 1');
        assert.deepEqual(
          pgRefs().map((r) => r.name),
          [base],
        );
        assert.equal(clock.countTimers(), 1, "the pool's leak check");
        const client = await p.connect();

        t.instrumentation.disable();
        assert.equal(PgPool.prototype.connect, pristine.connect);
        assert.equal(PgPool.prototype.end, pristine.end);
        assert.deepEqual(pgRefs(), []);
        assert.equal(p.listenerCount('release'), 0);
        assert.equal(clock.countTimers(), 0);

        client.release();
        await p.query('SELECT 1');
        // Only the first query's hold: the one open at disable() gets no end, later ones no span.
        assert.deepEqual(holds(t), [{ pool: base, outcome: 'released' }]);
        assert.deepEqual(t.logs(), []);
        const metrics = await t.metrics();
        assert.equal(metrics.get('db.client.connection.count'), undefined);
      });

      it('enable() after disable() patches again, and the pools come back', async () => {
        const t = instrument();
        const p = pool();
        await p.query('SELECT 1');
        t.instrumentation.disable();
        await p.query('SELECT 1');
        t.instrumentation.enable();
        assert.notEqual(PgPool.prototype.connect, pristine.connect);
        await p.query('SELECT 1');
        assert.deepEqual(
          pgRefs().map((r) => r.name),
          [base],
        );
        assert.deepEqual(holds(t), [
          { pool: base, outcome: 'released' },
          { pool: base, outcome: 'released' },
        ]);
        const metrics = await t.metrics();
        assert.equal(valueOf(metrics.get('db.client.connection.max'), base), 10);
      });

      it('leaves pg-pool alone with pgPool: false', () => {
        instrument(false);
        assert.equal(PgPool.prototype.connect, pristine.connect);
      });

      it('keeps a shimmer wrapper of instrumentation-pg, above or below its own', async () => {
        // What @opentelemetry/instrumentation-pg does to the same method.
        class ShimmerLike extends InstrumentationBase {
          calls = 0;
          constructor() {
            super('shimmer-like', '1.0.0', {});
          }
          protected init() {
            const count = () => this.calls++;
            const wrap = (original: (...args: unknown[]) => unknown) =>
              function (this: unknown, ...args: unknown[]) {
                count();
                return original.apply(this, args);
              };
            return [
              new InstrumentationNodeModuleDefinition(
                'pg-pool',
                ['>=2 <4'],
                (exports: PgPoolClass) => {
                  if (isWrapped(exports.prototype.connect)) {
                    this._unwrap(exports.prototype, 'connect');
                  }
                  this._wrap(exports.prototype, 'connect', wrap as never);
                  return exports;
                },
                (exports: PgPoolClass) => {
                  if (isWrapped(exports.prototype.connect)) {
                    this._unwrap(exports.prototype, 'connect');
                  }
                },
              ),
            ];
          }
        }

        // Ours first, theirs above it (the older hook patches first).
        telemetry = new Telemetry();
        const shimmer = new ShimmerLike();
        extra.push(shimmer);
        load('pg-pool');
        const p = pool();
        await p.query('SELECT 1');
        assert.equal(shimmer.calls, 1);
        assert.equal(telemetry.spans('poolwatch.hold').length, 1);
        // Ours, under theirs, becomes a pass-through, and comes back without a second layer.
        telemetry.instrumentation.disable();
        await p.query('SELECT 1');
        telemetry.instrumentation.enable();
        await p.query('SELECT 1');
        assert.equal(shimmer.calls, 3);
        assert.equal(telemetry.spans('poolwatch.hold').length, 2);
        shimmer.disable();
        await p.query('SELECT 1');
        assert.equal(telemetry.spans('poolwatch.hold').length, 3);
        await telemetry.shutdown();
        telemetry = undefined;

        // Theirs first, ours above it.
        const shimmer2 = new ShimmerLike();
        extra.push(shimmer2);
        instrument();
        await p.query('SELECT 1');
        assert.equal(shimmer2.calls, 1);
        assert.equal(telemetry!.spans('poolwatch.hold').length, 1);
        await telemetry!.shutdown();
        telemetry = undefined;
        await p.query('SELECT 1');
        assert.equal(shimmer2.calls, 2);
        shimmer2.disable();
      });
    });

    describe('checkouts', () => {
      it('follows the callback, promise and query() forms, and release(error)', async () => {
        const t = instrument();
        const p = pool({ max: 2 });
        await p.query('SELECT 1');
        const client = await p.connect();
        client.release(new Error('broken connection'));
        await new Promise<void>((resolve, reject) => {
          p.connect((error, c, done) => {
            if (error) return reject(error);
            c!.query('SELECT 1', (queryError) => {
              done(queryError);
              resolve();
            });
          });
        });
        assert.deepEqual(holds(t), [
          { pool: base, outcome: 'released' },
          { pool: base, outcome: 'destroyed' },
          { pool: base, outcome: 'released' },
        ]);
        const spans = t.spans('poolwatch.hold');
        assert.ok(spans.every((s) => s.attributes['poolwatch.lease.id'] !== undefined));
        // The query's client went out again (LIFO) and was destroyed: the last checkout got a new one.
        const clients = spans.map((s) => s.attributes['poolwatch.resource.id']);
        assert.equal(clients[0], clients[1]);
        assert.notEqual(clients[1], clients[2]);
      });

      it("keeps pg-pool's double-release error, and ends the hold once", async () => {
        const t = instrument();
        const p = pool();
        const client = await p.connect();
        client.release();
        assert.throws(() => client.release(), {
          message: 'Release called on client which has already been released to the pool.',
        });
        assert.equal(holds(t).length, 1);
      });

      it('with pg-pool before 3.6 (no release event), wraps the release pg-pool sets per checkout', async () => {
        const t = instrument();
        const [definition] = t.instrumentation.getModuleDefinitions();
        definition!.unpatch!(PgPool);
        definition!.patch!(PgPool, '3.5.2');
        const p = pool({ max: 2 });
        await p.query('SELECT 1');
        const client = await p.connect();
        client.release(true as never);
        await new Promise<void>((resolve, reject) => {
          p.connect((error, _client, done) => {
            if (error) return reject(error);
            done();
            assert.throws(() => done(), /already been released/);
            resolve();
          });
        });
        assert.equal(p.listenerCount('release'), 0);
        assert.deepEqual(holds(t), [
          { pool: base, outcome: 'released' },
          { pool: base, outcome: 'destroyed' },
          { pool: base, outcome: 'released' },
        ]);
      });

      it('counts connect timeouts and passes the error on unchanged', async () => {
        const t = instrument();
        const p = pool({ max: 1, connectionTimeoutMillis: 250 });
        const client = await p.connect();
        await assert.rejects(p.connect(), { message: 'timeout exceeded when trying to connect' });
        client.release();
        const metrics = await t.metrics();
        assert.equal(valueOf(metrics.get('db.client.connection.timeouts'), base), 1);
        assert.equal(
          (valueOf(metrics.get('db.client.connection.wait_time'), base) as HistogramValue).count,
          1,
        );
      });

      it('passes a failed connect on as the same rejection', async () => {
        instrument();
        const p = pool({ host: '127.0.0.1', port: 1 });
        const failure = await p.connect().then(
          () => assert.fail('connected to port 1'),
          (error: unknown) => error,
        );
        assert.equal((failure as { code?: string }).code, 'ECONNREFUSED');
      });
    });

    describe('leak detection', () => {
      it('reports each checkout held past the threshold once, from one timer per pool', async () => {
        const clock = sinon.useFakeTimers({
          toFake: ['setInterval', 'clearInterval', 'performance'],
        });
        const t = instrument({ leakDetectionThresholdMillis: 1000, captureStacks: 'always' });
        const p = pool({ max: 3 });
        const clients = await Promise.all([p.connect(), p.connect(), p.connect()]);
        assert.equal(clock.countTimers(), 1);

        clock.tick(999);
        assert.deepEqual(t.logs(), []);
        clock.tick(250);
        assert.deepEqual(
          t.logs().map((l) => l.eventName),
          Array(3).fill('poolwatch.leak.suspected'),
        );
        clock.tick(10_000);
        assert.equal(t.logs().length, 3);
        const stack = t.logs()[0]!.attributes['code.stacktrace'] as string;
        assert.match(stack.split('\n')[0]!, /pg-pool\.test\.ts:\d+:\d+\)?$/);

        clients[0]!.release();
        assert.deepEqual(t.logs()[3]!.eventName, 'poolwatch.leak.returned');
        let metrics = await t.metrics();
        assert.equal(valueOf(metrics.get('poolwatch.leaks.suspected'), base), 2);
        for (const c of clients.slice(1)) c.release();
        metrics = await t.metrics();
        assert.equal(valueOf(metrics.get('poolwatch.leaks.suspected'), base), 0);
        assert.deepEqual(points(metrics.get('poolwatch.leaks')), [
          [{ 'db.client.connection.pool.name': base, 'poolwatch.leak.kind': 'suspected' }, 3],
        ]);
        assert.deepEqual(
          t.spans('poolwatch.hold').map((s) => s.events.map((e) => e.name)),
          Array(3).fill(['poolwatch.leak.suspected', 'poolwatch.leak.returned']),
        );
      });

      it("shows pool.query()'s caller, not pg-pool, as the first frame", async () => {
        const clock = sinon.useFakeTimers({
          toFake: ['setInterval', 'clearInterval', 'performance'],
        });
        const t = instrument({ leakDetectionThresholdMillis: 100, captureStacks: 'always' });
        const p = pool({ max: 1 });
        await p.query('SELECT 1'); // an idle client: the next checkout is made on the next tick
        const slow = p.query('SELECT pg_sleep(0.1)');
        await new Promise((resolve) => setImmediate(resolve));
        clock.tick(200);
        await slow;
        const suspected = t.logs().find((l) => l.eventName === 'poolwatch.leak.suspected');
        assert.ok(suspected, 'the slow query was suspected');
        const first = (suspected.attributes['code.stacktrace'] as string).split('\n')[0]!;
        assert.match(first, /pg-pool\.test\.ts:\d+:\d+\)?$/);
      });

      it('captures no stack with leak detection off, and arms no timer', async () => {
        const clock = sinon.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
        const t = instrument({ leakDetectionThresholdMillis: 0 });
        const p = pool();
        await p.query('SELECT 1');
        assert.equal(clock.countTimers(), 0);
        assert.equal(holds(t).length, 1);
      });
    });

    describe('names and server', () => {
      it('names pools address:port/database, with #2 for a second one, reused once it ends', async () => {
        instrument();
        const first = pool();
        const second = pool();
        await first.query('SELECT 1');
        await second.query('SELECT 1');
        assert.deepEqual(
          pgRefs().map((r) => r.name),
          [base, `${base}#2`],
        );
        await first.end();
        assert.deepEqual(
          pgRefs().map((r) => r.name),
          [`${base}#2`],
        );
        const third = pool();
        await third.query('SELECT 1');
        assert.deepEqual(
          pgRefs()
            .map((r) => r.name)
            .sort(),
          [base, `${base}#2`].sort(),
        );
      });

      it('takes names from pgPool.poolName, and falls back when it throws', async () => {
        const errors = sinon.spy();
        const ignore = () => {};
        diag.setLogger(
          { error: errors, warn: ignore, info: ignore, debug: ignore, verbose: ignore },
          DiagLogLevel.ERROR,
        );
        instrument({
          poolName: ({ options, server }) => {
            if (options.application_name === 'broken') throw new Error('no name');
            return typeof options.application_name === 'string'
              ? `${options.application_name}@${server.namespace}`
              : undefined;
          },
        });
        const named = [pool({ application_name: 'orders' }), pool({ application_name: 'orders' })];
        const unnamed = pool();
        const broken = pool({ application_name: 'broken' });
        for (const p of [...named, unnamed, broken]) await p.query('SELECT 1');
        assert.deepEqual(
          pgRefs().map((r) => r.name),
          [`orders@${config.database}`, `orders@${config.database}#2`, base, `${base}#2`],
        );
        assert.equal(errors.callCount, 1);
      });

      it('reads address, port and database, never the user or password', () => {
        const info = pgPoolServerInfo({
          connectionString: 'postgres://alice:s3cret@db.example:6543/shop?sslmode=require',
          user: 'alice',
          password: 's3cret',
        });
        assert.deepEqual(info, {
          system: 'postgresql',
          address: 'db.example',
          port: 6543,
          namespace: 'shop',
        });
        assert.deepEqual(
          pgPoolServerInfo({ connectionString: 'postgres://u:p@/shop?host=/var/run/postgresql' }),
          { system: 'postgresql', address: '/var/run/postgresql', port: 5432, namespace: 'shop' },
        );
        assert.deepEqual(pgPoolServerInfo({ connectionString: 'postgres://u:p@[::1]:5433/db' }), {
          system: 'postgresql',
          address: '::1',
          port: 5433,
          namespace: 'db',
        });
        assert.deepEqual(pgPoolServerInfo({ host: 'h', port: '5433', database: 'd' }), {
          system: 'postgresql',
          address: 'h',
          port: 5433,
          namespace: 'd',
        });
      });

      it('falls back to PGHOST, PGPORT, PGDATABASE and pg defaults, never to the user name', () => {
        const saved = { ...process.env };
        try {
          delete process.env.PGHOST;
          delete process.env.PGPORT;
          delete process.env.PGDATABASE;
          assert.deepEqual(pgPoolServerInfo({ user: 'alice' }), {
            system: 'postgresql',
            address: 'localhost',
            port: 5432,
          });
          Object.assign(process.env, { PGHOST: 'envhost', PGPORT: '6000', PGDATABASE: 'envdb' });
          assert.deepEqual(pgPoolServerInfo({ connectionString: 'not a url' }), {
            system: 'postgresql',
            address: 'envhost',
            port: 6000,
            namespace: 'envdb',
          });
        } finally {
          for (const key of ['PGHOST', 'PGPORT', 'PGDATABASE']) {
            if (saved[key] === undefined) delete process.env[key];
            else process.env[key] = saved[key];
          }
        }
      });
    });

    describe('options', () => {
      const invalid: [unknown, RegExp][] = [
        ['yes', /^Option "pgPool" must be an object or false, got "yes"\.$/],
        [{ leakThreshold: 5 }, /^Unknown pgPool option "leakThreshold"\. Known options: /],
        [
          { leakDetectionThresholdMillis: -1 },
          /"pgPool\.leakDetectionThresholdMillis" .* got -1\.$/,
        ],
        [{ leakDetectionThresholdMillis: Infinity }, /got Infinity\.$/],
        [{ captureStacks: 'sometimes' }, /"pgPool\.captureStacks" must be .* got "sometimes"\.$/],
        [{ captureStacks: { oneIn: 0 } }, /"pgPool\.captureStacks\.oneIn" .* got 0\.$/],
        [{ poolName: 'orders' }, /"pgPool\.poolName" must be a function, got "orders"\.$/],
      ];
      for (const [pgPool, message] of invalid) {
        it(`rejects pgPool: ${JSON.stringify(pgPool) ?? String(pgPool)}`, () => {
          assert.throws(
            () => new PoolInstrumentation({ enabled: false, pgPool: pgPool as never }),
            (error: unknown) =>
              error instanceof InvalidOptionError &&
              error.code === 'POOL_INVALID_OPTION' &&
              message.test(error.message),
          );
        });
      }

      it('accepts every valid form', () => {
        for (const pgPool of [
          undefined,
          false,
          {},
          { leakDetectionThresholdMillis: 0, captureStacks: 'never' },
          { captureStacks: { oneIn: 5 }, poolName: () => 'x' },
        ] as const) {
          new PoolInstrumentation({ enabled: false, pgPool });
        }
      });
    });
  });
});
