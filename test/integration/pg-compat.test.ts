/**
 * PgPool, the pg.Pool-compatible facade, against a real PostgreSQL: plain node-postgres usage
 * (pool.query, connect/release, events) and a library built for pg's pool (Kysely).
 */
import assert from 'node:assert/strict';
import { Kysely, PostgresDialect, sql, type Generated } from 'kysely';
import type { Client, QueryResult } from 'pg';
import { InvalidOptionError, LeaseError, PoolClosedError } from '../../src';
import { PgPool, type PgPoolClient, type PgPoolConfig } from '../../src/drivers';
import { adminClient, backendsOf, pgConfig, uniqueName, waitFor } from '../support/integration';
import { getPostgres, type PgServer } from '../support/postgres';

interface Account {
  id: Generated<number>;
  owner: string;
  balance: number;
}

describe('PgPool (pg.Pool-compatible facade)', function () {
  let server: PgServer;
  let admin: Client;
  const facades: PgPool[] = [];

  before(async function () {
    this.timeout(60_000);
    server = await getPostgres();
    admin = await adminClient(server);
  });
  after(async () => {
    await admin?.end();
  });
  afterEach(async () => {
    await Promise.all(facades.splice(0).map((f) => f.end()));
  });

  function facade(config: PgPoolConfig = {}, app = uniqueName('pw_facade')): PgPool {
    const f = new PgPool({
      ...pgConfig(server, app),
      ...config,
      poolwatch: { name: uniqueName('facade'), ...config.poolwatch },
    });
    facades.push(f);
    return f;
  }

  const pidOf = async (c: PgPoolClient): Promise<number> =>
    (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;

  it('runs pool.query in every pg form: text, text + values, config object, callbacks', async () => {
    const pool = facade({ max: 2 });
    assert.deepEqual((await pool.query('SELECT 1 AS one')).rows, [{ one: 1 }]);
    assert.deepEqual((await pool.query('SELECT $1::int + 1 AS n', [41])).rows, [{ n: 42 }]);
    const arrays = await pool.query({
      text: 'SELECT $1::text AS t',
      values: ['x'],
      rowMode: 'array',
    });
    assert.deepEqual(arrays.rows, [['x']]);

    const viaCallback = await new Promise<QueryResult>((resolve, reject) =>
      pool.query('SELECT $1::int AS v', [7], (err, res) => (err ? reject(err) : resolve(res))),
    );
    assert.deepEqual(viaCallback.rows, [{ v: 7 }]);
    const cbError = await new Promise<Error | undefined>((resolve) =>
      pool.query('SELECT * FROM no_such_table', (err) => resolve(err)),
    );
    assert.equal((cbError as Error & { code?: string }).code, '42P01');
    assert.equal(pool.idleCount, pool.totalCount, 'every client went back');
  });

  it('checks out clients with connect(): promise and callback forms, pg-pool events in order', async () => {
    const pool = facade({ max: 1 });
    const events: string[] = [];
    for (const name of ['connect', 'acquire', 'release', 'remove'] as const) {
      pool.on(name, () => events.push(name));
    }
    const client = await pool.connect();
    assert.equal(pool.totalCount, 1);
    assert.equal(pool.idleCount, 0);
    const waiting = pool.connect();
    assert.equal(pool.waitingCount, 1);
    client.release();
    const second = await waiting;
    second.release(true); // pg-pool: a truthy argument closes the client
    // 'remove' comes once the client has closed (end() waits for the server), as in pg-pool.
    await waitFor('the remove event', () => events.includes('remove'));

    const viaCallback = await new Promise<PgPoolClient>((resolve, reject) =>
      pool.connect((err, c, done) => {
        if (err || !c) return reject(err);
        void c.query('SELECT 1').then(() => {
          done();
          resolve(c);
        }, reject);
      }),
    );
    assert.equal(viaCallback.active, false);
    assert.deepEqual(events, [
      'connect',
      'acquire',
      'release',
      'acquire',
      'release',
      'remove',
      'connect',
      'acquire',
      'release',
    ]);
  });

  it('hands out a handle per checkout that fails clearly once released', async () => {
    const pool = facade({ max: 1, poolwatch: { captureStacks: 'always' } });
    const first = await pool.connect();
    const pid = await pidOf(first);
    first.release();
    const second = await pool.connect();
    assert.notEqual(second, first, 'a new handle per checkout, not the pooled pg.Client');
    assert.equal(await pidOf(second), pid, 'on the same connection');
    assert.throws(
      () => first.query('SELECT 1'),
      (e: unknown) => {
        assert.ok(e instanceof LeaseError);
        assert.equal(e.code, 'POOL_LEASE_RELEASED');
        return true;
      },
    );
    assert.throws(() => first.release(), { code: 'POOL_LEASE_RELEASED' });
    assert.equal(first.escapeIdentifier('a"b'), '"a""b"');
    assert.match(second.leaseInfo.stack ?? '', /pg-compat\.test\.ts/);
    second.release();
  });

  it('closes a client released with an error, or inside a transaction; keeps it after a server error', async () => {
    const pool = facade({ max: 1 });
    let c = await pool.connect();
    const pid = await pidOf(c);
    c.release(new Error('broken by the app'));
    c = await pool.connect();
    const pid2 = await pidOf(c);
    assert.notEqual(pid2, pid);

    await c.query('BEGIN');
    await c.query('SELECT 1');
    c.release(); // forgot COMMIT: pg-pool would hand the open transaction to the next caller
    c = await pool.connect();
    const pid3 = await pidOf(c);
    assert.notEqual(pid3, pid2);
    assert.equal(c.getTransactionStatus(), 'I');
    c.release();

    c = await pool.connect();
    c.release(null as never); // falsy, as in pg-pool: a normal release
    c = await pool.connect();
    assert.equal(await pidOf(c), pid3);
    c.release();

    await assert.rejects(pool.query('SELECT 1/0'), { code: '22012' });
    assert.equal(
      await pool.query('SELECT pg_backend_pid() AS pid').then((r) => r.rows[0].pid),
      pid3,
    );
    assert.equal(pool.pool.stats().destroyed, 2);
  });

  it('forwards client events while checked out and removes them at release', async () => {
    const pool = facade({ max: 1 });
    const c = await pool.connect();
    const notices: string[] = [];
    c.on('notice', (n) => notices.push(n.message ?? ''));
    await c.query("DO $$ BEGIN RAISE NOTICE 'hello from the server'; END $$");
    assert.deepEqual(notices, ['hello from the server']);
    c.release();
    const lease = await pool.pool.acquire();
    assert.equal(lease.resource.listenerCount('notice'), 0, 'no listener left on the pg.Client');
    lease.release();
  });

  it("reports an idle client's error on 'error' once, and survives without a listener", async () => {
    const app = uniqueName('pw_idle_error');
    const pool = facade({ max: 2 }, app);
    const errors: Error[] = [];
    pool.on('error', (e) => errors.push(e));
    const [a, b] = [await pool.connect(), await pool.connect()];
    a.release();
    b.release();
    const pids = await backendsOf(admin, app);
    assert.equal(pids.length, 2);
    await admin.query('SELECT pg_terminate_backend($1)', [pids[0]]);
    await waitFor('the idle client to be removed', () => pool.totalCount === 1);
    assert.equal(errors.length, 1, 'one error per client, though pg emits twice');
    pool.removeAllListeners('error');
    await admin.query('SELECT pg_terminate_backend($1)', [pids[1]]);
    await waitFor('the second idle client to be removed', () => pool.totalCount === 0);
    assert.deepEqual((await pool.query('SELECT 1 AS ok')).rows, [{ ok: 1 }]);
  });

  it('maps pg options and rejects unsupported or conflicting ones', async () => {
    const pool = facade({
      max: 3,
      min: 0,
      maxUses: 2,
      idleTimeoutMillis: 0,
      connectionTimeoutMillis: 1500,
    });
    const s = pool.pool.stats();
    assert.equal(s.max, 3);
    const pids = [];
    for (let i = 0; i < 3; i++) pids.push(await pool.query('SELECT pg_backend_pid() AS p'));
    const distinct = new Set(pids.map((r) => r.rows[0].p));
    assert.equal(distinct.size, 2, 'maxUses: 2 retires the client at its second release');

    // pg's idle default gives way to poolwatch's option: not a conflict.
    facade({ poolwatch: { idleTimeoutMillis: 5000 } });
    assert.throws(() => new PgPool({ verify: () => undefined }), /verify.*onConnect/);
    assert.throws(
      () => new PgPool({ max: 2, poolwatch: { max: 3 } }),
      (e: unknown) => e instanceof InvalidOptionError && /"max".*both/.test(e.message),
    );
    assert.throws(
      () => new PgPool({ connectionTimeoutMillis: 100, poolwatch: { acquireTimeoutMillis: 100 } }),
      /connectionTimeoutMillis/,
    );
    assert.throws(() => new PgPool({ poolwatch: { leakDetectionTreshold: 1 } as never }), {
      name: 'InvalidOptionError',
    });
  });

  it("is the pool of Kysely's PostgresDialect: schema, insert, select, transactions", async () => {
    const app = uniqueName('pw_kysely');
    const pool = facade({ max: 3 }, app);
    let onCreateConnection = 0;
    const db = new Kysely<{ [table: string]: Account }>({
      dialect: new PostgresDialect({
        pool,
        onCreateConnection: async () => void onCreateConnection++,
      }),
    });
    const table = uniqueName('kysely_accounts');
    try {
      await db.schema
        .createTable(table)
        .addColumn('id', 'serial', (col) => col.primaryKey())
        .addColumn('owner', 'text', (col) => col.notNull())
        .addColumn('balance', 'integer', (col) => col.notNull())
        .execute();
      await db
        .insertInto(table)
        .values([
          { owner: 'ada', balance: 100 },
          { owner: 'bob', balance: 50 },
        ])
        .execute();

      await db.transaction().execute(async (trx) => {
        await trx
          .updateTable(table)
          .set({ balance: sql`balance - 30` })
          .where('owner', '=', 'ada')
          .execute();
        await trx
          .updateTable(table)
          .set({ balance: sql`balance + 30` })
          .where('owner', '=', 'bob')
          .execute();
      });
      await assert.rejects(
        db.transaction().execute(async (trx) => {
          await trx.updateTable(table).set({ balance: 0 }).execute();
          throw new Error('abort the transfer');
        }),
        /abort the transfer/,
      );
      const rows = await db
        .selectFrom(table)
        .select(['owner', 'balance'])
        .orderBy('owner')
        .execute();
      assert.deepEqual(rows, [
        { owner: 'ada', balance: 70 },
        { owner: 'bob', balance: 80 },
      ]);
      // Kysely keys its connections on the object connect() returns: a new handle per checkout,
      // so onCreateConnection runs per checkout (README-drivers.md: use pg's onConnect instead).
      assert.ok(onCreateConnection >= 5, `${onCreateConnection}`);
      const s = pool.pool.stats();
      assert.ok(s.created <= 3);
      assert.equal(s.used, 0);
      assert.equal(s.collectedLeaks + s.suspectedLeaks, 0);
    } finally {
      await db.schema.dropTable(table).ifExists().execute();
      await db.destroy(); // calls pool.end()
    }
    assert.equal(pool.ended, true);
    await waitFor('the sessions to close', async () => (await backendsOf(admin, app)).length === 0);
  });

  it('end(): idempotent, callback form, and later use fails with PoolClosedError', async () => {
    const pool = facade();
    await pool.query('SELECT 1');
    const ending = pool.end();
    assert.equal(pool.ending, true);
    await Promise.all([ending, new Promise<void>((resolve) => pool.end(() => resolve()))]);
    assert.equal(pool.ended, true);
    await assert.rejects(pool.query('SELECT 1'), PoolClosedError);
    await assert.rejects(pool.connect(), PoolClosedError);
  });
});
