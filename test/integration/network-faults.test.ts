/**
 * Network faults between the pool and a real server (issue 10), through the TCP fault proxy of
 * test/support/fault-proxy.ts: blackholes during connect, during queries and on idle
 * connections, resets, refusals and latency, for pg (embedded PostgreSQL) and mysql2 (the
 * machine's MariaDB; skipped without one). Each test asserts the error callers get while the
 * network is broken (class, code, cause), how long the pool takes to serve again after it heals,
 * and that no server session is left after close(). Every wait is bounded; timeouts are short.
 *
 * `FAULTS_REPORT=1` prints the measured recovery times.
 */
import assert from 'node:assert/strict';
import type { Client } from 'pg';
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { AcquireTimeoutError, CreateFailedError, type Pool } from '../../src';
import { createMysqlPool, createPgPool } from '../../src/drivers';
import { FaultProxy } from '../support/fault-proxy';
import { adminClient, backendsOf, uniqueName, waitFor } from '../support/integration';
import { mysqlAvailable, mysqlConfig } from '../support/mysql';
import { getPostgres, type PgServer } from '../support/postgres';

const measured: Record<string, number> = {};
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Milliseconds from now until `work` first succeeds (retried every 10 ms), bounded. */
async function timeToSucceed(work: () => Promise<unknown>, boundMillis = 3000): Promise<number> {
  const started = performance.now();
  for (;;) {
    try {
      await work();
      return performance.now() - started;
    } catch (error) {
      if (performance.now() - started > boundMillis) throw error;
      await sleep(10);
    }
  }
}

async function failure(promise: Promise<unknown>): Promise<{ error: Error; millis: number }> {
  const started = performance.now();
  try {
    await promise;
  } catch (error) {
    return { error: error as Error, millis: performance.now() - started };
  }
  throw new Error('expected a failure');
}

function causeCode(error: Error): unknown {
  return (error.cause as { code?: unknown } | undefined)?.code;
}

after(() => {
  if (process.env.FAULTS_REPORT) console.log('network-faults measured (ms):', measured);
});

