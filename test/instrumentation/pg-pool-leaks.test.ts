/**
 * The operator-facing additions on the application's own pg.Pool pools (patched pg-pool, real
 * PostgreSQL): the leak span, the oldest-hold gauge, leaks by code location, and the live view.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { diag } from '@opentelemetry/api';
import type * as PgModule from 'pg';
import sinon from 'sinon';
import { liveViewSnapshot, openPools } from '../../src';
import { getPostgres, type PgConfig } from '../support/postgres';
import { points, Telemetry } from './telemetry';

const load = createRequire(__filename);

describe('PoolInstrumentation: leaks of existing pg.Pool pools, where operators look', () => {
  let pg: typeof PgModule;
  let config: PgConfig;
  let telemetry: Telemetry | undefined;
  let clock: sinon.SinonFakeTimers | undefined;
  const pools: PgModule.Pool[] = [];

  before(async function () {
    this.timeout(120_000);
    config = (await getPostgres()).config;
    pg = load('pg') as typeof PgModule;
  });

  afterEach(async () => {
    clock?.restore();
    clock = undefined;
    // pg-pool's end() resolves before its clients' sockets close: wait for each 'remove', or
    // the server stopping after the last test finds them still connected.
    await Promise.all(
      pools.splice(0).map(async (p) => {
        let open = p.totalCount;
        const removed = new Promise<void>((resolve) => {
          if (open === 0) resolve();
          p.on('remove', () => --open === 0 && resolve());
        });
        await p.end();
        await removed;
      }),
    );
    await telemetry?.shutdown();
    telemetry = undefined;
    diag.disable();
  });

  function exportInvoices(p: PgModule.Pool) {
    return p.connect(); // @export-invoices
  }

  it('gauges the oldest checkout, counts the leak by code location, records the leak span and lists the holds', async () => {
    clock = sinon.useFakeTimers({
      now: Date.parse('2026-12-01T12:00:00Z'),
      toFake: ['setInterval', 'clearInterval', 'performance', 'Date'],
    });
    const name = `pg-leaks-${process.pid}`;
    const t = (telemetry = new Telemetry({
      pgPool: { leakDetectionThresholdMillis: 1000, captureStacks: 'always', poolName: () => name },
    }));
    load('pg-pool'); // applies the patch
    const p = new pg.Pool({ ...config, max: 3 });
    pools.push(p);
    const N = { 'db.client.connection.pool.name': name };

    const leaked = await t.tracer.startActiveSpan('POST /invoices/export', async (span) => {
      const client = await exportInvoices(p);
      span.end();
      return client;
    });
    clock.tick(400);
    const other = await p.connect();
    clock.tick(1000); // the leak tick marks the first checkout (1.4 s) suspected

    const metrics = await t.metrics();
    assert.deepEqual(points(metrics.get('poolwatch.hold.oldest_age')), [[N, 1.4]]);
    const location = {
      'code.function.name': 'exportInvoices',
      'code.file.path': path.relative(process.cwd(), __filename),
      'code.line.number': lineOf('// @export-invoices'),
    };
    assert.deepEqual(points(metrics.get('poolwatch.code_location.leaks')), [
      [{ ...N, ...location, 'poolwatch.leak.kind': 'suspected' }, 1],
    ]);
    assert.deepEqual(points(metrics.get('poolwatch.code_location.leaks.suspected')), [
      [{ ...N, ...location }, 1],
    ]);

    const [request, leak] = t.spans();
    assert.deepEqual([request!.name, leak!.name], ['POST /invoices/export', 'poolwatch.leak']);
    assert.equal(leak!.spanContext().traceId, request!.spanContext().traceId);
    assert.equal(leak!.attributes['code.function.name'], 'exportInvoices');
    assert.equal(leak!.attributes['db.client.connection.pool.name'], name);

    const view = liveViewSnapshot([...openPools].filter((ref) => ref.name === name));
    assert.deepEqual(
      view.pools.map((v) => ({
        name: v.name,
        oldest: v.oldestHoldSeconds,
        holds: v.holds!.map((h) => [h.ageSeconds, h.suspected, h.location?.functionName]),
      })),
      [
        {
          name,
          oldest: 1.4,
          holds: [
            [1.4, true, 'exportInvoices'],
            [1, false, 'Context.<anonymous>'],
          ],
        },
      ],
    );
    leaked.release();
    other.release();
  });
});

function lineOf(marker: string): number {
  const lines = readFileSync(__filename, 'utf8').split('\n');
  return lines.findIndex((line) => line.endsWith(marker)) + 1;
}
