/**
 * Section "postgres": `SELECT 1` through a pool against a real server, at concurrency 1 and 32.
 *
 * The server is `DATABASE_URL` when it is set, otherwise an embedded PostgreSQL started once by
 * the parent process (examples/embedded.ts, the demo's helper: fsync off, on a free loopback
 * port); the parent passes its URL to the row processes in `BENCH_DATABASE_URL_ENV`.
 *
 * Rows (pools have max 10; every row is one awaited query per op, driven like the peers rows):
 *  - `pg.Client, no pool` (c=1 only): one connection, queries awaited in turn. The floor: no pool
 *    can beat talking to one connection directly.
 *  - `pg.Pool`: node-postgres' own pool (pg-pool 3), `pool.query()`: the baseline at c=32.
 *  - `poolwatch createPgPool`: `acquire()`, `lease.resource.query()`, `release()`, defaults
 *    (leak detection on, `captureStacks: 'auto'`, validation after 500 ms idle).
 *  - `poolwatch use()`: the same through `pool.use()`, which runs the callback in an
 *    AsyncLocalStorage frame for self-deadlock detection (so a PromiseHook runs, see micro).
 *  - `poolwatch PgPool facade`: the pg.Pool drop-in, `pool.query()`.
 *  - the createPgPool row under each OpenTelemetry set-up of bench/otel.ts (`sdk`, `disabled`,
 *    `full`). Compare `full` with the plain row (what the whole OTel set-up costs) and with the
 *    `sdk` row (what poolwatch's instrumentation adds to an application that already has OTel).
 */
import type * as PgModule from 'pg';
import type { Client, QueryResult } from 'pg';
import { startDatabase } from '../examples/embedded';
import type { Case, Runner } from './harness';
import { SubjectUnavailableError, drive } from './harness';
import type { OtelMode } from './otel';
import { OTEL_LABELS, installOtel, lazyRequire, loadPoolwatch } from './otel';

/** How the parent hands the server's URL to the row processes. */
export const BENCH_DATABASE_URL_ENV = 'POOLWATCH_BENCH_DATABASE_URL';

export const PG_CONCURRENCIES = [1, 32];
const PG_MAX = 10;
const QUERY = 'SELECT 1';

export const PG_ROWS = {
  client: 'pg.Client, no pool',
  pgPool: 'pg.Pool (pg-pool) pool.query()',
  poolwatch: 'poolwatch createPgPool acquire/query/release',
  noLeak: 'poolwatch createPgPool leakDetection:false',
  use: 'poolwatch createPgPool use()',
  facade: 'poolwatch PgPool facade pool.query()',
} as const;

/** The name of the createPgPool row under an OTel mode (`none` is the plain row). */
export function pgOtelRow(mode: OtelMode): string {
  return mode === 'none' ? PG_ROWS.poolwatch : `poolwatch createPgPool, ${OTEL_LABELS[mode]}`;
}

/** A server for the section: `stop()` is a no-op for DATABASE_URL. */
export interface BenchDatabase {
  url: string;
  description: string;
  stop(): Promise<void>;
}

/** Starts the embedded server unless DATABASE_URL is set (examples/embedded.ts decides). */
export async function startBenchDatabase(): Promise<BenchDatabase> {
  const db = await startDatabase();
  return { url: db.connectionString, description: db.description, stop: () => db.stop() };
}

function databaseUrl(): string {
  const url = process.env[BENCH_DATABASE_URL_ENV];
  if (url === undefined || url === '') {
    throw new SubjectUnavailableError('postgres: no server (it failed to start; see above)');
  }
  return url;
}

type Pg = typeof PgModule;

