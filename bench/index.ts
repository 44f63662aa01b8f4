/**
 * # poolwatch benchmarks (bench/README)
 *
 *     npx tsx bench/index.ts --quick             # < 2 min on 2 cores; for a quick read
 *     npx tsx bench/index.ts --full              # default; more and longer samples, every row
 *     npx tsx bench/index.ts --only 'c=64 / t'   # substring of the row id "suite / group / name"
 *     npx tsx bench/index.ts --only postgres     # one section (peers, otel, postgres, memory,
 *                                                # scale, micro)
 *     DATABASE_URL=postgres://... npm run bench  # postgres rows on that server (else embedded)
 *     npx tsx bench/profile.ts                   # CPU profiles of the hot path (see that file)
 *     npx tsx bench/index.ts --json out.json     # also dump raw samples + environment
 *     npx tsx bench/index.ts --baseline tarn     # ratio column relative to another peer
 *     npx tsx bench/index.ts --als               # peers with an AsyncLocalStorage enabled
 *     npx tsx bench/index.ts --in-process        # no child processes (e.g. for --cpu-prof)
 *
 * What is measured
 *  - peers: one cycle = `await pool.acquire()` + synchronous release, of a plain `{ id }`
 *    resource (no I/O), pool max 10, driven by 1 or 64 concurrent async workers sharing one
 *    op counter. Rows: an empty async cycle (the driver's own cost, the floor), a ~40-line
 *    promise pool (the floor for any promise-based pool), generic-pool, tarn, pg-pool with a
 *    no-I/O Client, and poolwatch (adapter in bench/poolwatch.ts; "n/a" until src/ exists).
 *    Each worker runs in its own async context, like independent requests (see `drive()`).
 *    Teardown fails the run if a pool created more than max resources (i.e. did not reuse).
 *  - otel (bench/otel.ts): the poolwatch row of peers under OpenTelemetry set-ups: none, the SDK
 *    alone (AsyncLocalStorage context manager, providers), the instrumentation registered then
 *    disabled, fully on (hold spans through a BatchSpanProcessor, metrics with a reader, logs),
 *    and fully on under a sampled-out parent span.
 *  - postgres (bench/postgres.ts): `SELECT 1` at c=1 and c=32 through pg.Pool, a single
 *    pg.Client (the floor), poolwatch's createPgPool (plain, use(), PgPool facade) and under the
 *    OTel set-ups, on an embedded PostgreSQL started for the section (or DATABASE_URL).
 *  - libraries (bench/library-pools.ts): `SELECT 1` through pg.Pool, knex (pg, mysql2) and a
 *    mysql2 createPool pool, uninstrumented, under the OTel SDK alone, and with poolwatch's
 *    zero-code patches; the client CPU per query and the patches' share print after the table.
 *  - memory (bench/memory.ts): heap after forced GCs before and after 1,000,000 cycles with leak
 *    detection on, and the leases still tracked as held at quiescence; one process per variant.
 *  - scale (bench/scale.ts): 10,000 queued waiters served FIFO (checked per waiter, reported in
 *    the counters), and the bare cycle at pool sizes 10, 100, 1000 (c = max and c = 64).
 *  - goals (bench/goals.ts): after the tables, each goal of issue 5 as met / MISSED / n/a with
 *    the measured ratio.
 *  - micro: primitives a leak-detecting, instrumented pool is made of (stack capture,
 *    FinalizationRegistry, timers, AsyncLocalStorage, diagnostics_channel). They calibrate the
 *    machine and set the budget for each poolwatch feature.
 *
 * Methodology
 *  - Every row runs in its own child process (bench/isolation.ts): some subjects change
 *    process-wide state (poolwatch enables an AsyncLocalStorage, i.e. a PromiseHook) that
 *    would otherwise slow down every row measured after them. `--in-process` turns this off.
 *  - Each case is warmed up (>= warm-up time, untimed). Each sample's op count is chosen so it
 *    takes ~sample time at the best rate seen so far (warm-up or earlier samples), so a warm-up
 *    that fell into a burst of contention cannot leave a row with tiny, noisy samples.
 *  - Samples are interleaved: round 1 of every case, then round 2, ..., with the case order
 *    rotated each round. Noise from neighbours on a shared machine (bursts, frequency changes)
 *    is spread over all rows instead of hitting one.
 *  - Each sample builds a fresh pool, runs an untimed pre-run (fills the pool, re-warms inline
 *    caches), forces a full GC, then times the batch with process.hrtime.bigint().
 *  - Sections run one after the other, each with its rows interleaved as above (rows are only
 *    compared within a group). --quick skips micro, rows marked fullOnly (informational: the
 *    peers' queue rows, use() and the PgPool facade) and the slow memory variants.
 *  - Reported: ops/s min / median / max over samples, ns/op of the median sample, the spread
 *    (max - min) / median, the process's CPU time / wall time, and the ratio of ns/op to the
 *    group's baseline row. Read the median; min/max and spread tell you how much to trust it.
 *    A cpu share well below 100% means other processes took the core during the samples: the
 *    row is inflated, and the report prints a warning.
 *  - Treat differences under ~15% between rows (or between runs) as noise on this kind of
 *    machine, and anything with a spread above ~15% as suspect; rerun with --full or --only.
 *  - Numbers are for Node's optimizing JIT in a tight loop with a trivial resource. They rank
 *    pool overheads; they do not predict latency of a real database pool, where one network
 *    round trip (tens of µs or more) dwarfs every row here.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { checkGoals, formatGoals } from './goals';
import type { Case, CaseResult, RunConfig } from './harness';
import { FULL, QUICK, caseId, describeEnvironment, formatTable, runCases } from './harness';
import { childProcessHosts, serveCase } from './isolation';
import type { MemoryResult } from './memory';
import { MEMORY_VARIANTS, formatMemoryTable, measureMemory, memoryChild, memoryId } from './memory';
import { formatPatchCosts, libraryCases } from './library-pools';
import { microCases } from './micro';
import { otelCases } from './otel';
import { PEER_PACKAGES, peerCases } from './peers';
import type { BenchDatabase } from './postgres';
import { BENCH_DATABASE_URL_ENV, postgresCases, startBenchDatabase } from './postgres';
import { pgPatchCases } from './pg-patch';
import { scaleCases } from './scale';

/** A mistake on the command line: reported without a stack trace. */
class UsageError extends Error {}

