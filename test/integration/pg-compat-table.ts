/**
 * The behaviour table for `PgPool`: each row is pg.Pool code, run once against a real `pg.Pool`
 * (pg-pool) and once against `PgPool`, on the same real PostgreSQL. A row returns what a pg user
 * can observe (values, counts, error codes and messages, uncaught exceptions); both pools must give
 * identical observations, except the keys a row lists in `differs`, where each pool must give the
 * value listed for it, with the reason (the README's PgPool section lists the same differences).
 */
import net from 'node:net';
import { Kysely, PostgresDialect, sql, type Generated } from 'kysely';
import pg, { type Client, type PoolClient } from 'pg';
import type { PgPoolConfig } from '../../src/drivers';
import { terminateBackend, uniqueName, waitFor } from '../support/integration';
import type { PgServer } from '../support/postgres';

export type Observation = Record<string, unknown>;

export interface Difference {
  readonly pg: unknown;
  readonly pgpool: unknown;
  readonly why: string;
}

export interface Tools {
  readonly kind: 'pg' | 'pgpool';
  readonly server: PgServer;
  readonly admin: Client;
  /** The application_name of this pool's connections. */
  readonly app: string;
  /** State shared between a row's config and its run (counters, logs). */
  readonly bag: Record<string, unknown>;
}

export interface Behaviour {
  readonly name: string;
  /** Pool config on top of the test server's (pgConfig); `poolwatch` is dropped for pg.Pool. */
  readonly config?: (t: Tools) => PgPoolConfig;
  readonly run: (pool: pg.Pool, t: Tools) => Promise<Observation>;
  readonly differs?: Readonly<Record<string, Difference>>;
  /** A server that checks passwords (the embedded one; CI's PostgreSQL 15 trusts local users). */
  readonly needsPasswordCheck?: boolean;
}