describe('network faults: pg through a fault proxy', function () {
  this.timeout(10_000);
  let server: PgServer;
  let admin: Client;
  let proxy: FaultProxy;
  let app: string;
  let pool: Pool<Client> | undefined;

  before(async function () {
    this.timeout(60_000);
    server = await getPostgres();
    admin = await adminClient(server);
  });
  after(async () => {
    await admin?.end();
  });
  beforeEach(async () => {
    proxy = await FaultProxy.start({ host: server.config.host, port: server.config.port });
    app = uniqueName('pw_faults');
  });
  afterEach(async function () {
    await proxy.heal();
    await pool?.close();
    pool = undefined;
    // Nothing left on the server: the sessions of dead connections too, once the path healed.
    await waitFor(
      'no server session left after close()',
      async () => {
        return (await backendsOf(admin, app)).length === 0;
      },
      { timeoutMillis: 3000 },
    );
    await proxy.close();
  });

  function makePool(max = 3, validateAfterIdleMillis = 500): Pool<Client> {
    pool = createPgPool(
      {
        ...server.config,
        host: '127.0.0.1',
        port: proxy.port,
        application_name: app,
        connectionTimeoutMillis: 300,
        query_timeout: 400,
      },
      { max, acquireTimeoutMillis: 2000, validateAfterIdleMillis, detectSelfDeadlock: false },
      { validateTimeoutMillis: 200, endTimeoutMillis: 100 },
    );
    return pool;
  }

  it('silent drop during queries: holders stuck in a query are named as such, their connections are not reused, and the pool serves right after the network heals', async () => {
    const p = makePool(3);
    const queryErrors: Error[] = [];
    let started = 0;
    const holders = Array.from({ length: 3 }, async () => {
      const lease = await p.acquire();
      try {
        started++;
        await lease.resource.query('SELECT pg_sleep(0.2)');
      } catch (error) {
        queryErrors.push(error as Error);
      } finally {
        lease.release(); // the common pattern: catch, then release
      }
    });
    await waitFor('3 holders in a query', () => started === 3);
    await sleep(50); // the queries are on the server now
    proxy.blackhole();

    // While it is broken: the timeout error says where the holders are.
    const { error: timeout } = await failure(p.acquire({ timeoutMillis: 150 }));
    assert.ok(timeout instanceof AcquireTimeoutError, String(timeout));
    assert.equal(timeout.code, 'POOL_ACQUIRE_TIMEOUT');
    assert.match(timeout.message, /3 of 3 holder\(s\) are stuck in a query on the server/);
    assert.doesNotMatch(timeout.message, /missing release\(\)/);

    await Promise.all(holders);
    assert.deepEqual(
      queryErrors.map((e) => e.message),
      ['Query read timeout', 'Query read timeout', 'Query read timeout'],
    );
    // Released while their query was still active: destroyed, never handed out again.
    assert.equal(p.stats().size, 0);
    // A create while the path is down fails within the connect timeout, saying so.
    const { error: down, millis } = await failure(p.acquire());
    assert.ok(down instanceof CreateFailedError, String(down));
    assert.equal(down.code, 'POOL_CREATE_FAILED');
    assert.match(down.message, /timed out after \d+ ms \(connectionTimeoutMillis: 300\)/);
    assert.ok(millis < 1000, `create failed after ${millis} ms`);

    await proxy.heal();
    const recovery = await timeToSucceed(() => p.use((c) => c.query('SELECT 1')));
    measured['pg silent drop during queries'] = Math.round(recovery);
    assert.ok(recovery < 1000, `served ${recovery} ms after the network healed`);
  });

  it('blackhole during connect: CreateFailedError after the connect timeout, then served at once after healing', async () => {
    const p = makePool(2);
    proxy.blackhole({ existing: false, incoming: true });
    const { error, millis } = await failure(p.acquire());
    assert.ok(error instanceof CreateFailedError, String(error));
    assert.equal(causeCode(error), 'ETIMEDOUT');
    assert.ok(millis >= 250 && millis < 1500, `failed after ${millis} ms`);
    // A caller with a shorter deadline is told about the connect in progress.
    const pending = failure(p.acquire({ timeoutMillis: 100 }));
    const { error: timeout } = await pending;
    assert.ok(timeout instanceof AcquireTimeoutError);
    assert.match(timeout.message, /creating=1 .*\n1 resource\(s\) being created \(connecting\)/s);
    await proxy.heal();
    await sleep(300); // the connect started while it was broken times out
    const recovery = await timeToSucceed(() => p.use((c) => c.query('SELECT 1')));
    measured['pg blackhole during connect'] = Math.round(recovery);
    assert.ok(recovery < 1000, `served ${recovery} ms after healing`);
  });

  it('blackhole on idle connections: validation finds them dead within validateTimeoutMillis', async () => {
    const p = makePool(2, 0);
    const warm = await Promise.all([p.acquire(), p.acquire()]);
    for (const lease of warm) lease.release();
    assert.equal(p.stats().idle, 2);
    proxy.blackhole({ existing: true, incoming: false });
    const started = performance.now();
    await p.use((c) => c.query('SELECT 1'));
    const served = performance.now() - started;
    measured['pg idle connections dead, borrow served after'] = Math.round(served);
    assert.ok(served < 1000, `served after ${served} ms`);
    assert.ok(p.stats().destroyed >= 1);
  });

  it('reset all: queries in flight fail with the driver error, idle connections are evicted, the next acquire is served', async () => {
    const p = makePool(3);
    for (const lease of await Promise.all([p.acquire(), p.acquire()])) lease.release();
    const held = await p.acquire();
    const query = held.resource.query('SELECT pg_sleep(0.3)');
    await sleep(50);
    proxy.resetAll();
    const { error } = await failure(query);
    assert.match(error.message, /ECONNRESET|Connection terminated/);
    held.release();
    await waitFor('idle connections evicted', () => p.stats().size === 0, { timeoutMillis: 1000 });
    const recovery = await timeToSucceed(() => p.use((c) => c.query('SELECT 1')));
    measured['pg reset all'] = Math.round(recovery);
    assert.ok(recovery < 1000, `served ${recovery} ms after the reset`);
  });

  it('refused for a while: CreateFailedError (ECONNREFUSED) at once, served again after', async () => {
    const p = makePool(2);
    await proxy.refuse();
    const { error, millis } = await failure(p.acquire());
    assert.ok(error instanceof CreateFailedError, String(error));
    assert.equal(causeCode(error), 'ECONNREFUSED');
    assert.ok(millis < 1000, `failed after ${millis} ms`);
    await proxy.heal();
    const recovery = await timeToSucceed(() => p.use((c) => c.query('SELECT 1')));
    measured['pg refused'] = Math.round(recovery);
    assert.ok(recovery < 1000, `served ${recovery} ms after`);
  });

  it('latency: queries work, acquire deadlines hold', async () => {
    const p = makePool(1);
    await p.use((c) => c.query('SELECT 1'));
    proxy.latency(40);
    const started = performance.now();
    await p.use((c) => c.query('SELECT 1'));
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 75, `a round trip took ${elapsed} ms with 40 ms each way`);
    const held = await p.acquire();
    const { error, millis } = await failure(p.acquire({ timeoutMillis: 60 }));
    assert.ok(error instanceof AcquireTimeoutError);
    assert.ok(millis >= 55 && millis < 1000, `timed out after ${millis} ms`);
    held.release();
  });
});

