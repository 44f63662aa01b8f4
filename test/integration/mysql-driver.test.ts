/**
 * The mysql2 adapter (src/drivers/mysql.ts) against the MySQL/MariaDB server of the machine
 * (test/support/mysql.ts); skipped when there is none.
 */
import assert from 'node:assert/strict';
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { CreateFailedError, InvalidOptionError, type CreateContext, type Pool } from '../../src';
import { createMysqlPool, mysqlFactory, mysqlServerInfo } from '../../src/drivers';
import { waitFor } from '../support/integration';
import { mysqlAvailable, mysqlConfig, type MysqlConfig } from '../support/mysql';
import { freePort } from '../support/postgres';

const threadIdOf = async (c: Connection): Promise<number> => {
  const [rows] = await c.query<RowDataPacket[]>('SELECT CONNECTION_ID() AS id');
  return Number(rows[0]!.id);
};

describe('mysql2 adapter (mysqlFactory)', function () {
  let config: MysqlConfig;
  let admin: Connection;
  const pools: Pool<Connection>[] = [];

  before(async function () {
    if (!(await mysqlAvailable())) this.skip();
    config = mysqlConfig();
    const factory = mysqlFactory(config);
    admin = await factory.create({ markBroken: () => undefined });
  });
  after(async () => {
    await admin?.end().catch(() => undefined);
  });
  afterEach(async () => {
    await Promise.all(pools.splice(0).map((p) => p.close()));
  });

  function pool(...args: Parameters<typeof createMysqlPool>): Pool<Connection> {
    const p = createMysqlPool(...args);
    pools.push(p);
    return p;
  }

  /** True while the server still lists the connection. */
  async function serverHas(id: number): Promise<boolean> {
    const [rows] = await admin.query<RowDataPacket[]>(
      'SELECT 1 FROM information_schema.PROCESSLIST WHERE ID = ?',
      [id],
    );
    return rows.length > 0;
  }

  it('describes its server without credentials and names the pool after it', () => {
    const expected = {
      system: 'mysql',
      address: config.host,
      port: config.port,
      namespace: config.database,
    };
    assert.deepEqual(mysqlServerInfo(config), expected);
    assert.deepEqual(
      mysqlServerInfo(`mysql://root:s3cret@${config.host}:${config.port}/${config.database}`),
      expected,
    );
    assert.deepEqual(mysqlServerInfo({ socketPath: '/run/mysqld/mysqld.sock', database: 'x' }), {
      system: 'mysql',
      address: '/run/mysqld/mysqld.sock',
      namespace: 'x',
    });
    const p = pool(config);
    assert.equal(p.name, `${config.host}:${config.port}/${config.database}`);
  });

  it('connects, queries, validates with a ping, and closes the session on destroy', async () => {
    const factory = mysqlFactory(config);
    const ctx: CreateContext = { markBroken: () => undefined };
    const c = await factory.create(ctx);
    const [rows] = await c.query<RowDataPacket[]>('SELECT DATABASE() AS db, 1 + 1 AS two');
    assert.deepEqual({ ...rows[0] }, { db: config.database, two: 2 });
    assert.equal(await factory.validate!(c), true);
    const id = await threadIdOf(c);
    await factory.destroy(c);
    assert.equal(await factory.validate!(c), false);
    await waitFor('the session to close', async () => !(await serverHas(id)));
  });

  it("resets with COM_RESET_CONNECTION when asked ('reset')", async () => {
    const p = pool(config, { name: 'mysql-reset', max: 1 }, { reset: 'reset' });
    const first = await p.use(async (c) => {
      await c.query('SET @leftover = 42');
      return threadIdOf(c);
    });
    const [second, leftover] = await p.use(async (c) => {
      const [rows] = await c.query<RowDataPacket[]>('SELECT @leftover AS v');
      return [await threadIdOf(c), rows[0]!.v as unknown];
    });
    assert.equal(second, first, 'the same connection, reused');
    assert.equal(leftover, null, 'session state was reset');
  });

  it('evicts an idle connection killed on the server (KILL); the next acquire gets a new one', async () => {
    const p = pool(config, { name: 'mysql-kill-idle', max: 1 });
    const id = await p.use(threadIdOf);
    await admin.query(`KILL ${id}`);
    await waitFor('the pool to evict it', () => p.stats().destroyed === 1);
    const id2 = await p.use(threadIdOf);
    assert.notEqual(id2, id);
    const s = p.stats();
    assert.equal(s.used, 0);
    assert.equal(s.created - s.destroyed, s.size);
  });

  it('a held connection killed on the server fails its query and is destroyed on release', async () => {
    const p = pool(config, { name: 'mysql-kill-held', max: 1 });
    const lease = await p.acquire();
    const id = await threadIdOf(lease.resource);
    await admin.query(`KILL ${id}`);
    await assert.rejects(lease.resource.query('SELECT 1'));
    lease.release();
    assert.equal(p.stats().destroyed, 1);
    assert.notEqual(await p.use(threadIdOf), id);
  });

  it('nothing listening: CreateFailedError at once; bad options are rejected by name', async () => {
    const port = await freePort();
    const p = pool({ ...config, port }, { name: 'mysql-closed-port' });
    await assert.rejects(p.acquire(), (e: unknown) => {
      assert.ok(e instanceof CreateFailedError);
      assert.equal((e.cause as { code?: string }).code, 'ECONNREFUSED');
      return true;
    });
    assert.throws(() => mysqlFactory(config, { endTimeoutMilis: 5 } as never), InvalidOptionError);
    assert.throws(() => mysqlFactory(config, { reset: '' }), /reset/);
  });
});
