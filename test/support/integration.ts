/**
 * Small helpers for the integration tests against real servers: bounded polling, garbage
 * collection until a leak is found, and an admin connection to look at the server's side
 * (pg_stat_activity, pg_locks) independently of the pool under test.
 */
import { Client, type ClientConfig } from 'pg';
import type { PgServer } from './postgres';

/** Polls `condition` every `intervalMillis` until it is truthy; fails after `timeoutMillis`. */
export async function waitFor<T>(
  what: string,
  condition: () => T | Promise<T>,
  { timeoutMillis = 5000, intervalMillis = 10 } = {},
): Promise<T> {
  const deadline = performance.now() + timeoutMillis;
  for (;;) {
    const value = await condition();
    if (value) return value;
    if (performance.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMillis} ms waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMillis));
  }
}

/**
 * Runs full garbage collections (mocha runs with --expose-gc), yielding to the event loop in
 * between so FinalizationRegistry callbacks can run, until `condition` holds. Bounded.
 */
export async function collectGarbageUntil(
  what: string,
  condition: () => boolean,
  timeoutMillis = 5000,
): Promise<number> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('run mocha with --expose-gc (see .mocharc.json)');
  const started = performance.now();
  let rounds = 0;
  while (!condition()) {
    if (performance.now() - started > timeoutMillis) {
      throw new Error(`${what}: not observed after ${rounds} GC rounds in ${timeoutMillis} ms`);
    }
    gc();
    rounds++;
    await new Promise((resolve) => setImmediate(resolve));
  }
  return rounds;
}

/** Client settings for the test server, tagged with an application_name the tests can count. */
export function pgConfig(server: PgServer, applicationName: string): ClientConfig {
  return { ...server.config, application_name: applicationName, connectionTimeoutMillis: 5000 };
}

/** A separate connection to look at the server's side of things. Close it with `end()`. */
export async function adminClient(server: PgServer): Promise<Client> {
  const client = new Client({
    ...server.config,
    application_name: 'poolwatch-it-admin',
    connectionTimeoutMillis: 5000,
  });
  client.on('error', () => undefined); // the restart tests may cut it
  await client.connect();
  return client;
}

/** Backends (pids) of this database connected with `applicationName`. */
export async function backendsOf(admin: Client, applicationName: string): Promise<number[]> {
  const r = await admin.query<{ pid: number }>(
    'SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()',
    [applicationName],
  );
  return r.rows.map((row) => row.pid);
}

/** Terminates a backend and waits until the server has removed it. */
export async function terminateBackend(admin: Client, pid: number): Promise<void> {
  const r = await admin.query<{ ok: boolean }>('SELECT pg_terminate_backend($1) AS ok', [pid]);
  if (r.rows[0]?.ok !== true) throw new Error(`pg_terminate_backend(${pid}) failed`);
  await waitFor(`backend ${pid} to exit`, async () => {
    const left = await admin.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]);
    return left.rowCount === 0;
  });
}

/** A unique suffix for names (tables, application names) so test files never collide. */
export function uniqueName(prefix: string): string {
  return `${prefix}_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
}
