/**
 * The pg adapter (src/drivers/pg.ts) against a real PostgreSQL: connect, validate, reset,
 * destroy, server info, options.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import type { Client } from 'pg';
import { InvalidOptionError, type CreateContext, type Pool } from '../../src';
import { createPgPool, pgFactory, pgServerInfo } from '../../src/drivers';
import { adminClient, backendsOf, pgConfig, uniqueName, waitFor } from '../support/integration';
import { getPostgres, type PgServer } from '../support/postgres';

const context = (): CreateContext & { broken: number } => {
  const ctx = {
    broken: 0,
    markBroken() {
      ctx.broken++;
    },
  };
  return ctx;
};

describe('pg adapter (pgFactory)', function () {
  let server: PgServer;
  let admin: Client;
  const pools: Pool<Client>[] = [];

  before(async function () {
    this.timeout(60_000);
    server = await getPostgres();
    admin = await adminClient(server);
  });
  after(async () => {
    await admin?.end();
  });
  afterEach(async () => {
    await Promise.all(pools.splice(0).map((p) => p.close()));
  });

  function pool(...args: Parameters<typeof createPgPool>): Pool<Client> {
    const p = createPgPool(...args);
    pools.push(p);
    return p;
  }

  it('describes its server without credentials, as pg resolves it, and names the pool after it', () => {
    const { host, port, database } = server.config;
    const expected = { system: 'postgresql', address: host, port, namespace: database };
    assert.deepEqual(pgServerInfo(server.connectionString), expected);
    assert.deepEqual(pgServerInfo(server.config), expected);
    assert.deepEqual(pgFactory(server.connectionString).server, expected);
    // pg's defaults: the database defaults to the user name.
    assert.deepEqual(pgServerInfo({ host: 'db.internal', user: 'app', password: 'x' }), {
      system: 'postgresql',
      address: 'db.internal',
      port: 5432,
      namespace: 'app',
    });
    const p = pool(server.connectionString);
    assert.equal(p.name, `${host}:${port}/${database}`);
    assert.deepEqual(p.server, expected);
  });

  it('connects, queries, validates, and closes the session on destroy', async () => {
    const app = uniqueName('pw_basic');
    const factory = pgFactory(pgConfig(server, app));
    const ctx = context();
    const client = await factory.create(ctx);
    const r = await client.query<{ db: string }>('SELECT current_database() AS db');
    assert.equal(r.rows[0]!.db, server.config.database);
    assert.equal(await factory.validate!(client), true);
    assert.deepEqual(await backendsOf(admin, app), [
      (client as Client & { processID: number }).processID,
    ]);

    await factory.destroy(client);
    assert.equal(await factory.validate!(client), false, 'an ended client is invalid');
    await waitFor('the backend to exit', async () => (await backendsOf(admin, app)).length === 0);
    assert.equal(ctx.broken, 1, "its 'end' marks it broken (harmless after destroy)");
  });

  it('serves a Pool: use() releases, errors destroy, stats balance', async () => {
    const p = pool(pgConfig(server, uniqueName('pw_pool')), { name: 'pg-basic', max: 2 });
    const rows = await p.use(async (c) => (await c.query('SELECT 1 AS one')).rows);
    assert.deepEqual(rows, [{ one: 1 }]);
    await assert.rejects(
      p.use((c) => c.query('SELECT * FROM no_such_table')),
      { code: '42P01' },
    );
    const s = p.stats();
    assert.equal(s.used, 0);
    assert.equal(s.created - s.destroyed, s.size);
  });

  it('validates by state first: a client whose socket died is invalid without a round trip', async () => {
    const factory = pgFactory(pgConfig(server, uniqueName('pw_validate')), {
      validateQuery: false,
    });
    const client = await factory.create(context());
    assert.equal(await factory.validate!(client), true);
    client.connection.stream.destroy();
    await waitFor('the client to notice', async () => !(await factory.validate!(client)));
    await factory.destroy(client);
  });

  it('resets with resetQuery, and destroys a connection released inside a transaction', async () => {
    const p = pool(
      pgConfig(server, uniqueName('pw_reset')),
      { name: 'pg-reset', max: 1 },
      { resetQuery: 'RESET ALL' },
    );
    const pid = async (c: Client) =>
      (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;

    const first = await p.use(async (c) => {
      await c.query("SET statement_timeout = '1234ms'");
      return pid(c);
    });
    const { second, timeout } = await p.use(async (c) => ({
      second: await pid(c),
      timeout: (await c.query<{ statement_timeout: string }>('SHOW statement_timeout')).rows[0]!
        .statement_timeout,
    }));
    assert.equal(second, first, 'the connection was reused');
    assert.equal(timeout, '0', 'RESET ALL cleared the session setting');

    const lease = await p.acquire();
    await lease.resource.query('BEGIN');
    lease.release();
    const third = await p.use(pid);
    assert.notEqual(third, first, 'released in a transaction: destroyed, not reused');
    assert.equal(p.stats().destroyed, 1);
  });

  it('runs onConnect before first use; a failing onConnect fails the create and closes the client', async () => {
    const app = uniqueName('pw_onconnect');
    const p = pool(
      pgConfig(server, app),
      { name: 'pg-onconnect', max: 1 },
      {
        onConnect: async (c) => {
          await c.query('SET search_path TO pg_catalog');
        },
      },
    );
    const path = await p.use(async (c) => (await c.query('SHOW search_path')).rows[0]);
    assert.deepEqual(path, { search_path: 'pg_catalog' });

    const failingApp = uniqueName('pw_onconnect_fail');
    const failing = pool(
      pgConfig(server, failingApp),
      { name: 'pg-onconnect-fail', max: 1 },
      {
        onConnect: () => {
          throw new Error('setup failed');
        },
      },
    );
    await assert.rejects(failing.acquire(), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'POOL_CREATE_FAILED');
      assert.equal((error.cause as Error).message, 'setup failed');
      return true;
    });
    await waitFor('the half-made connection to close', async () => {
      return (await backendsOf(admin, failingApp)).length === 0;
    });
  });

  it('does not load pg or mysql2 when poolwatch is imported (optional peer dependencies)', () => {
    const script =
      "require('./src/index.ts');" +
      'const loaded = Object.keys(require.cache).filter((k) => /node_modules[\\\\/](pg|mysql2)[\\\\/]/.test(k));' +
      'process.stdout.write(JSON.stringify(loaded));';
    const out = execFileSync(process.execPath, ['--import', 'tsx', '-e', script], {
      cwd: path.resolve(__dirname, '../..'),
      encoding: 'utf8',
    });
    assert.deepEqual(JSON.parse(out), []);
  });

  it('rejects bad options by name', () => {
    assert.throws(() => pgFactory(server.connectionString, { validateTimeoutMillis: 0 }), {
      name: 'InvalidOptionError',
      message: /validateTimeoutMillis.*> 0.*got 0/,
    });
    assert.throws(
      () => pgFactory(server.connectionString, { resetQuerry: 'DISCARD ALL' } as never),
      InvalidOptionError,
    );
    assert.throws(() => pgFactory(server.connectionString, { resetQuery: '' }), /resetQuery/);
    assert.throws(() => pgFactory(42 as never), /connection string or a pg ClientConfig/);
  });
});