describe('network faults: mysql2 (MariaDB) through a fault proxy', function () {
  this.timeout(10_000);
  let admin: Connection;
  let proxy: FaultProxy;
  let pool: Pool<Connection> | undefined;
  /** Server thread ids of every connection the pool under test made. */
  let threads: number[];

  before(async function () {
    if (!(await mysqlAvailable())) this.skip();
    const { createConnection } = await import('mysql2/promise');
    admin = await createConnection(mysqlConfig());
  });
  after(async () => {
    await admin?.end().catch(() => undefined);
  });
  beforeEach(async () => {
    const c = mysqlConfig();
    proxy = await FaultProxy.start({ host: c.host, port: c.port });
    threads = [];
  });
  afterEach(async () => {
    await proxy.heal();
    await pool?.close();
    pool = undefined;
    await waitFor(
      'no server session left after close()',
      async () => {
        if (threads.length === 0) return true;
        const [rows] = await admin.query<RowDataPacket[]>(
          'SELECT ID FROM information_schema.PROCESSLIST WHERE ID IN (?)',
          [threads],
        );
        return rows.length === 0;
      },
      { timeoutMillis: 3000 },
    );
    await proxy.close();
  });

  function makePool(max = 3, validateAfterIdleMillis = 500): Pool<Connection> {
    const c = mysqlConfig();
    pool = createMysqlPool(
      { ...c, host: '127.0.0.1', port: proxy.port, connectTimeout: 300 },
      { max, acquireTimeoutMillis: 2000, validateAfterIdleMillis, detectSelfDeadlock: false },
      {
        validateTimeoutMillis: 200,
        endTimeoutMillis: 100,
        onConnect: (conn) => void threads.push(conn.threadId),
      },
    );
    return pool;
  }

  it('silent drop during queries: holders named as stuck in a query; recovery after healing', async () => {
    const p = makePool(2);
    let started = 0;
    const errors: Error[] = [];
    const holders = [1, 2].map(async () => {
      const lease = await p.acquire();
      try {
        started++;
        await lease.resource.query({ sql: 'SELECT SLEEP(0.2)', timeout: 400 });
      } catch (error) {
        errors.push(error as Error);
      } finally {
        lease.release();
      }
    });
    await waitFor('2 holders in a query', () => started === 2);
    await sleep(50);
    proxy.blackhole();
    const { error: timeout } = await failure(p.acquire({ timeoutMillis: 150 }));
    assert.ok(timeout instanceof AcquireTimeoutError, String(timeout));
    assert.match(timeout.message, /2 of 2 holder\(s\) are stuck in a query on the server/);
    await Promise.all(holders);
    assert.equal(errors.length, 2);
    assert.ok(errors.every((e) => (e as { code?: string }).code === 'PROTOCOL_SEQUENCE_TIMEOUT'));
    assert.equal(p.stats().size, 0, 'the timed-out connections were not reused');
    const { error: down } = await failure(p.acquire());
    assert.ok(down instanceof CreateFailedError, String(down));
    assert.equal(causeCode(down), 'ETIMEDOUT');
    await proxy.heal();
    const recovery = await timeToSucceed(() => p.use((c) => c.query('SELECT 1')));
    measured['mysql silent drop during queries'] = Math.round(recovery);
    assert.ok(recovery < 1000, `served ${recovery} ms after healing`);
  });

  it('blackhole on idle connections, reset all, refusal: clear errors and prompt recovery', async () => {
    const p = makePool(2, 0);
    for (const lease of await Promise.all([p.acquire(), p.acquire()])) lease.release();
    proxy.blackhole({ existing: true, incoming: false });
    const started = performance.now();
    await p.use((c) => c.query('SELECT 1'));
    assert.ok(performance.now() - started < 1000);

    const held = await p.acquire();
    const query = held.resource.query('SELECT SLEEP(0.3)');
    await sleep(50);
    proxy.resetAll();
    const { error } = await failure(query);
    assert.equal((error as { code?: string }).code, 'ECONNRESET');
    held.release();
    const recovery = await timeToSucceed(() => p.use((c) => c.query('SELECT 1')));
    measured['mysql reset all'] = Math.round(recovery);
    assert.ok(recovery < 1000);

    await waitFor('idle evicted', () => p.stats().idle <= 1, { timeoutMillis: 1000 });
    proxy.resetAll();
    await proxy.refuse();
    await sleep(20);
    const { error: refused, millis } = await failure(p.use((c) => c.query('SELECT 1')));
    assert.ok(refused instanceof CreateFailedError, String(refused));
    assert.equal(causeCode(refused), 'ECONNREFUSED');
    assert.ok(millis < 1000, `failed after ${millis} ms`);
    await proxy.heal();
    assert.ok((await timeToSucceed(() => p.use((c) => c.query('SELECT 1')))) < 1000);
  });
});
