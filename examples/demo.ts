/**
 * poolwatch demo: a small banking app on PostgreSQL (embedded, or DATABASE_URL), with two
 * handlers that misbehave, and what poolwatch tells you about them:
 *
 * 1. `exportReport` keeps its connection (a forgotten release on an error path): a suspected
 *    leak, with the stack that acquired it.
 * 2. `transfer` fails half-way through a transaction, and its error path drops the connection
 *    while the transaction holds a row lock: a suspected leak, then, after garbage collection, a
 *    collected one. poolwatch closes the connection, the server rolls back and frees the lock.
 * 3. Meanwhile another request times out, and the error names who holds the connections.
 * 4. The leak report lists what is still held.
 *
 *   npm run demo      (node --expose-gc: the demo triggers garbage collection itself)
 */
import { Client } from 'pg';
import {
  AcquireTimeoutError,
  createPgPool,
  formatLeakReport,
  type Alert,
  type Lease,
  type Pool,
} from '../src';
import { startDatabase } from './embedded';

const TABLE = 'poolwatch_demo_accounts';
const started = performance.now();

function say(text: string): void {
  const t = ((performance.now() - started) / 1000).toFixed(2).padStart(5);
  console.log(`\n[${t} s] ${text}`);
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((line) => `    ${line}`)
    .join('\n');
}

// ---------------------------------------------------------------------------------------------
// The app: three request handlers over one pool.

/** Well-behaved: pool.use() releases when the callback resolves, destroys when it throws. */
async function getBalance(pool: Pool<Client>, id: number): Promise<number> {
  return pool.use(async (db) => {
    const r = await db.query<{ balance: number }>(`SELECT balance FROM ${TABLE} WHERE id = $1`, [
      id,
    ]);
    return r.rows[0]!.balance;
  });
}

/** Keeps its connection: the lease is handed back to a caller that never releases it. */
async function exportReport(pool: Pool<Client>): Promise<Lease<Client>> {
  const lease = await pool.acquire();
  await lease.resource.query(`SELECT count(*) FROM ${TABLE}`);
  return lease; // "release it when the report is sent" ... never happens
}

/** Fails half-way through a transaction; its error path forgets the connection. */
async function transfer(pool: Pool<Client>, from: number, to: number, amount: number) {
  const lease = await pool.acquire();
  const db = lease.resource;
  await db.query('BEGIN');
  await db.query(`SELECT balance FROM ${TABLE} WHERE id = $1 FOR UPDATE`, [from]);
  await db.query(`UPDATE ${TABLE} SET balance = balance - $2 WHERE id = $1`, [from, amount]);
  throw new Error(`account ${to} is frozen`); // no ROLLBACK, no release()
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('run with node --expose-gc (npm run demo does)');

  say('Starting PostgreSQL...');
  const database = await startDatabase();
  console.log(`    ${database.description}`);

  const pool = createPgPool(database.connectionString, {
    name: 'bank',
    max: 2,
    acquireTimeoutMillis: 600,
    // Short thresholds so the demo takes seconds; production defaults are 30 s.
    leakDetectionThresholdMillis: 300,
    housekeepingIntervalMillis: 50,
    captureStacks: 'always',
    health: false,
    onAlert: (alert: Alert) => say(`ALERT ${alert.severity.toUpperCase()}: ${alert.message}`),
  });
  // A separate session to look at the server's side: locks, sessions.
  const dba = new Client({ connectionString: database.connectionString });
  dba.on('error', () => undefined);
  await dba.connect();

  let kept: Lease<Client> | undefined;
  try {
    await dba.query(`DROP TABLE IF EXISTS ${TABLE}`);
    await dba.query(`CREATE TABLE ${TABLE} (id int PRIMARY KEY, owner text, balance int)`);
    await dba.query(`INSERT INTO ${TABLE} VALUES (1, 'ada', 100), (2, 'bob', 50)`);

    say(`GET /balance/1 → ${await getBalance(pool, 1)}`);

    kept = await exportReport(pool);
    say('GET /report → sent (its connection was never released)');

    // The web framework's error handler: logs, answers 500, and the lease is simply dropped.
    let leakedPid: number | undefined;
    try {
      await transfer(pool, 1, 2, 30);
    } catch (error) {
      say(`POST /transfer → 500 Internal Server Error: ${(error as Error).message}`);
      [leakedPid] = await sessionsInTransaction(dba);
    }
    await showLock(dba, 'The dropped transaction still holds its row lock');

    await new Promise((resolve) => setTimeout(resolve, 400)); // the two suspected-leak alerts

    say('GET /balance/2 with both connections held...');
    try {
      await getBalance(pool, 2);
    } catch (error) {
      if (!(error instanceof AcquireTimeoutError)) throw error;
      say(`→ 503: ${error.name} (${error.code}):\n${indent(error.message)}`);
    }

    say('Garbage collection runs (forced here; in production it happens on its own)...');
    while (pool.stats().collectedLeaks === 0) {
      gc();
      await new Promise((resolve) => setImmediate(resolve));
    }
    await waitForSessionEnd(dba, leakedPid);
    await showLock(dba, 'After the collected leak: the session is closed');

    say(`GET /balance/2 → ${await getBalance(pool, 2)} (the slot came back)`);
    say(`GET /balance/1 → ${await getBalance(pool, 1)} (the half-done transfer was rolled back)`);

    say(`Leak report:\n${indent(formatLeakReport(pool.leakReport()))}`);

    kept.release();
    kept = undefined;
    say(`stats: ${JSON.stringify(pool.stats())}`);
  } finally {
    kept?.release();
    const report = await pool.close();
    if (report.forced.length > 0) say(`closed; ${report.forced.length} lease(s) forced`);
    await dba.query(`DROP TABLE IF EXISTS ${TABLE}`).catch(() => undefined);
    await dba.end();
    await database.stop();
  }
  say('Done.');
}

async function sessionsInTransaction(dba: Client): Promise<number[]> {
  const r = await dba.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity WHERE state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()`,
  );
  return r.rows.map((row) => row.pid);
}

/** Prints who holds row locks on the table, and whether another session can take account 1. */
async function showLock(dba: Client, title: string): Promise<void> {
  const held = await dba.query<{ pid: number; state: string; mode: string }>(
    `SELECT l.pid, a.state, l.mode FROM pg_locks l JOIN pg_stat_activity a USING (pid)
      WHERE l.relation = $1::regclass AND l.pid <> pg_backend_pid()`,
    [TABLE],
  );
  let lockable: string;
  await dba.query('BEGIN');
  try {
    await dba.query(`SELECT 1 FROM ${TABLE} WHERE id = 1 FOR UPDATE NOWAIT`);
    lockable = 'another session locks account 1 at once';
  } catch (error) {
    lockable = `another session cannot lock account 1: "${(error as Error).message}"`;
  } finally {
    await dba.query('ROLLBACK');
  }
  const rows = held.rows.map((r) => `pid ${r.pid} (${r.state}) holds ${r.mode}`);
  say(
    `${title}:\n    pg_locks on ${TABLE}: ${rows.length > 0 ? rows.join('; ') : 'none'}\n    ${lockable}`,
  );
}

async function waitForSessionEnd(dba: Client, pid: number | undefined): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const r = await dba.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]);
    if (r.rowCount === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
