/**
 * # poolwatch benchmarks (bench/README)
 *
 *     npx tsx bench/index.ts --quick             # < 2 min on 2 cores; for a quick read
 *     npx tsx bench/index.ts --full              # default; more and longer samples
 *     npx tsx bench/index.ts --only 'c=64 / t'   # substring of the row id "suite / group / name"
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
import fs from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import type { Case, RunConfig } from './harness';
import { FULL, QUICK, caseId, describeEnvironment, formatTable, runCases } from './harness';
import { childProcessHosts, serveCase } from './isolation';
import { microCases } from './micro';
import { PEER_PACKAGES, peerCases } from './peers';

/** A mistake on the command line: reported without a stack trace. */
class UsageError extends Error {}

/** Internal flag: run as the child process serving the case with this id. */
const CHILD_FLAG = '--child';

interface Cli {
  config: RunConfig;
  only: string | undefined;
  json: string | undefined;
  baseline: string;
  als: boolean;
  inProcess: boolean;
  child: string | undefined;
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
  };
}

/** Every case, peers first, in the same order in the parent and in each child. */
function allCases(cli: Cli): Case[] {
  return [...peerCases({ baseline: cli.baseline, als: cli.als }), ...microCases()];
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

  const all = allCases(cli);
  if (!all.some((c) => c.suite === 'peers' && c.baseline)) {
    const names = [...new Set(all.filter((c) => c.suite === 'peers').map((c) => c.name))];
    throw new UsageError(`--baseline ${cli.baseline}: not a peer row; one of: ${names.join(', ')}`);
  }
  const cases = filterCases(all, cli.only);
  if (cases.length === 0) throw new UsageError(`--only ${cli.only}: no row id matches`);

  const isolation = cli.inProcess
    ? 'none (--in-process: rows share global state such as ALS hooks)'
    : 'one child process per row';
  const header = describeEnvironment(cli.config, [...PEER_PACKAGES, 'tsx'], isolation);
  console.log(header);

  const started = process.hrtime.bigint();
  const results = await runCases(cases, cli.config, {
    host: cli.inProcess ? undefined : childProcessHosts(__filename, argv, CHILD_FLAG),
    progress: (m) => void process.stderr.write(`  ${m}\n`),
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;

  console.log('');
  console.log(formatTable(results));
  console.log(
    `\ntotal ${seconds.toFixed(1)} s, loadavg now ${loadavg()}; ns/op of the median sample; ` +
      '± = (max-min)/median ops/s; cpu = process CPU time / wall time (median); ' +
      'ratio = ns/op / baseline ns/op',
  );

  if (cli.json !== undefined) {
    const dump = { header, config: cli.config, argv, seconds, results };
    fs.writeFileSync(cli.json, `${JSON.stringify(dump, null, 2)}\n`);
    console.log(`raw results written to ${cli.json}`);
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
