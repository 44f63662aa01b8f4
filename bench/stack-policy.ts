/**
 * What leak detection and its stack policy cost on real round trips, measured side by side:
 * pools of every variant open at once on one server, `SELECT 1` through acquire/query/release,
 * rounds interleaved, client CPU per query (process.cpuUsage) and wall time, medians of 5.
 *
 *     npx tsx bench/stack-policy.ts [--concurrency 32] [--url postgres://...]
 *
 * Without --url (or DATABASE_URL) it starts an embedded PostgreSQL. The 'always' row shows what a
 * stack at every acquire costs, i.e. that the measurement can see the difference.
 */
import { parseArgs } from 'node:util';
import type { Client } from 'pg';
import { createPgPool, type Pool, type PoolOptions } from '../src';
import { startPostgres, stopPostgres } from '../test/support/postgres';

const { values } = parseArgs({
  options: { concurrency: { type: 'string', default: '32' }, url: { type: 'string' } },
});
const concurrency = Number(values.concurrency);

const VARIANTS: Record<string, Omit<PoolOptions<Client>, 'factory'>> = {
  "default (captureStacks: 'auto')": {},
  'leakDetection: false': { leakDetection: false },
  "captureStacks: 'never'": { captureStacks: 'never' },
  "captureStacks: 'always'": { captureStacks: 'always' },
};

async function run(pool: Pool<Client>, queries: number): Promise<[number, number]> {
  let left = queries;
  const start = process.hrtime.bigint();
  const cpu = process.cpuUsage();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (left-- > 0) {
        const lease = await pool.acquire();
        try {
          await lease.resource.query('SELECT 1');
        } finally {
          lease.release();
        }
      }
    }),
  );
  const used = process.cpuUsage(cpu);
  return [
    Number(process.hrtime.bigint() - start) / queries / 1000,
    (used.user + used.system) / queries,
  ];
}

async function main(): Promise<void> {
  const url = values.url ?? process.env.DATABASE_URL ?? (await startPostgres()).connectionString;
  try {
    const pools = Object.entries(VARIANTS).map(
      ([name, options]) => [name, createPgPool(url, { max: 10, ...options })] as const,
    );
    for (const [, pool] of pools) await run(pool, 2000); // warm-up
    const results = new Map<string, [number, number][]>(pools.map(([name]) => [name, []]));
    for (let round = 0; round < 5; round++) {
      for (const [name, pool] of pools) results.get(name)!.push(await run(pool, 5000));
    }
    const median = (values: number[]) => values.sort((a, b) => a - b)[values.length >> 1]!;
    const base = median(results.get('leakDetection: false')!.map(([, cpu]) => cpu));
    console.log(`SELECT 1, c=${concurrency}, pool max 10, medians of 5 rounds of 5000 queries`);
    for (const [name, samples] of results) {
      const cpu = median(samples.map(([, c]) => c));
      const wall = median(samples.map(([w]) => w));
      console.log(
        `  ${name.padEnd(34)} client CPU ${cpu.toFixed(1).padStart(6)} µs/query (${(cpu / base).toFixed(3)}x)` +
          `  wall ${wall.toFixed(1).padStart(6)} µs/query`,
      );
    }
    for (const [, pool] of pools) await pool.close();
  } finally {
    await stopPostgres();
  }
}

void main();
