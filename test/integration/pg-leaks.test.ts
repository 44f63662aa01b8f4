/**
 * Leaked connections, end to end on a real PostgreSQL: a connection dropped inside a transaction
 * that holds a row lock is found after garbage collection, its session closed, and the server
 * rolls back and frees the lock for others. Also: a held lease reported as suspected, and a
 * timeout that names its holder.
 */
import assert from 'node:assert/strict';
import type { Client } from 'pg';
import { AcquireTimeoutError, type Alert, type Pool } from '../../src';
import { createPgPool, PgPool } from '../../src/drivers';
import {
  adminClient,
  backendsOf,
  collectGarbageUntil,
  pgConfig,
  uniqueName,
  waitFor,
} from '../support/integration';
import { getPostgres, type PgServer } from '../support/postgres';

describe('leaked connections (end to end)', function () {
  let server: PgServer;
  let admin: Client;
  let table: string;
  const closers: (() => Promise<unknown>)[] = [];

  before(async function () {
    this.timeout(60_000);
    server = await getPostgres();
    admin = await adminClient(server);
    table = uniqueName('leak_rows');
    await admin.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v int NOT NULL)`);
    await admin.query(`INSERT INTO ${table} VALUES (1, 10), (2, 20)`);
  });
  after(async () => {
    await admin?.query(`DROP TABLE IF EXISTS ${table}`);
    await admin?.end();
  });
  afterEach(async () => {
    await Promise.all(closers.splice(0).map((close) => close()));
  });

  /** Another session tries the row lock without waiting: true if it got it. */
  async function lockIsFree(): Promise<boolean> {
    await admin.query('BEGIN');
    try {
      await admin.query(`SELECT v FROM ${table} WHERE id = 1 FOR UPDATE NOWAIT`);
      return true;
    } catch (error) {
      if ((error as { code?: string }).code === '55P03') return false; // lock_not_available
      throw error;
    } finally {
      await admin.query('ROLLBACK');
    }
  }

  async function locksHeldBy(pid: number): Promise<number> {
    const r = await admin.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM pg_locks WHERE pid = $1',
      [pid],
    );
    return r.rows[0]!.n;
  }

  /** After the leak: the session is gone, its locks with it, and the row is lockable again. */
  async function assertSessionEndedAndLockFreed(pid: number, app: string): Promise<void> {
    await waitFor('the leaked session to end', async () => {
      return !(await backendsOf(admin, app)).includes(pid);
    });
    assert.equal(await locksHeldBy(pid), 0, 'no lock left for the leaked backend');
    assert.equal(await lockIsFree(), true, 'another session can take the row lock');
    // The leaked transaction's update was rolled back.
    const r = await admin.query<{ v: number }>(`SELECT v FROM ${table} WHERE id = 1`);
    assert.equal(r.rows[0]!.v, 10);
  }

  it('collects a lease dropped inside a transaction holding a row lock; the server rolls back', async () => {
    const app = uniqueName('pw_leak');
    const alerts: Alert[] = [];
    const pool = createPgPool(pgConfig(server, app), {
      name: 'leak-e2e',
      max: 2,
      // A lease is registered for GC detection at the first housekeeping tick after acquire
      // (short holds never pay for it): a fast tick keeps this test fast.
      housekeepingIntervalMillis: 50,
      captureStacks: 'always',
      onAlert: (a) => alerts.push(a),
    });
    closers.push(() => pool.close());

    // A handler that forgets its lease in the middle of a transaction.
    const pid = await (async function transferHandler(): Promise<number> {
      const lease = await pool.acquire();
      const c = lease.resource;
      await c.query('BEGIN');
      await c.query(`SELECT v FROM ${table} WHERE id = 1 FOR UPDATE`);
      await c.query(`UPDATE ${table} SET v = 999 WHERE id = 1`);
      return (c as Client & { processID: number }).processID;
    })();

    assert.ok((await locksHeldBy(pid)) > 0, 'the leaked session holds locks');
    assert.equal(await lockIsFree(), false, 'the row is locked by the leaked transaction');
    assert.equal(pool.stats().used, 1);

    const rounds = await collectGarbageUntil(
      'the leaked lease',
      () => pool.stats().collectedLeaks === 1,
    );
    const s = pool.stats();
    assert.equal(s.used, 0, 'its slot is back');
    assert.equal(s.destroyed, 1, 'its connection was destroyed, never reused');
    const collected = alerts.find((a) => a.leakKind === 'collected');
    assert.ok(collected, 'a collected-leak alert');
    assert.match(collected.message, /garbage-collected without release/);
    assert.match(collected.stack ?? '', /transferHandler/);
    await assertSessionEndedAndLockFreed(pid, app);
    // The pool still serves, on a new connection.
    const again = await pool.use(
      async (c) => (await c.query('SELECT pg_backend_pid() AS p')).rows[0],
    );
    assert.notEqual(again.p, pid);
    assert.ok(rounds < 50, `found after ${rounds} GC rounds`);
  });

  it('collects a PgPool client handle dropped inside a transaction (pg-style code)', async () => {
    const app = uniqueName('pw_leak_facade');
    const pool = new PgPool({
      ...pgConfig(server, app),
      max: 2,
      poolwatch: { name: 'leak-facade', housekeepingIntervalMillis: 50 },
    });
    closers.push(() => pool.end());

    const pid = await (async function legacyHandler(): Promise<number> {
      const client = await pool.connect();
      await client.query('BEGIN');
      await client.query(`SELECT v FROM ${table} WHERE id = 1 FOR UPDATE`);
      // An event listener on the handle must not keep it alive (forwarded through a WeakRef).
      client.on('error', () => undefined);
      return client.processID!;
    })();
    assert.equal(await lockIsFree(), false);

    await collectGarbageUntil(
      'the dropped client handle',
      () => pool.pool.stats().collectedLeaks === 1,
    );
    assert.equal(pool.totalCount, 0);
    await assertSessionEndedAndLockFreed(pid, app);
    assert.deepEqual((await pool.query('SELECT 1 AS ok')).rows, [{ ok: 1 }]);
  });

  it('reports a held lease as suspected with its stack, and names it in a timeout', async () => {
    const alerts: Alert[] = [];
    const pool: Pool<Client> = createPgPool(pgConfig(server, uniqueName('pw_suspect')), {
      name: 'leak-suspect',
      max: 1,
      acquireTimeoutMillis: 300,
      leakDetectionThresholdMillis: 100,
      housekeepingIntervalMillis: 20,
      captureStacks: 'always',
      health: false,
      onAlert: (a) => alerts.push(a),
    });
    closers.push(() => pool.close());
    const kept = await (async function reportHandler() {
      const lease = await pool.acquire();
      await lease.resource.query('SELECT 1');
      return lease;
    })();
    await waitFor('the suspected-leak alert', () => alerts.some((a) => a.leakKind === 'suspected'));
    const suspected = alerts.find((a) => a.leakKind === 'suspected')!;
    assert.match(suspected.stack ?? '', /reportHandler/);
    assert.match(suspected.message, /Possible leak: lease #\d+ of pool "leak-suspect"/);

    const error = await pool.acquire().then(
      () => assert.fail('expected a timeout'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof AcquireTimeoutError);
    assert.equal(error.code, 'POOL_ACQUIRE_TIMEOUT');
    assert.match(error.message, new RegExp(`lease #${kept.info.id} held`));
    assert.match(error.message, /reportHandler/);

    kept.release();
    assert.ok(alerts.some((a) => a.leakKind === 'returned'));
  });
});
