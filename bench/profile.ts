/**
 * CPU profiles of poolwatch's hot path, on the built package (dist/cjs, what users run), with a
 * self-time summary by function.
 *
 *     npm run build
 *     npx tsx bench/profile.ts                      # every workload
 *     npx tsx bench/profile.ts 'default c=1' --top 15 --keep /tmp/profiles
 *
 * Each workload runs in its own process that loads poolwatch from dist/cjs (only this driver and
 * the loop are compiled by tsx). The loop is the same as in the benchmark rows (bench/harness.ts
 * `drive()`: async workers, one awaited acquire and a synchronous release per cycle, trivial
 * resource, max 10). The profiler is V8's sampling CPU profiler, the one `node --cpu-prof` runs,
 * sampling every 50 µs, but started through `node:inspector` after a warm-up and stopped after the
 * loop: with `--cpu-prof` a fifth of the samples were tsx compiling modules at start-up, and the
 * warm-up would show the JIT getting there rather than the optimized loop. `--keep DIR` writes
 * the `.cpuprofile` files (the same format `--cpu-prof` writes) for Chrome DevTools.
 *
 * The summary attributes each sample to the function on top of the stack (self time): what the
 * CPU was actually executing. "(garbage collector)" is V8's GC, billed to nobody else; a large
 * share of it points at allocation in the loop.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { Session } from 'node:inspector/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { PoolOptions } from '../src';
import { drive } from './harness';
import type { OtelMode } from './otel';
import { installOtel, lazyRequire, loadPoolwatch, useBuiltPoolwatch } from './otel';
import { NoIoClient } from './peers';

/** The part of pg-pool's `Pool` the `pg.Pool` workload uses. */
interface NoIoPgPool {
  query(text: string, callback: (error: unknown) => void): void;
  end(): Promise<void>;
}
import type { Resource } from './resource';
import { MAX, resourceFactory } from './resource';
import { MinimalPool } from './minimal-pool';
import type { BenchDatabase } from './postgres';
import { BENCH_DATABASE_URL_ENV, startBenchDatabase } from './postgres';
import { QUEUE_LENGTH, queueRound } from './scale';

interface Workload {
  /**
   * `bare`: the acquire + release cycle; `queue`: rounds of 10,000 queued waiters (bench/scale.ts);
   * `minimal`: the bare cycle on minimal-pool, the floor, for comparison; `pg`: acquire, `SELECT 1`,
   * release on createPgPool (max 10) against the embedded server; `pg.Pool`: `pool.query()` on
   * pg-pool (max 10) with a client that answers on the next tick (no I/O), so that the pg.Pool
   * patch's own CPU shows (compare `otel: 'sdk'` with `'full'`, and with the bare cycle's).
   */
  kind: 'bare' | 'queue' | 'minimal' | 'pg' | 'pg.Pool';
  options?: Omit<PoolOptions<Resource>, 'factory'>;
  concurrency: number;
  otel?: OtelMode;
  cycles: number;
}