/** A run that never settles is observed as this (pg-pool leaves some callers hanging). */
export const NEVER_SETTLES = 'never settles';
const PG_TIMEOUT = 'timeout exceeded when trying to connect';
const PG_CONNECT_TIMEOUT = 'Connection terminated due to connection timeout';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The promise's value (or `error: <first line>`), or NEVER_SETTLES after `ms`. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | string> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(NEVER_SETTLES), ms);
  });
  try {
    return await Promise.race([
      promise.catch((error: unknown) => `error: ${firstLine(error)}`),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export function firstLine(error: unknown): string {
  return String((error as Error | undefined)?.message ?? error).split('\n')[0]!;
}

function code(error: unknown): unknown {
  return (error as { code?: unknown } | null)?.code;
}

/**
 * Runs `fn` with the process's uncaught-exception and unhandled-rejection handlers replaced by
 * recorders (mocha's are put back after), then waits until `until()` holds or `settleMillis`
 * passed. Uncaught exceptions are what pg-pool's users get from a throwing event listener or
 * callback: the pools must agree on them.
 */
async function catching<T>(
  fn: (uncaught: string[]) => Promise<T>,
  settleMillis = 300,
  until: (uncaught: string[]) => boolean = () => false,
): Promise<{ value: T; uncaught: string[]; unhandled: string[] }> {
  const saved = {
    uncaughtException: process.listeners('uncaughtException'),
    unhandledRejection: process.listeners('unhandledRejection'),
  };
  const uncaught: string[] = [];
  const unhandled: string[] = [];
  const onUncaught = (error: unknown): void => void uncaught.push(firstLine(error));
  const onUnhandled = (error: unknown): void => void unhandled.push(firstLine(error));
  process.removeAllListeners('uncaughtException');
  process.removeAllListeners('unhandledRejection');
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onUnhandled);
  try {
    const value = await fn(uncaught);
    const deadline = performance.now() + settleMillis;
    while (performance.now() < deadline && !until(uncaught)) await sleep(10);
    return { value, uncaught, unhandled };
  } finally {
    process.off('uncaughtException', onUncaught);
    process.off('unhandledRejection', onUnhandled);
    for (const l of saved.uncaughtException) process.on('uncaughtException', l);
    for (const l of saved.unhandledRejection) process.on('unhandledRejection', l);
  }
}

async function pidOf(client: PoolClient): Promise<number> {
  return (await client.query<{ p: number }>('SELECT pg_backend_pid() AS p')).rows[0]!.p;
}

async function poolPid(pool: pg.Pool): Promise<number> {
  return (await pool.query<{ p: number }>('SELECT pg_backend_pid() AS p')).rows[0]!.p;
}

/** A TCP server that accepts and never answers: a connect that hangs. */
async function blackhole(): Promise<{ port: number; close(): void }> {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return {
    port: (srv.address() as net.AddressInfo).port,
    close: () => {
      for (const s of sockets) s.destroy();
      srv.close();
    },
  };
}

async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

const HANDLE =
  'a new handle per checkout, so that a dropped one can be garbage-collected and found';

export const BEHAVIOURS: Behaviour[] = [
  {
    name: 'pg-pool README examples: promise, async/await, pool.query, callbacks, end',
    async run(pool) {
      const o: Observation = {};
      o.promise = await pool.connect().then((client) =>
        client.query('select $1::text as name', ['pg-pool']).then((res) => {
          client.release();
          return res.rows[0].name;
        }),
      );
      const client = await pool.connect();
      try {
        o.asyncAwait = (await client.query('select $1::text as name', ['brianc'])).rows[0].name;
      } finally {
        client.release();
      }
      const time = await pool.query('SELECT NOW()');
      const name = await pool.query('select $1::text as name', ['brianc']);
      o.helper = [time.rows[0].now instanceof Date, name.rows[0].name];
      o.callback = await new Promise((resolve) =>
        pool.query('SELECT $1::text as name', ['brianc'], (err, res) =>
          resolve(err ? firstLine(err) : res.rows[0].name),
        ),
      );
      o.traditional = await new Promise((resolve) =>
        pool.connect((err, c, done) => {
          if (err || !c) {
            done(err);
            return resolve(firstLine(err));
          }
          c.query('SELECT $1::text as name', ['pg-pool'], (qErr, res) => {
            done();
            resolve(qErr ? firstLine(qErr) : res.rows[0].name);
          });
        }),
      );
      // poolwatch's README: a transaction on a checked-out client.
      const tx = await pool.connect();
      try {
        await tx.query('BEGIN');
        o.inTx = (await tx.query('SELECT 1 AS one')).rows;
        await tx.query('COMMIT');
      } finally {
        tx.release();
      }
      o.allIdle = pool.idleCount === pool.totalCount;
      return o;
    },
  },
  {
    name: "pg-pool README events: 'connect' sets client.count, 'acquire' counts 200 queries",
    async run(pool) {
      let count = 0;
      pool.on('connect', (client: PoolClient & { count?: number }) => {
        client.count = count++;
      });
      const client = (await pool.connect()) as PoolClient & { count?: number };
      const res = await client.query('SELECT $1::int AS "clientCount", pg_backend_pid() AS p', [
        client.count,
      ]);
      client.release();
      let acquireCount = 0;
      pool.on('acquire', () => acquireCount++);
      let connectCount = 0;
      pool.on('connect', () => connectCount++);
      const pids = await Promise.all(
        Array.from({ length: 200 }, () =>
          pool
            .query<{ p: number }>('SELECT NOW(), pg_backend_pid() AS p')
            .then((r) => r.rows[0]!.p),
        ),
      );
      // pg's README says "connect count: 10": one new client per caller until max. PgPool's
      // 'connect' comes at a client's first checkout, so under load a client connected for a
      // caller that another client served first is announced later: count the clients used.
      return {
        clientCount: res.rows[0].clientCount,
        acquireCount,
        connectPerClientUsed: connectCount + 1 === new Set([...pids, res.rows[0].p]).size,
        atMostMax: connectCount + 1 <= 10,
      };
    },
  },
  {
    name: 'LISTEN/NOTIFY consumer on a checked-out client',
    async run(pool, t) {
      const channel = uniqueName('pw_ch');
      const client = await pool.connect();
      const got: unknown[] = [];
      const both = new Promise<void>((resolve) =>
        client.on('notification', (n) => {
          got.push([n.channel === channel, n.payload]);
          if (got.length === 2) resolve();
        }),
      );
      await client.query(`LISTEN ${channel}`);
      await t.admin.query("SELECT pg_notify($1, 'first'), pg_notify($1, 'second')", [channel]);
      const settled = await within(both, 3000);
      await client.query(`UNLISTEN ${channel}`);
      client.release();
      return { got, settled: settled === undefined };
    },
  },
  {
    name: 'kysely PostgresDialect (poolwatch README): schema, insert, transaction, destroy',
    async run(pool) {
      const db = new Kysely<Record<string, { id: Generated<number>; n: number }>>({
        dialect: new PostgresDialect({ pool }),
      });
      const table = uniqueName('pw_kysely');
      await db.schema
        .createTable(table)
        .addColumn('id', 'serial', (c) => c.primaryKey())
        .addColumn('n', 'integer')
        .execute();
      await db
        .insertInto(table)
        .values([{ n: 1 }, { n: 2 }])
        .execute();
      await db.transaction().execute(async (trx) => {
        await trx
          .updateTable(table)
          .set({ n: sql`n * 10` })
          .execute();
      });
      const rows = await db.selectFrom(table).select('n').orderBy('n').execute();
      await db.schema.dropTable(table).execute();
      await db.destroy();
      return { rows, ended: pool.ended };
    },
  },
  {
    name: "the checked-out client: pg.Client's properties and methods",
    config: () => ({ binary: false }) as PgPoolConfig,
    async run(pool, t) {
      const client = (await pool.connect()) as PoolClient & Record<string, unknown>;
      const o: Observation = {
        processID: typeof client.processID === 'number' && (client.processID as number) > 0,
        binary: client.binary,
        pipeline: client.pipeline,
        user: client.user === t.server.config.user,
        database: client.database === t.server.config.database,
        port: client.port === t.server.config.port,
        appName:
          (client.connectionParameters as { application_name?: string }).application_name === t.app,
        escapeLiteral: client.escapeLiteral("it's"),
        escapeIdentifier: client.escapeIdentifier('a"b'),
        transactionStatus: client.getTransactionStatus(),
        readyForQuery: client.readyForQuery,
        methods: ['emit', 'end', 'query', 'on', 'once', 'release'].map((m) => typeof client[m]),
        hasBinary: 'binary' in client,
        instanceOfPgClient: client instanceof pg.Client,
        // Drizzle tells a pool from a client this way (a client gets no connect()).
        constructorName: (Object.getPrototypeOf(client) as object).constructor.name,
      };
      client.release();
      return o;
    },
  },
  {
    name: 'client options passed through the pool: pipeline mode, statement_timeout, types',
    config: () =>
      ({
        pipeline: true,
        statement_timeout: 1234,
        types: { getTypeParser: () => (value: string) => `<${value}>` },
      }) as PgPoolConfig,
    async run(pool) {
      const client = (await pool.connect()) as PoolClient & { pipeline?: boolean };
      const [a, b, c] = await Promise.all([
        client.query('SHOW statement_timeout'),
        client.query('SELECT 1 AS one'),
        client.query('SELECT $1::text AS t', ['x']),
      ]);
      client.release();
      return {
        pipeline: client.pipeline,
        rows: [a.rows, b.rows, c.rows],
        viaPoolQuery: (await pool.query('SELECT 2 AS two')).rows,
      };
    },
  },
  {
    name: "properties set by onConnect and by a 'connect' listener; 'connect' gets the caller's client",
    config: () => ({
      max: 1,
      onConnect: (client: pg.ClientBase) => {
        (client as pg.ClientBase & { tenant?: string }).tenant = 'acme';
      },
    }),
    async run(pool) {
      let n = 0;
      const connectArgs: unknown[] = [];
      pool.on('connect', (client: PoolClient & { count?: number }) => {
        client.count = n++;
        connectArgs.push(client);
      });
      const a = (await pool.connect()) as PoolClient & { tenant?: string; count?: number };
      const first = { tenant: a.tenant, count: a.count, connectArgIsClient: connectArgs[0] === a };
      a.release();
      const b = (await pool.connect()) as PoolClient & { tenant?: string; count?: number };
      const second = { tenant: b.tenant, count: b.count, connects: connectArgs.length };
      b.release();
      return { first, second };
    },
  },
  {
    name: 'client.emit() and client.end() on a checked-out client',
    async run(pool) {
      const client = await pool.connect();
      const seen: unknown[] = [];
      client.on('custom' as 'drain', (x?: unknown) => seen.push(x));
      const emitted = client.emit('custom', 42);
      let threw: string | undefined;
      try {
        client.emit('error', new Error('emitted error'));
      } catch (error) {
        threw = firstLine(error);
      }
      await client.end();
      const removed = new Promise((resolve) => pool.once('remove', resolve));
      client.release();
      const removedSettled = (await within(removed, 3000)) !== NEVER_SETTLES;
      return { seen, emitted, threw, removedSettled, total: pool.totalCount };
    },
  },
  {
    name: "after release: listeners can be attached; a second release() throws pg's error",
    async run(pool) {
      const client = await pool.connect();
      client.release();
      let attach: string | undefined;
      try {
        const listener = (): void => undefined;
        client.once('error', listener);
        client.removeListener('error', listener);
      } catch (error) {
        attach = firstLine(error);
      }
      let second: string | undefined;
      try {
        client.release();
      } catch (error) {
        second = firstLine(error);
      }
      return {
        attach,
        second,
        processIdReadable: typeof (client as unknown as { processID: unknown }).processID,
      };
    },
  },
  {
    name: 'pool events: order, arguments, the client they pass',
    async run(pool) {
      const events: string[] = [];
      const args: Record<string, unknown[]> = {};
      for (const name of ['connect', 'acquire', 'release', 'remove']) {
        pool.on(name as 'connect', (...a: unknown[]) => {
          events.push(`${name}/${a.length}`);
          args[name] = a;
        });
      }
      const client = await pool.connect();
      const o: Observation = {
        connectArg: args.connect?.[0] === client,
        acquireArg: args.acquire?.[0] === client,
      };
      client.release();
      o.releaseArgs = [args.release?.[0], args.release?.[1] === client];
      const again = await pool.connect();
      const err = new Error('broken');
      again.release(err);
      o.releaseErr = args.release?.[0] === err;
      await waitFor('remove', () => events.some((e) => e.startsWith('remove')));
      o.removeArgIsTheClient = args.remove?.[0] === again;
      o.events = events;
      return o;
    },
    differs: {
      removeArgIsTheClient: {
        pg: true,
        pgpool: false,
        why: `'remove' passes the pg.Client that closed; ${HANDLE}`,
      },
    },
  },
  {
    name: "a throwing 'acquire' listener: an uncaught exception",
    async run(pool) {
      pool.once('acquire', () => {
        throw new Error('acquire listener');
      });
      let client: PoolClient | undefined;
      const r = await catching(
        () =>
          within(
            pool.connect().then((c) => (client = c)),
            300,
          ),
        300,
        (u) => u.length > 0,
      );
      client?.release();
      return { uncaught: r.uncaught, unhandled: r.unhandled, connect: r.value === client };
    },
    differs: {
      connect: {
        pg: false,
        pgpool: true,
        why: 'pg-pool never answers that connect() (its slot is lost); PgPool still hands the client over',
      },
    },
  },
  {
    name: "a throwing 'release' listener: release() throws it",
    async run(pool) {
      const client = await pool.connect();
      pool.once('release', () => {
        throw new Error('release listener');
      });
      let threw: string | undefined;
      try {
        client.release();
      } catch (error) {
        threw = firstLine(error);
      }
      return { threw, idle: pool.idleCount, total: pool.totalCount };
    },
    differs: {
      idle: {
        pg: 0,
        pgpool: 1,
        why: 'pg-pool loses the client (never idle again, never closed); PgPool releases it anyway',
      },
    },
  },
  {
    name: "a throwing 'remove' or 'error' listener: an uncaught exception",
    async run(pool, t) {
      pool.once('remove', () => {
        throw new Error('remove listener');
      });
      const removed = await catching(
        async () => {
          const c = await pool.connect();
          c.release(true);
        },
        3000,
        (u) => u.length > 0,
      );
      pool.on('error', () => {
        throw new Error('error listener');
      });
      const idleError = await catching(
        async () => {
          const c = await pool.connect();
          const pid = await pidOf(c);
          c.release();
          await terminateBackend(t.admin, pid);
        },
        3000,
        (u) => u.length > 0,
      );
      await sleep(50);
      return {
        remove: [removed.uncaught, removed.unhandled],
        error: [idleError.uncaught, idleError.unhandled],
        total: pool.totalCount,
      };
    },
  },
  {
    name: 'a throwing query(), connect() or end() callback: an uncaught exception, the pool goes on',
    async run(pool) {
      const r = await catching(async (uncaught) => {
        pool.query('SELECT 1', () => {
          throw new Error('query callback');
        });
        await waitFor('the first throw', () => uncaught.length === 1, { timeoutMillis: 3000 });
        pool.connect((_err, _client, done) => {
          done();
          throw new Error('connect callback');
        });
        await waitFor('the second throw', () => uncaught.length === 2, { timeoutMillis: 3000 });
        const after = (await pool.query('SELECT 1 AS ok')).rows;
        let fromEnd: string | undefined;
        try {
          pool.end(() => {
            throw new Error('end callback');
          });
        } catch (error) {
          fromEnd = firstLine(error);
        }
        await waitFor('the pool to end', () => pool.ended, { timeoutMillis: 3000 });
        return { after, fromEnd };
      }, 50);
      return {
        after: r.value.after,
        uncaught: r.uncaught.filter((m) => m !== 'end callback'),
        unhandled: r.unhandled,
        endCallback:
          r.value.fromEnd !== undefined
            ? 'thrown out of end()'
            : r.uncaught.includes('end callback')
              ? 'uncaught'
              : 'lost',
      };
    },
    differs: {
      endCallback: {
        pg: 'thrown out of end()',
        pgpool: 'uncaught',
        why: "pg-pool calls end()'s callback synchronously once no client is checked out, before the idle ones have closed; PgPool calls it when every connection has closed",
      },
    },
  },
  {
    name: "errors: wrong password is the server's 28P01",
    needsPasswordCheck: true,
    config: () => ({ password: `wrong-${Math.random()}`, max: 1 }),
    async run(pool) {
      const error = await pool.query('SELECT 1').catch((e: unknown) => e);
      const e = error as { severity?: string; constructor: { name: string } };
      return {
        code: code(error),
        message: firstLine(error).replace(/"[^"]*"/, '"…"'),
        severity: e.severity,
        class: e.constructor.name,
        total: pool.totalCount,
      };
    },
  },
  {
    name: 'errors: a closed port is the socket error ECONNREFUSED',
    config: (t) => ({ port: t.bag.closedPort as number, max: 1 }),
    async run(pool) {
      const error = await pool.connect().catch((e: unknown) => e);
      return {
        code: code(error),
        syscall: (error as { syscall?: string }).syscall,
        total: pool.totalCount,
      };
    },
  },
  {
    name: "errors: onConnect's own error, as thrown",
    config: () => ({
      onConnect: async () => {
        throw Object.assign(new Error('hook failed'), { code: 'EHOOK' });
      },
    }),
    async run(pool) {
      const error = await pool.connect().catch((e: unknown) => e);
      await sleep(50);
      return { message: firstLine(error), code: code(error), total: pool.totalCount };
    },
  },
  {
    name: "errors: waiting past connectionTimeoutMillis gives pg's timeout message",
    config: () => ({ max: 1, connectionTimeoutMillis: 150 }),
    async run(pool) {
      const held = await pool.connect();
      const error = await pool.connect().catch((e: unknown) => e);
      const message = (error as Error).message;
      held.release();
      return {
        firstLine: firstLine(error),
        exact: message === PG_TIMEOUT,
        holders: /Longest holders:\n {2}lease #\d+ held/.test(message),
        waiting: pool.waitingCount,
      };
    },
    differs: {
      exact: {
        pg: true,
        pgpool: false,
        why: "poolwatch's explanation (pool, counts, the longest holders and where they acquired) follows pg's message on the next lines",
      },
      holders: { pg: false, pgpool: true, why: 'the same' },
    },
  },
  {
    name: "errors: a connect that hangs ends on time with one of pg's timeout messages",
    config: (t) => ({ port: t.bag.blackholePort as number, connectionTimeoutMillis: 200, max: 1 }),
    async run(pool) {
      const started = performance.now();
      const error = await pool.connect().catch((e: unknown) => e);
      const elapsed = performance.now() - started;
      await sleep(50);
      return {
        // pg-pool: always the first. PgPool: the first when the connect's own timer fires first,
        // the second when the wait's timer (the same connectionTimeoutMillis) does.
        pgMessage: [PG_CONNECT_TIMEOUT, PG_TIMEOUT].includes(firstLine(error)),
        onTime: elapsed >= 190 && elapsed < 1500,
        total: pool.totalCount,
      };
    },
  },
  {
    name: 'end(): a query whose client is connecting finishes',
    async run(pool) {
      const q = pool.query('SELECT 1 AS n');
      await pool.end();
      return { q: await within(q, 2000), ended: pool.ended };
    },
  },
  {
    name: 'end(): checked-out clients are waited for; a second end() and later use fail',
    config: () => ({ max: 1 }),
    async run(pool) {
      const held = await pool.connect();
      const queued = pool.query('SELECT 2 AS n');
      const ending = pool.end();
      const o: Observation = { ending: pool.ending };
      o.second = await pool.end().then(
        () => 'resolved',
        (e: unknown) => firstLine(e),
      );
      o.secondCallback = await new Promise((resolve) =>
        pool.end((e?: Error) => resolve(e && firstLine(e))),
      );
      o.connectAfter = await pool.connect().then(
        () => 'resolved',
        (e: unknown) => firstLine(e),
      );
      await sleep(30);
      o.endedBeforeRelease = pool.ended;
      held.release();
      o.end = await within(ending, 3000);
      o.ended = pool.ended;
      const q = await within(queued, 300);
      o.queued = typeof q === 'string' ? q : q.rows;
      return o;
    },
    differs: {
      queued: {
        pg: NEVER_SETTLES,
        pgpool: [{ n: 2 }],
        why: 'pg-pool drops callers queued when end() is called (they never settle); PgPool serves them before closing',
      },
    },
  },
  {
    name: 'pool.query() closes a client whose query failed (server error); connect() users keep theirs',
    config: () => ({ max: 1 }),
    async run(pool) {
      let removed = 0;
      pool.on('remove', () => removed++);
      const pid1 = await poolPid(pool);
      const err = await pool.query('SELECT 1/0').catch((e: unknown) => code(e));
      await waitFor('remove', () => removed === 1);
      const pid2 = await poolPid(pool);
      const client = await pool.connect();
      await client.query('SELECT 1/0').catch(() => undefined);
      client.release();
      const pid3 = await poolPid(pool);
      return { err, newAfterPoolQuery: pid2 !== pid1, keptAfterRelease: pid3 === pid2, removed };
    },
  },
  {
    name: 'maxLifetimeSeconds: an idle client closes on time, a checked-out one at release; expiredCount',
    config: () => ({ max: 2, maxLifetimeSeconds: 0.2 }),
    async run(pool) {
      const a = await pool.connect();
      const b = await pool.connect();
      b.release();
      await sleep(350);
      const o: Observation = {
        expired: pool.expiredCount,
        total: pool.totalCount,
        idle: pool.idleCount,
      };
      a.release();
      await waitFor('the expired client to close', () => pool.totalCount === 0, {
        timeoutMillis: 2000,
      });
      o.expiredAfter = pool.expiredCount;
      return o;
    },
  },
  {
    name: 'idleTimeoutMillis: 10 closes an idle client within milliseconds',
    config: () => ({ idleTimeoutMillis: 10 }),
    async run(pool) {
      await pool.query('SELECT 1');
      const started = performance.now();
      await waitFor('the idle client to close', () => pool.totalCount === 0, {
        timeoutMillis: 3000,
        intervalMillis: 2,
      });
      return { fast: performance.now() - started < 300 };
    },
  },
  {
    name: 'min: idle eviction stops at min',
    config: () => ({ min: 1, max: 3, idleTimeoutMillis: 20 }),
    async run(pool) {
      const atStart = pool.totalCount;
      const clients = await Promise.all([pool.connect(), pool.connect(), pool.connect()]);
      for (const c of clients) c.release();
      const peak = pool.totalCount;
      await sleep(200);
      return { atStart, peak, after: pool.totalCount, idle: pool.idleCount };
    },
    differs: {
      atStart: {
        pg: 0,
        pgpool: 1,
        why: "poolwatch opens min clients ahead (and reopens them after a failure, with backoff); pg-pool's min only stops idle eviction",
      },
    },
  },
  {
    name: 'log option: the messages pg-pool logs for connect, query and end',
    config: (t) => {
      const logs: string[] = (t.bag.logs = []);
      return { log: (...args: unknown[]) => void logs.push(String(args[0])) };
    },
    async run(pool, t) {
      await pool.query('SELECT 1');
      await pool.end();
      const logs = t.bag.logs as string[];
      const expected = [
        'connecting new client',
        'new client connected',
        'dispatching query',
        'query dispatched',
        'ending',
      ];
      return {
        logged: expected.filter((m) => logs.includes(m)),
        pulseQueue: logs.includes('pulse queue'),
      };
    },
    differs: {
      pulseQueue: {
        pg: true,
        pgpool: false,
        why: "pg-pool's internal steps (pulse queue, checking client timeout...) have no counterpart; the messages for connects, queries, removals and end are the same",
      },
    },
  },
  {
    name: 'verify option: runs once per new client; its error fails the connect',
    config: (t) => ({
      max: 1,
      verify: (client: PoolClient, done: (err?: Error) => void) => {
        t.bag.verified = ((t.bag.verified as number | undefined) ?? 0) + 1;
        if (t.bag.failVerify === true) return done(new Error('not verified'));
        client.query('SELECT 1', (err) => done(err ?? undefined));
      },
    }),
    async run(pool, t) {
      await pool.query('SELECT 1');
      await pool.query('SELECT 1');
      const verified = t.bag.verified;
      const c = await pool.connect();
      c.release(true);
      await waitFor('the client to close', () => pool.totalCount === 0);
      t.bag.failVerify = true;
      const error = await pool.connect().catch((e: unknown) => firstLine(e));
      await sleep(50);
      return { verified, error, total: pool.totalCount };
    },
  },
  {
    name: 'poolSize: the legacy name of max',
    config: () => ({ poolSize: 2 }) as PgPoolConfig,
    async run(pool) {
      const a = await pool.connect();
      const b = await pool.connect();
      const third = pool.connect();
      await sleep(20);
      const o = { total: pool.totalCount, waiting: pool.waitingCount };
      a.release();
      (await third).release();
      b.release();
      return o;
    },
  },
  {
    name: 'counts while the first client connects: waitingCount 0, totalCount 1',
    async run(pool) {
      const pending = pool.connect();
      const o = { waiting: pool.waitingCount, total: pool.totalCount, idle: pool.idleCount };
      (await pending).release();
      return { ...o, idleAfter: pool.idleCount };
    },
  },
  {
    name: 'maxUses: a client closes at the release that reaches it',
    config: () => ({ max: 1, maxUses: 2 }),
    async run(pool) {
      const pids = [await poolPid(pool), await poolPid(pool), await poolPid(pool)];
      return { distinct: new Set(pids).size };
    },
  },
  {
    name: 'pool.query(callback): the callback gets an error, nothing unhandled',
    async run(pool) {
      const r = await catching(async () => {
        let returned: unknown = 'unset';
        const message = await new Promise((resolve) => {
          returned = (pool.query as unknown as (cb: (e: Error) => void) => unknown)((e) =>
            resolve(firstLine(e)),
          );
        });
        return { message, returned };
      }, 50);
      return { ...r.value, unhandled: r.unhandled, uncaught: r.uncaught };
    },
  },
  {
    name: 'query_timeout: the next caller waits for the abandoned query (documented)',
    config: () => ({ max: 1 }),
    async run(pool) {
      const client = await pool.connect();
      const error = await client
        .query({ text: 'SELECT pg_sleep(0.4)', query_timeout: 50 } as pg.QueryConfig)
        .catch((e: unknown) => firstLine(e));
      client.release();
      const started = performance.now();
      await pool.query('SELECT 1');
      return { error, waited: performance.now() - started > 200 };
    },
  },
  {
    name: 'a client released inside an open transaction',
    config: () => ({ max: 1 }),
    async run(pool) {
      const c = await pool.connect();
      await c.query('BEGIN');
      c.release();
      const next = await pool.connect();
      const status = next.getTransactionStatus();
      if (status !== 'I') await next.query('ROLLBACK');
      next.release();
      return { status };
    },
    differs: {
      status: {
        pg: 'T',
        pgpool: 'I',
        why: 'PgPool closes it: the next caller would get the open transaction and its locks',
      },
    },
  },
  {
    name: 'a query on a released client',
    async run(pool) {
      const c = await pool.connect();
      c.release();
      try {
        return { result: (await c.query('SELECT 1 AS one')).rows };
      } catch (error) {
        return { result: code(error) };
      }
    },
    differs: {
      result: {
        pg: [{ one: 1 }],
        pgpool: 'POOL_LEASE_RELEASED',
        why: 'pg-pool runs it on a client someone else may hold by now',
      },
    },
  },
  {
    name: 'connection errors nobody listens to (checked-out client; idle client without pool.on(error))',
    config: () => ({ max: 1 }),
    async run(pool, t) {
      // Done when the client has seen its connection end: pg throws in that same event.
      const dead = (client: PoolClient): boolean => {
        const internals = client as unknown as { _queryable?: boolean; _ending?: boolean };
        return internals._queryable === false || internals._ending === true;
      };
      const c = await pool.connect();
      const pid = await pidOf(c);
      const held = await catching(
        () => terminateBackend(t.admin, pid),
        3000,
        (u) => u.length > 0 || dead(c),
      );
      c.release();
      const d = await pool.connect();
      const pid2 = await pidOf(d);
      d.release();
      const idle = await catching(
        () => terminateBackend(t.admin, pid2),
        3000,
        (u) => u.length > 0 || dead(d),
      );
      return { held: held.uncaught.length > 0, idle: idle.uncaught.length > 0 };
    },
    differs: {
      held: {
        pg: true,
        pgpool: false,
        why: "a pg.Client without an 'error' listener crashes the process; PgPool's clients always have one (the connection is closed at release)",
      },
      idle: {
        pg: true,
        pgpool: false,
        why: "the same for an idle client when the pool has no 'error' listener: PgPool has already closed it",
      },
    },
  },
];

/** Ports the rows need: a closed one and one that never answers. */
export async function tableFixtures(): Promise<{ bag: Record<string, unknown>; close(): void }> {
  const hole = await blackhole();
  return {
    bag: { closedPort: await closedPort(), blackholePort: hole.port },
    close: () => hole.close(),
  };
}
