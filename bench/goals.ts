/**
 * The goal check printed at the end of `npm run bench`: each goal of issue 5 as met / MISSED /
 * n/a, with the measured ratio.
 *
 * The verdict uses the ratio of median ns/op (throughput ratios, "x the throughput of": higher is
 * better; cost ratios, "costs at most": lower is better). Two more readings go in the detail
 * line, because on this kind of machine a median ratio moves by 10-20% between runs:
 *  - `best`: the ratio of the fastest samples. Interference from other processes only ever slows
 *    a sample down, so the fastest sample of a row is its least disturbed one.
 *  - `paired`: the median over rounds of the per-round ratio. Samples of one round are taken
 *    back to back, so they share the machine's state of the moment.
 * A verdict whose median ratio is within ~15% of the target is flagged "near": inside the noise,
 * it can flip between runs, and the other two readings say which way it leans.
 */
import type { CaseResult } from './harness';
import type { MemoryResult } from './memory';
import { MEMORY_CYCLES, formatBytes } from './memory';
import { OTEL_CONCURRENCIES, OTEL_LABELS } from './otel';
import { CONCURRENCIES } from './peers';
import { PG_PATCH_ROWS, pgPatchGroup } from './pg-patch';
import { PG_CONCURRENCIES, PG_ROWS, pgOtelRow } from './postgres';
import { MAX } from './resource';
import { POOL_SIZES, QUEUE_LENGTH, SIZE_GROUP_C64, SIZE_GROUP_C_MAX } from './scale';

export type GoalStatus = 'met' | 'MISSED' | 'n/a';

export interface GoalCheck {
  goal: string;
  status: GoalStatus;
  /** The measured value, formatted (e.g. "2.41x"). */
  measured: string;
  target: string;
  /** Inside the noise band around the target (the verdict may flip between runs). */
  near: boolean;
  detail?: string;
}

const NOISE = 0.15;

type Bound = { atLeast: number } | { atMost: number };

