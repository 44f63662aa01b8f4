import assert from 'node:assert/strict';
import { mysql2ServerInfo } from '../../src/adapters/mysql2-pool';
import { knexServerInfo } from '../../src/adapters/tarn';
import { formatStack, captureStack } from '../../src/watch/stack';

describe('adapters: knex and mysql2 naming, never credentials', () => {
  it('reads where a knex client connects, per dialect', () => {
    const pg = knexServerInfo({
      pool: undefined,
      dialect: 'postgresql',
      connectionSettings: {
        connectionString: 'postgres://alice:s3cret@db.example:6543/shop',
        password: 's3cret',
      },
    });
    assert.deepEqual(pg, {
      system: 'postgresql',
      address: 'db.example',
      port: 6543,
      namespace: 'shop',
    });
    assert.deepEqual(
      knexServerInfo({
        pool: undefined,
        dialect: 'mysql',
        connectionSettings: { host: 'm', user: 'bob', password: 'pw', database: 'app' },
      }),
      { system: 'mysql', address: 'm', port: 3306, namespace: 'app' },
    );
    assert.deepEqual(
      knexServerInfo({
        pool: undefined,
        dialect: 'mysql',
        connectionSettings: { socketPath: '/run/mysqld.sock', database: 'app' },
      }),
      { system: 'mysql', address: '/run/mysqld.sock', namespace: 'app' },
    );
    assert.deepEqual(
      knexServerInfo({
        pool: undefined,
        dialect: 'sqlite3',
        connectionSettings: { filename: ':memory:' },
      }),
      { system: 'sqlite', namespace: ':memory:' },
    );
    // A connection given as a function: nothing to read.
    assert.deepEqual(
      knexServerInfo({ pool: undefined, dialect: 'mssql', connectionSettings: () => ({}) }),
      { system: 'microsoft.sql_server', address: 'localhost', port: 1433 },
    );
  });

  it('reads where a mysql2 pool connects', () => {
    assert.deepEqual(
      mysql2ServerInfo({ host: 'h', port: 3307, user: 'u', password: 'p', database: 'd' }),
      { system: 'mysql', address: 'h', port: 3307, namespace: 'd' },
    );
    assert.deepEqual(mysql2ServerInfo({}), { system: 'mysql', address: 'localhost', port: 3306 });
    assert.deepEqual(mysql2ServerInfo({ socketPath: '/s', host: 'ignored' }), {
      system: 'mysql',
      address: '/s',
    });
  });

  it("trims a library's new Promise(…) executor frame, as knex's and mysql2's own", () => {
    // What knex's transaction() and mysql2's promise pool do: the checkout starts in an executor.
    const take = (): ReturnType<typeof captureStack> => captureStack(take);
    const captured = new Promise<ReturnType<typeof captureStack>>((resolve) => resolve(take()));
    return captured.then((c) => {
      const stack = formatStack(c)!;
      assert.match(stack.split('\n')[0]!, /library-pools\.test\.ts:\d+:\d+\)?$/);
      assert.ok(!stack.includes('at new Promise (<anonymous>)'), stack);
    });
  });
});