/** Internal flag: run as the child process serving the case with this id. */
const CHILD_FLAG = '--child';
/** Internal flag: run as the child process measuring the memory variant with this name. */
const MEMORY_CHILD_FLAG = '--memory-child';

interface Cli {
  config: RunConfig;
  only: string | undefined;
  json: string | undefined;
  baseline: string;
  als: boolean;
  inProcess: boolean;
  child: string | undefined;
  memoryChild: string | undefined;
}

const USAGE = `usage: npx tsx bench/index.ts [--quick | --full] [--only <substring>] [--json <file>]
                                [--baseline <peer name>] [--als] [--in-process]`;

function parseCli(argv: string[]): Cli {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      full: { type: 'boolean', default: false },
      only: { type: 'string' },
      json: { type: 'string' },
      baseline: { type: 'string', default: 'minimal-pool' },
      als: { type: 'boolean', default: false },
      'in-process': { type: 'boolean', default: false },
      child: { type: 'string' },
      'memory-child': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  if (values.quick && values.full) throw new UsageError('--quick and --full are exclusive');
  return {
    config: values.quick ? QUICK : FULL,
    only: values.only,
    json: values.json,
    baseline: values.baseline,
    als: values.als,
    inProcess: values['in-process'],
    child: values.child,
    memoryChild: values['memory-child'],
  };
}

/**
 * The sections, in the order they run and print (the numbering: 1 peers, 2 otel,
 * 3 postgres, 4 memory, 5 scale; then the reference micro-benchmarks). Each section is measured
 * on its own (its rows interleaved with each other, see runCases): rows are only ever compared
 * within a group, and running sections apart keeps the number of idle child processes down.
 */
const SECTIONS = ['peers', 'otel', 'postgres', 'libraries', 'memory', 'scale', 'micro'] as const;

