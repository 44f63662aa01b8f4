/**
 * Issue 10 item 2: `util.inspect(lease, { showHidden: true })` reached the driver client's
 * password through the lease's internal fields (`_entry.resource`). Every object a user can hold
 * is inspected here with `showHidden` and unlimited depth: pools, leases (live and ended),
 * errors, pg facade handles, stats, lease info, reports, alerts, close reports and factories,
 * against the embedded server whose random password it really checks.
 */
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { AcquireTimeoutError, CreateFailedError, formatLeakReport, type Alert } from '../../src';
import { createPgPool, pgFactory, PgPool } from '../../src/drivers';
import { getPostgres, type PgServer } from '../support/postgres';
import { findSecret } from '../support/secrets';

describe('regression: util.inspect of what a user holds never reaches the password', function () {
  this.timeout(20_000);
  let server: PgServer;
  let password: string;
  let url: string;

  before(async function () {
    this.timeout(60_000);
    server = await getPostgres();
    password = server.config.password || `pwsecret-${Math.random().toString(36).slice(2)}`;
    const u = new URL(server.connectionString);
    u.password = password;
    url = u.toString();
  });

  /** Every way a user might print it. */
  function printed(value: unknown): string[] {
    return [
      inspect(value, { showHidden: true, depth: Infinity }),
      inspect(value, { showHidden: true, depth: Infinity, customInspect: false }),
      inspect(value),
    ];
  }

  function assertClean(what: string, value: unknown): void {
    for (const text of printed(value)) {
      assert.equal(findSecret(text, password), undefined, `${what} printed the password:\n${text}`);
    }
  }

  it('pool, live and ended leases, stats, info, reports, alerts, errors, close report', async () => {
    const alerts: Alert[] = [];
    const pool = createPgPool(
      { ...server.config, password },
      {
        max: 1,
        leakDetectionThresholdMillis: 20,
        housekeepingIntervalMillis: 10,
        captureStacks: 'always',
        closeTimeoutMillis: 0,
        onAlert: (a) => alerts.push(a),
      },
    );
    try {
      const lease = await pool.acquire();
      await lease.resource.query('SELECT 1');
      assertClean('a live lease', lease);
      const timeout = await pool.acquire({ timeoutMillis: 30 }).catch((e: unknown) => e);
      assert.ok(timeout instanceof AcquireTimeoutError);
      await new Promise((resolve) => setTimeout(resolve, 40));
      const report = pool.leakReport();
      const info = lease.info;
      lease.release();
      const stale = (() => {
        try {
          return lease.resource;
        } catch (error) {
          return error;
        }
      })();
      for (const [what, value] of Object.entries({
        pool,
        'an ended lease': lease,
        stats: pool.stats(),
        info,
        report,
        text: formatLeakReport(report),
        alerts,
        timeout,
        stale,
        factory: pgFactory({ ...server.config, password }),
        'factory from a url': pgFactory(url),
      })) {
        assertClean(what, value);
      }
      assert.ok(alerts.length > 0);
      await pool.acquire(); // kept: close() takes it back and reports it
      const closeReport = await pool.close();
      assert.equal(closeReport.forced.length, 1);
      assertClean('close report', closeReport);
    } finally {
      await pool.close();
    }
  });

  it('a failed create and the pg-compatible facade with its client handles', async () => {
    const wrong = createPgPool({ ...server.config, user: 'pw_nobody', password }, { max: 1 });
    try {
      const error = await wrong.acquire().catch((e: unknown) => e);
      assert.ok(error instanceof CreateFailedError);
      assertClean('a create failure', error);
    } finally {
      await wrong.close();
    }
    const facade = new PgPool({ connectionString: url, max: 1 });
    try {
      const client = await facade.connect();
      await client.query('SELECT 1');
      assertClean('a PgPool client handle', client);
      assertClean('a PgPool', facade);
      client.release();
      assertClean('a released PgPool client handle', client);
    } finally {
      await facade.end();
    }
  });

  it('a lease shows its identity, not its resource', async () => {
    const pool = createPgPool({ ...server.config, password }, { max: 1 });
    try {
      const lease = await pool.acquire();
      const text = inspect(lease);
      assert.match(text, /^Lease \{ id: \d+, pool: ".*", active: true \}$/);
      assert.deepEqual(Object.keys(lease), []);
      lease.release();
    } finally {
      await pool.close();
    }
  });
});
