/**
 * No password in anything poolwatch produces: error messages (and their cause chains), lease
 * info, stats, leak reports, alerts, server info, pool names, and what console.log would print
 * of a pool. The embedded server has a random password that it really checks; against a
 * DATABASE_URL server (trust authentication) a random password is put into the URL, which the
 * server never asks for but which is in every config the pool sees.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { inspect } from 'node:util';
import type { Client } from 'pg';
import {
  AcquireTimeoutError,
  CreateFailedError,
  formatLeakReport,
  type Alert,
  type Pool,
} from '../../src';
import { createPgPool, mysqlServerInfo, pgFactory, PgPool, pgServerInfo } from '../../src/drivers';
import { collectGarbageUntil, uniqueName } from '../support/integration';
import { getPostgres, type PgServer } from '../support/postgres';
import { assertNoSecret, findSecret } from '../support/secrets';

describe('no credentials in what poolwatch produces', function () {
  let server: PgServer;
  /** A connection string that carries `password`. */
  let url: string;
  let password: string;
  const closers: (() => Promise<unknown>)[] = [];

  before(async function () {
    this.timeout(60_000);
    server = await getPostgres();
    if (server.config.password !== '') {
      password = server.config.password;
      url = server.connectionString;
    } else {
      password = `pwsecret-${Math.random().toString(36).slice(2)}`;
      const u = new URL(server.connectionString);
      u.password = password;
      url = u.toString();
    }
    assert.ok(url.includes(encodeURIComponent(password)));
  });
  afterEach(async () => {
    await Promise.all(closers.splice(0).map((close) => close()));
  });

  it('finds a secret where it is (the helper works)', () => {
    const err = new Error('outer', { cause: new Error(`inner ${password}`) });
    assert.equal(findSecret({ a: [{ err }] }, password), '$.a[0].err.cause.message');
    assert.ok(findSecret(url, password));
    assert.equal(findSecret({ ok: 'nothing here' }, password), undefined);
  });

  it('server info and pool names carry address, port and database only', () => {
    const withPassword = { ...server.config, password };
    for (const info of [
      pgServerInfo(url),
      pgServerInfo(withPassword),
      pgFactory(url).server!,
      mysqlServerInfo(`mysql://app:${password}@db.internal:3307/shop`),
      mysqlServerInfo({ host: 'db', user: 'app', password, database: 'shop' }),
    ]) {
      assertNoSecret(info, password, 'ServerInfo');
      assert.equal(Object.keys(info).sort().join(), 'address,namespace,port,system');
    }
    // A malformed connection string is rejected without quoting it.
    const bad = [`postgres://u:${password}@host:notaport/db`, `host=h password=${password}`];
    for (const config of bad) {
      assert.throws(
        () => pgFactory(config),
        (e: unknown) => {
          assertNoSecret(e, password, 'the parse error');
          return true;
        },
      );
    }
  });

  it('a working pool: name, stats, lease info, leak report, alerts, close report', async () => {
    const alerts: Alert[] = [];
    const pool: Pool<Client> = createPgPool(url, {
      max: 2,
      leakDetectionThresholdMillis: 30,
      housekeepingIntervalMillis: 10,
      captureStacks: 'always',
      health: { intervalMillis: 10, maxHoldMillis: 40 },
      onAlert: (a) => alerts.push(a),
    });
    closers.push(() => pool.close());
    const kept = await pool.acquire();
    await kept.resource.query('SELECT 1');
    // Exhausted: the timeout names both holders, with their stacks.
    const other = await pool.acquire();
    const timeout = await pool.acquire({ timeoutMillis: 20 }).catch((e: unknown) => e);
    assert.ok(timeout instanceof AcquireTimeoutError, String(timeout));
    other.release();
    await (async () => {
      const dropped = await pool.acquire();
      await dropped.resource.query('SELECT 1');
    })();
    await new Promise((resolve) => setTimeout(resolve, 80));
    await collectGarbageUntil('the dropped lease', () => pool.stats().collectedLeaks === 1);
    const report = pool.leakReport();
    const info = kept.info;
    kept.release();
    const closeReport = await pool.close();
    assert.ok(alerts.some((a) => a.leakKind === 'suspected'));
    assert.ok(alerts.some((a) => a.leakKind === 'collected'));
    assertNoSecret(
      {
        name: pool.name,
        server: pool.server,
        stats: pool.stats(),
        info,
        report,
        text: formatLeakReport(report),
        alerts,
        timeout,
        closeReport,
        printed: inspect(pool, { depth: 6 }),
      },
      password,
      'pool output',
    );
  });

  it('create failures and timeouts: wrong credentials, a silent server (AcquireTimeoutError with cause)', async () => {
    const wrong = new URL(url);
    wrong.username = uniqueName('pw_nobody');
    const badAuth = createPgPool(wrong.toString(), { max: 1 });
    closers.push(() => badAuth.close());
    const authError = await badAuth.acquire().catch((e: unknown) => e);
    assert.ok(authError instanceof CreateFailedError);

    const sockets = new Set<net.Socket>();
    const silent = net.createServer((s) => {
      sockets.add(s);
      s.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    closers.push(async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => silent.close(resolve));
    });
    const blackhole = new URL(url);
    blackhole.port = String((silent.address() as net.AddressInfo).port);
    const slow = createPgPool(
      { connectionString: blackhole.toString(), connectionTimeoutMillis: 100 },
      {
        max: 1,
      },
    );
    closers.push(() => slow.close());
    const createError = await slow.acquire().catch((e: unknown) => e);
    assert.ok(createError instanceof CreateFailedError);
    // The next caller times out first and is told about the last create failure.
    const timeoutError = await slow.acquire({ timeoutMillis: 30 }).catch((e: unknown) => e);
    assert.ok(timeoutError instanceof AcquireTimeoutError);
    assert.match(timeoutError.message, /Last create failure: .*timed out/);
    assert.ok(timeoutError.cause);

    assertNoSecret({ authError, createError, timeoutError }, password, 'errors');
    assertNoSecret(inspect(authError, { depth: 8 }), password, 'the printed error');
  });

  it('the pg-compatible facade: errors, counts, and console.log of the pool', async () => {
    const pool = new PgPool({ connectionString: url, max: 1 });
    closers.push(() => pool.end());
    await pool.query('SELECT 1');
    const wrong = new URL(url);
    wrong.username = uniqueName('pw_nobody');
    const bad = new PgPool({ connectionString: wrong.toString(), password, max: 1 });
    closers.push(() => bad.end());
    const error = await bad.query('SELECT 1').catch((e: unknown) => e);
    // As pg.Pool: the server's own error, not poolwatch's CreateFailedError: 28P01 (wrong
    // password) where the server checks passwords, 28000 (no such role) where it trusts.
    assert.match(String((error as { code?: unknown }).code), /^28(P01|000)$/);
    assertNoSecret(
      { error, stats: pool.pool.stats(), printed: inspect(pool, { depth: 6 }), bad: inspect(bad) },
      password,
      'facade output',
    );
  });
});
