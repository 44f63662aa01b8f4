/**
 * Measurement core for the poolwatch benchmarks.
 *
 * Two shapes of thing are measured:
 *  - a pool `Subject` (setup → many `cycle()` = acquire + release → teardown), driven by
 *    `concurrency` async workers through `poolCase()`;
 *  - a raw `Case` whose runner executes `n` operations itself (used by the micro suite, where
 *    the per-op cost of the async worker loop (one awaited call) would swamp what is being measured).
 *
 * Both end up as a `Case`, and `runCases()` measures a list of them with interleaved samples,
 * each case on a `CaseHost`: this process (`inProcess`) or a child process of its own
 * (bench/isolation.ts). See the methodology comment at the top of bench/index.ts.
 */
import { AsyncResource } from 'node:async_hooks';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/** A live pool under test. `cycle()` is exactly one acquire + one release. */
export interface SubjectInstance {
  cycle(): Promise<void>;
  teardown(): Promise<void>;
}

/** A pool implementation to benchmark. `setup()` builds a fresh, empty pool. */
export interface Subject {
  name: string;
  setup(): Promise<SubjectInstance>;
}

/**
 * Thrown by `Subject.setup()` / `Case.prepare()` when the thing under test cannot run here
 * (e.g. poolwatch's src/ is not written yet). The row is then reported as "n/a" instead of
 * failing the whole suite. Any other error aborts the run: a broken benchmark must be loud.
 */
export class SubjectUnavailableError extends Error {
  override name = 'SubjectUnavailableError';
}

/** Executes `n` operations per call; `run` is the only thing inside the timed region. */
export interface Runner {
  run(n: number): Promise<void> | void;
  teardown(): Promise<void> | void;
  /**
   * Counts the runner wants reported with its row, read after each timed batch (e.g. waiters
   * served out of order). The harness sums them over the samples of a row.
   */
  counters?(): Record<string, number>;
}

/** One row of the report. */
export interface Case {
  /** Top-level section, e.g. "peers" or "micro". */
  suite: string;
  /** Rows are compared (ratio column) only within a group, e.g. "c=64" or "errors". */
  group: string;
  name: string;
  /** The row other rows of the same group are divided by in the ratio column. */
  baseline?: boolean;
  /**
   * Op counts of this case are multiples of this (default 1): e.g. 10,000 when one `run()`
   * serves whole queues of 10,000 waiters.
   */
  quantum?: number;
  /** Measured only in full mode (or when --only names it): rows that inform but check no goal. */
  fullOnly?: boolean;
  /** Builds fresh state for one sample; called once per warm-up and once per sample. */
  prepare(): Promise<Runner>;
}

export interface RunConfig {
  mode: 'quick' | 'full';
  /** Minimum time spent in the (untimed) JIT warm-up of each case. */
  warmupMs: number;
  /** Number of timed samples per case (the "repetitions"). Odd, so the median is a sample. */
  samples: number;
  /** Target duration of one timed sample; the op count per case is calibrated from it. */
  sampleMs: number;
  maxOps: number;
}

export const QUICK: RunConfig = {
  mode: 'quick',
  warmupMs: 300,
  // 5, not 7: a sample costs ~2x its sampleMs in set-up, pre-run, GC and IPC, and with every
  // section (~60 rows) 7 samples took quick mode past two minutes on a busy machine.
  samples: 5,
  sampleMs: 75,
  maxOps: 2e7,
};
export const FULL: RunConfig = {
  mode: 'full',
  warmupMs: 1000,
  samples: 15,
  sampleMs: 300,
  maxOps: 1e8,
};

export interface CaseResult {
  suite: string;
  group: string;
  name: string;
  baseline: boolean;
  /** Operations in each timed sample (see `opsForSample` for why it can vary). */
  samplesOps: number[];
  /** Wall time of each timed sample in nanoseconds, in the order they were taken. */
  samplesNs: number[];
  /** Process CPU time of each sample in nanoseconds (same order). */
  samplesCpuNs: number[];
  /** The runner's `counters()`, summed over the timed samples. */
  counters?: Record<string, number>;
  /** Set when the case could not run; the row prints as "n/a". */
  unavailable?: string;
}

