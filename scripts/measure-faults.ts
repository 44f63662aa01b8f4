/**
 * The numbers of issue 10, measured against a source tree (default: this one's src/):
 *
 *   node --expose-gc --import tsx scripts/measure-faults.ts [path/to/src]
 *
 * 1. Recovery after a silent network drop during queries (pg through the fault proxy, the
 *    machine's PostgreSQL at $PGURL or 127.0.0.1:5432): 5 holders in a query, the path
 *    blackholed, healed 600 ms later; time from healing to the first successful query. Once with
 *    pg's query_timeout 400 ms (holders catch the error and release), once with default options.
 * 2. close() duration with a create that never settles and a lease never released
 *    (closeTimeoutMillis 500), and with a destroy that never settles (300).
 * 3. Time to abort 20,000 waiters that share one AbortSignal.
 * 4. Heap growth for 100,000 waiters timed out behind one long waiter.
 */
import path from 'node:path';
import type * as Lib from '../src';
import type * as Drivers from '../src/drivers';
import { FaultProxy } from '../test/support/fault-proxy';

type PoolModule = typeof Lib;
type DriversModule = typeof Drivers;

const srcDir = path.resolve(process.argv[2] ?? path.join(__dirname, '..', 'src'));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const gc = (globalThis as { gc?: () => void }).gc!;

async function main(): Promise<void> {
  // The pools' timers are unref'd: keep the process alive while they are waited for.
  setInterval(() => undefined, 1000);
  const lib = (await import(path.join(srcDir, 'index.ts'))) as PoolModule;
  const drivers = (await import(path.join(srcDir, 'drivers', 'index.ts'))) as DriversModule;
  const out: Record<string, string> = {};
  for (const queryTimeout of [400, undefined]) {
    out[`recovery after silent drop (query_timeout ${queryTimeout ?? 'unset'})`] = await recovery(
      drivers,
      queryTimeout,
    );
  }
  out['close(): hung create + held lease, closeTimeoutMillis 500'] = await closeHung(lib, 'create');
  out['close(): hung destroy, closeTimeoutMillis 300'] = await closeHung(lib, 'destroy');
  out['abort 20,000 waiters on one signal'] = await abortMany(lib, 20_000);
  out['heap for 100,000 timed-out waiters'] = await heapTimedOut(lib, 100_000);
  console.log(JSON.stringify({ src: srcDir, ...out }, null, 2));
  process.exit(0);
}

async function recovery(drivers: DriversModule, queryTimeout: number | undefined): Promise<string> {
  const proxy = await FaultProxy.start({ host: '127.0.0.1', port: 5432 });
  const pool = drivers.createPgPool(
    {
      host: '127.0.0.1',
      port: proxy.port,
      user: 'postgres',
      database: 'test',
      connectionTimeoutMillis: 300,
      ...(queryTimeout === undefined ? {} : { query_timeout: queryTimeout }),
    },
    { max: 5, acquireTimeoutMillis: 1000, detectSelfDeadlock: false },
    { endTimeoutMillis: 100 },
  );
  try {
    let running = 0;
    const holders = Array.from({ length: 5 }, async () => {
      const lease = await pool.acquire();
      try {
        running++;
        await lease.resource.query('SELECT pg_sleep(0.2)');
      } catch {
        // the usual pattern: handle, then release
      } finally {
        lease.release();
      }
    });
    while (running < 5) await sleep(5);
    await sleep(50);
    proxy.blackhole();
    await sleep(600);
    await proxy.heal();
    const healed = performance.now();
    const bound = 8000;
    for (;;) {
      try {
        await pool.use((c) => c.query('SELECT 1'), { timeoutMillis: 1000 });
        void Promise.allSettled(holders);
        return `${Math.round(performance.now() - healed)} ms after healing`;
      } catch {
        if (performance.now() - healed > bound) return `not served within ${bound} ms (dead)`;
        await sleep(10);
      }
    }
  } finally {
    await Promise.race([pool.close(), sleep(1500)]);
    await proxy.close();
  }
}

async function closeHung(lib: PoolModule, what: 'create' | 'destroy'): Promise<string> {
  let creates = 0;
  const pool = new lib.Pool<{ id: number }>({
    factory: {
      create: () =>
        what === 'create' && creates++ > 0
          ? new Promise<never>(() => undefined)
          : Promise.resolve({ id: 1 }),
      destroy: () => (what === 'destroy' ? new Promise<void>(() => undefined) : undefined),
    },
    max: 2,
    closeTimeoutMillis: what === 'create' ? 500 : 300,
    leakDetection: false,
  });
  const held = await pool.acquire();
  if (what === 'create') {
    void pool.acquire().catch(() => undefined); // starts the create that hangs
  } else {
    held.release();
    await pool.acquire().then((l) => l.destroy()); // a destroy that hangs
  }
  await sleep(10);
  const started = performance.now();
  await pool.close();
  return `${Math.round(performance.now() - started)} ms`;
}

async function abortMany(lib: PoolModule, n: number): Promise<string> {
  const pool = new lib.Pool<{ id: number }>({
    factory: { create: async () => ({ id: 1 }), destroy: () => undefined },
    max: 1,
    leakDetection: false,
  });
  const held = await pool.acquire();
  const controller = new AbortController();
  const waiting: Promise<unknown>[] = [];
  for (let i = 0; i < n; i++) {
    waiting.push(pool.acquire({ signal: controller.signal }).catch(() => undefined));
  }
  await sleep(0);
  const started = performance.now();
  controller.abort();
  await Promise.all(waiting);
  const millis = performance.now() - started;
  held.release();
  await pool.close();
  return `${Math.round(millis)} ms`;
}

async function heapTimedOut(lib: PoolModule, n: number): Promise<string> {
  const pool = new lib.Pool<{ id: number }>({
    factory: { create: async () => ({ id: 1 }), destroy: () => undefined },
    max: 1,
    leakDetection: false,
    health: false,
  });
  const held = await pool.acquire();
  const head = pool.acquire({ timeoutMillis: 3_600_000 }).catch(() => undefined);
  await sleep(10);
  gc();
  const before = process.memoryUsage().heapUsed;
  const batch = 10_000;
  for (let done = 0; done < n; done += batch) {
    const timedOut: Promise<unknown>[] = [];
    for (let i = 0; i < batch; i++) {
      timedOut.push(pool.acquire({ timeoutMillis: 1 }).catch(() => undefined));
    }
    await Promise.all(timedOut);
  }
  await sleep(10);
  gc();
  gc();
  const after = process.memoryUsage().heapUsed;
  const pending = pool.stats().pending;
  held.release();
  await head;
  await pool.close();
  return `${((after - before) / 1e6).toFixed(1)} MB (pending ${pending})`;
}

void main();
