/**
 * PgPool's eviction timing on a fake clock: pg-pool arms a timer per client (idle from its
 * release, lifetime from its connect), so a client goes at that moment, not at poolwatch's next
 * housekeeping tick. The pg.Client here is a stand-in with the few members pgFactory uses; the
 * same behaviours run on a real server, against a real pg.Pool, in the behaviour table
 * (test/integration/pg-compat-table.ts).
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { Client, ClientConfig } from 'pg';
import { subscribe, type DestroyReason } from '../../src';
import { PgPool, type PgPoolConfig } from '../../src/drivers';
import { useFakeClock } from '../support/fake-clock';

/** What pgFactory and PgPool use of a pg.Client: connect, query, end, state, events. */
class FakeClient extends EventEmitter {
  _queryable = true;
  _ending = false;
  _ended = false;
  constructor(readonly config: ClientConfig) {
    super();
  }
  async connect(): Promise<void> {}
  async query(): Promise<{ rows: unknown[]; rowCount: number }> {
    return { rows: [], rowCount: 0 };
  }
  async end(): Promise<void> {
    this._ending = this._ended = true;
    this.emit('end');
  }
  getTransactionStatus(): string {
    return 'I';
  }
}

describe('PgPool eviction timing (fake clock)', () => {
  const fake = useFakeClock();

  function pgPool(config: PgPoolConfig): { pool: PgPool; removedAt: number[] } {
    const pool = new PgPool({
      Client: FakeClient as unknown as typeof Client,
      host: 'db.invalid',
      ...config,
    });
    fake.open.push({ close: () => (pool.ending ? pool.pool.close() : pool.end()) });
    const removedAt: number[] = [];
    pool.on('remove', () => removedAt.push(fake.clock.now));
    return { pool, removedAt };
  }

  it('closes an idle client idleTimeoutMillis after its release, not at the housekeeping tick', async () => {
    const { pool, removedAt } = pgPool({ idleTimeoutMillis: 10 });
    const client = await pool.connect();
    await fake.clock.tickAsync(5);
    client.release();
    const releasedAt = fake.clock.now;
    await fake.clock.tickAsync(9);
    assert.equal(pool.totalCount, 1);
    await fake.clock.tickAsync(1);
    assert.equal(pool.totalCount, 0);
    assert.deepEqual(removedAt, [releasedAt + 10]);

    // A longer timeout is not rounded to the 1 s tick either; a checkout stops the timer.
    const { pool: slow } = pgPool({ idleTimeoutMillis: 2500 });
    const a = await slow.connect();
    a.release();
    await fake.clock.tickAsync(2000);
    const b = await slow.connect();
    await fake.clock.tickAsync(1000);
    assert.equal(slow.totalCount, 1, 'a checked-out client is not idle');
    b.release();
    await fake.clock.tickAsync(2499);
    assert.equal(slow.totalCount, 1);
    await fake.clock.tickAsync(1);
    assert.equal(slow.totalCount, 0);
  });

  it('stops idle eviction at min', async () => {
    const { pool } = pgPool({ min: 1, max: 3, idleTimeoutMillis: 10 });
    const clients = await Promise.all([pool.connect(), pool.connect(), pool.connect()]);
    for (const c of clients) c.release();
    assert.equal(pool.totalCount, 3);
    await fake.clock.tickAsync(10);
    assert.equal(pool.totalCount, 1);
    await fake.clock.tickAsync(60_000);
    assert.equal(pool.totalCount, 1);
  });

  it('maxLifetimeSeconds: an idle client closes at its lifetime, a checked-out one at release', async () => {
    const { pool, removedAt } = pgPool({ max: 2, maxLifetimeSeconds: 1, idleTimeoutMillis: 0 });
    const held = await pool.connect();
    const idle = await pool.connect();
    idle.release();
    await fake.clock.tickAsync(999);
    assert.deepEqual([pool.totalCount, pool.expiredCount], [2, 0]);
    await fake.clock.tickAsync(1);
    assert.deepEqual([pool.totalCount, pool.expiredCount], [1, 1]);
    assert.deepEqual(removedAt, [1000]);
    await fake.clock.tickAsync(500);
    held.release();
    await fake.clock.tickAsync(0);
    assert.deepEqual([pool.totalCount, pool.expiredCount], [0, 0]);
    assert.deepEqual(removedAt, [1000, 1500]);
  });
  it("reports its evictions as 'idle' and 'lifetime', not 'broken'", async () => {
    const reasons: (DestroyReason | undefined)[] = [];
    const { pool } = pgPool({ max: 2, maxLifetimeSeconds: 1, idleTimeoutMillis: 10 });
    const unsubscribe = subscribe('destroy', (message) => {
      if (message.pool === pool.pool) reasons.push(message.reason);
    });
    try {
      const held = await pool.connect();
      const idle = await pool.connect();
      idle.release();
      await fake.clock.tickAsync(10); // idle eviction
      await fake.clock.tickAsync(990); // the held one reaches its lifetime
      held.release();
      await fake.clock.tickAsync(0);
      assert.deepEqual(reasons, ['idle', 'lifetime']);
    } finally {
      unsubscribe();
    }
  });
});
