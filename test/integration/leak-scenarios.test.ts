/**
 * Leak scenarios on a real PostgreSQL, with the default stack policy: every way application code
 * loses a connection is found and names the line that acquired it, and correct code (bursts,
 * long legitimate holds, `await using`, `use()` with thrown errors, streaming) gives no finding.
 * Prints the first-frame rate: findings whose location is the leaking function.
 */
import assert from 'node:assert/strict';
import type { Client } from 'pg';
import type { Alert, Lease, Pool } from '../../src';
import { createPgPool, PgPool } from '../../src/drivers';
import { collectGarbageUntil, pgConfig } from '../support/integration';
import { getPostgres, type PgServer } from '../support/postgres';

const THRESHOLD = 600;
const sleep = (millis: number) => new Promise((resolve) => setTimeout(resolve, millis));

describe('leak scenarios (real PostgreSQL, default stack policy)', function () {
  this.timeout(60_000);
  let server: PgServer;
  let pool: Pool<Client>;
  let facade: PgPool;
  const alerts: Alert[] = [];
  const kept = new Map<string, unknown>();

  before(async function () {
    server = await getPostgres();
    const options = {
      leakDetectionThresholdMillis: THRESHOLD,
      housekeepingIntervalMillis: 100,
      health: false as const,
      onAlert: (alert: Alert) => alerts.push(alert),
    };
    pool = createPgPool(pgConfig(server, 'poolwatch-it-scenarios'), {
      name: 'scenarios',
      max: 10,
      ...options,
    });
    facade = new PgPool({
      ...server.config,
      max: 10,
      poolwatch: { name: 'scenarios-pg', ...options },
    });
  });
  after(async () => {
    kept.clear();
    await pool?.close();
    await facade?.end();
  });

  // --- Leaky code: each function loses one connection in its own way. -----------------------

  async function earlyReturn(id: number): Promise<number | undefined> {
    const lease = await pool.acquire();
    const { rows } = await lease.resource.query('SELECT $1::int AS id', [id]);
    if (rows[0].id % 2 === 0) return undefined; // forgot lease.release()
    lease.release();
    return rows[0].id;
  }

  async function thrownError(): Promise<void> {
    const lease = await pool.acquire();
    await lease.resource.query('SELECT 1');
    JSON.parse('{not json'); // throws before release()
    lease.release();
  }

  async function abandonedRace(): Promise<void> {
    const work = (async () => {
      const lease = await pool.acquire();
      await lease.resource.query('SELECT pg_sleep(0.05)');
      return lease; // the caller stopped listening
    })();
    await Promise.race([work, sleep(1)]);
  }

  async function* rowsOf(): AsyncGenerator<number> {
    const lease = await pool.acquire();
    try {
      for (let i = 0; i < 3; i++) {
        await lease.resource.query('SELECT 1');
        yield i;
      }
    } finally {
      // Never runs: the iterator is dropped unfinished.
      lease.release();
    }
  }
  async function unfinishedIterator(): Promise<void> {
    const iterator = rowsOf();
    await iterator.next();
  }

  async function keptInMap(key: string): Promise<void> {
    kept.set(key, await pool.acquire()); // a cache of "session" connections, never emptied
  }

  async function pgStyleCheckout(): Promise<void> {
    const client = await facade.connect();
    await client.query('SELECT 1');
    // no client.release()
  }

  async function droppedTransaction(): Promise<void> {
    const lease = await pool.acquire();
    await lease.resource.query('BEGIN');
    await lease.resource.query('SELECT 1');
    // neither COMMIT nor release
  }

  class UnitOfWork {
    lease: Lease<Client> | undefined;
    async begin(): Promise<void> {
      this.lease = await pool.acquire();
      await this.lease.resource.query('BEGIN');
    }
  }
  async function unitOfWork(): Promise<void> {
    await new UnitOfWork().begin(); // never committed, dropped
  }

  // --- Correct code. ------------------------------------------------------------------------

  async function burst(): Promise<void> {
    await Promise.all(
      Array.from({ length: 64 }, () => pool.use((client) => client.query('SELECT 1'))),
    );
  }

  async function cleanShapes(): Promise<void> {
    await pool.use(async (client) => {
      await client.query('SELECT pg_sleep(0.2)'); // long, but under the threshold
    });
    {
      await using lease = await pool.acquire();
      await lease.resource.query('SELECT 1');
    }
    await pool
      .use(async () => {
        throw new Error('handler failed');
      })
      .catch(() => undefined);
    const lease = await pool.acquire(); // streaming for most of the threshold
    for (let i = 0; i < 4; i++) {
      await lease.resource.query('SELECT generate_series(1, 100)');
      await sleep(THRESHOLD / 8);
    }
    lease.release();
    const client = await facade.connect();
    await client.query('SELECT 1');
    client.release();
  }

  it('finds every leak with its line, and nothing in correct code', async () => {
    const expected: string[] = [];
    const leak = async (name: string, run: () => Promise<unknown>) => {
      await run().catch(() => undefined);
      expected.push(name);
    };
    for (let round = 0; round < 3; round++) {
      await Promise.all([burst(), cleanShapes()]);
      await leak('earlyReturn', () => earlyReturn(2 * round));
      await leak('thrownError', thrownError);
      await leak('abandonedRace', abandonedRace);
      await leak('rowsOf', unfinishedIterator);
      await leak('keptInMap', () => keptInMap(`session-${round}`));
      await leak('pgStyleCheckout', pgStyleCheckout);
      await leak('droppedTransaction', droppedTransaction);
      await leak('UnitOfWork.begin', unitOfWork);
      await burst();
      // Leases found, not alerts: a dropped lease may be suspected before it is collected.
      const found = () =>
        new Set(
          alerts
            .filter((a) => a.leakKind === 'collected' || a.leakKind === 'suspected')
            .map((a) => `${a.pool}#${a.lease!.id}`),
        ).size;
      // Dropped leases are found after collection; the kept ones when they cross the threshold.
      await collectGarbageUntil(
        `round ${round}: ${expected.length} findings`,
        () => found() >= expected.length,
        10_000,
      );
    }
    const findings = alerts.filter((a) => a.leakKind === 'collected' || a.leakKind === 'suspected');
    // Kept leases are suspected once; every dropped one is collected (its suspicion, if any,
    // is the same lease: count leases, not alerts).
    const byLease = new Map<string, Alert>();
    for (const finding of findings) byLease.set(`${finding.pool}#${finding.lease!.id}`, finding);
    // The function that leaked: the first frame's, or for an anonymous function (the racing
    // arrow function), the first named frame's.
    const named = [...byLease.values()].map((a) => {
      if (a.location === undefined) return '(no stack)';
      if (a.location.functionName !== undefined) return a.location.functionName;
      return /^at (?:async )?(?!<anonymous>)(\S+) \(/m.exec(a.stack!)?.[1] ?? '(anonymous)';
    });
    assert.deepEqual(
      [...named].sort(),
      [...expected].sort(),
      'one finding per leak, each naming the leaking function, and none for correct code',
    );
    const withLine = [...byLease.values()].filter((a) => a.location !== undefined).length;
    console.log(
      `      first-frame rate with defaults: ${withLine}/${byLease.size} findings ` +
        `(${((100 * withLine) / byLease.size).toFixed(0)}%)`,
    );
  });
});
