/**
 * Section "libraries": what the zero-code patches of PoolInstrumentation add to a query made
 * through a library's own pool, on a real server: `SELECT 1` through pg.Pool (`pgPool` patch),
 * knex on PostgreSQL and on MySQL (`knex` patch) and a mysql2 `createPool()` pool
 * (`mysql2Pool` patch), at concurrency 1 and 32, pools of 10.
 *
 * Each library runs under three set-ups (bench/otel.ts): uninstrumented; the OpenTelemetry SDK
 * without poolwatch (context manager, providers, a request span); the same with poolwatch's
 * instrumentation registered (default options: hold spans, metrics, leak detection with 'auto'
 * stacks). The patch's own cost is the difference between the last two. What is compared is
 * the client process's CPU time per query (the servers run in other processes), printed after
 * the table by `formatPatchCosts()`: wall time on a shared 2-core machine mixes in the server.
 *
 * PostgreSQL is the section's server (embedded, or DATABASE_URL, as for "postgres"); MySQL is
 * MYSQL_URL or the local MariaDB (root, no password, database test): rows without one are n/a.
 */
import { join } from 'node:path';
import type * as KnexModule from 'knex';
import type * as Mysql2Promise from 'mysql2/promise';
import type * as PgModule from 'pg';
import type { Case, CaseResult, Runner } from './harness';
import { SubjectUnavailableError, drive } from './harness';
import type { OtelMode } from './otel';
import { installOtel, lazyRequire } from './otel';
import { BENCH_DATABASE_URL_ENV } from './postgres';

const CONCURRENCIES = [1, 32];
const MAX = 10;
const QUERY = 'SELECT 1';

const MODES: { mode: OtelMode; label: string }[] = [
  { mode: 'none', label: 'uninstrumented' },
  { mode: 'sdk', label: 'OTel SDK, no poolwatch' },
  { mode: 'full', label: 'OTel SDK + poolwatch patch' },
];

interface Subject {
  query(): Promise<unknown>;
  close(): Promise<void>;
}

/**
 * Each library: how to build its pool. The patched module is required again first: the
 * instrumentation patches it on `require` (a row process runs several samples, and each
 * sample's teardown unpatches).
 */
const LIBRARIES: Record<string, (server: { pg: string; mysql: string }) => Promise<Subject>> = {
  'pg.Pool pool.query()': async ({ pg: url }) => {
    lazyRequire('pg-pool');
    const pg = lazyRequire<typeof PgModule>('pg');
    const pool = new pg.Pool({ connectionString: url, max: MAX });
    return { query: () => pool.query(QUERY), close: () => pool.end() };
  },
  'knex (pg) raw()': async ({ pg: url }) => knexSubject('pg', url),
  'knex (mysql2) raw()': async ({ mysql: url }) => knexSubject('mysql2', url),
  'mysql2 createPool pool.query()': async ({ mysql: url }) => {
    lazyRequire('mysql2');
    const mysql = lazyRequire<typeof Mysql2Promise>('mysql2/promise');
    const pool = mysql.createPool({ uri: url, connectionLimit: MAX });
    return { query: () => pool.query(QUERY), close: () => pool.end() };
  },
};

async function knexSubject(client: string, url: string): Promise<Subject> {
  const dir = join(require.resolve('knex'), '..', 'lib');
  for (const file of ['client.js', 'execution/runner.js', 'execution/transaction.js']) {
    lazyRequire(join(dir, file));
  }
  const knex = lazyRequire<typeof KnexModule.knex>('knex');
  const db = knex({ client, connection: url, pool: { min: 0, max: MAX } });
  return { query: () => db.raw(QUERY), close: () => db.destroy() };
}

function servers(): { pg: string; mysql: string } {
  const pg = process.env[BENCH_DATABASE_URL_ENV];
  if (pg === undefined || pg === '') {
    throw new SubjectUnavailableError('libraries: no PostgreSQL server (see above)');
  }
  return { pg, mysql: process.env.MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test' };
}

function libraryCase(library: string, concurrency: number, mode: OtelMode, label: string): Case {
  return {
    suite: 'libraries',
    group: `${library} c=${concurrency}`,
    name: label,
    baseline: mode === 'none',
    fullOnly: false,
    async prepare(): Promise<Runner> {
      const env = await installOtel(mode);
      let subject: Subject;
      try {
        subject = await LIBRARIES[library]!(servers());
        await subject.query(); // connects, or says why not
      } catch (error) {
        await env.teardown();
        if (error instanceof SubjectUnavailableError) throw error;
        throw new SubjectUnavailableError(
          `${library}: ${error instanceof Error ? error.message : String(error)}`,
        );
      }
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

export function libraryCases(): Case[] {
  const cases: Case[] = [];
  for (const c of CONCURRENCIES) {
    for (const library of Object.keys(LIBRARIES)) {
      for (const { mode, label } of MODES) cases.push(libraryCase(library, c, mode, label));
    }
  }
  return cases;
}

/** Median over samples of the row process's CPU time per query, in microseconds. */
function cpuMicrosPerOp(result: CaseResult | undefined): number | undefined {
  if (result === undefined || result.samplesCpuNs.length === 0) return undefined;
  const perOp = result.samplesCpuNs.map((cpu, i) => cpu / result.samplesOps[i]! / 1000);
  perOp.sort((a, b) => a - b);
  return perOp[Math.floor(perOp.length / 2)];
}

/** The table of client CPU per query, and what the poolwatch patch adds to the SDK alone. */
export function formatPatchCosts(results: CaseResult[]): string {
  const rows = results.filter((r) => r.suite === 'libraries');
  if (rows.length === 0) return '';
  const lines = [
    'libraries: client CPU per query (µs, median sample); patch = poolwatch patch - SDK alone',
    `${'group'.padEnd(40)} ${'none'.padStart(7)} ${'SDK'.padStart(7)} ${'SDK+pw'.padStart(7)} ${'patch'.padStart(7)}`,
  ];
  const groups = [...new Set(rows.map((r) => r.group))];
  for (const group of groups) {
    const cpu = (mode: string) =>
      cpuMicrosPerOp(rows.find((r) => r.group === group && r.name === mode && !r.unavailable));
    const [none, sdk, full] = MODES.map((m) => cpu(m.label));
    const show = (v: number | undefined) => (v === undefined ? 'n/a' : v.toFixed(1)).padStart(7);
    const added = full !== undefined && sdk !== undefined ? full - sdk : undefined;
    lines.push(`${group.padEnd(40)} ${show(none)} ${show(sdk)} ${show(full)} ${show(added)}`);
  }
  return lines.join('\n');
}