/** Wall and CPU time of one timed batch, in nanoseconds. */
export interface Timing {
  ns: number;
  /** User + system CPU time of the whole process (all threads, so GC helpers count too). */
  cpuNs: number;
  /** The runner's `counters()` after the batch, if it has any. */
  counters?: Record<string, number>;
}

export interface Summary {
  opsPerSecMin: number;
  opsPerSecMedian: number;
  opsPerSecMax: number;
  nsPerOpMedian: number;
  /** (max - min) / median of ops/s, a quick read of how noisy the row was. */
  spread: number;
  /** Median over samples of CPU time / wall time. */
  cpuShare: number;
}

/** Module-level sink so micro loops can publish a value and V8 cannot drop the work. */
export const blackhole: { value: unknown } = { value: undefined };

// ---------------------------------------------------------------------------------------------
// Driving pool subjects
// ---------------------------------------------------------------------------------------------

/**
 * Runs `n` cycles with `concurrency` async workers pulling from one shared counter.
 *
 * The counter is claimed *before* awaiting, so exactly `n` cycles start regardless of how the
 * workers interleave. All subjects go through this same loop, so its own cost (one async call
 * + await per op, visible in the "floor" row) is common to every row.
 *
 * Each worker runs in its own async context (an AsyncResource scope), as independent requests
 * in a server do, so that no pool can see the workers as one context. Costs one object per
 * worker per batch, nothing per op.
 */
export async function drive(
  cycle: () => Promise<void>,
  n: number,
  concurrency: number,
): Promise<void> {
  let started = 0;
  const worker = async (): Promise<void> => {
    while (started < n) {
      started++;
      await cycle();
    }
  };
  const workers: Promise<void>[] = [];
  for (let i = 0; i < concurrency; i++) {
    workers.push(new AsyncResource('poolwatch-bench-worker').runInAsyncScope(worker));
  }
  await Promise.all(workers);
}

