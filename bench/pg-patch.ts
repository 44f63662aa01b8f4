/**
 * Rows of the "postgres" section for the pg.Pool patch (`PoolInstrumentation`'s `pgPool`): an
 * application's own `pg.Pool`, `pool.query('SELECT 1')` inside a request span, under the OTel SDK,
 * with what users run beside it. Measured in client CPU per query (process CPU time / queries):
 * with the server on the same cores, wall time mixes in the server's share.
 *
 * Rows (group "pg.Pool under OTel, SELECT 1 c=N", baseline: the SDK alone):
 *  - `pg.Pool, OTel SDK`: the SDK's own cost (context manager, providers, request span).
 *  - `…, hand-written hold span + 2 histograms`: the floor: the same SDK work the instrumentation
 *    does per checkout, written by hand around `pool.query()` (one span with the hold's
 *    attributes, a wait-time and a use-time histogram record).
 *  - `…, + poolwatch pg.Pool patch`: `PoolInstrumentation` with its defaults (hold spans, metrics,
 *    logs, leak detection 30 s, stacks 'auto').
 *  - `…, + instrumentation-pg`: `@opentelemetry/instrumentation-pg` with its defaults
 *    (`pg-pool.connect`, `pg.connect` and `pg.query` spans, its metrics): what users run.
 *  - `…, + instrumentation-pg + poolwatch pg.Pool patch`: both, poolwatch registered first (so
 *    instrumentation-pg's wrapper sits above poolwatch's, the order that needs the most of it).
 *
 * The goals (bench/goals.ts) compare the patch's marginal CPU per query, over the SDK alone and
 * over the SDK with instrumentation-pg, with the native path's marginal (poolwatch's own pool,
 * "postgres / SELECT 1" rows `OTel SDK + instrumentation` minus `OTel SDK, no instrumentation`) and
 * with the hand-written floor's.
 */
import type * as OtelApi from '@opentelemetry/api';
import type * as OtelInstrumentation from '@opentelemetry/instrumentation';
import type * as PgModule from 'pg';
import type { Case, Runner } from './harness';
import { SubjectUnavailableError, drive } from './harness';
import type { OtelMode } from './otel';
import { installOtel, lazyRequire } from './otel';
import { BENCH_DATABASE_URL_ENV, PG_CONCURRENCIES } from './postgres';

const PG_MAX = 10;
const QUERY = 'SELECT 1';

export const PG_PATCH_ROWS = {
  sdk: 'pg.Pool, OTel SDK',
  floor: 'pg.Pool, OTel SDK, hand-written hold span + 2 histograms',
  patch: 'pg.Pool, OTel SDK + poolwatch pg.Pool patch',
  pgInstrumentation: 'pg.Pool, OTel SDK + instrumentation-pg',
  both: 'pg.Pool, OTel SDK + instrumentation-pg + poolwatch pg.Pool patch',
} as const;

export function pgPatchGroup(concurrency: number): string {
  return `pg.Pool under OTel, SELECT 1 c=${concurrency}`;
}

type Row = keyof typeof PG_PATCH_ROWS;

function pgPatchCase(row: Row, concurrency: number): Case {
  const mode: OtelMode = row === 'patch' || row === 'both' ? 'full' : 'sdk';
  return {
    suite: 'postgres',
    group: pgPatchGroup(concurrency),
    name: PG_PATCH_ROWS[row],
    baseline: row === 'sdk',
    async prepare(): Promise<Runner> {
      const url = process.env[BENCH_DATABASE_URL_ENV];
      if (url === undefined || url === '') {
        throw new SubjectUnavailableError('postgres: no server (it failed to start; see above)');
      }
      const env = await installOtel(mode);
      let unregisterPg: (() => void) | undefined;
      if (row === 'pgInstrumentation' || row === 'both') {
        // After poolwatch (installOtel registered it): its wrapper goes on top of poolwatch's.
        const { PgInstrumentation } = lazyRequire<{
          PgInstrumentation: new () => OtelInstrumentation.Instrumentation;
        }>('@opentelemetry/instrumentation-pg');
        const { registerInstrumentations } = lazyRequire<typeof OtelInstrumentation>(
          '@opentelemetry/instrumentation',
        );
        unregisterPg = registerInstrumentations({ instrumentations: [new PgInstrumentation()] });
      }
      // Loaded after the instrumentations: their require hooks patch pg and pg-pool.
      const pg = lazyRequire<typeof PgModule>('pg');
      const pool = new pg.Pool({ connectionString: url, max: PG_MAX });
      const query = row === 'floor' ? handWritten(pool, url) : () => pool.query(QUERY);
      return {
        run: (n) => env.run(() => drive(() => query().then(ignore), n, concurrency)),
        async teardown() {
          await pool.end();
          unregisterPg?.();
          await env.teardown();
        },
      };
    },
  };
}

/**
 * What the instrumentation does per checkout, by hand and on the same SDK: one span with the
 * hold's attributes under the request span, a wait-time and a use-time histogram record.
 */
function handWritten(pool: PgModule.Pool, url: string): () => Promise<unknown> {
  const api = lazyRequire<typeof OtelApi>('@opentelemetry/api');
  const tracer = api.trace.getTracer('hand-written');
  const meter = api.metrics.getMeter('hand-written');
  const advice = { explicitBucketBoundaries: [0.001, 0.01, 0.1, 1, 10] };
  const waitTime = meter.createHistogram('hand.wait_time', { unit: 's', advice });
  const useTime = meter.createHistogram('hand.use_time', { unit: 's', advice });
  const u = new URL(url);
  const name = `${u.hostname}:${u.port}${u.pathname}`;
  const metric = { 'db.client.connection.pool.name': name };
  let id = 0;
  return async () => {
    const started = performance.now();
    const client = await pool.connect();
    const acquired = performance.now();
    const span = tracer.startSpan('poolwatch.hold', {
      attributes: {
        'db.client.connection.pool.name': name,
        'db.system.name': 'postgresql',
        'server.address': u.hostname,
        'server.port': Number(u.port),
        'poolwatch.lease.id': ++id,
        'poolwatch.acquire.wait_time': (acquired - started) / 1000,
      },
    });
    waitTime.record((acquired - started) / 1000, metric);
    try {
      return await client.query(QUERY);
    } finally {
      client.release();
      useTime.record((performance.now() - acquired) / 1000, metric);
      span.setAttribute('poolwatch.hold.outcome', 'released');
      span.end();
    }
  };
}

function ignore(): void {}

export function pgPatchCases(): Case[] {
  return PG_CONCURRENCIES.flatMap((c) =>
    (Object.keys(PG_PATCH_ROWS) as Row[]).map((row) => pgPatchCase(row, c)),
  );
}