/** Every case, in the same order in the parent and in each child. */
function allCases(cli: Cli): Case[] {
  return [
    ...peerCases({ baseline: cli.baseline, als: cli.als }),
    ...otelCases(),
    ...postgresCases(),
    ...pgPatchCases(),
    ...libraryCases(),
    ...scaleCases(),
    ...microCases(),
  ];
}

/**
 * What a run measures: with --only, every row whose id matches; otherwise everything except, in
 * --quick, the micro-benchmarks (reference numbers that do not change with poolwatch's code),
 * rows marked `fullOnly` (informational, no goal depends on them) and the slow memory variants.
 */
function selectCases(cli: Cli, all: Case[]): Case[] {
  const cases = filterCases(all, cli.only);
  return cli.only === undefined && cli.config.mode === 'quick'
    ? cases.filter((c) => c.suite !== 'micro' && !c.fullOnly)
    : cases;
}

function selectMemoryVariants(cli: Cli): typeof MEMORY_VARIANTS {
  if (cli.only !== undefined) {
    const needle = cli.only.toLowerCase();
    return MEMORY_VARIANTS.filter((v) => memoryId(v).toLowerCase().includes(needle));
  }
  return MEMORY_VARIANTS.filter((v) => cli.config.mode === 'full' || !v.fullOnly);
}

/**
 * Keeps cases whose id ("suite / group / name") contains `only` (case-insensitive). The
 * baseline row of a group with any match is kept too, so the ratio column still means something.
 */
function filterCases(cases: Case[], only: string | undefined): Case[] {
  if (only === undefined) return cases;
  const needle = only.toLowerCase();
  const matches = (c: Case): boolean => caseId(c).toLowerCase().includes(needle);
  const groups = new Set(cases.filter(matches).map((c) => `${c.suite}\0${c.group}`));
  return cases.filter((c) => matches(c) || (c.baseline && groups.has(`${c.suite}\0${c.group}`)));
}

function loadavg(): string {
  return os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
}