const WORKLOADS: Record<string, Workload> = {
  'minimal-pool c=1': { kind: 'minimal', concurrency: 1, cycles: 4e6 },
  'default c=1': { kind: 'bare', concurrency: 1, cycles: 4e6 },
  'leakDetection:false c=1': {
    kind: 'bare',
    options: { leakDetection: false },
    concurrency: 1,
    cycles: 4e6,
  },
  'default c=64': { kind: 'bare', concurrency: 64, cycles: 4e6 },
  'leakDetection:false c=64': {
    kind: 'bare',
    options: { leakDetection: false },
    concurrency: 64,
    cycles: 4e6,
  },
  "captureStacks:'always' c=1": {
    kind: 'bare',
    options: { captureStacks: 'always' },
    concurrency: 1,
    cycles: 5e5,
  },
  '10,000 queued waiters': { kind: 'queue', concurrency: 1, cycles: 2e6 },
  'OTel SDK only c=1': { kind: 'bare', concurrency: 1, otel: 'sdk', cycles: 2e6 },
  'OTel instrumentation disabled c=1': {
    kind: 'bare',
    concurrency: 1,
    otel: 'disabled',
    cycles: 2e6,
  },
  'OTel full c=1': { kind: 'bare', concurrency: 1, otel: 'full', cycles: 5e5 },
  'OTel sampled-out parent c=1': { kind: 'bare', concurrency: 1, otel: 'sampled-out', cycles: 5e5 },
  'pg.Pool no-I/O c=1 OTel SDK only': { kind: 'pg.Pool', concurrency: 1, otel: 'sdk', cycles: 1e6 },
  'pg.Pool no-I/O c=1 OTel full (patch)': {
    kind: 'pg.Pool',
    concurrency: 1,
    otel: 'full',
    cycles: 5e5,
  },
  'pg.Pool no-I/O c=32 OTel full (patch)': {
    kind: 'pg.Pool',
    concurrency: 32,
    otel: 'full',
    cycles: 5e5,
  },
  'PostgreSQL c=1': { kind: 'pg', concurrency: 1, cycles: 1e4 },
  'PostgreSQL c=1 OTel full': { kind: 'pg', concurrency: 1, otel: 'full', cycles: 1e4 },
  'PostgreSQL c=32': { kind: 'pg', concurrency: 32, cycles: 2e4 },
  'PostgreSQL c=32 OTel SDK only': { kind: 'pg', concurrency: 32, otel: 'sdk', cycles: 2e4 },
  'PostgreSQL c=32 OTel full': { kind: 'pg', concurrency: 32, otel: 'full', cycles: 2e4 },
};

// ---------------------------------------------------------------------------------------------
// The profiled process

interface Loop {
  run(n: number): Promise<void>;
  close(): Promise<void>;
}

function openLoop(workload: Workload, name: string): Loop {
  const { create, destroy } = resourceFactory(name);
  if (workload.kind === 'minimal') {
    const pool = new MinimalPool(create, MAX);
    const cycle = async (): Promise<void> => pool.release(await pool.acquire());
    return {
      run: (n) => drive(cycle, n, workload.concurrency),
      close: () => pool.close(destroy),
    };
  }
  if (workload.kind === 'pg') {
    const url = process.env[BENCH_DATABASE_URL_ENV]!;
    const pool = loadPoolwatch().createPgPool(url, { ...workload.options, max: MAX });
    const cycle = async (): Promise<void> => {
      const lease = await pool.acquire();
      try {
        await lease.resource.query('SELECT 1');
      } finally {
        lease.release();
      }
    };
    return {
      run: (n) => drive(cycle, n, workload.concurrency),
      close: async () => void (await pool.close()),
    };
  }
  if (workload.kind === 'pg.Pool') {
    // Loaded after installOtel(): the instrumentation's require hook patches it ('full').
    const PgPool = lazyRequire<new (options: object) => NoIoPgPool>('pg-pool');
    let created = 0;
    const Client = class extends NoIoClient {
      constructor(options: unknown) {
        super(options, created++);
      }
      query(_text: string, _values: unknown, callback: (error: null, result: object) => void) {
        process.nextTick(callback, null, { rows: [] });
      }
    };
    const pool = new PgPool({ Client, max: MAX, host: 'db', port: 5432, database: 'app' });
    const cycle = (): Promise<void> =>
      new Promise((resolve, reject) =>
        pool.query('SELECT 1', (error) => (error ? reject(error) : resolve())),
      );
    return { run: (n) => drive(cycle, n, workload.concurrency), close: () => pool.end() };
  }
  const pool = new (loadPoolwatch().Pool)<Resource>({
    ...workload.options,
    factory: { create, destroy },
    max: MAX,
  });
  if (workload.kind === 'queue') {
    const holdable = {
      acquire: () => pool.acquire(),
      release: (lease: { release(): void }) => lease.release(),
      close: async () => {},
    };
    return {
      async run(n) {
        for (let done = 0; done < n; done += QUEUE_LENGTH) await queueRound(holdable, QUEUE_LENGTH);
      },
      close: async () => void (await pool.close()),
    };
  }
  const cycle = async (): Promise<void> => {
    const lease = await pool.acquire();
    lease.release();
  };
  return {
    run: (n) => drive(cycle, n, workload.concurrency),
    close: async () => void (await pool.close()),
  };
}