function pgCase(
  name: string,
  concurrency: number,
  baseline: boolean,
  build: (url: string) => Promise<{ query(): Promise<unknown>; close(): Promise<void> }>,
  opts: { mode?: OtelMode; fullOnly?: boolean } = {},
): Case {
  const mode = opts.mode ?? 'none';
  return {
    suite: 'postgres',
    group: `SELECT 1 c=${concurrency}`,
    name,
    baseline,
    fullOnly: opts.fullOnly ?? false,
    async prepare(): Promise<Runner> {
      const url = databaseUrl();
      const env = await installOtel(mode);
      const subject = await build(url);
      return {
        run: (n) => env.run(() => drive(() => subject.query().then(ignore), n, concurrency)),
        async teardown() {
          await subject.close();
          await env.teardown();
        },
      };
    },
  };
}

function ignore(): void {}

/** poolwatch's pg pool; teardown fails the run if it did not reuse its connections. */
async function poolwatchPool(url: string, name: string, options: { leakDetection?: boolean } = {}) {
  const pool = loadPoolwatch().createPgPool(url, { max: PG_MAX, ...options });
  return {
    pool,
    async close() {
      const { created } = pool.stats();
      await pool.close();
      if (created > PG_MAX) throw new Error(`${name}: created ${created} connections`);
    },
  };
}

export function postgresCases(): Case[] {
  const cases: Case[] = [];
  for (const c of PG_CONCURRENCIES) {
    // The floor at c=1, pg's own pool at c=32 (a single connection is no match for 10 there).
    const isBaseline = (row: string): boolean =>
      row === (c === 1 ? PG_ROWS.client : PG_ROWS.pgPool);
    // One connection serves one query at a time: at c=32 it is no floor for pools of 10 (and
    // pg 8 deprecates queueing queries on a busy client), so the row is at c=1 only.
    if (c === 1) {
      cases.push(
        pgCase(PG_ROWS.client, c, isBaseline(PG_ROWS.client), async (url) => {
          const pg = lazyRequire<Pg>('pg');
          const client: Client = new pg.Client(url);
          await client.connect();
          return { query: () => client.query(QUERY), close: () => client.end() };
        }),
      );
    }
    cases.push(
      pgCase(PG_ROWS.pgPool, c, isBaseline(PG_ROWS.pgPool), async (url) => {
        const pg = lazyRequire<Pg>('pg');
        const pool = new pg.Pool({ connectionString: url, max: PG_MAX });
        return { query: () => pool.query(QUERY), close: () => pool.end() };
      }),
      pgCase(
        PG_ROWS.use,
        c,
        false,
        async (url) => {
          const { pool, close } = await poolwatchPool(url, PG_ROWS.use);
          return { query: () => pool.use((db) => db.query(QUERY)), close };
        },
        { fullOnly: true },
      ),
      pgCase(
        PG_ROWS.facade,
        c,
        false,
        async (url) => {
          const pool = new (loadPoolwatch().PgPool)({ connectionString: url, max: PG_MAX });
          return {
            query: () => pool.query(QUERY) as Promise<QueryResult>,
            async close() {
              const { created } = pool.pool.stats();
              await pool.end();
              if (created > PG_MAX) throw new Error(`${PG_ROWS.facade}: created ${created}`);
            },
          };
        },
        { fullOnly: true },
      ),
    );
    // The default row with leak detection off: what the stack policy and the tracker cost.
    const variants = [
      ...(['none', 'sdk', 'disabled', 'full'] as const).map((mode) => ({
        mode,
        name: pgOtelRow(mode),
        options: {},
      })),
      { mode: 'none' as const, name: PG_ROWS.noLeak, options: { leakDetection: false } },
    ];
    for (const { mode, name, options } of variants) {
      cases.push(
        pgCase(
          name,
          c,
          false,
          async (url) => {
            const { pool, close } = await poolwatchPool(url, name, options);
            return {
              async query() {
                const lease = await pool.acquire();
                try {
                  return await lease.resource.query(QUERY);
                } finally {
                  lease.release();
                }
              },
              close,
            };
          },
          { mode },
        ),
      );
    }
  }
  return cases;
}
