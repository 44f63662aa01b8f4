/**
 * Faults on a real PostgreSQL: backends terminated (idle and held), the server stopped and
 * restarted under load, wrong credentials, nothing listening, a silent peer, and a burst far
 * larger than the pool. The pool must fail fast and clearly, never retry in a busy loop, never
 * hang, and keep its counts balanced.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import type { Client, ClientConfig } from 'pg';
import {
  AcquireTimeoutError,
  CreateFailedError,
  Pool,
  type PoolOptions,
  type PoolStats,
  type ResourceFactory,
} from '../../src';
import { pgFactory, PgPool, type PgFactoryOptions } from '../../src/drivers';
import {
  adminClient,
  backendsOf,
  pgConfig,
  terminateBackend,
  uniqueName,
  waitFor,
} from '../support/integration';
import { freePort, getPostgres, type PgServer } from '../support/postgres';

/** A pg factory that counts create attempts, to prove there is no retry loop. */
function countingFactory(
  config: ClientConfig,
  options?: PgFactoryOptions,
): ResourceFactory<Client> & { attempts: number } {
  const base = pgFactory(config, options);
  const counted = {
    ...base,
    attempts: 0,
    create: (ctx: Parameters<typeof base.create>[0]) => {
      counted.attempts++;
      return base.create(ctx);
    },
  };
  return counted;
}

function assertBalanced(s: PoolStats): void {
  assert.equal(s.used, 0, 'no lease outstanding');
  assert.equal(s.pending, 0, 'no waiter left');
  assert.equal(s.created - s.destroyed, s.size, 'created - destroyed = size');
  assert.ok(s.size <= s.max, `size ${s.size} <= max ${s.max}`);
}

function elapsedSince(t0: number): number {
  return performance.now() - t0;
}