function runChild(cli: Cli, id: string): void {
  const c = allCases(cli).find((candidate) => caseId(candidate) === id);
  if (!c) throw new Error(`child: no case with id ${JSON.stringify(id)}`);
  serveCase(c, cli.config);
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const cli = parseCli(argv);
  if (cli.child !== undefined) return runChild(cli, cli.child);
  if (cli.memoryChild !== undefined) return memoryChild(cli.memoryChild);

  const all = allCases(cli);
  if (!all.some((c) => c.suite === 'peers' && c.baseline)) {
    const names = [...new Set(all.filter((c) => c.suite === 'peers').map((c) => c.name))];
    throw new UsageError(`--baseline ${cli.baseline}: not a peer row; one of: ${names.join(', ')}`);
  }
  const cases = selectCases(cli, all);
  const memoryVariants = selectMemoryVariants(cli);
  if (cases.length === 0 && memoryVariants.length === 0) {
    throw new UsageError(`--only ${cli.only}: no row id matches`);
  }

  const isolation = cli.inProcess
    ? 'none (--in-process: rows share global state such as ALS hooks)'
    : 'one child process per row';
  const header = [
    describeEnvironment(cli.config, [...PEER_PACKAGES, ...MORE_PACKAGES, 'tsx'], isolation),
    `poolwatch: ${poolwatchVersion()}`,
  ].join('\n');
  console.log(header);
  if (cli.only === undefined && cli.config.mode === 'quick') {
    console.log(
      'quick mode: micro-benchmarks, informational rows and slow memory variants skipped (--full runs them)',
    );
  }

  const progress = (m: string): void => void process.stderr.write(`  ${m}\n`);
  const host = cli.inProcess ? undefined : childProcessHosts(__filename, argv, CHILD_FLAG);
  const started = process.hrtime.bigint();
  const results: CaseResult[] = [];
  let memory: MemoryResult[] = [];
  const notes: string[] = [];
  const failures: string[] = [];
  for (const section of SECTIONS) {
    if (section === 'memory') {
      if (memoryVariants.length === 0) continue;
      progress(`== memory: ${memoryVariants.length} variant(s), one process each`);
      memory = await measureMemory(memoryVariants, __filename, MEMORY_CHILD_FLAG, progress);
      continue;
    }
    const sectionCases = cases.filter((c) => c.suite === section);
    if (sectionCases.length === 0) continue;
    progress(`== ${section}: ${sectionCases.length} rows (loadavg ${loadavg()})`);
    const sectionStarted = process.hrtime.bigint();
    const db =
      section === 'postgres' || section === 'libraries'
        ? await startDatabase(notes, progress)
        : undefined;
    try {
      results.push(...(await runCases(sectionCases, cli.config, { host, progress })));
    } catch (err) {
      // A broken row fails the run (exit code 1), but after the other sections have reported.
      failures.push(
        `${section}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
      );
      progress(`!! ${section} failed; continuing with the other sections`);
    } finally {
      await db?.stop();
    }
    const sectionSeconds = Number(process.hrtime.bigint() - sectionStarted) / 1e9;
    progress(`== ${section} done in ${sectionSeconds.toFixed(1)} s`);
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;

  console.log('');
  for (const note of notes) console.log(note);
  console.log(formatTable(results));
  console.log(
    `\ntotal ${seconds.toFixed(1)} s, loadavg now ${loadavg()}; ns/op of the median sample; ` +
      '± = (max-min)/median ops/s; cpu = process CPU time / wall time (median); ' +
      'ratio = ns/op / baseline ns/op (lower is faster)',
  );
  const patchCosts = formatPatchCosts(results);
  if (patchCosts !== '') console.log(`\n${patchCosts}`);
  if (memory.length > 0) console.log(`\n${formatMemoryTable(memory)}`);
  const goals = checkGoals(results, memory);
  console.log(`\n${formatGoals(goals)}`);

  if (cli.json !== undefined) {
    const dump = { header, config: cli.config, argv, seconds, results, memory, goals };
    fs.writeFileSync(cli.json, `${JSON.stringify(dump, null, 2)}\n`);
    console.log(`raw results written to ${cli.json}`);
  }
  if (failures.length > 0) {
    console.log(`\nFAILED sections (their rows are missing above):\n${failures.join('\n')}`);
    process.exitCode = 1;
  }
}

/** Versions the header prints besides the peers'. */
const MORE_PACKAGES = [
  'pg',
  '@opentelemetry/api',
  '@opentelemetry/sdk-trace-base',
  '@opentelemetry/instrumentation',
];

/** package.json version, plus the commit and whether the work tree has changes. */
function poolwatchVersion(): string {
  const root = path.resolve(__dirname, '..');
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as {
    version: string;
  };
  try {
    const git = (...args: string[]): string =>
      execFileSync('git', args, {
        cwd: root,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      }).trim();
    const dirty = git('status', '--porcelain', '--', 'src').length > 0 ? ', src/ modified' : '';
    return `${pkg.version} (src/ via tsx; commit ${git('rev-parse', '--short', 'HEAD')}${dirty})`;
  } catch {
    return `${pkg.version} (src/ via tsx)`;
  }
}

/**
 * The server for the postgres section, its URL handed to the row processes (forked after this)
 * through the environment. A server that fails to start leaves the rows "n/a", not the run failed.
 */
async function startDatabase(
  notes: string[],
  progress: (m: string) => void,
): Promise<BenchDatabase | undefined> {
  try {
    const db = await startBenchDatabase();
    process.env[BENCH_DATABASE_URL_ENV] = db.url;
    notes.push(`postgres: ${db.description}`);
    progress(`postgres: ${db.description}`);
    return db;
  } catch (err) {
    delete process.env[BENCH_DATABASE_URL_ENV];
    const message = err instanceof Error ? err.message : String(err);
    notes.push(`postgres: no server: ${message}`);
    progress(`postgres: no server: ${message}`);
    return undefined;
  }
}

/** Our own usage errors, and parseArgs' (ERR_PARSE_ARGS_UNKNOWN_OPTION and friends). */
function isUsageError(err: unknown): err is Error {
  const code = (err as { code?: unknown } | null)?.code;
  return (
    err instanceof UsageError || (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_'))
  );
}

main().catch((err: unknown) => {
  if (isUsageError(err)) {
    console.error(`${err.message}\n${USAGE}`);
    process.exitCode = 2;
  } else {
    console.error(err);
    process.exitCode = 1;
  }
});
