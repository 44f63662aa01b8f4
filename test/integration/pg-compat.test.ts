/**
 * PgPool, the pg.Pool-compatible facade, against a real PostgreSQL. First the behaviour table
 * (./pg-compat-table.ts): the same pg.Pool code run on a real pg.Pool and on PgPool, with
 * identical observations except the listed differences. Then what only PgPool does: handles
 * found by garbage collection (but not while a LISTEN consumer waits on them), timeouts that
 * name holders, options, Kysely.
 */
import assert from 'node:assert/strict';
import { Kysely, PostgresDialect, sql, type Generated } from 'kysely';
import pg, { type Client, type Notification, type QueryResult } from 'pg';
import { AcquireTimeoutError, InvalidOptionError, LeaseError, PoolClosedError } from '../../src';
import { PgPool, type PgPoolClient, type PgPoolConfig } from '../../src/drivers';
import {
  adminClient,
  backendsOf,
  collectGarbageUntil,
  pgConfig,
  uniqueName,
  waitFor,
} from '../support/integration';
import { getPostgres, type PgServer } from '../support/postgres';
import {
  BEHAVIOURS,
  NEVER_SETTLES,
  tableFixtures,
  type Behaviour,
  type Observation,
  type Tools,
} from './pg-compat-table';

interface Account {
  id: Generated<number>;
  owner: string;
  balance: number;
}