async function runWorkload(name: string, outFile: string): Promise<void> {
  const workload = WORKLOADS[name];
  if (workload === undefined) throw new Error(`no workload ${JSON.stringify(name)}`);
  const built = useBuiltPoolwatch();
  const env = await installOtel(workload.otel ?? 'none');
  const loop = openLoop(workload, name);
  const run = (n: number): Promise<void> => env.run(() => loop.run(n));
  await run(Math.ceil(workload.cycles / 10));
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 50 });
  await session.post('Profiler.start');
  const started = process.hrtime.bigint();
  await run(workload.cycles);
  const ns = Number(process.hrtime.bigint() - started) / workload.cycles;
  const { profile } = await session.post('Profiler.stop');
  session.disconnect();
  await loop.close();
  await env.teardown();
  fs.writeFileSync(outFile, JSON.stringify(profile));
  console.log(`${name}: ${ns.toFixed(0)} ns/op over ${workload.cycles} ops (poolwatch: ${built})`);
}

// ---------------------------------------------------------------------------------------------
// Reading a .cpuprofile

interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    /** Samples of this node by source line (1-based) of its script. */
    positionTicks?: { line: number; ticks: number }[];
  }[];
  samples: number[];
  timeDeltas: number[];
}

interface SelfTime {
  fn: string;
  where: string;
  area: string;
  micros: number;
}

function areaOf(url: string, fn: string): string {
  if (url === '' && fn.startsWith('(')) return fn; // (garbage collector), (program), (idle)
  if (url.includes('/dist/cjs/instrumentation/')) return 'poolwatch instrumentation';
  if (url.includes('/dist/cjs/')) return 'poolwatch pool (dist/cjs)';
  const otel = /@opentelemetry\/([^/]+)/.exec(url);
  if (otel !== null) return `@opentelemetry/${otel[1]}`;
  if (url.includes('/bench/')) return 'bench loop';
  if (url.startsWith('node:') || url === '') return 'node internals and V8 builtins';
  return 'other';
}

function summarize(profile: CpuProfile): SelfTime[] {
  const byNode = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const byKey = new Map<string, SelfTime>();
  for (let i = 0; i < profile.samples.length; i++) {
    const frame = byNode.get(profile.samples[i]!)!;
    const fn = frame.functionName || '(anonymous)';
    const file = frame.url.replace(/^file:\/\//, '');
    const where =
      file === '' ? '' : `${path.relative(process.cwd(), file)}:${frame.lineNumber + 1}`;
    const key = `${fn}\0${where}`;
    const entry = byKey.get(key) ?? { fn, where, area: areaOf(frame.url, fn), micros: 0 };
    entry.micros += profile.timeDeltas[i] ?? 0;
    byKey.set(key, entry);
  }
  return [...byKey.values()].sort((a, b) => b.micros - a.micros);
}

/**
 * Self samples by source line of poolwatch's own files (dist/cjs), with the line's text: where
 * inside a big function (acquire inlines most of the fast path) the time goes.
 */
function hotLines(profile: CpuProfile, top: number): string[] {
  const ticks = new Map<string, number>();
  for (const node of profile.nodes) {
    const url = node.callFrame.url;
    if (!url.includes('/dist/cjs/')) continue;
    for (const t of node.positionTicks ?? []) {
      const key = `${url.replace(/^file:\/\//, '')}:${t.line}`;
      ticks.set(key, (ticks.get(key) ?? 0) + t.ticks);
    }
  }
  const sources = new Map<string, string[]>();
  const total = profile.samples.length;
  return [...ticks]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([key, n]) => {
      const [file, line] = [
        key.slice(0, key.lastIndexOf(':')),
        Number(key.slice(key.lastIndexOf(':') + 1)),
      ];
      if (!sources.has(file)) sources.set(file, fs.readFileSync(file, 'utf8').split('\n'));
      const text = (sources.get(file)![line - 1] ?? '').trim().slice(0, 90);
      const where = `${path.basename(file)}:${line}`;
      return `   ${`${((n / total) * 100).toFixed(1)}%`.padStart(6)}  ${where.padEnd(16)} ${text}`;
    });
}