describe('faults (real PostgreSQL)', function () {
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

  function pool(factory: ResourceFactory<Client>, options: Omit<PoolOptions<Client>, 'factory'>) {
    const p = new Pool<Client>({ health: false, ...options, factory });
    pools.push(p);
    return p;
  }

  const pidOf = async (c: Client): Promise<number> =>
    (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;

  it('evicts an idle connection whose backend was terminated; no slot is lost', async () => {
    const app = uniqueName('pw_kill_idle');
    const p = pool(pgFactory(pgConfig(server, app)), { name: 'kill-idle', max: 1 });
    const pid = await p.use(pidOf);
    await terminateBackend(admin, pid);
    // pg emits 'error' on the idle client, which marks it broken: the pool destroys it at once.
    await waitFor('the pool to evict it', () => p.stats().destroyed === 1);
    assert.equal(p.stats().size, 0);
    const pid2 = await p.use(pidOf);
    assert.notEqual(pid2, pid);
    assertBalanced(p.stats());
    assert.equal(p.stats().created, 2);
  });

  it('a held connection whose backend was terminated fails its query and is destroyed on release', async () => {
    const app = uniqueName('pw_kill_held');
    const p = pool(pgFactory(pgConfig(server, app)), { name: 'kill-held', max: 1 });
    const lease = await p.acquire();
    const pid = await pidOf(lease.resource);
    await terminateBackend(admin, pid);
    await assert.rejects(lease.resource.query('SELECT 1'), (e: Error & { code?: string }) => {
      // Either the server's FATAL (57P01) or pg's "Connection terminated unexpectedly".
      assert.ok(e.code === '57P01' || /terminat|not queryable/i.test(e.message), e.message);
      return true;
    });
    lease.release(); // marked broken by the 'error' listener: destroyed, not reused
    assert.equal(p.stats().destroyed, 1);
    assert.notEqual(await p.use(pidOf), pid);
    assertBalanced(p.stats());
  });

  it('server stopped under load: CreateFailedError at once while down, serves again after restart', async function () {
    if (!server.supportsRestart) this.skip();
    this.timeout(40_000);
    const app = uniqueName('pw_restart');
    const factory = countingFactory(pgConfig(server, app));
    const p = pool(factory, {
      name: 'restart',
      max: 4,
      acquireTimeoutMillis: 5000,
      validateAfterIdleMillis: 0,
    });

    // Load: 8 workers over 4 connections, each query a short transaction.
    const outcomes = { ok: 0, createFailed: 0, timeout: 0, queryFailed: 0 };
    let running = true;
    const worker = async () => {
      while (running) {
        try {
          await p.use(async (c) => {
            await c.query('SELECT pg_sleep(0.002)');
          });
          outcomes.ok++;
        } catch (error) {
          if (error instanceof CreateFailedError) outcomes.createFailed++;
          else if (error instanceof AcquireTimeoutError) outcomes.timeout++;
          else outcomes.queryFailed++; // in flight when the server went down
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
      }
    };
    const workers = Array.from({ length: 8 }, worker);
    try {
      await waitFor('the load to run', () => outcomes.ok >= 50);

      const tStop = performance.now();
      await server.stopServer();
      const stopMillis = elapsedSince(tStop);
      const t0 = performance.now();
      const error = await p.acquire().then(
        (lease) => {
          lease.release();
          return assert.fail('acquire succeeded with the server down');
        },
        (e: unknown) => e,
      );
      const failMillis = elapsedSince(t0);
      assert.ok(error instanceof CreateFailedError, `got ${String(error)}`);
      assert.equal(error.code, 'POOL_CREATE_FAILED');
      assert.ok(!(error instanceof AcquireTimeoutError));
      assert.equal((error.cause as { code?: string }).code, 'ECONNREFUSED');
      assert.match(error.message, /cannot create a resource \(cannot connect\?\)/);
      assert.ok(failMillis < 1000, `failed fast: ${failMillis.toFixed(0)} ms`);

      // While down, every create attempt is one caller's failed acquire: no retry loop.
      const attempts0 = factory.attempts;
      const failures0 = outcomes.createFailed;
      await new Promise((resolve) => setTimeout(resolve, 200));
      const attempts = factory.attempts - attempts0;
      const failures = outcomes.createFailed - failures0;
      assert.ok(failures > 0);
      assert.ok(attempts <= failures + 4, `${attempts} attempts for ${failures} failed acquires`);

      const tStart = performance.now();
      await server.startServer();
      const startMillis = elapsedSince(tStart);
      // The stop also cut this file's admin session.
      await admin.end().catch(() => undefined);
      admin = await adminClient(server);
      const okBefore = outcomes.ok;
      await waitFor('queries to succeed again', () => outcomes.ok >= okBefore + 50, {
        timeoutMillis: 15_000,
      });
      const recoverMillis = elapsedSince(tStart);
      this.test!.title += ` [stop ${stopMillis.toFixed(0)} ms, fail ${failMillis.toFixed(0)} ms, start ${startMillis.toFixed(0)} ms, recovered ${recoverMillis.toFixed(0)} ms]`;
    } finally {
      running = false;
      await Promise.all(workers);
    }
    assert.equal(outcomes.timeout, 0, 'no acquire timed out: failures were immediate');
    assert.ok(outcomes.createFailed > 0);
    assertBalanced(p.stats());
    // Every connection alive now works.
    await Promise.all(Array.from({ length: 8 }, () => p.use((c) => c.query('SELECT 1'))));
  });

  it('wrong credentials: a clear CreateFailedError at once, one attempt per acquire, no retry loop', async () => {
    const secret = `wrong-${Math.random().toString(36).slice(2)}`;
    const factory = countingFactory({
      ...pgConfig(server, uniqueName('pw_badauth')),
      user: 'poolwatch_no_such_user',
      password: secret,
    });
    const p = pool(factory, { name: 'bad-auth', max: 3 });
    for (let i = 1; i <= 3; i++) {
      const t0 = performance.now();
      await assert.rejects(p.acquire(), (e: unknown) => {
        assert.ok(e instanceof CreateFailedError);
        assert.match(
          e.message,
          /password authentication failed|role "poolwatch_no_such_user" does not exist/,
        );
        assert.ok(!e.message.includes(secret));
        return true;
      });
      assert.ok(elapsedSince(t0) < 2000);
      assert.equal(factory.attempts, i, 'exactly one create per failed acquire');
    }
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.equal(factory.attempts, 3, 'nothing retries in the background with min: 0');
    assertBalanced(p.stats());
  });

  it('wrong credentials with min > 0: background refill backs off instead of spinning', async () => {
    const factory = countingFactory({
      ...pgConfig(server, uniqueName('pw_badauth_min')),
      user: 'poolwatch_no_such_user',
      password: 'wrong',
    });
    pool(factory, { name: 'bad-auth-min', min: 2, max: 2 });
    await new Promise((resolve) => setTimeout(resolve, 700));
    // Backoff 100, 200, 400 ms: about 4 rounds of 2 in 700 ms; a busy loop would make thousands.
    assert.ok(factory.attempts >= 2 && factory.attempts <= 10, `${factory.attempts} attempts`);
  });

  it('nothing listening on the port: ECONNREFUSED at once, no hang', async () => {
    const port = await freePort();
    const factory = countingFactory({ host: '127.0.0.1', port, user: 'x', database: 'x' });
    const p = pool(factory, { name: 'closed-port', max: 2 });
    const t0 = performance.now();
    await assert.rejects(p.acquire(), (e: unknown) => {
      assert.ok(e instanceof CreateFailedError);
      assert.equal((e.cause as { code?: string }).code, 'ECONNREFUSED');
      assert.match(e.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
      return true;
    });
    assert.ok(elapsedSince(t0) < 1000);
    assert.equal(factory.attempts, 1);
  });

  it('a silent peer (blackhole): connect times out at connectionTimeoutMillis, acquire timeout first if shorter', async () => {
    // Accepts TCP and never answers, like a firewalled or hung server.
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((s) => {
      sockets.add(s);
      s.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as net.AddressInfo;
    try {
      const factory = countingFactory({
        host: '127.0.0.1',
        port,
        user: 'x',
        database: 'x',
        connectionTimeoutMillis: 300,
      });
      const p = pool(factory, { name: 'blackhole', max: 2, acquireTimeoutMillis: 5000 });
      let t0 = performance.now();
      await assert.rejects(p.acquire(), (e: unknown) => {
        assert.ok(e instanceof CreateFailedError);
        assert.match(e.message, /timed out after \d+ ms \(connectionTimeoutMillis: 300\)/);
        assert.equal((e.cause as { code?: string }).code, 'ETIMEDOUT');
        return true;
      });
      const connectMillis = elapsedSince(t0);
      assert.ok(connectMillis >= 280 && connectMillis < 1500, `${connectMillis} ms`);
      assert.equal(factory.attempts, 1);

      // The caller's own deadline comes first: an AcquireTimeoutError, and the slow create still
      // ends at its own timeout without leaking a slot.
      t0 = performance.now();
      await assert.rejects(p.acquire({ timeoutMillis: 100 }), AcquireTimeoutError);
      assert.ok(elapsedSince(t0) < 1000);
      await waitFor('the pending create to give up', () => p.stats().creating === 0);
      assertBalanced(p.stats());
      const t1 = performance.now();
      await p.close();
      assert.ok(elapsedSince(t1) < 1000, 'close() does not hang on a silent server');
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('300 concurrent tasks over 10 connections: all complete, counts balance, nothing leaks', async function () {
    const app = uniqueName('pw_burst');
    const factory = countingFactory(pgConfig(server, app));
    const p = pool(factory, { name: 'burst', max: 10, acquireTimeoutMillis: 10_000 });
    let peakServerSide = 0;
    const sampler = setInterval(() => {
      void backendsOf(admin, app).then((pids) => {
        peakServerSide = Math.max(peakServerSide, pids.length);
      });
    }, 20);
    const t0 = performance.now();
    let results: number[];
    try {
      results = await Promise.all(
        Array.from({ length: 300 }, (_, i) =>
          p.use(async (c) => {
            await c.query('BEGIN');
            const r = await c.query<{ v: number }>('SELECT $1::int AS v, pg_sleep(0.001)', [i]);
            await c.query('COMMIT');
            return r.rows[0]!.v;
          }),
        ),
      );
    } finally {
      clearInterval(sampler);
    }
    const millis = elapsedSince(t0);
    assert.deepEqual(
      results,
      Array.from({ length: 300 }, (_, i) => i),
    );
    const s = p.stats();
    assertBalanced(s);
    assert.equal(s.created, factory.attempts);
    assert.ok(s.created <= 10, `${s.created} connections created`);
    assert.equal(s.timeouts, 0);
    assert.equal(s.collectedLeaks + s.suspectedLeaks + s.reclaimedLeaks, 0);
    assert.ok(peakServerSide <= 10, `server saw ${peakServerSide} sessions`);
    assert.ok((await backendsOf(admin, app)).length <= 10);
    this.test!.title += ` [${millis.toFixed(0)} ms]`;

    // The same burst through the pg-compatible facade.
    const facade = new PgPool({ ...pgConfig(server, `${app}_f`), max: 10 });
    try {
      const r = await Promise.all(
        Array.from({ length: 300 }, (_, i) => facade.query('SELECT $1::int AS v', [i])),
      );
      assert.equal(r.length, 300);
      assert.equal(facade.pool.stats().used, 0);
      assert.ok(facade.totalCount <= 10);
    } finally {
      await facade.end();
    }
  });
});