describe('pg.Pool and PgPool: one behaviour table, two pools', function () {
  let server: PgServer;
  let admin: Client;
  let fixtures: Awaited<ReturnType<typeof tableFixtures>>;
  const summary: string[] = [];

  before(async function () {
    this.timeout(60_000);
    server = await getPostgres();
    admin = await adminClient(server);
    fixtures = await tableFixtures();
  });
  after(async () => {
    fixtures?.close();
    await admin?.end();
    // The table's result, for the closing note and the README.
    if (summary.length > 0) console.log(`\n    PgPool behaviour table:\n${summary.join('\n')}\n`);
  });

  /** Runs a row on one pool and ends it, even after a row that left clients out. */
  async function observe(kind: Tools['kind'], row: Behaviour): Promise<Observation> {
    const t: Tools = {
      kind,
      server,
      admin,
      app: uniqueName(`pw_tbl_${kind}`),
      bag: { ...fixtures.bag },
    };
    const { poolwatch, ...config } = row.config?.(t) ?? {};
    const base = { ...pgConfig(server, t.app), ...config };
    const pool =
      kind === 'pg'
        ? new pg.Pool(base)
        : (new PgPool({
            ...base,
            poolwatch: { name: uniqueName('pw_tbl'), ...poolwatch },
          }) as unknown as pg.Pool);
    try {
      return await row.run(pool, t);
    } finally {
      // pg-pool's end() waits forever for a client a row left checked out (some rows show pg-pool
      // losing one): close those clients' connections instead of waiting.
      const stuck = kind === 'pg' && pool.totalCount > pool.idleCount;
      if (!pool.ending) {
        const ending = pool.end().catch(() => undefined);
        if (!stuck) await Promise.race([ending, new Promise((r) => setTimeout(r, 3000))]);
      }
      if (stuck) {
        for (const c of (pool as unknown as { _clients: pg.Client[] })._clients) {
          await c.end().catch(() => undefined);
        }
      }
      if (kind === 'pgpool') await (pool as unknown as PgPool).pool.close();
    }
  }

  for (const row of BEHAVIOURS) {
    it(row.name, async function () {
      this.timeout(30_000);
      if (row.needsPasswordCheck === true && !server.embedded) this.skip();
      const onPg = await observe('pg', row);
      const onPgPool = await observe('pgpool', row);
      const listed = Object.entries(row.differs ?? {});
      assert.ok(Object.keys(onPg).length > 0, 'a row observes something');
      for (const [key, difference] of listed) {
        assert.deepEqual(
          { pg: onPg[key], pgpool: onPgPool[key] },
          { pg: difference.pg, pgpool: difference.pgpool },
          `listed difference "${key}" (${difference.why})`,
        );
        delete onPg[key];
        delete onPgPool[key];
      }
      assert.deepEqual(onPgPool, onPg, 'PgPool must behave as pg.Pool here');
      summary.push(
        `    ${listed.length === 0 ? 'same   ' : 'differs'}  ${row.name}` +
          listed.map(([key, d]) => `\n               ${key}: ${d.why}`).join(''),
      );
    });
  }

  it('observes a hang as a hang (the table can fail)', async () => {
    const row: Behaviour = {
      name: 'a connect() that cannot be served',
      config: () => ({ max: 1, connectionTimeoutMillis: 0 }),
      async run(pool) {
        const held = await pool.connect();
        const waiting = pool.connect();
        const r = await Promise.race([
          waiting,
          new Promise((r) => setTimeout(r, 100, NEVER_SETTLES)),
        ]);
        held.release();
        (await waiting).release();
        return { r };
      },
    };
    assert.deepEqual(await observe('pg', row), { r: NEVER_SETTLES });
    assert.deepEqual(await observe('pgpool', row), { r: NEVER_SETTLES });
  });
});

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
    await Promise.all(facades.splice(0).map((f) => (f.ending ? f.pool.close() : f.end())));
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

  it('closes a client released with an error or inside a transaction, and after a pool.query error (as pg)', async () => {
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
    assert.notEqual(
      await pool.query('SELECT pg_backend_pid() AS pid').then((r) => r.rows[0].pid),
      pid3,
      'pool.query() closes the client after any error, as pg-pool does',
    );
    assert.equal(pool.pool.stats().destroyed, 3);
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
    assert.throws(() => new PgPool({ verify: 'yes' as never }), /"verify" must be a function/);
    assert.throws(() => new PgPool({ log: true as never }), /"log" must be a function/);
    // Named as the user wrote it, not as the poolwatch option it maps to (issue 10, item 13).
    for (const bad of [-1, Number.NaN, '100']) {
      assert.throws(
        () => new PgPool({ connectionTimeoutMillis: bad as number }),
        (e: unknown) =>
          e instanceof InvalidOptionError &&
          /"connectionTimeoutMillis"/.test(e.message) &&
          !/acquireTimeoutMillis/.test(e.message),
      );
    }
    assert.throws(() => new PgPool({ idleTimeoutMillis: -5 }), /"idleTimeoutMillis"/);
    assert.throws(
      () => new PgPool({ idleTimeoutMillis: 2 ** 31 }),
      /"idleTimeoutMillis" is too long/,
    );
    assert.throws(
      () => new PgPool({ maxLifetimeSeconds: 3e6 }),
      /"maxLifetimeSeconds" is too long/,
    );
    assert.throws(() => new PgPool({ poolSize: 0 }), /"max"/);
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

  it("end(): later use fails with PoolClosedError under pg-pool's message; a second end() rejects", async () => {
    const pool = facade();
    await pool.query('SELECT 1');
    const ending = pool.end();
    assert.equal(pool.ending, true);
    await assert.rejects(pool.end(), { message: 'Called end on pool more than once' });
    await ending;
    assert.equal(pool.ended, true);
    for (const use of [pool.query('SELECT 1'), pool.connect()]) {
      await assert.rejects(use, (e: unknown) => {
        assert.ok(e instanceof PoolClosedError);
        assert.match(e.message, /^Cannot use a pool after calling end on the pool\nPool "/);
        return true;
      });
    }
  });

  it('end() closes a client still checked out after closeTimeoutMillis, and its release() is quiet', async () => {
    const pool = facade({ poolwatch: { closeTimeoutMillis: 100 } });
    const client = await pool.connect();
    const started = performance.now();
    await pool.end();
    assert.ok(performance.now() - started < 2000);
    assert.equal(client.active, false);
    assert.doesNotThrow(() => client.release());
  });

  it("timeouts keep poolwatch's holders and stacks under pg's message", async () => {
    const pool = facade({
      max: 1,
      connectionTimeoutMillis: 100,
      poolwatch: { captureStacks: 'always' },
    });
    const held = await pool.connect();
    const error = await pool.connect().catch((e: unknown) => e);
    held.release();
    assert.ok(error instanceof AcquireTimeoutError);
    assert.equal(error.code, 'POOL_ACQUIRE_TIMEOUT');
    const [first, ...rest] = error.message.split('\n');
    assert.equal(first, 'timeout exceeded when trying to connect');
    assert.match(
      rest.join('\n'),
      /Longest holders:\n {2}lease #\d+ held .*acquired at:\n.*pg-compat\.test\.ts/s,
    );
  });

  it("release(err) on a client the pool reclaimed does not hide the driver's error (issue 10, item 13)", async () => {
    const pool = facade({
      max: 1,
      poolwatch: { reclaimAfterMillis: 150, housekeepingIntervalMillis: 20 },
    });
    const client = await pool.connect();
    let caught: unknown;
    try {
      await client.query('SELECT pg_sleep(3)');
    } catch (error) {
      caught = error;
      client.release(error as Error); // pg-style cleanup: must not throw POOL_LEASE_RECLAIMED
    }
    assert.ok(caught instanceof Error);
    assert.doesNotMatch(caught.message, /POOL_LEASE|reclaim/);
    assert.doesNotThrow(() => client.release(), 'a plain release after reclaim is quiet too');
    assert.equal(pool.pool.stats().reclaimedLeaks, 1);
    assert.deepEqual((await pool.query('SELECT 1 AS ok')).rows, [{ ok: 1 }]);
  });

  it('keeps a handle alive while a LISTEN consumer waits on it, through forced GCs (issue 9, item 4)', async function () {
    this.timeout(20_000);
    const gc = (globalThis as { gc?: () => void }).gc!;
    const pool = facade({ max: 5, poolwatch: { housekeepingIntervalMillis: 20 } });
    const channel = uniqueName('pw_listen');
    // A one-shot consumer: nothing outside this function references its client.
    const waitForOne = async (): Promise<string | undefined> => {
      const client = await pool.connect();
      await client.query(`LISTEN ${channel}`);
      const n = await new Promise<Notification>((resolve) => client.once('notification', resolve));
      client.release();
      return n.payload;
    };
    const one = waitForOne();
    // A long-lived consumer, released by its own listener.
    const seen: (string | undefined)[] = [];
    await (async () => {
      const client = await pool.connect();
      await client.query(`LISTEN ${channel}_long`);
      client.on('notification', (n) => {
        seen.push(n.payload);
        if (n.payload === 'stop') client.release();
      });
    })();
    const collectFor = async (millis: number): Promise<void> => {
      const until = performance.now() + millis;
      while (performance.now() < until) {
        gc();
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };
    await waitFor('both consumers to listen', () => pool.pool.stats().used === 2);
    await collectFor(2500);
    assert.equal(pool.pool.stats().collectedLeaks, 0, 'no consumer was collected');
    await admin.query(`SELECT pg_notify($1, 'first')`, [`${channel}_long`]);
    await collectFor(500);
    await admin.query(`SELECT pg_notify($1, 'hello'), pg_notify($2, 'stop')`, [
      channel,
      `${channel}_long`,
    ]);
    assert.equal(await one, 'hello');
    await waitFor('the long consumer to stop', () => seen.length === 2);
    assert.deepEqual(seen, ['first', 'stop']);
    const s = pool.pool.stats();
    assert.equal(s.collectedLeaks, 0);
    assert.equal(s.used, 0);

    // Dropped handles are still found: no listener, only an 'error' listener, listeners removed,
    // a once-listener that has fired.
    await (async () => {
      await pool.connect();
      const withErrorListener = await pool.connect();
      withErrorListener.on('error', () => undefined);
      const unlistened = await pool.connect();
      const listener = (): void => undefined;
      unlistened.on('notification', listener);
      unlistened.off('notification', listener);
      const served = await pool.connect();
      await served.query(`LISTEN ${channel}_once`);
      const got = new Promise((resolve) => served.once('notification', resolve));
      await admin.query(`SELECT pg_notify($1, 'once')`, [`${channel}_once`]);
      await got;
    })();
    await collectGarbageUntil('four dropped handles', () => pool.pool.stats().collectedLeaks === 4);
    await waitFor('their connections to close', () => pool.pool.stats().used === 0);
  });
});
