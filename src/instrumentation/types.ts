import type { InstrumentationConfig, SpanCustomizationHook } from '@opentelemetry/instrumentation';
import type { KnexPoolNameInfo } from '../adapters/tarn';
import type { Mysql2PoolNameInfo } from '../adapters/mysql2-pool';

export type { KnexPoolNameInfo, Mysql2PoolNameInfo };
import type { PoolRef } from '../events';
import type { HealthOptions, LeaseInfo, ServerInfo, StackCapture } from '../types';

/** What `holdHook` receives with the hold span. */
export interface HoldSpanInfo {
  readonly pool: PoolRef;
  readonly lease: LeaseInfo;
}

export interface PoolInstrumentationConfig extends InstrumentationConfig {
  /**
   * One `poolwatch.hold` span per lease, from hand-out to release, child of the span that was
   * active when `acquire()` was called. Leak findings become events on it.
   * @default true
   */
  holdSpans?: boolean;
  /**
   * One `poolwatch.acquire` span per `acquire()` call, covering the wait for a lease. Off by
   * default: the hold span already carries the wait as an attribute, and the
   * `db.client.connection.wait_time` histogram has the distribution.
   * @default false
   */
  waitSpans?: boolean;
  /**
   * Create spans only when `acquire()` is called inside another span, so that background jobs do
   * not start root traces of their own. Metrics and logs are unaffected.
   * @default false
   */
  requireParentSpan?: boolean;
  /**
   * Put the acquisition stack (`code.stacktrace`) on leak span events and alert log records, when
   * the pool captured one (see the pool's `captureStacks` option).
   * @default true
   */
  captureStacks?: boolean;
  /**
   * One short `poolwatch.leak` span at each leak finding (suspected, collected, reclaimed), so a
   * lease that never comes back still shows in a trace: child of the hold span when that is
   * recorded, else the root of a new trace linked to the acquiring one (see the README). Not
   * affected by `holdSpans` or `requireParentSpan`: findings are rare.
   * @default true
   */
  leakSpans?: boolean;
  /**
   * Distinct acquiring code locations reported per pool by the `poolwatch.code_location.*`
   * metrics; findings at further locations are reported under `code.file.path="other"`.
   * @default 20
   */
  maxCodeLocationsPerPool?: number;
  /**
   * Rewrites each acquisition stack before it is exported (`code.stacktrace` on span events and
   * log records): return the text to export, or `undefined` to export none. A stack holds, per
   * frame, a function name and a file path or URL with line and column, verbatim: computed or
   * generated function names, `//# sourceURL=` names of evaluated code, and paths (home
   * directories, deploy paths, query strings of `file:` or `http:` module URLs) can carry data.
   * Use it to cut paths down or drop frames. A hook that throws exports no stack (reported
   * through `diag`). Applied to the instrumented `pg.Pool` pools too.
   */
  redactStack?: (stack: string) => string | undefined;
  /**
   * Called with each hold span right after it starts, to add attributes. Errors it throws are
   * reported through `diag` and ignored.
   */
  holdHook?: SpanCustomizationHook<HoldSpanInfo>;
  /**
   * Instrument the application's own `pg.Pool` (`pg-pool` 2.x and 3.x) pools, without code
   * changes: each one reports hold spans, the `db.client.connection.*` metrics, and suspected
   * leaks with their acquisition stacks, like a poolwatch pool. `pg-pool` must be loaded after the
   * instrumentation is enabled (register it with `node --require` or `--import`). `false` leaves
   * `pg-pool` alone. Read when a pool is first used after the patch.
   * @default {}
   */
  pgPool?: PgPoolInstrumentationOptions | false;
  /**
   * Instrument knex 3 clients' pools (tarn), without code changes: hold spans, metrics and
   * suspected leaks with the line that built the query; knex's timeout error names the longest
   * holders; a query on the outer `knex` inside a `knex.transaction()` callback that would wait
   * for its own transaction's connection fails at once. `false` leaves knex alone.
   * @default {}
   */
  knex?: LibraryPoolOptions<KnexPoolNameInfo> | false;
  /**
   * Instrument mysql2 3.x `createPool()` pools (callback and promise APIs), without code changes,
   * as `pgPool` does for `pg.Pool`. `false` leaves mysql2 alone.
   * @default {}
   */
  mysql2Pool?: LibraryPoolOptions<Mysql2PoolNameInfo> | false;
}

/** Options for a library's own pools (`knex`, `mysql2Pool`); as `pgPool`'s, plus `health`. */
export interface LibraryPoolOptions<Info> extends Omit<PgPoolInstrumentationOptions, 'poolName'> {
  /**
   * Names a pool (`db.client.connection.pool.name`); `undefined` keeps the default,
   * `address:port/database`. A name already in use gets a `#2`, `#3`… suffix.
   */
  poolName?: (pool: Info) => string | undefined;
  /**
   * Health checks (leak count, hold age, exhaustion) as a poolwatch pool's, alerting through
   * log records and `poolwatch.alert.*` events. Off unless given.
   * @default undefined
   */
  health?: HealthOptions | false;
}

/** Options for the application's `pg.Pool` pools (`PoolInstrumentationConfig.pgPool`). */
export interface PgPoolInstrumentationOptions {
  /**
   * A checkout held longer than this is reported once as a suspected leak, and again when it
   * comes back (0 turns detection off). Checked every `min(1 s, threshold / 4)`.
   * @default 30000
   */
  leakDetectionThresholdMillis?: number;
  /**
   * Which checkouts record their caller's stack, shown with a suspected leak: as the pool option
   * of the same name (`'auto'`: at most one per 10 ms while the pool is relaxed, every checkout
   * while a checkout is held longer than a quarter of the threshold or connects time out). Only
   * with leak detection on. A capture costs a few microseconds.
   * @default 'auto'
   */
  captureStacks?: StackCapture;
  /**
   * Names a pool (`db.client.connection.pool.name`). Returning `undefined` keeps the default,
   * `address:port/database`. A name already used by an open pool gets a `#2`, `#3`… suffix.
   * Errors it throws are reported through `diag` and ignored.
   */
  poolName?: (pool: PgPoolNameInfo) => string | undefined;
  /**
   * Who reports `db.client.connection.count`, `.pending_requests` and `.max` of a `pg.Pool`: the
   * three metrics `@opentelemetry/instrumentation-pg` also exports for every pool it sees. Two
   * sources of one series double every sum and break a Prometheus scrape, so by default
   * (`'auto'`) poolwatch leaves them to instrumentation-pg for each pool instrumentation-pg
   * reports, and reports them for the others. `'always'`: poolwatch reports them regardless (drop
   * instrumentation-pg's with a View); `'never'`: poolwatch never does. Every other metric of the
   * pool (`idle.max`, `idle.min`, `timeouts`, `wait_time`, `use_time`, `poolwatch.*`) is
   * poolwatch's alone and always reported.
   * @default 'auto'
   */
  connectionMetrics?: 'auto' | 'always' | 'never';
}

/** What `pgPool.poolName` receives. */
export interface PgPoolNameInfo {
  /** The pool's options as pg-pool keeps them (`pool.options`). */
  readonly options: Readonly<Record<string, unknown>>;
  /** Where it connects, as telemetry reports it (never credentials). */
  readonly server: ServerInfo;
}