/** ns/op of each timed sample of a row, in the order taken (round order). */
function samples(r: CaseResult | undefined): number[] | undefined {
  if (r === undefined || r.samplesNs.length === 0) return undefined;
  return r.samplesNs.map((ns, i) => ns / r.samplesOps[i]!);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Throughput of `row` relative to `base` (base ns / row ns), three ways (see the header). */
interface Ratio {
  median: number;
  best: number;
  paired: number;
}

function throughputRatio(base: number[], row: number[]): Ratio {
  const n = Math.min(base.length, row.length);
  const paired: number[] = [];
  for (let i = 0; i < n; i++) paired.push(base[i]! / row[i]!);
  return {
    median: median(base) / median(row),
    best: Math.min(...base) / Math.min(...row),
    paired: median(paired),
  };
}

function invert(r: Ratio): Ratio {
  return { median: 1 / r.median, best: 1 / r.best, paired: 1 / r.paired };
}

function describe(r: Ratio): string {
  return `best ${r.best.toFixed(2)}x, paired ${r.paired.toFixed(2)}x`;
}

/**
 * Two-sided p-value of the Mann-Whitney rank-sum test (normal approximation), i.e. how likely
 * samples this far apart are if both rows have the same distribution. Rows have 15 samples in
 * full mode, enough for the approximation; ties (equal floats) are not expected.
 */
export function rankSumP(a: number[], b: number[]): number {
  const all = [...a.map((v) => ({ v, a: true })), ...b.map((v) => ({ v, a: false }))];
  all.sort((x, y) => x.v - y.v);
  let rankSumA = 0;
  all.forEach((x, i) => {
    if (x.a) rankSumA += i + 1;
  });
  const n1 = a.length;
  const n2 = b.length;
  const u = rankSumA - (n1 * (n1 + 1)) / 2;
  const mean = (n1 * n2) / 2;
  const sd = Math.sqrt((n1 * n2 * (n1 + n2 + 1)) / 12);
  const z = Math.abs(u - mean) / sd;
  return 2 * (1 - normalCdf(z));
}

function normalCdf(z: number): number {
  // Abramowitz & Stegun 7.1.26 (error < 1.5e-7), enough for a p-value shown with two digits.
  const t = 1 / (1 + 0.3275911 * (z / Math.SQRT2));
  const poly =
    t *
    (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
  const erf = 1 - poly * Math.exp(-(z * z) / 2);
  return 0.5 * (1 + erf);
}

/** `row - base` in µs, or undefined when either is missing. */
function marginal(row: number | undefined, base: number | undefined): number | undefined {
  return row === undefined || base === undefined ? undefined : row - base;
}

/** Goal 3's check: `cost` (µs of CPU per query) at most 1.2x `reference`. */
function costCheck(
  goal: string,
  cost: number | undefined,
  reference: number | undefined,
): GoalCheck {
  const target = '<= 1.2x';
  if (cost === undefined || reference === undefined || !(reference > 0)) {
    return { goal, status: 'n/a', measured: 'not measured', target, near: false };
  }
  const ratio = cost / reference;
  return {
    goal,
    status: ratio <= 1.2 ? 'met' : 'MISSED',
    measured: `${ratio.toFixed(2)}x`,
    target,
    near: Math.abs(ratio - 1.2) <= 1.2 * NOISE,
    detail: `${cost.toFixed(1)} µs vs ${reference.toFixed(1)} µs of client CPU per query (medians)`,
  };
}

class Results {
  constructor(private readonly results: CaseResult[]) {}

  /** Median over samples of process CPU per operation, in µs. */
  cpuPerOp(suite: string, group: string, name: string): number | undefined {
    const r = this.find(suite, group, name);
    if (r === undefined || r.samplesCpuNs.length === 0) return undefined;
    return median(r.samplesCpuNs.map((cpu, i) => cpu / r.samplesOps[i]!)) / 1000;
  }

  find(suite: string, group: string, name: string): CaseResult | undefined {
    return this.results.find((r) => r.suite === suite && r.group === group && r.name === name);
  }

  samples(suite: string, group: string, name: string): number[] | undefined {
    return samples(this.find(suite, group, name));
  }

  /** Throughput of row `name` relative to row `base`, both in (suite, group). */
  ratio(suite: string, group: string, base: string, name: string): Ratio | undefined {
    const a = this.samples(suite, group, base);
    const b = this.samples(suite, group, name);
    return a && b ? throughputRatio(a, b) : undefined;
  }
}

function verdict(
  goal: string,
  ratio: Ratio | undefined,
  bound: Bound,
  opts: { detail?: string; flagNear?: boolean } = {},
): GoalCheck {
  const limit = 'atLeast' in bound ? bound.atLeast : bound.atMost;
  const target = 'atLeast' in bound ? `>= ${limit}x` : `<= ${limit}x`;
  if (ratio === undefined || !Number.isFinite(ratio.median)) {
    return { goal, status: 'n/a', measured: 'not measured', target, near: false };
  }
  const ok = 'atLeast' in bound ? ratio.median >= limit : ratio.median <= limit;
  const detail = [describe(ratio), opts.detail].filter((d) => d !== undefined).join('; ');
  return {
    goal,
    status: ok ? 'met' : 'MISSED',
    measured: `${ratio.median.toFixed(2)}x`,
    target,
    near: (opts.flagNear ?? true) && Math.abs(ratio.median / limit - 1) < NOISE,
    detail,
  };
}

function peerGoals(r: Results): GoalCheck[] {
  const checks: GoalCheck[] = [];
  // The peers as users get them (their defaults); pg-pool with idleTimeoutMillis:0 (no idle
  // timer per release, a non-default tuning) is reported alongside, not judged.
  const peers = ['generic-pool', 'tarn', 'pg-pool'];
  const tuned = 'pg-pool idleTimeoutMillis:0';
  for (const c of CONCURRENCIES) {
    const group = `max=${MAX} c=${c}`;
    const fastest = peers
      .map((name) => ({ name, samples: r.samples('peers', group, name) }))
      .filter((p): p is { name: string; samples: number[] } => p.samples !== undefined)
      .sort((a, b) => median(a.samples) - median(b.samples))[0];
    const vsTuned = r.ratio('peers', group, tuned, 'poolwatch default');
    checks.push(
      verdict(
        `1. bare cycle c=${c}: poolwatch default vs fastest peer (defaults) throughput`,
        fastest && r.ratio('peers', group, fastest.name, 'poolwatch default'),
        { atLeast: 2 },
        {
          detail:
            fastest &&
            `fastest peer: ${fastest.name}` +
              (vsTuned ? `; vs ${tuned}: ${vsTuned.median.toFixed(2)}x` : ''),
        },
      ),
    );
  }
  for (const c of CONCURRENCIES) {
    const group = `max=${MAX} c=${c}`;
    const ratio = r.ratio('peers', group, 'poolwatch leakDetection:false', 'poolwatch default');
    checks.push(
      verdict(
        `2. bare cycle c=${c}: captureStacks 'auto' (budgeted) cost vs leakDetection:false`,
        ratio && invert(ratio),
        { atMost: 1.3 },
      ),
    );
  }
  return checks;
}

/**
 * "Disabled instrumentation is indistinguishable from none": the disabled row against the row
 * with the same OTel set-up and no instrumentation. MISSED only when the disabled row is slower
 * by more than 5% *and* the rank-sum test says the difference is not chance (one-sided p < 0.05).
 * A disabled instrumentation has no diagnostics_channel subscribers, so the pool skips its
 * messages altogether; a difference the test cannot tell from noise is no difference.
 */
function disabledCheck(goal: string, without?: number[], disabled?: number[]): GoalCheck {
  const target = 'not slower (p >= 0.05 or < 5%)';
  if (without === undefined || disabled === undefined) {
    return { goal, status: 'n/a', measured: 'not measured', target, near: false };
  }
  const ratio = throughputRatio(without, disabled);
  const p = rankSumP(without, disabled);
  const slower = ratio.median < 0.95 && p / 2 < 0.05;
  return {
    goal,
    status: slower ? 'MISSED' : 'met',
    measured: `${ratio.median.toFixed(2)}x, p=${p.toFixed(2)}`,
    target,
    near: false,
    detail: `${describe(ratio)}; p: two-sided rank-sum test over the samples`,
  };
}

/**
 * Goal 3 (issue 11): what instrumenting a pool costs an application that already runs the OTel
 * SDK, in client CPU per query (median over samples of process CPU / queries; the server shares
 * the cores, so wall time would mix in its share). "Marginal" = a row's CPU per query minus its
 * SDK-only baseline's. The pg.Pool patch's marginal must be within 1.2x of the native path's
 * (poolwatch's own pool under the same instrumentation), over the SDK alone and over the SDK with
 * instrumentation-pg (what users run), and within 1.2x of hand-written code doing the same SDK
 * work (one span, two histogram records).
 */
function otelGoals(r: Results): GoalCheck[] {
  const checks: GoalCheck[] = [];
  const cost = (group: string, name: string) => r.cpuPerOp('postgres', group, name);
  for (const c of PG_CONCURRENCIES) {
    const native = `SELECT 1 c=${c}`;
    const patch = pgPatchGroup(c);
    const nativeMarginal = marginal(
      cost(native, pgOtelRow('full')),
      cost(native, pgOtelRow('sdk')),
    );
    const sdkOnly = cost(patch, PG_PATCH_ROWS.sdk);
    const patchMarginal = marginal(cost(patch, PG_PATCH_ROWS.patch), sdkOnly);
    const withPgMarginal = marginal(
      cost(patch, PG_PATCH_ROWS.both),
      cost(patch, PG_PATCH_ROWS.pgInstrumentation),
    );
    const floorMarginal = marginal(cost(patch, PG_PATCH_ROWS.floor), sdkOnly);
    checks.push(
      costCheck(
        `3. pg.Pool c=${c}: patch's added CPU/query over the SDK alone vs the native path's`,
        patchMarginal,
        nativeMarginal,
      ),
      costCheck(
        `3. pg.Pool c=${c}: patch's added CPU/query over SDK + instrumentation-pg vs the native path's`,
        withPgMarginal,
        nativeMarginal,
      ),
      costCheck(
        `3. pg.Pool c=${c}: patch's added CPU/query vs hand-written span + 2 histograms`,
        patchMarginal,
        floorMarginal,
      ),
    );
  }
  for (const c of PG_CONCURRENCIES) {
    const group = `SELECT 1 c=${c}`;
    checks.push(
      disabledCheck(
        `3. PostgreSQL c=${c}: instrumentation disabled vs OTel SDK without it`,
        r.samples('postgres', group, pgOtelRow('sdk')),
        r.samples('postgres', group, pgOtelRow('disabled')),
      ),
    );
  }
  for (const c of OTEL_CONCURRENCIES) {
    const group = `bare cycle max=${MAX} c=${c}`;
    checks.push(
      disabledCheck(
        `3. bare cycle c=${c}: instrumentation disabled vs OTel SDK without it`,
        r.samples('otel', group, `poolwatch default, ${OTEL_LABELS.sdk}`),
        r.samples('otel', group, `poolwatch default, ${OTEL_LABELS.disabled}`),
      ),
    );
  }
  return checks;
}

function postgresGoals(r: Results): GoalCheck[] {
  return [
    verdict(
      '4. PostgreSQL c=1: poolwatch vs single pg.Client (no pool) throughput',
      r.ratio('postgres', 'SELECT 1 c=1', PG_ROWS.client, PG_ROWS.poolwatch),
      { atLeast: 0.97 },
    ),
    verdict(
      '4. PostgreSQL c=32: poolwatch vs pg.Pool throughput',
      r.ratio('postgres', 'SELECT 1 c=32', PG_ROWS.pgPool, PG_ROWS.poolwatch),
      { atLeast: 1.0 },
    ),
    ...[1, 32].map((c) => {
      const ratio = r.ratio('postgres', `SELECT 1 c=${c}`, PG_ROWS.noLeak, PG_ROWS.poolwatch);
      return verdict(
        `9. PostgreSQL c=${c}: leak detection with the default stack policy, cost vs leakDetection:false`,
        ratio && invert(ratio),
        { atMost: 1.03 },
      );
    }),
  ];
}

function memoryGoals(memory: MemoryResult[]): GoalCheck[] {
  return memory.map((m): GoalCheck => {
    const goal = `5. memory, ${MEMORY_CYCLES.toLocaleString('en-US')} cycles: ${m.name}`;
    const target = '< 1 MB growth, 0 held';
    if (m.error !== undefined) {
      return { goal, status: 'n/a', measured: 'failed', target, near: false };
    }
    const ok = m.growthBytes < 1024 * 1024 && m.held === 0 && m.used === 0;
    return {
      goal,
      status: ok ? 'met' : 'MISSED',
      measured: `${formatBytes(m.growthBytes)}, ${m.held} held`,
      target,
      near: Math.abs(m.growthBytes / (1024 * 1024) - 1) < NOISE,
    };
  });
}

function scaleGoals(r: Results): GoalCheck[] {
  const checks: GoalCheck[] = [];
  const queueGroup = `${QUEUE_LENGTH.toLocaleString('en-US')} queued waiters, max=${MAX} (ns/op = per waiter)`;
  const queue = r.find('scale', queueGroup, 'poolwatch default');
  const waiters = queue?.counters?.waiters ?? 0;
  const outOfOrder = queue?.counters?.outOfOrder ?? 0;
  const perWaiter = samples(queue);
  const ms = perWaiter && (median(perWaiter) * QUEUE_LENGTH) / 1e6;
  checks.push({
    goal: `6. ${QUEUE_LENGTH.toLocaleString('en-US')} queued waiters served in FIFO order (poolwatch)`,
    status: waiters === 0 ? 'n/a' : outOfOrder === 0 ? 'met' : 'MISSED',
    measured:
      waiters === 0
        ? 'not measured'
        : `${outOfOrder} of ${waiters} out of order; ${ms!.toFixed(1)} ms per ${QUEUE_LENGTH.toLocaleString('en-US')}`,
    target: '0 out of order',
    near: false,
  });

  // Cost growth from the smallest to the largest pool. At c = max, divided by minimal-pool's own
  // growth, so that what more workers cost the driver is not billed to the pool.
  const [small, middle, large] = POOL_SIZES as [number, number, number];
  const pw = (group: string, max: number) => r.samples('scale', group, `poolwatch max=${max}`);
  const floor = (max: number) => r.samples('scale', SIZE_GROUP_C_MAX, `minimal-pool max=${max}`);
  const growth = (a?: number[], b?: number[]) =>
    a && b ? invert(throughputRatio(a, b)) : undefined;
  const pwGrowth = growth(pw(SIZE_GROUP_C_MAX, small), pw(SIZE_GROUP_C_MAX, large));
  const floorGrowth = growth(floor(small), floor(large));
  const normalized = pwGrowth &&
    floorGrowth && {
      median: pwGrowth.median / floorGrowth.median,
      best: pwGrowth.best / floorGrowth.best,
      paired: pwGrowth.paired / floorGrowth.paired,
    };
  checks.push(
    verdict(
      `6. pool size ${small} -> ${large} at c=max: cycle cost growth, relative to minimal-pool`,
      normalized,
      { atMost: 1 + NOISE },
      {
        detail: pwGrowth && `poolwatch alone: ${pwGrowth.median.toFixed(2)}x`,
        flagNear: false,
      },
    ),
  );
  checks.push(
    verdict(
      `6. pool size ${middle} -> ${large} at c=64: cycle cost growth`,
      growth(pw(SIZE_GROUP_C64, middle), pw(SIZE_GROUP_C64, large)),
      { atMost: 1 + NOISE },
      { flagNear: false },
    ),
  );
  return checks;
}

export function checkGoals(results: CaseResult[], memory: MemoryResult[]): GoalCheck[] {
  const r = new Results(results);
  return [
    ...peerGoals(r),
    ...otelGoals(r),
    ...postgresGoals(r),
    ...memoryGoals(memory),
    ...scaleGoals(r),
  ];
}

export function formatGoals(checks: GoalCheck[]): string {
  const headers = ['status', 'goal', 'measured', 'target'];
  const rows = checks.map((c) => [
    c.status + (c.near && c.status !== 'n/a' ? ' (near)' : ''),
    c.goal,
    c.measured,
    c.target,
  ]);
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (i >= 2 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ');
  const out = [
    'Goals (issue 5): verdict on the ratio of medians; "near" = within ~15% of the target, inside',
    "this machine's noise. best = ratio of the fastest samples, paired = median of per-round ratios.",
    line(headers),
    '='.repeat(widths.reduce((a, b) => a + b + 2, -2)),
  ];
  for (let i = 0; i < rows.length; i++) {
    out.push(line(rows[i]!));
    const detail = checks[i]!.detail;
    if (detail !== undefined) out.push(`${' '.repeat(widths[0]! + 2)}  (${detail})`);
  }
  return out.join('\n');
}
