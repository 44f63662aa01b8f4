/**
 * Checks the test infrastructure itself (test/support/postgres.ts), so that a
 * broken harness fails here with a clear message instead of as confusing
 * failures in the pool's integration tests.
 */
import assert from 'node:assert/strict';
import { Client } from 'pg';
import { getPostgres, RestartUnsupportedError, type PgServer } from '../support/postgres';

/** Connects a fresh client, runs `fn`, always closes it. */
async function withClient<T>(server: PgServer, fn: (c: Client) => Promise<T>): Promise<T> {
  const client = new Client({ ...server.config, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

describe('PostgreSQL test harness', function () {
  let server: PgServer;

  before(async function () {
    // First use starts the embedded server (about a second); allow for slow CI.
    this.timeout(60_000);
    server = await getPostgres();
  });

  it('runs queries through pg', async function () {
    await withClient(server, async (c) => {
      const one = await c.query<{ one: number }>('SELECT 1 AS one');
      assert.equal(one.rows[0]!.one, 1);

      const version = await c.query<{ server_version: string }>('SHOW server_version');
      assert.match(version.rows[0]!.server_version, /^\d+(\.\d+)?/);

      const db = await c.query<{ db: string }>('SELECT current_database() AS db');
      assert.equal(db.rows[0]!.db, server.config.database);
    });
  });

  it('connects with the connection string too', async function () {
    const client = new Client({ connectionString: server.connectionString });
    await client.connect();
    try {
      const r = await client.query<{ user: string }>('SELECT current_user AS user');
      assert.equal(r.rows[0]!.user, server.config.user);
    } finally {
      await client.end();
    }
  });

  it('shares one server per mocha process', async function () {
    assert.equal(await getPostgres(), server);
  });

  it('requires the password on the embedded server', async function () {
    if (!server.embedded) this.skip();
    assert.ok(server.config.password.length > 0);
    const client = new Client({ ...server.config, password: 'wrong' });
    // 28P01 = invalid_password: the server really checks it, so tests that
    // look for leaked passwords in telemetry have a real secret to look for.
    await assert.rejects(client.connect(), { code: '28P01' });
  });

  it('stops and restarts the server on the same port, keeping the data', async function () {
    if (!server.supportsRestart) {
      await assert.rejects(server.stopServer(), RestartUnsupportedError);
      this.skip();
    }
    this.timeout(30_000);

    await withClient(server, (c) =>
      c.query('CREATE TABLE restart_probe (v int); INSERT INTO restart_probe VALUES (42)'),
    );
    // A connection open across the restart is terminated by the fast shutdown
    // and must report an error rather than hang.
    const survivor = new Client(server.config);
    await survivor.connect();
    // `on`, not `once`: pg may emit more than one error for the same loss (the
    // server's 57P01 "terminating connection", then "terminated unexpectedly").
    const survivorError = new Promise<Error>((resolve) => survivor.on('error', resolve));

    await server.stopServer();
    await assert.rejects(
      withClient(server, (c) => c.query('SELECT 1')),
      { code: 'ECONNREFUSED' },
    );
    assert.ok((await survivorError) instanceof Error);
    await survivor.end().catch(() => undefined);

    await server.startServer();
    const rows = await withClient(server, (c) =>
      c.query<{ v: number }>('SELECT v FROM restart_probe'),
    );
    assert.deepEqual(rows.rows, [{ v: 42 }]);

    await server.restart();
    await withClient(server, (c) => c.query('DROP TABLE restart_probe'));
  });
});
