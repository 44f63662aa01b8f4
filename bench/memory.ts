/**
 * Section "memory": does a pool with leak detection on keep anything per cycle?
 *
 * Each variant runs in a fresh child process started with --expose-gc:
 *   1. a pool (max 10, trivial resource) is warmed up with WARMUP_CYCLES cycles, so that JIT code,
 *      inline caches and lazily built structures exist before the first reading;
 *   2. settle (let timers and FinalizationRegistry callbacks run, full GC twice), read heapUsed;
 *   3. one million acquire + release cycles, driven as in the peers rows;
 *   4. settle again (long enough for one housekeeping tick), read heapUsed;
 *   5. read `stats()` and `leakReport().held` (the leases the pool still tracks as held) while the
 *      pool is quiescent, then close it.
 * Growth = heapUsed(4) - heapUsed(2). Young-generation noise is gone after a full GC, so what
 * remains is what is still reachable: a per-cycle leak of even one byte would show as ~1 MB.
 */
import { fork } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type { PoolOptions } from '../src';
import { drive } from './harness';
import type { OtelMode } from './otel';
import { installOtel, loadPoolwatch } from './otel';
import type { Resource } from './resource';
import { MAX, resourceFactory } from './resource';

export const MEMORY_CYCLES = 1_000_000;
const WARMUP_CYCLES = 200_000;

export interface MemoryVariant {
  name: string;
  concurrency: number;
  options: Omit<PoolOptions<Resource>, 'factory'>;
  otel: OtelMode;
  /** Only in --full: the variant takes long (stack capture or spans on every acquire). */
  fullOnly?: boolean;
}

export const MEMORY_VARIANTS: MemoryVariant[] = [
  { name: 'poolwatch default c=1', concurrency: 1, options: {}, otel: 'none' },
  { name: 'poolwatch default c=64', concurrency: 64, options: {}, otel: 'none' },
  {
    name: 'poolwatch default c=64, OTel SDK + instrumentation',
    concurrency: 64,
    options: {},
    otel: 'full',
    fullOnly: true,
  },
  {
    name: "poolwatch captureStacks:'always' c=64",
    concurrency: 64,
    options: { captureStacks: 'always' },
    otel: 'none',
    fullOnly: true,
  },
];

export interface MemoryResult {
  name: string;
  cycles: number;
  heapBeforeBytes: number;
  heapAfterBytes: number;
  growthBytes: number;
  /** Leases the pool still reports as held at quiescence (`leakReport().held.length`). */
  held: number;
  used: number;
  pending: number;
  size: number;
  idle: number;
  seconds: number;
  error?: string;
}

/** The memory-section id of a variant, for --only. */
export function memoryId(variant: MemoryVariant): string {
  return `memory / ${MEMORY_CYCLES} cycles / ${variant.name}`;
}

// ---------------------------------------------------------------------------------------------
// Child side

function gc(): void {
  const collect = (globalThis as { gc?: () => void }).gc;
  if (collect === undefined) throw new Error('memory child needs --expose-gc');
  collect();
}

async function settle(flush: () => Promise<void>, waitMillis: number): Promise<number> {
  await flush();
  await sleep(waitMillis);
  gc();
  // FinalizationRegistry callbacks run in a task after the GC that found their targets.
  await new Promise((resolve) => setImmediate(resolve));
  gc();
  return process.memoryUsage().heapUsed;
}

export async function runMemoryVariant(variant: MemoryVariant): Promise<MemoryResult> {
  const { Pool } = loadPoolwatch();
  const env = await installOtel(variant.otel);
  const { create, destroy, check } = resourceFactory(variant.name);
  const pool = new Pool<Resource>({ ...variant.options, factory: { create, destroy }, max: MAX });
  const cycle = async (): Promise<void> => {
    const lease = await pool.acquire();
    lease.release();
  };
  const run = (n: number): Promise<void> => env.run(() => drive(cycle, n, variant.concurrency));
  try {
    await run(WARMUP_CYCLES);
    const heapBeforeBytes = await settle(env.flush, 50);
    const started = process.hrtime.bigint();
    await run(MEMORY_CYCLES);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    // Past one housekeeping tick (1 s), so anything the tick would let go of is gone.
    const heapAfterBytes = await settle(env.flush, 1100);
    const stats = pool.stats();
    return {
      name: variant.name,
      cycles: MEMORY_CYCLES,
      heapBeforeBytes,
      heapAfterBytes,
      growthBytes: heapAfterBytes - heapBeforeBytes,
      held: pool.leakReport().held.length,
      used: stats.used,
      pending: stats.pending,
      size: stats.size,
      idle: stats.idle,
      seconds,
    };
  } finally {
    await pool.close();
    await env.teardown();
    check();
  }
}