/** Adapts a pool subject at a given concurrency into a measurable case. */
export function poolCase(
  subject: Subject,
  concurrency: number,
  opts: { suite: string; group: string; baseline?: boolean },
): Case {
  return {
    suite: opts.suite,
    group: opts.group,
    name: subject.name,
    baseline: opts.baseline ?? false,
    async prepare() {
      const instance = await subject.setup();
      return {
        run: (n) => drive(() => instance.cycle(), n, concurrency),
        teardown: () => instance.teardown(),
      };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Measuring
// ---------------------------------------------------------------------------------------------

export interface Progress {
  (message: string): void;
}

/**
 * Where a case runs. `calibrate` and `sample` are the only operations; a host that runs the
 * case in another process (bench/isolation.ts) simply forwards them.
 */
export interface CaseHost {
  /** Resolves when the host can take requests (e.g. its child process has started). */
  ready(): Promise<void>;
  /** Warms up; returns the best ns/op seen. Throws SubjectUnavailableError for n/a rows. */
  calibrate(): Promise<number>;
  /** Takes one timed sample of `ops` operations. */
  sample(ops: number): Promise<Timing>;
  close(): Promise<void>;
}

export type HostFactory = (c: Case, config: RunConfig) => CaseHost;

/** Runs the case in this process: cheap, but rows share global state (see bench/isolation.ts). */
export const inProcess: HostFactory = (c, config) => ({
  ready: async () => {},
  calibrate: () => calibrate(c, config),
  sample: (ops) => sampleOnce(c, ops),
  close: async () => {},
});

/**
 * Measures all cases. Samples are interleaved (sample 1 of every case, then sample 2 of
 * every case, ...) and the case order is rotated each round, so a burst of noise from a
 * neighbour on this shared machine, or a slow phase of the machine, is spread across rows
 * instead of landing on one of them.
 */
export async function runCases(
  cases: Case[],
  config: RunConfig,
  opts: { host?: HostFactory; progress?: Progress } = {},
): Promise<CaseResult[]> {
  if (cases.length === 0) return [];
  const progress = opts.progress ?? (() => {});
  const results: CaseResult[] = cases.map((c) => ({
    suite: c.suite,
    group: c.group,
    name: c.name,
    baseline: c.baseline ?? false,
    samplesOps: [],
    samplesNs: [],
    samplesCpuNs: [],
  }));
  // Create every host first so that child processes start in parallel, and wait for all of
  // them before measuring anything: start-up is CPU-heavy and would disturb the warm-ups.
  const hosts = cases.map((c) => (opts.host ?? inProcess)(c, config));
  try {
    await Promise.all(hosts.map((h) => h.ready()));
    const bestNsPerOp = await calibrateAll(hosts, results, progress);
    for (let round = 0; round < config.samples; round++) {
      const started = process.hrtime.bigint();
      for (let k = 0; k < cases.length; k++) {
        const i = (k + round) % cases.length;
        const result = results[i]!;
        if (result.unavailable !== undefined) continue;
        const ops = opsForSample(bestNsPerOp[i]!, config, cases[i]!.quantum);
        const { ns, cpuNs, counters } = await hosts[i]!.sample(ops);
        bestNsPerOp[i] = Math.min(bestNsPerOp[i]!, ns / ops);
        result.samplesOps.push(ops);
        result.samplesNs.push(ns);
        result.samplesCpuNs.push(cpuNs);
        if (counters !== undefined) addCounters((result.counters ??= {}), counters);
      }
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      progress(`round ${round + 1}/${config.samples} done in ${seconds.toFixed(1)} s`);
    }
    return results;
  } finally {
    await Promise.all(hosts.map((h) => h.close()));
  }
}

/** Warms every case up; returns each case's best ns/op (NaN for unavailable cases). */
async function calibrateAll(
  hosts: CaseHost[],
  results: CaseResult[],
  progress: Progress,
): Promise<number[]> {
  const best: number[] = [];
  for (let i = 0; i < hosts.length; i++) {
    const result = results[i]!;
    try {
      best.push(await hosts[i]!.calibrate());
      progress(`warm-up  ${caseId(result)}: ${best[i]!.toFixed(1)} ns/op`);
    } catch (err) {
      if (!(err instanceof SubjectUnavailableError)) throw err;
      best.push(NaN);
      result.unavailable = err.message;
      progress(`skip     ${caseId(result)}: ${err.message}`);
    }
  }
  return best;
}

/**
 * Op count for the next sample so that it lasts ~sampleMs, from the best ns/op seen so far
 * (warm-up and earlier samples). Noise only ever slows a batch down, so the best rate is the
 * most trustworthy; and on this shared machine a whole warm-up can fall into a burst of
 * contention, which would otherwise leave every sample of that row far too short (10 ms
 * samples were observed) and at the mercy of the scheduler. Per-op cost does not depend on
 * the op count once it is this large, so samples of different lengths are comparable.
 */
/**
 * A floor for the op count of a sample. Rows doing real I/O (PostgreSQL, ~200 µs per op) need
 * a low one: 1000 ops made each of their samples 3x longer than sampleMs.
 */
const MIN_OPS = 100;

function opsForSample(bestNsPerOp: number, config: RunConfig, quantum = 1): number {
  const ops = clamp(Math.round((config.sampleMs * 1e6) / bestNsPerOp), MIN_OPS, config.maxOps);
  return roundUp(ops, quantum);
}

function roundUp(n: number, quantum = 1): number {
  return Math.max(quantum, Math.ceil(n / quantum) * quantum);
}

function addCounters(into: Record<string, number>, add: Record<string, number>): void {
  for (const [key, value] of Object.entries(add)) into[key] = (into[key] ?? 0) + value;
}

/** Stable identifier of a case, used for --only matching and to find a case in a child. */
export function caseId(c: { suite: string; group: string; name: string }): string {
  return `${c.suite} / ${c.group} / ${c.name}`;
}

/**
 * Times one batch of `n` operations. Nothing but `run(n)` is inside the wall-clock region;
 * the CPU-time probes sit just outside it (they cost about a microsecond).
 *
 * CPU time is recorded next to wall time because this machine is shared: when other
 * processes take the cores, wall time inflates while CPU time does not, so cpu/wall well
 * below 100% flags a sample that was descheduled.
 */
async function timeBatch(runner: Runner, n: number): Promise<Timing> {
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await runner.run(n);
  const ns = Number(process.hrtime.bigint() - t0);
  const cpu = process.cpuUsage(cpu0);
  const counters = runner.counters?.();
  return { ns, cpuNs: (cpu.user + cpu.system) * 1000, counters: counters && { ...counters } };
}

/** Warm-up runs at least this many full lifecycles (prepare → batches → teardown). */
const WARMUP_LIFECYCLES = 3;
/** A lifecycle that improves the best ns/op by less than this counts as settled. */
const SETTLED_IMPROVEMENT = 0.05;
/** Warm-up gives up waiting to settle after this multiple of warmupMs. */
const WARMUP_CAP = 5;

/**
 * Untimed warm-up; returns the best ns/op seen, which sizes the timed samples
 * (see `opsForSample`).
 *
 * Batches grow until one takes >= 20 ms (so timer and loop setup are negligible). The warm-up
 * runs whole lifecycles on fresh instances, like the samples do, because the first lifecycle
 * is not enough: a teardown, and a new pool's fresh objects, can deoptimize code that the
 * previous batches got optimized (tarn at c=64 was seen running its first timed sample 2-4x
 * slower than later ones). It stops once `warmupMs` is spent, at least WARMUP_LIFECYCLES ran,
 * and the last lifecycle no longer improved the best rate, i.e. the JIT has settled.
 */
export async function calibrate(c: Case, config: RunConfig): Promise<number> {
  const lifecycleNs = (config.warmupMs * 1e6) / WARMUP_LIFECYCLES;
  let best = Infinity;
  let n = roundUp(256, c.quantum);
  let spent = 0;
  let opsDone = 0;
  for (let lifecycle = 1; ; lifecycle++) {
    const bestBefore = best;
    const runner = await c.prepare();
    try {
      let spentHere = 0;
      while (spentHere < lifecycleNs) {
        const { ns } = await timeBatch(runner, n);
        spentHere += ns;
        opsDone += n;
        // A batch of maxOps that is still under 20 ms is as long as batches get: use it.
        if (ns >= 20e6 || n >= config.maxOps) best = Math.min(best, ns / n);
        if (ns < 20e6 && n < config.maxOps) n = Math.min(n * 2, roundUp(config.maxOps, c.quantum));
      }
      spent += spentHere;
    } finally {
      await runner.teardown();
    }
    const settled = best > bestBefore * (1 - SETTLED_IMPROVEMENT);
    const enough = lifecycle >= WARMUP_LIFECYCLES && spent >= config.warmupMs * 1e6;
    if (enough && (settled || spent >= WARMUP_CAP * config.warmupMs * 1e6)) {
      // Finite even for an op so slow that no batch reached 20 ms (it has to cross IPC as JSON).
      return Number.isFinite(best) ? best : spent / opsDone;
    }
  }
}

/**
 * The pre-run is a fifth of the sample, and at least this many ops: enough to fill a pool of 10
 * at any concurrency, few enough that a row doing real I/O (~200 µs per op for PostgreSQL on
 * this machine) does not spend more time in pre-runs than in samples.
 */
const PRERUN_MIN_OPS = 100;

/**
 * One timed sample on a fresh instance. A short untimed pre-run first fills the pool (so
 * resource creation is not billed) and re-warms the code; then a full GC, so every sample
 * starts from the same heap state instead of paying for garbage of the pre-run or setup.
 */
export async function sampleOnce(c: Case, ops: number): Promise<Timing> {
  const runner = await c.prepare();
  try {
    await runner.run(roundUp(Math.max(PRERUN_MIN_OPS, Math.ceil(ops / 5)), c.quantum));
    collectGarbage();
    // Counters cover the timed batch only: the pre-run's are discarded with this snapshot.
    const before = runner.counters?.();
    const timing = await timeBatch(runner, ops);
    if (before !== undefined && timing.counters !== undefined) {
      for (const key of Object.keys(before)) timing.counters[key]! -= before[key]!;
    }
    return timing;
  } finally {
    await runner.teardown();
  }
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}

/**
 * A full GC between samples. `--expose-gc` cannot be passed through `npx tsx file.ts`, so it
 * is switched on at runtime; a fresh vm context then sees the `gc` global. If that ever stops
 * working the harness still runs, only with more GC noise (the header says so).
 */
const gcFunction: (() => void) | undefined = (() => {
  const existing = (globalThis as { gc?: () => void }).gc;
  if (typeof existing === 'function') return existing;
  try {
    v8.setFlagsFromString('--expose-gc');
    const gc: unknown = vm.runInNewContext('typeof gc === "function" ? gc : undefined');
    if (typeof gc === 'function') return gc as () => void;
  } catch {
    // fall through: no forced GC
  }
  return undefined;
})();

function collectGarbage(): void {
  gcFunction?.();
}

// ---------------------------------------------------------------------------------------------
// Statistics and reporting
// ---------------------------------------------------------------------------------------------

function median(sorted: number[]): number {
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function summarize(r: CaseResult): Summary | undefined {
  if (r.samplesNs.length === 0) return undefined;
  const nsPerOp = r.samplesNs.map((ns, i) => ns / r.samplesOps[i]!).sort((a, b) => a - b);
  const opsPerSec = nsPerOp.map((ns) => 1e9 / ns).sort((a, b) => a - b);
  const med = median(opsPerSec);
  return {
    opsPerSecMin: opsPerSec[0]!,
    opsPerSecMedian: med,
    opsPerSecMax: opsPerSec[opsPerSec.length - 1]!,
    nsPerOpMedian: median(nsPerOp),
    spread: (opsPerSec[opsPerSec.length - 1]! - opsPerSec[0]!) / med,
    cpuShare: median(r.samplesCpuNs.map((cpu, i) => cpu / r.samplesNs[i]!).sort((a, b) => a - b)),
  };
}

const HEADERS = [
  'case',
  'ops/sample',
  'ops/s min',
  'ops/s median',
  'ops/s max',
  'ns/op',
  '±',
  'cpu',
  'ratio',
];

/** Below this median cpu/wall share a row was descheduled often enough to be distrusted. */
const BUSY_CPU_SHARE = 0.9;

/**
 * Renders all results as one plain-text table with a section line per (suite, group).
 * The ratio column is ns/op divided by the group's baseline row (lower is faster).
 */
export function formatTable(results: CaseResult[]): string {
  const rows: (string[] | string)[] = [];
  const notes: string[] = [];
  for (const [key, group] of groupResults(results)) {
    const base = group.find((r) => r.baseline);
    const baseNs = base ? summarize(base)?.nsPerOpMedian : undefined;
    rows.push(`${key}${base ? `  (ratio vs ${base.name})` : ''}`);
    for (const r of group) {
      rows.push(formatRow(r, baseNs));
      if (r.unavailable !== undefined && !notes.includes(r.unavailable)) notes.push(r.unavailable);
    }
  }
  const widths = HEADERS.map((h, col) =>
    Math.max(h.length, ...rows.map((row) => (typeof row === 'string' ? 0 : row[col]!.length))),
  );
  const line = (cells: string[]): string =>
    cells
      .map((c, col) => (col === 0 ? c.padEnd(widths[col]!) : c.padStart(widths[col]!)))
      .join('  ');
  const total = widths.reduce((a, b) => a + b, 0) + 2 * (widths.length - 1);
  const out = [line(HEADERS), '='.repeat(total)];
  for (const row of rows)
    out.push(typeof row === 'string' ? `-- ${row} `.padEnd(total, '-') : line(row));
  for (const note of notes) out.push(`n/a: ${note}`);
  for (const r of results) {
    if (r.counters === undefined) continue;
    const counts = Object.entries(r.counters).map(([key, value]) => `${key}=${value}`);
    out.push(`counters (timed samples): ${caseId(r)}: ${counts.join(' ')}`);
  }
  const busy = results.filter((r) => (summarize(r)?.cpuShare ?? 1) < BUSY_CPU_SHARE);
  if (busy.length > 0) {
    out.push(
      `WARNING: ${busy.length} row(s) got < ${BUSY_CPU_SHARE * 100}% of a core while timed ` +
        '(cpu column): other processes were competing for the CPU; rerun on a quiet machine.',
    );
  }
  return out.join('\n');
}

function groupResults(results: CaseResult[]): Map<string, CaseResult[]> {
  const groups = new Map<string, CaseResult[]>();
  for (const r of results) {
    const key = `${r.suite}: ${r.group}`;
    const list = groups.get(key) ?? [];
    list.push(r);
    groups.set(key, list);
  }
  return groups;
}

function formatRow(r: CaseResult, baseNs: number | undefined): string[] {
  const s = summarize(r);
  if (!s) return [r.name, ...HEADERS.slice(1).map(() => 'n/a')];
  const ratio = baseNs === undefined ? '-' : `${(s.nsPerOpMedian / baseNs).toFixed(2)}x`;
  return [
    r.name,
    formatCount(median([...r.samplesOps].sort((a, b) => a - b))),
    formatCount(s.opsPerSecMin),
    formatCount(s.opsPerSecMedian),
    formatCount(s.opsPerSecMax),
    formatNs(s.nsPerOpMedian),
    `${(s.spread * 100).toFixed(0)}%`,
    `${(s.cpuShare * 100).toFixed(0)}%`,
    ratio,
  ];
}

function formatCount(x: number): string {
  if (x >= 1e9) return `${(x / 1e9).toFixed(2)}G`;
  if (x >= 1e6) return `${(x / 1e6).toFixed(2)}M`;
  if (x >= 1e3) return `${(x / 1e3).toFixed(1)}k`;
  return x.toFixed(0);
}

function formatNs(ns: number): string {
  return ns >= 100 ? ns.toFixed(0) : ns.toFixed(1);
}

// ---------------------------------------------------------------------------------------------
// Environment header
// ---------------------------------------------------------------------------------------------

/**
 * Version of an installed package, read from its own package.json. Resolving the entry point
 * and walking up avoids `require('x/package.json')`, which packages with an `exports` map
 * (e.g. tarn) may refuse.
 */
export function packageVersion(name: string): string {
  try {
    let dir = path.dirname(require.resolve(name));
    while (dir !== path.dirname(dir)) {
      const file = path.join(dir, 'package.json');
      if (fs.existsSync(file)) {
        const pkg = JSON.parse(fs.readFileSync(file, 'utf8')) as {
          name?: string;
          version?: string;
        };
        if (pkg.name === name) return pkg.version ?? 'unknown';
      }
      dir = path.dirname(dir);
    }
  } catch {
    // not installed
  }
  return 'not installed';
}

export function describeEnvironment(
  config: RunConfig,
  packages: string[],
  isolation: string,
): string {
  const cpus = os.cpus();
  const load = os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
  const versions = packages.map((p) => `${p} ${packageVersion(p)}`).join(', ');
  return [
    `poolwatch bench (${config.mode}): ${config.samples} interleaved samples x ~${config.sampleMs} ms per case, warm-up >= ${config.warmupMs} ms`,
    `node ${process.version} (v8 ${process.versions.v8}) ${process.platform}/${process.arch}, ${cpus.length} x ${cpus[0]?.model.trim() ?? 'unknown cpu'}, loadavg ${load}`,
    `packages: ${versions}`,
    `isolation: ${isolation}; gc between samples: ${gcFunction ? 'yes' : 'no (noisier)'}; source maps: ${process.sourceMapsEnabled ? 'on (tsx)' : 'off'}`,
  ].join('\n');
}
