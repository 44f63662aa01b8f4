import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { MySQL2Instrumentation } from '@opentelemetry/instrumentation-mysql2';
import { isWrapped } from '@opentelemetry/instrumentation';
import { Kysely, MysqlDialect, sql } from 'kysely';
import type * as Mysql2 from 'mysql2';
import type * as Mysql2Promise from 'mysql2/promise';
import sinon from 'sinon';
import {
  InvalidOptionError,
  openPools,
  PoolInstrumentation,
  type PoolInstrumentationConfig,
} from '../../src';
import { mysqlAvailable, mysqlConfig, type MysqlConfig } from '../support/mysql';
import { points, Telemetry } from './telemetry';

/** `require` through require-in-the-middle: each `load('mysql2')` applies the current patch. */
const load = createRequire(__filename);

/** The line of this file that carries `marker`. */
function lineOf(marker: string): number {
  const text = readFileSync(__filename, 'utf8');
  const index = text.split('\n').findIndex((l) => l.includes(marker) && !l.includes('lineOf('));
  assert.ok(index >= 0, `marker ${marker} not found`);
  return index + 1;
}

type Pool = Mysql2.Pool;
type PoolConnection = Mysql2.PoolConnection;

describe('PoolInstrumentation: mysql2 createPool pools (MariaDB)', () => {
  let mysql: typeof Mysql2;
  let mysqlPromise: typeof Mysql2Promise;
  let config: MysqlConfig;
  let base: string;
  let proto: Record<string, unknown>;
  let pristine: Record<string, unknown>;
  let telemetry: Telemetry | undefined;
  const pools: { end(): unknown }[] = [];
  const METHODS = ['getConnection', 'releaseConnection', 'end'];

  before(async function () {
    if (!(await mysqlAvailable())) this.skip();
    config = mysqlConfig();
    base = `${config.host}:${config.port}/${config.database}`;
    mysql = load('mysql2') as typeof Mysql2;
    mysqlPromise = load('mysql2/promise') as typeof Mysql2Promise;
    // mysql2 exports its Pool class (untyped); the methods live on the base pool under it.
    const Pool = (mysql as unknown as { Pool: { prototype: object } }).Pool;
    proto = Object.getPrototypeOf(Pool.prototype) as Record<string, unknown>;
    assert.equal(typeof Object.getOwnPropertyDescriptor(proto, 'getConnection')?.value, 'function');
    pristine = Object.fromEntries(METHODS.map((m) => [m, proto[m]]));
  });

  afterEach(async () => {
    for (const pool of pools.splice(0)) {
      await new Promise<void>((resolve) => {
        const p = pool as {
          _closed?: boolean;
          pool?: { _closed?: boolean };
          end(cb?: () => void): unknown;
        };
        if (p._closed || p.pool?._closed) return resolve();
        const result = p.end(() => resolve());
        if (result instanceof Promise) void result.then(() => resolve());
      });
    }
    await telemetry?.shutdown();
    telemetry = undefined;
    sinon.restore();
    for (const m of METHODS)
      assert.equal(proto[m], pristine[m], `a test left mysql2 patched (${m})`);
  });

  function instrument(options: PoolInstrumentationConfig['mysql2Pool'] = {}): Telemetry {
    telemetry = new Telemetry({ mysql2Pool: options });
    load('mysql2');
    return telemetry;
  }

  function pool(options: Partial<Mysql2.PoolOptions> = {}): Pool {
    const p = mysql.createPool({ ...config, connectionLimit: 2, ...options });
    pools.push(p);
    return p;
  }

  function promisePool(options: Partial<Mysql2.PoolOptions> = {}): Mysql2Promise.Pool {
    const p = mysqlPromise.createPool({ ...config, connectionLimit: 2, ...options });
    pools.push(p);
    return p;
  }

  function holds(t: Telemetry) {
    return t.spans('poolwatch.hold').map((s) => ({
      pool: s.attributes['db.client.connection.pool.name'],
      outcome: s.attributes['poolwatch.hold.outcome'],
    }));
  }

  function mysqlRefs(): string[] {
    return [...openPools].filter((p) => p.server?.system === 'mysql').map((p) => p.name);
  }

  const callback = <T>(fn: (cb: (error: unknown, value?: T) => void) => void) =>
    new Promise<T>((resolve, reject) =>
      fn((error, value) => (error ? reject(error as Error) : resolve(value as T))),
    );

  describe('checkouts', () => {
    it('follows the callback and promise APIs: getConnection/release, query, execute, destroy', async () => {
      const t = instrument();
      const p = pool();
      const pp = promisePool();
      await t.tracer.startActiveSpan('request', async (span) => {
        await callback((cb) => p.query('SELECT 1', cb));
        await callback((cb) => p.execute('SELECT ?', [2], cb));
        const conn = await callback<PoolConnection>((cb) => p.getConnection(cb));
        await callback((cb) => conn.query('SELECT 3', cb));
        conn.release();
        conn.release(); // mysql2 ignores a second release: one hold
        await pp.query('SELECT 4');
        await pp.execute('SELECT ?', [5]);
        const pconn = await pp.getConnection();
        await pconn.query('SELECT 6');
        pconn.release();
        const doomed = await pp.getConnection();
        doomed.destroy();
        span.end();
      });
      const request = t.spans('request')[0]!.spanContext().spanId;
      const spans = t.spans('poolwatch.hold');
      assert.ok(spans.every((s) => s.parentSpanContext?.spanId === request));
      assert.deepEqual(holds(t), [
        ...Array(3).fill({ pool: base, outcome: 'released' }),
        ...Array(3).fill({ pool: `${base}#2`, outcome: 'released' }),
        { pool: `${base}#2`, outcome: 'destroyed' },
      ]);
      assert.deepEqual(
        {
          system: spans[0]!.attributes['db.system.name'],
          ns: spans[0]!.attributes['db.namespace'],
        },
        { system: 'mysql', ns: config.database },
      );
    });

    it('reports each pool separately: used, idle, pending, max', async () => {
      const t = instrument();
      const a = promisePool({ connectionLimit: 1 });
      const b = promisePool({ connectionLimit: 3 });
      await b.query('SELECT 1');
      const held = await a.getConnection();
      const waiting = a.query('SELECT 2'); // queued behind the held connection
      await new Promise((resolve) => setImmediate(resolve));
      const metrics = await t.metrics();
      const byPool = (name: string) =>
        points(metrics.get(name)).map(([attributes, value]) => [
          attributes['db.client.connection.pool.name'],
          attributes['db.client.connection.state'],
          value,
        ]);
      // b was used first: it has the plain name.
      assert.deepEqual(byPool('db.client.connection.count'), [
        [base, 'idle', 1],
        [base, 'used', 0],
        [`${base}#2`, 'idle', 0],
        [`${base}#2`, 'used', 1],
      ]);
      assert.deepEqual(byPool('db.client.connection.pending_requests'), [
        [base, undefined, 0],
        [`${base}#2`, undefined, 1],
      ]);
      assert.deepEqual(byPool('db.client.connection.max'), [
        [base, undefined, 3],
        [`${base}#2`, undefined, 1],
      ]);
      held.release();
      await waiting;
    });

    it('takes the pool out at end(), ending holds still open as closed', async () => {
      const t = instrument();
      const p = promisePool();
      const conn = await p.getConnection();
      assert.deepEqual(mysqlRefs(), [base]);
      await p.end();
      conn.release();
      assert.deepEqual(mysqlRefs(), []);
      assert.deepEqual(holds(t), [{ pool: base, outcome: 'closed' }]);
    });
  });

  describe('leak detection', () => {
    it('reports a held connection with the line that took it, and its return', async () => {
      const clock = sinon.useFakeTimers({
        toFake: ['setInterval', 'clearInterval', 'performance'],
      });
      const t = instrument({ leakDetectionThresholdMillis: 1000, captureStacks: 'always' });
      const p = promisePool();
      // Two connections open, so that both checkouts below are made from the idle list at once.
      await Promise.all([p.query('SELECT 1'), p.query('SELECT 1')]);
      const conn = await p.getConnection(); // HELD-CONNECTION
      const slow = p.query('SELECT SLEEP(0.3)'); // SLOW-POOL-QUERY
      await new Promise((resolve) => setImmediate(resolve));
      clock.tick(1250);
      const suspected = t.logs().filter((l) => l.eventName === 'poolwatch.leak.suspected');
      const firstFrames = suspected
        .map((l) => String(l.attributes['code.stacktrace']).split('\n')[0]!)
        .map((frame) => /mysql2-pool\.test\.ts:(\d+):/.exec(frame)?.[1])
        .sort();
      assert.deepEqual(
        firstFrames,
        [String(lineOf('HELD-CONNECTION')), String(lineOf('SLOW-POOL-QUERY'))].sort(),
      );
      await slow;
      conn.release();
      assert.deepEqual(
        t.logs().map((l) => l.eventName),
        [
          'poolwatch.leak.suspected',
          'poolwatch.leak.suspected',
          'poolwatch.leak.returned',
          'poolwatch.leak.returned',
        ],
      );
      const report = [...openPools].find((r) => r.name === base)!.leakReport!();
      assert.deepEqual(report.held, []);
      const metrics = await t.metrics();
      assert.deepEqual(points(metrics.get('poolwatch.leaks')), [
        [{ 'db.client.connection.pool.name': base, 'poolwatch.leak.kind': 'suspected' }, 2],
      ]);
    });
  });

  describe('libraries on top', () => {
    it("runs Kysely's MysqlDialect unchanged", async () => {
      const t = instrument();
      const table = `poolwatch_kysely_${process.pid}_${Date.now() % 100_000}`;
      const db = new Kysely<Record<string, { id: number; name: string }>>({
        dialect: new MysqlDialect({ pool: mysql.createPool({ ...config, connectionLimit: 2 }) }),
      });
      try {
        await db.schema
          .createTable(table)
          .addColumn('id', 'integer', (c) => c.primaryKey())
          .addColumn('name', 'varchar(50)')
          .execute();
        await db.insertInto(table).values({ id: 1, name: 'a' }).execute();
        await db.transaction().execute(async (trx) => {
          await trx.insertInto(table).values({ id: 2, name: 'b' }).execute();
        });
        await assert.rejects(
          db.transaction().execute(async (trx) => {
            await trx.insertInto(table).values({ id: 3, name: 'c' }).execute();
            throw new Error('roll back');
          }),
          /roll back/,
        );
        const rows = await db.selectFrom(table).select(['id']).orderBy('id').execute();
        assert.deepEqual(
          rows.map((r) => r.id),
          [1, 2],
        );
        assert.equal(mysqlRefs().length, 1);
      } finally {
        await sql`DROP TABLE IF EXISTS ${sql.table(table)}`.execute(db);
        await db.destroy();
      }
      assert.deepEqual(mysqlRefs(), []);
      // create, insert, two transactions, select, drop: one checkout each.
      assert.deepEqual(holds(t), Array(6).fill({ pool: base, outcome: 'released' }));
    });

    for (const order of ['ours first', 'theirs first']) {
      it(`works beside @opentelemetry/instrumentation-mysql2 (${order})`, async () => {
        let contrib: MySQL2Instrumentation;
        const theirs = () => {
          contrib = new MySQL2Instrumentation();
          contrib.setTracerProvider(telemetry!.tracerProvider);
          load('mysql2');
          // It patches this file (loaded once by mysql2): required again, by path.
          load(join(dirname(load.resolve('mysql2')), 'lib', 'connection.js'));
        };
        if (order === 'theirs first') {
          telemetry = new Telemetry({ mysql2Pool: {} });
          telemetry.instrumentation.disable();
          theirs();
          telemetry.instrumentation.enable();
          load('mysql2');
        } else {
          instrument();
          theirs();
        }
        const t = telemetry!;
        const p = promisePool();
        await t.tracer.startActiveSpan('request', async (span) => {
          await p.query('SELECT 1');
          const conn = await p.getConnection();
          await conn.query('SELECT 2');
          conn.release();
          span.end();
        });
        const request = t.spans('request')[0]!.spanContext().spanId;
        assert.deepEqual(
          t.spans('poolwatch.hold').map((s) => s.parentSpanContext?.spanId),
          [request, request],
        );
        const queries = t
          .spans()
          .filter((s) => s.instrumentationScope.name === '@opentelemetry/instrumentation-mysql2');
        assert.equal(queries.length, 2);
        if (order === 'ours first') {
          contrib!.disable();
          t.instrumentation.disable();
        } else {
          t.instrumentation.disable();
          contrib!.disable();
        }
      });
    }
  });

  describe('patching', () => {
    it('declares mysql2 >=3 <4 and wraps the base pool once, without shimmer marks', async () => {
      const t = instrument();
      const definition = t.instrumentation.getModuleDefinitions().find((d) => d.name === 'mysql2')!;
      assert.deepEqual(definition.supportedVersions, ['>=3 <4']);
      const wrapped = proto.getConnection;
      assert.notEqual(wrapped, pristine.getConnection);
      assert.equal(isWrapped(wrapped), false);
      load('mysql2');
      definition.patch!(mysql, '3.24.6');
      assert.equal(proto.getConnection, wrapped);
      await promisePool().query('SELECT 1');
      assert.equal(holds(t).length, 1);
    });

    it('disable() restores the methods and lets go of the pools', async () => {
      const clock = sinon.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
      const t = instrument({ leakDetectionThresholdMillis: 1000 });
      const p = promisePool();
      const conn = await p.getConnection();
      assert.equal(clock.countTimers(), 1);
      t.instrumentation.disable();
      assert.equal(clock.countTimers(), 0);
      assert.deepEqual(mysqlRefs(), []);
      conn.release();
      await p.query('SELECT 1');
      assert.deepEqual(holds(t), []);
    });

    it('leaves mysql2 alone with mysql2Pool: false', () => {
      instrument(false);
      assert.equal(proto.getConnection, pristine.getConnection);
    });

    it('rejects invalid mysql2Pool options, naming them', () => {
      for (const [value, message] of [
        [7, /^Option "mysql2Pool" must be an object or false, got 7\.$/],
        [{ leak: 1 }, /^Unknown mysql2Pool option "leak"\./],
        [{ captureStacks: 'x' }, /"mysql2Pool\.captureStacks" must be/],
      ] as const) {
        assert.throws(
          () => new PoolInstrumentation({ enabled: false, mysql2Pool: value as never }),
          (error: unknown) => error instanceof InvalidOptionError && message.test(error.message),
        );
      }
    });
  });
});
