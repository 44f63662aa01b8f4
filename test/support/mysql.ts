/**
 * MySQL/MariaDB server for integration tests.
 *
 * There is no embedded MariaDB, so these tests use a server that is already
 * running (CI starts the machine's MariaDB in .ci/run) and skip themselves
 * when there is none:
 *
 *   before(async function () { if (!(await mysqlAvailable())) this.skip(); });
 */
import { createConnection } from 'mysql2/promise';

export interface MysqlConfig {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}

/** How long `mysqlAvailable()` waits for a server; nothing listening is refused at once. */
const PROBE_TIMEOUT_MS = 2_000;

/**
 * Connection settings: the local MariaDB defaults (root over TCP, no
 * password, database `test`), or `MYSQL_URL`
 * (`mysql://user:password@host:port/database`), whose missing parts fall
 * back to those defaults.
 */
export function mysqlConfig(): MysqlConfig {
  const defaults: MysqlConfig = {
    host: '127.0.0.1',
    port: 3306,
    user: 'root',
    password: '',
    database: 'test',
  };
  const url = process.env.MYSQL_URL;
  if (!url) return defaults;
  const u = new URL(url);
  return {
    host: u.hostname || defaults.host,
    port: u.port ? Number(u.port) : defaults.port,
    user: u.username ? decodeURIComponent(u.username) : defaults.user,
    password: decodeURIComponent(u.password),
    database: decodeURIComponent(u.pathname.replace(/^\//, '')) || defaults.database,
  };
}

let probe: Promise<boolean> | undefined;

/**
 * Whether a server answers at `mysqlConfig()` and lets us into its database.
 * Probed once per process: every MySQL test file asks, and the answer does
 * not change during a run.
 */
export function mysqlAvailable(): Promise<boolean> {
  probe ??= (async () => {
    try {
      const conn = await createConnection({ ...mysqlConfig(), connectTimeout: PROBE_TIMEOUT_MS });
      try {
        await conn.ping();
      } finally {
        await conn.end();
      }
      return true;
    } catch (error) {
      // CI starts MariaDB itself (.ci/run): there, a server that does not answer is a failure,
      // not a reason to skip the MySQL tests silently.
      if (process.env.CI === 'true') {
        throw new Error(`MySQL/MariaDB did not answer at ${mysqlConfig().host}`, { cause: error });
      }
      return false;
    }
  })();
  return probe;
}