/** Child entry point: runs the named variant and sends the result to the parent. */
export async function memoryChild(name: string): Promise<void> {
  const variant = MEMORY_VARIANTS.find((v) => v.name === name);
  if (variant === undefined) throw new Error(`memory child: no variant ${JSON.stringify(name)}`);
  let result: MemoryResult;
  try {
    result = await runMemoryVariant(variant);
  } catch (err) {
    result = failed(variant.name, err instanceof Error ? (err.stack ?? err.message) : String(err));
  }
  await new Promise<void>((resolve) => process.send!(result, () => resolve()));
  process.disconnect();
}

function failed(name: string, error: string): MemoryResult {
  return {
    name,
    cycles: MEMORY_CYCLES,
    heapBeforeBytes: NaN,
    heapAfterBytes: NaN,
    growthBytes: NaN,
    held: NaN,
    used: NaN,
    pending: NaN,
    size: NaN,
    idle: NaN,
    seconds: NaN,
    error,
  };
}

// ---------------------------------------------------------------------------------------------
// Parent side

/**
 * Runs each variant in its own child process (`script` with `childFlag <name>`), one at a time:
 * the readings do not depend on CPU time, but a variant's seconds column is easier to read
 * without a neighbour.
 */
export async function measureMemory(
  variants: MemoryVariant[],
  script: string,
  childFlag: string,
  progress: (message: string) => void,
): Promise<MemoryResult[]> {
  const results: MemoryResult[] = [];
  for (const variant of variants) {
    const result = await new Promise<MemoryResult>((resolve) => {
      const child = fork(script, [childFlag, variant.name], {
        execArgv: [...process.execArgv, '--expose-gc'],
        stdio: ['ignore', 2, 2, 'ipc'],
      });
      let reply: MemoryResult | undefined;
      child.on('message', (message: MemoryResult) => (reply = message));
      child.on('exit', (code, signal) =>
        resolve(reply ?? failed(variant.name, `child exited (code ${code}, signal ${signal})`)),
      );
    });
    progress(`memory   ${variant.name}: ${formatBytes(result.growthBytes)} growth`);
    results.push(result);
  }
  return results;
}

export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return 'n/a';
  const sign = bytes < 0 ? '-' : '+';
  const abs = Math.abs(bytes);
  if (abs >= 1024 * 1024) return `${sign}${(abs / 1024 / 1024).toFixed(2)} MB`;
  if (abs >= 1024) return `${sign}${(abs / 1024).toFixed(1)} kB`;
  return `${sign}${abs} B`;
}

export function formatMemoryTable(results: MemoryResult[]): string {
  const headers = [
    'memory (1 process per row, --expose-gc)',
    'cycles',
    'heap before',
    'heap after',
    'growth',
    'held',
    'used',
    'pending',
    'size',
    'ns/cycle',
  ];
  const mb = (b: number): string =>
    Number.isFinite(b) ? `${(b / 1024 / 1024).toFixed(2)} MB` : 'n/a';
  const rows = results.map((r) => [
    r.name,
    r.cycles.toLocaleString('en-US'),
    mb(r.heapBeforeBytes),
    mb(r.heapAfterBytes),
    formatBytes(r.growthBytes),
    String(r.held),
    String(r.used),
    String(r.pending),
    String(r.size),
    Number.isFinite(r.seconds) ? ((r.seconds * 1e9) / r.cycles).toFixed(0) : 'n/a',
  ]);
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  const out = [line(headers), '='.repeat(widths.reduce((a, b) => a + b + 2, -2))];
  for (const row of rows) out.push(line(row));
  for (const r of results) if (r.error !== undefined) out.push(`failed: ${r.name}: ${r.error}`);
  return out.join('\n');
}