function formatSummary(name: string, rows: SelfTime[], top: number): string {
  const active = rows.filter((r) => r.fn !== '(idle)');
  const total = active.reduce((sum, r) => sum + r.micros, 0);
  const pct = (micros: number): string => `${((micros / total) * 100).toFixed(1)}%`.padStart(6);
  const idle = rows.filter((r) => r.fn === '(idle)').reduce((sum, r) => sum + r.micros, 0);
  const out = [
    `== ${name}: ${(total / 1000).toFixed(0)} ms of samples on the CPU, ${(idle / 1000).toFixed(0)} ms idle (waiting for I/O); percentages exclude idle`,
  ];
  const areas = new Map<string, number>();
  for (const r of active) areas.set(r.area, (areas.get(r.area) ?? 0) + r.micros);
  out.push(
    '   by area: ' +
      [...areas]
        .sort((a, b) => b[1] - a[1])
        .map(([area, micros]) => `${area} ${pct(micros).trim()}`)
        .join(', '),
  );
  out.push('   self    function                                 where');
  for (const r of active.slice(0, top)) {
    out.push(`   ${pct(r.micros)}  ${r.fn.padEnd(40)} ${r.where}`);
  }
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Driver

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      loop: { type: 'string' },
      out: { type: 'string' },
      top: { type: 'string', default: '20' },
      keep: { type: 'string' },
    },
  });
  if (values.loop !== undefined) {
    runWorkload(values.loop, values.out!).catch((err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    });
    return;
  }
  const dist = path.resolve(__dirname, '..', 'dist', 'cjs', 'pool.js');
  if (!fs.existsSync(dist)) throw new Error('dist/cjs is missing: run `npm run build` first');
  const srcTime = fs.statSync(path.resolve(__dirname, '..', 'src', 'pool.ts')).mtimeMs;
  if (fs.statSync(dist).mtimeMs < srcTime) {
    console.log('warning: dist/cjs/pool.js is older than src/pool.ts: run `npm run build`');
  }
  const names = positionals.length > 0 ? positionals : Object.keys(WORKLOADS);
  const dir = values.keep ?? fs.mkdtempSync(path.join(os.tmpdir(), 'poolwatch-prof-'));
  fs.mkdirSync(dir, { recursive: true });
  let db: BenchDatabase | undefined;
  if (names.some((name) => WORKLOADS[name]?.kind === 'pg')) {
    db = await startBenchDatabase();
    process.env[BENCH_DATABASE_URL_ENV] = db.url;
    console.log(`postgres: ${db.description}`);
  }
  console.log(
    `node ${process.version}, loadavg ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  for (const name of names) {
    const file = `${name.replace(/[^a-z0-9=:-]+/gi, '_')}.cpuprofile`;
    const child = spawnSync(
      process.execPath,
      [...process.execArgv, __filename, '--loop', name, '--out', path.join(dir, file)],
      { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' },
    );
    process.stdout.write(child.stdout);
    if (child.status !== 0) throw new Error(`${name}: profiled process failed`);
    const profile = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as CpuProfile;
    console.log(formatSummary(name, summarize(profile), Number(values.top)));
    console.log('   hottest lines of dist/cjs (self samples, % of all samples):');
    console.log(hotLines(profile, Number(values.top)).join('\n'));
    console.log('');
  }
  await db?.stop();
  if (values.keep === undefined) fs.rmSync(dir, { recursive: true, force: true });
  else console.log(`profiles kept in ${dir} (open in Chrome DevTools > Performance)`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
