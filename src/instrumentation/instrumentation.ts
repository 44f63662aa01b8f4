import {
  context,
  isSpanContextValid,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  ValueType,
  type Attributes,
  type BatchObservableCallback,
  type BatchObservableResult,
  type Context,
  type Counter,
  type Histogram,
  type HrTime,
  type Meter,
  type Observable,
  type ObservableGauge,
  type ObservableUpDownCounter,
  type Span,
  type SpanContext,
} from '@opentelemetry/api';
import {
  InstrumentationBase,
  InstrumentationNodeModuleDefinition,
  type InstrumentationModuleDefinition,
} from '@opentelemetry/instrumentation';
import {
  openPools,
  subscribe,
  type AlertMessage,
  type ChannelMessages,
  type HoldMessage,
  type HoldRunner,
  type LeakMessage,
  type PoolRef,
  type ResourceMessage,
  type TimeoutMessage,
} from '../events';
import type { CodeLocation, LeaseInfo, PoolStats } from '../types';
import { poolReport } from '../held-leases';
import { InvalidOptionError } from '../errors';
import { codeLocation } from '../watch/stack';
import { CodeLocationSeries, isAutoNumbered, recordLeakSpan } from './leak-telemetry';
import {
  ALERT_EVENT,
  ALERT_KIND_VALUE,
  ATTR_ACQUIRE_WAIT_TIME,
  ATTR_ALERT_KIND,
  ATTR_ALERT_THRESHOLD,
  ATTR_ALERT_VALUE,
  ATTR_HOLD_OUTCOME,
  ATTR_LEAK_KIND,
  ATTR_LEASE_AGE,
  ATTR_LEASE_ID,
  ATTR_RESOURCE_ID,
  LEAK_EVENT,
  METRIC_CODE_LOCATION_LEAKS,
  METRIC_CODE_LOCATION_LEAKS_SUSPECTED,
  METRIC_HOLD_OLDEST_AGE,
  LEASE_ERROR_TYPE,
  METRIC_LEAKS,
  METRIC_LEAKS_SUSPECTED,
  SPAN_ACQUIRE,
  SPAN_HOLD,
} from './names';
import {
  ATTR_CODE_COLUMN_NUMBER,
  ATTR_CODE_FILE_PATH,
  ATTR_CODE_FUNCTION_NAME,
  ATTR_CODE_LINE_NUMBER,
  ATTR_CODE_STACKTRACE,
  ATTR_DB_CLIENT_CONNECTION_POOL_NAME,
  ATTR_DB_CLIENT_CONNECTION_STATE,
  ATTR_DB_NAMESPACE,
  ATTR_DB_SYSTEM_NAME,
  ATTR_ERROR_TYPE,
  ATTR_EXCEPTION_MESSAGE,
  ATTR_EXCEPTION_TYPE,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  DB_CLIENT_CONNECTION_STATE_VALUE_IDLE,
  DB_CLIENT_CONNECTION_STATE_VALUE_USED,
  METRIC_DB_CLIENT_CONNECTION_COUNT,
  METRIC_DB_CLIENT_CONNECTION_CREATE_TIME,
  METRIC_DB_CLIENT_CONNECTION_IDLE_MAX,
  METRIC_DB_CLIENT_CONNECTION_IDLE_MIN,
  METRIC_DB_CLIENT_CONNECTION_MAX,
  METRIC_DB_CLIENT_CONNECTION_PENDING_REQUESTS,
  METRIC_DB_CLIENT_CONNECTION_TIMEOUTS,
  METRIC_DB_CLIENT_CONNECTION_USE_TIME,
  METRIC_DB_CLIENT_CONNECTION_WAIT_TIME,
} from './semconv';
import {
  PG_POOL_VERSIONS,
  PgPoolPatcher,
  isPgPoolAdapter,
  reportedByInstrumentationPg,
  resolvePgPoolOptions,
  type ResolvedPgPoolConfig,
} from './pg-pool';
import { libraryPoolDefinitions, LibraryPools } from './library-pools';
import type { PoolInstrumentationConfig } from './types';
import { PACKAGE_NAME, PACKAGE_VERSION } from './version';

/** Bucket boundaries for the seconds-valued histograms (the SDK's defaults are millisecond-scale). */
const SECONDS_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];

/**
 * Log severities, as the logs data model numbers them (`SeverityNumber` INFO = 9, WARN = 13,
 * ERROR = 17). Literal numbers rather than the enum: it lives in `@opentelemetry/api-logs` on the
 * 2.x line and in `@opentelemetry/api` on the 3.x line, and poolwatch depends on neither package's
 * copy (log records go through `InstrumentationBase.logger`, whichever line provides it).
 */
const SEVERITY = {
  info: { severityNumber: 9, severityText: 'INFO' },
  warning: { severityNumber: 13, severityText: 'WARN' },
  error: { severityNumber: 17, severityText: 'ERROR' },
} as const;

/**
 * What telemetry remembers about one acquire. It rides on the acquire's `HoldMessage` (in its
 * `userData`, which the pool leaves to subscribers) from `acquireStart` to `holdEnd`, and dies
 * with it.
 */
class HoldState implements HoldRunner {
  waitSpan: Span | undefined = undefined;
  /** `Date.now()` when `acquire()` was called, read only with a wait span. */
  waitStartedAt = 0;
  /** Kept after the hold ends: a later finding (collected) still links its log record to it. */
  holdSpan: Span | undefined = undefined;

  constructor(
    /** The instrumentation that wrote it: `userData` is shared by every subscriber. */
    readonly owner: PoolInstrumentation,
    /** The context active when `acquire()` was called: parent of the spans and alert logs. */
    readonly parent: Context,
  ) {}

  /** `pool.use(fn)` runs `fn` here: with the hold span active (see `HoldMessage.runner`). */
  run<A extends unknown[], R>(fn: (...args: A) => R, ...args: A): R {
    const span = this.holdSpan;
    if (span === undefined) return fn(...args);
    return context.with(trace.setSpan(this.parent, span), fn, undefined, ...args);
  }
}

interface Instruments {
  readonly count: ObservableUpDownCounter;
  readonly idleMax: ObservableUpDownCounter;
  readonly idleMin: ObservableUpDownCounter;
  readonly max: ObservableUpDownCounter;
  readonly pendingRequests: ObservableUpDownCounter;
  readonly leaksSuspected: ObservableGauge;
  readonly timeouts: Counter;
  readonly leaks: Counter;
  readonly createTime: Histogram;
  readonly waitTime: Histogram;
  readonly useTime: Histogram;
  readonly holdOldestAge: ObservableGauge;
  readonly codeLocationLeaks: Counter;
  readonly codeLocationSuspected: ObservableGauge;
}

/** The batch callback registered on a meter, kept so it can be removed from that same meter. */
interface Observer {
  readonly meter: Meter;
  readonly callback: BatchObservableCallback;
  readonly observables: Observable[];
}

/**
 * Turns poolwatch's lifecycle events into spans, metrics and log records.
 *
 * The pool knows nothing of OpenTelemetry: it publishes on `diagnostics_channel` (see
 * `../events.ts`), and this class subscribes in `enable()` and unsubscribes in `disable()`. While
 * disabled it has no subscribers, so pools skip building messages altogether. Channels are
 * process-wide, so one instance sees every pool, opened before or after it.
 *
 * - Traces: the context active at `acquireStart` (published synchronously inside `acquire()`) is
 *   remembered on the `HoldMessage`, which follows the acquire to the end of its hold;
 *   `acquireEnd` starts the hold span under it, `holdEnd` ends it. The state goes in the
 *   message's `userData` rather than in a WeakMap keyed on it: in V8 a WeakMap over short-lived
 *   keys costs about 1 µs per acquire (measured; its ephemeron table is walked by every
 *   scavenge), three times a bare acquire and release. A second subscriber that finds `userData`
 *   taken falls back to a WeakMap.
 * - Metrics: pool sizes are read by one batch observable callback, one `stats()` per open pool
 *   per collection; durations and counts are recorded from events.
 * - Logs: one record per alert (the `alert` channel only: leak findings are published on both
 *   `leak` and `alert`, and taking records from one of them keeps them single).
 * - The application's own `pg.Pool` pools (`pgPool` option): `pg-pool` is patched so that each
 *   pool publishes the same events through an adapter (`./pg-pool.ts`); everything above then
 *   applies to them unchanged.
 *
 * Hazards: the base constructor calls `_updateMetricInstruments()` and `enable()` before this
 * class's field initialisers run, so the state they set is `declare`d (no initialiser to reset
 * it). Telemetry never throws into the pool: every handler is guarded and reports through `diag`
 * (a raw `diagnostics_channel` subscriber that throws becomes an uncaught exception; `subscribe()`
 * would at least turn it into a process warning).
 */
export class PoolInstrumentation extends InstrumentationBase<PoolInstrumentationConfig> {
  declare private _instruments: Instruments;
  declare private _observer: Observer | undefined;
  /** Set while enabled: the functions that unsubscribe each channel listener. */
  declare private _unsubscribers: (() => void)[] | undefined;
  /** Per-acquire state when another subscriber holds `userData` (created on first need). */
  private _overflow: WeakMap<HoldMessage, HoldState> | undefined;
  /** The validated `pgPool` option; `undefined` when it is `false`. */
  declare private _pgPoolOptions: ResolvedPgPoolConfig | undefined;
  /** Created at the first patch of pg-pool (`init()` must stay free of side effects). */
  declare private _pgPoolPatcher: PgPoolPatcher | undefined;
  /** The `code.*` series of each pool, bounded by `maxCodeLocationsPerPool`. */
  declare private _codeLocations: CodeLocationSeries;
  /** Pools closed since the last collection: their gauges get a final 0 (see `_observePools`). */
  declare private _retired: PoolRef[] | undefined;
  /** An auto-numbered pool name was reported through `diag` (once per instrumentation). */
  declare private _warnedAutoName: boolean | undefined;
  /** knex's and mysql2's pools (`knex`, `mysql2Pool` options), created at the first patch. */
  declare private _libraryPools: LibraryPools | undefined;

  constructor(config: PoolInstrumentationConfig = {}) {
    super(PACKAGE_NAME, PACKAGE_VERSION, config);
  }

  /** Throws `InvalidOptionError` for an invalid `pgPool` option (leaving the config as it was). */
  override setConfig(config: PoolInstrumentationConfig = {}): void {
    if (config.redactStack !== undefined && typeof config.redactStack !== 'function') {
      throw new InvalidOptionError(
        'PoolInstrumentation option "redactStack" must be a function (stack) => string | undefined.',
      );
    }
    const pgPool = resolvePgPoolOptions(config.pgPool);
    const maxLocations = config.maxCodeLocationsPerPool ?? 20;
    if (!Number.isInteger(maxLocations) || maxLocations < 1) {
      throw new InvalidOptionError(
        `PoolInstrumentation: maxCodeLocationsPerPool must be a whole number >= 1, got ${String(maxLocations)}. ` +
          'It bounds the code.* series per pool; use a small number such as 20.',
      );
    }
    // Validates `knex` and `mysql2Pool`: every option is checked before any is taken.
    this._libraryPools ??= new LibraryPools((what, error) => this._diag.error(what, error));
    this._libraryPools.configure(config);
    this._pgPoolOptions = pgPool;
    if (this._codeLocations?.limit !== maxLocations) {
      this._codeLocations = new CodeLocationSeries(maxLocations);
    }
    super.setConfig({
      ...config,
      leakSpans: config.leakSpans ?? true,
      maxCodeLocationsPerPool: maxLocations,
      holdSpans: config.holdSpans ?? true,
      waitSpans: config.waitSpans ?? false,
      requireParentSpan: config.requireParentSpan ?? false,
      captureStacks: config.captureStacks ?? true,
    });
  }

  /**
   * `pg-pool`, for the application's `pg.Pool` pools. Called by the base constructor before this
   * class's fields exist, and again by `getModuleDefinitions()`: the patcher is made lazily.
   */
  protected init(): InstrumentationModuleDefinition[] {
    const patcher = () =>
      (this._pgPoolPatcher ??= new PgPoolPatcher(
        () => this._pgPoolOptions,
        (what, error) => this._diag.error(what, error),
      ));
    return [
      new InstrumentationNodeModuleDefinition(
        'pg-pool',
        PG_POOL_VERSIONS,
        (moduleExports: unknown, version?: string) => patcher().patch(moduleExports, version),
        (moduleExports: unknown) => patcher().unpatch(moduleExports),
      ),
      ...libraryPoolDefinitions(
        () =>
          (this._libraryPools ??= new LibraryPools((what, error) => this._diag.error(what, error))),
      ),
    ];
  }

  override enable(): void {
    super.enable();
    if (this._unsubscribers !== undefined) return;
    this._unsubscribers = [
      this._listen('acquireStart', this._onAcquireStart),
      this._listen('acquireEnd', this._onAcquireEnd),
      this._listen('holdEnd', this._onHoldEnd),
      this._listen('timeout', this._onTimeout),
      this._listen('create', this._onCreate),
      this._listen('leak', this._onLeak),
      this._listen('alert', this._onAlert),
      this._listen('poolClose', this._onPoolClose),
    ];
    this._addObserver();
  }

  override disable(): void {
    super.disable();
    if (this._unsubscribers === undefined) return;
    for (const unsubscribe of this._unsubscribers) unsubscribe();
    this._unsubscribers = undefined;
    this._removeObserver();
  }

  /**
   * Called by the base class with the current meter: at construction (a no-op meter unless a
   * global provider was set) and on every `setMeterProvider()`, which may come after pools exist.
   */
  protected override _updateMetricInstruments(): void {
    this._removeObserver();
    const meter = this.meter;
    const seconds = (name: string, description: string) =>
      meter.createHistogram(name, {
        description,
        unit: 's',
        advice: { explicitBucketBoundaries: SECONDS_BUCKETS },
      });
    const connections = (name: string, description: string) =>
      meter.createObservableUpDownCounter(name, {
        description,
        unit: '{connection}',
        valueType: ValueType.INT,
      });
    this._instruments = {
      count: connections(
        METRIC_DB_CLIENT_CONNECTION_COUNT,
        'The number of connections that are currently in the state described by the state attribute.',
      ),
      idleMax: connections(
        METRIC_DB_CLIENT_CONNECTION_IDLE_MAX,
        'The maximum number of idle open connections allowed.',
      ),
      idleMin: connections(
        METRIC_DB_CLIENT_CONNECTION_IDLE_MIN,
        'The minimum number of idle open connections allowed.',
      ),
      max: connections(
        METRIC_DB_CLIENT_CONNECTION_MAX,
        'The maximum number of open connections allowed.',
      ),
      pendingRequests: meter.createObservableUpDownCounter(
        METRIC_DB_CLIENT_CONNECTION_PENDING_REQUESTS,
        {
          description: 'The number of current pending requests for an open connection.',
          unit: '{request}',
          valueType: ValueType.INT,
        },
      ),
      leaksSuspected: meter.createObservableGauge(METRIC_LEAKS_SUSPECTED, {
        description: 'Leases currently held past the leak detection threshold.',
        unit: '{lease}',
        valueType: ValueType.INT,
      }),
      timeouts: meter.createCounter(METRIC_DB_CLIENT_CONNECTION_TIMEOUTS, {
        description:
          'The number of connection timeouts that have occurred trying to obtain a connection from the pool.',
        unit: '{timeout}',
        valueType: ValueType.INT,
      }),
      leaks: meter.createCounter(METRIC_LEAKS, {
        description:
          'Leak findings, by kind: suspected, collected (dropped unreleased), reclaimed.',
        unit: '{lease}',
        valueType: ValueType.INT,
      }),
      createTime: seconds(
        METRIC_DB_CLIENT_CONNECTION_CREATE_TIME,
        'The time it took to create a new connection.',
      ),
      waitTime: seconds(
        METRIC_DB_CLIENT_CONNECTION_WAIT_TIME,
        'The time it took to obtain an open connection from the pool.',
      ),
      useTime: seconds(
        METRIC_DB_CLIENT_CONNECTION_USE_TIME,
        'The time between borrowing a connection and returning it to the pool.',
      ),
      holdOldestAge: meter.createObservableGauge(METRIC_HOLD_OLDEST_AGE, {
        description: 'Age of the oldest lease held now (0 when none is held).',
        unit: 's',
      }),
      codeLocationLeaks: meter.createCounter(METRIC_CODE_LOCATION_LEAKS, {
        description:
          'Leak findings by kind and by the code location that acquired the lease (bounded per pool).',
        unit: '{lease}',
        valueType: ValueType.INT,
      }),
      codeLocationSuspected: meter.createObservableGauge(METRIC_CODE_LOCATION_LEAKS_SUSPECTED, {
        description:
          'Leases held past the leak detection threshold now, by the code location that acquired them.',
        unit: '{lease}',
        valueType: ValueType.INT,
      }),
    };
    if (this._unsubscribers !== undefined) this._addObserver();
  }

  private _addObserver(): void {
    if (this._observer !== undefined) return;
    const instruments = this._instruments;
    const callback: BatchObservableCallback = (result) => this._observePools(result, instruments);
    const observables = [
      instruments.count,
      instruments.idleMax,
      instruments.idleMin,
      instruments.max,
      instruments.pendingRequests,
      instruments.leaksSuspected,
      instruments.holdOldestAge,
      instruments.codeLocationSuspected,
    ];
    this.meter.addBatchObservableCallback(callback, observables);
    this._observer = { meter: this.meter, callback, observables };
  }

  private _removeObserver(): void {
    const observer = this._observer;
    if (observer === undefined) return;
    observer.meter.removeBatchObservableCallback(observer.callback, observer.observables);
    this._observer = undefined;
  }

  /** One `stats()` per open pool per collection feeds every observable instrument. */
  private _observePools(result: BatchObservableResult, instruments: Instruments): void {
    this._retirePools(result, instruments);
    for (const pool of openPools) {
      let stats: PoolStats;
      let held: readonly LeaseInfo[] | undefined;
      try {
        // One stats() per pool: leakReport() gives the counts with the holds.
        ({ stats, held } = poolReport(pool));
      } catch (error) {
        // One broken pool must not hide the others.
        this._diag.error(`stats() of pool "${pool.name}" failed`, error);
        continue;
      }
      const attributes = attributesOf(pool);
      if (this._reportsConnectionCounts(pool)) {
        result.observe(instruments.count, stats.idle, attributes.idle);
        // What exists and is not idle is unavailable to borrowers: held, or being validated or
        // reset. Reporting size - idle keeps used + idle equal to the open connections.
        result.observe(instruments.count, stats.size - stats.idle, attributes.used);
        result.observe(instruments.max, stats.max, attributes.metric);
        result.observe(instruments.pendingRequests, stats.pending, attributes.metric);
      }
      // Idle resources may fill the whole pool: there is no separate idle maximum.
      result.observe(instruments.idleMax, stats.max, attributes.metric);
      result.observe(instruments.idleMin, stats.min, attributes.metric);
      result.observe(instruments.leaksSuspected, stats.suspectedLeaks, attributes.metric);
      if (held !== undefined) {
        this._codeLocations.observe(
          result,
          instruments.holdOldestAge,
          instruments.codeLocationSuspected,
          pool,
          attributes.metric,
          this._config.redactStack === undefined ? held : held.map((l) => this._exportedLease(l)),
        );
      }
      if (!this._warnedAutoName && isAutoNumbered(pool.name)) {
        this._warnedAutoName = true;
        this._diag.warn(
          `pool "${pool.name}" has an auto-numbered name: its metric series change with creation ` +
            'order and across restarts. Name every pool (the pool option name, or pgPool.poolName).',
        );
      }
    }
  }

  /**
   * A closed pool's last word: 0 on each of its gauges, once. sdk-metrics 2.x repeats the last
   * value of a series its callback stops reporting, for the life of the process; a 0 keeps sums
   * over pools right and `> 0` alerts quiet. Observed before the open pools, so a new pool that
   * reuses the name overrides it.
   */
  private _retirePools(result: BatchObservableResult, instruments: Instruments): void {
    const retired = this._retired;
    if (retired === undefined || retired.length === 0) return;
    this._retired = undefined;
    for (const pool of retired) {
      if (openPools.has(pool)) continue;
      const attributes = attributesOf(pool);
      // Not the series another instrumentation reported for this pool (see below).
      if (this._reportsConnectionCounts(pool)) {
        result.observe(instruments.count, 0, attributes.idle);
        result.observe(instruments.count, 0, attributes.used);
        result.observe(instruments.max, 0, attributes.metric);
        result.observe(instruments.pendingRequests, 0, attributes.metric);
      }
      result.observe(instruments.idleMax, 0, attributes.metric);
      result.observe(instruments.idleMin, 0, attributes.metric);
      result.observe(instruments.leaksSuspected, 0, attributes.metric);
      this._codeLocations.retire(
        result,
        instruments.holdOldestAge,
        instruments.codeLocationSuspected,
        pool,
        attributes.metric,
      );
    }
  }

  private _onPoolClose({ pool }: ChannelMessages['poolClose']): void {
    const retired = (this._retired ??= []);
    // Without a meter provider no collection ever takes them: keep a bounded number.
    if (retired.length < 1000) retired.push(pool);
  }

  /**
   * The logger to emit with. A `ProxyLogger` (the base class's, taken before any SDK existed)
   * is traded once for the global provider's logger as soon as one is set. The proxy would find
   * it by itself only if it came from the same copy of `@opentelemetry/api-logs` as the one the
   * SDK set the global with, and a 2.x tree often has several (`instrumentation` and `sdk-node`
   * pin exact versions): a NodeSDK with poolwatch in its list then delivered spans and metrics
   * but no log record (measured). The global itself is shared by every copy.
   */
  private _currentLogger(): Logger {
    const logger = this.logger;
    if (logger.constructor.name !== 'ProxyLogger') return logger;
    const provider = globalApiLogsProvider();
    if (provider === undefined) return logger;
    this.setLoggerProvider(provider);
    return this.logger;
  }

  /**
   * Whether this instrumentation reports `count`, `max` and `pending_requests` of `pool`: always
   * for poolwatch's pools; for a pg.Pool, as `pgPool.connectionMetrics` says (by default, unless
   * instrumentation-pg reports the pool: one series per pool, not two).
   */
  private _reportsConnectionCounts(pool: PoolRef): boolean {
    const mode = this._pgPoolOptions?.connectionMetrics ?? 'auto';
    if (mode === 'always') return true;
    if (mode === 'auto') return !reportedByInstrumentationPg(pool);
    return !isPgPoolAdapter(pool);
  }

  /** Subscribes a handler, guarded: telemetry must never throw into the pool. */
  private _listen<K extends keyof ChannelMessages>(
    name: K,
    handler: (this: PoolInstrumentation, message: ChannelMessages[K]) => void,
  ): () => void {
    return subscribe(name, (message) => {
      try {
        handler.call(this, message);
      } catch (error) {
        this._diag.error(`failed to handle the ${name} event`, error);
      }
    });
  }

  /** This instrumentation's state for an acquire, if it saw the acquire start. */
  private _state(hold: HoldMessage): HoldState | undefined {
    const data = hold.userData;
    if (data instanceof HoldState && data.owner === this) return data;
    return this._overflow?.get(hold);
  }

  /** Whether to trace an acquire made under `parent`. */
  private _traces(parent: Context): boolean {
    return !this._config.requireParentSpan || trace.getSpan(parent) !== undefined;
  }

  private _onAcquireStart(hold: HoldMessage): void {
    const state = new HoldState(this, holdParent(context.active()));
    if (this._config.waitSpans && this._traces(state.parent)) {
      state.waitStartedAt = Date.now();
      state.waitSpan = this.tracer.startSpan(
        SPAN_ACQUIRE,
        {
          kind: SpanKind.INTERNAL,
          startTime: hrTimeFromEpochMillis(state.waitStartedAt),
          attributes: attributesOf(hold.pool).span,
        },
        state.parent,
      );
    }
    if (hold.userData === undefined) hold.userData = state;
    else (this._overflow ??= new WeakMap()).set(hold, state);
  }

  private _onAcquireEnd(hold: HoldMessage): void {
    const { lease, error } = hold;
    const attributes = attributesOf(hold.pool);
    // Only acquires that got a lease: a failed one's wait is its timeout, counted by `timeouts`.
    if (lease !== undefined) {
      this._instruments.waitTime.record(hold.waitMillis / 1000, attributes.metric);
    }

    // Acquires that began before enable() have no state, hence no spans.
    const state = this._state(hold);
    if (state === undefined) return;
    const waitSpan = state.waitSpan;
    if (waitSpan !== undefined) {
      state.waitSpan = undefined;
      if (lease !== undefined) {
        waitSpan.setAttributes({ [ATTR_LEASE_ID]: lease.id, [ATTR_RESOURCE_ID]: lease.resourceId });
      } else if (error !== undefined) {
        recordAcquireError(waitSpan, error);
      }
      waitSpan.end(hrTimeFromEpochMillis(state.waitStartedAt + hold.waitMillis));
    }
    if (lease === undefined || !this._config.holdSpans || !this._traces(state.parent)) return;
    // Not `{ ...span, [key]: value }`: V8 (Node 20) takes a runtime path for computed keys after a
    // spread that costs about 1 µs per key, several times a whole acquire and release.
    const spanAttributes: Attributes = Object.assign({}, attributes.span);
    spanAttributes[ATTR_LEASE_ID] = lease.id;
    spanAttributes[ATTR_RESOURCE_ID] = lease.resourceId;
    spanAttributes[ATTR_ACQUIRE_WAIT_TIME] = hold.waitMillis / 1000;
    const holdSpan = this.tracer.startSpan(
      SPAN_HOLD,
      {
        kind: SpanKind.INTERNAL,
        startTime: hrTimeFromEpochMillis(lease.acquiredAt),
        attributes: spanAttributes,
      },
      state.parent,
    );
    state.holdSpan = holdSpan;
    // Only the subscriber whose state rides on the message offers to run `use()` callbacks.
    if (hold.runner === undefined && hold.userData === state) hold.runner = state;
    this._runSpanCustomizationHook(this._config.holdHook, 'hold', holdSpan, {
      pool: hold.pool,
      lease,
    });
  }

  private _onHoldEnd(hold: HoldMessage): void {
    this._instruments.useTime.record(hold.holdMillis / 1000, attributesOf(hold.pool).metric);
    const span = this._state(hold)?.holdSpan;
    if (span === undefined || hold.lease === undefined) return;
    const outcome = hold.outcome ?? 'released';
    span.setAttribute(ATTR_HOLD_OUTCOME, outcome);
    if (outcome === 'collected' || outcome === 'reclaimed') {
      span.setAttribute(ATTR_ERROR_TYPE, LEASE_ERROR_TYPE[outcome]);
      span.setStatus({ code: SpanStatusCode.ERROR, message: `lease ${outcome}` });
    }
    // The pool's monotonic hold time, not the wall clock, sets the duration.
    span.end(hrTimeFromEpochMillis(hold.lease.acquiredAt + hold.holdMillis));
  }

  private _onTimeout(message: TimeoutMessage): void {
    this._instruments.timeouts.add(1, attributesOf(message.pool).metric);
  }

  private _onCreate(message: ResourceMessage): void {
    // Successful creates only, as the convention's "time it took to create a new connection".
    if (message.error !== undefined) return;
    this._instruments.createTime.record(
      message.durationMillis / 1000,
      attributesOf(message.pool).metric,
    );
  }

  private _onLeak(original: LeakMessage): void {
    // With `redactStack`, everything below (leak span, code-location series, span event) sees
    // the redacted stack and the code location read from it.
    const message = this._exportedLeak(original);
    const { kind, lease } = message;
    const state = message.hold && this._state(message.hold);
    const at = hrTimeFromEpochMillis(lease.acquiredAt + message.ageMillis);
    // `returned` is the late end of a suspected leak, already counted.
    if (kind !== 'returned') {
      const poolAttributes = attributesOf(message.pool);
      const attributes = Object.assign({}, poolAttributes.metric);
      attributes[ATTR_LEAK_KIND] = kind;
      this._instruments.leaks.add(1, attributes);
      const located = Object.assign(
        {},
        this._codeLocations.attributes(message.pool, poolAttributes.metric, lease),
      );
      located[ATTR_LEAK_KIND] = kind;
      this._instruments.codeLocationLeaks.add(1, located);
      if (this._config.leakSpans) {
        recordLeakSpan(
          this.tracer,
          message,
          state,
          poolAttributes.span,
          this._config.captureStacks !== false,
          at,
        );
      }
    }
    const span = state?.holdSpan;
    if (span === undefined || !span.isRecording()) return;
    const attributes: Attributes = { [ATTR_LEASE_AGE]: message.ageMillis / 1000 };
    const stack = this._exportedStack(message.stack ?? lease.stack);
    if (stack !== undefined) {
      attributes[ATTR_CODE_STACKTRACE] = stack;
      addCodeLocation(attributes, this._exportedLocation(stack, lease.location));
    }
    span.addEvent(LEAK_EVENT[kind], attributes, at);
    if (kind === 'collected' || kind === 'reclaimed') {
      span.setAttribute(ATTR_ERROR_TYPE, LEASE_ERROR_TYPE[kind]);
      span.setStatus({ code: SpanStatusCode.ERROR, message: `lease ${kind}` });
    }
  }

  /** A leak message whose stack (and lease) are as they may be exported. */
  private _exportedLeak(message: LeakMessage): LeakMessage {
    if (this._config.redactStack === undefined) return message;
    const lease = this._exportedLease(message.lease);
    return { ...message, lease, stack: lease.stack };
  }

  /**
   * A lease as it may be exported: with `redactStack`, its stack redacted and its code location
   * read from the redacted stack (a path or function name the hook rewrote must not come back
   * through `code.*` attributes or metric series).
   */
  private _exportedLease(lease: LeaseInfo): LeaseInfo {
    if (this._config.redactStack === undefined) return lease;
    const stack = this._exportedStack(lease.stack);
    return {
      id: lease.id,
      resourceId: lease.resourceId,
      poolName: lease.poolName,
      acquiredAt: lease.acquiredAt,
      ageMillis: lease.ageMillis,
      suspected: lease.suspected,
      stack,
      location: stack === undefined ? undefined : codeLocation(stack),
    };
  }

  /** A stack as it may leave the process: after `captureStacks` and the `redactStack` hook. */
  private _exportedStack(stack: string | undefined): string | undefined {
    if (!this._config.captureStacks || stack === undefined) return undefined;
    const redact = this._config.redactStack;
    if (redact === undefined) return stack;
    try {
      const out = redact(stack);
      return typeof out === 'string' && out !== '' ? out : undefined;
    } catch (error) {
      this._diag.error('the redactStack hook threw; the stack was not exported', error);
      return undefined;
    }
  }

  /**
   * The acquiring line as it may be exported: with `redactStack`, read from the redacted stack
   * (a function name or path the hook rewrote must not come back through `code.*`).
   */
  private _exportedLocation(
    exported: string,
    location: CodeLocation | undefined,
  ): CodeLocation | undefined {
    return this._config.redactStack === undefined ? location : codeLocation(exported);
  }

  private _onAlert({ alert, hold }: AlertMessage): void {
    const attributes: Attributes = {
      [ATTR_DB_CLIENT_CONNECTION_POOL_NAME]: alert.pool,
      [ATTR_ALERT_KIND]: ALERT_KIND_VALUE[alert.kind] ?? alert.kind,
    };
    if (alert.leakKind !== undefined) attributes[ATTR_LEAK_KIND] = alert.leakKind;
    if (alert.severity === 'error') {
      // An ERROR record says what went wrong, as an ERROR span does.
      const errorType =
        alert.leakKind === 'collected' || alert.leakKind === 'reclaimed'
          ? LEASE_ERROR_TYPE[alert.leakKind]
          : (ALERT_KIND_VALUE[alert.kind] ?? alert.kind);
      attributes[ATTR_ERROR_TYPE] = errorType;
    }
    if (alert.lease !== undefined) attributes[ATTR_LEASE_ID] = alert.lease.id;
    if (alert.ageMillis !== undefined) attributes[ATTR_LEASE_AGE] = alert.ageMillis / 1000;
    if (alert.value !== undefined) attributes[ATTR_ALERT_VALUE] = alert.value;
    if (alert.threshold !== undefined) attributes[ATTR_ALERT_THRESHOLD] = alert.threshold;
    const stack = this._exportedStack(alert.stack);
    if (stack !== undefined) {
      attributes[ATTR_CODE_STACKTRACE] = stack;
      addCodeLocation(attributes, this._exportedLocation(stack, alert.location));
    }
    // Link the record to the hold span (or, without one, to the acquiring caller's span). Pool-wide
    // alerts are raised from timers whose context says nothing about them: no parent.
    const state = hold && this._state(hold);
    let parent = ROOT_CONTEXT;
    if (state !== undefined) {
      parent = state.holdSpan ? trace.setSpan(state.parent, state.holdSpan) : state.parent;
    }
    this._currentLogger().emit({
      eventName:
        alert.leakKind !== undefined ? LEAK_EVENT[alert.leakKind] : ALERT_EVENT[alert.kind],
      ...(SEVERITY[alert.severity] ?? SEVERITY.warning),
      body: exportedBody(alert.message, alert.stack, stack),
      attributes,
      timestamp: hrTimeFromEpochMillis(alert.timestamp),
      context: parent,
    });
  }
}

/** The acquiring line as the semantic conventions' code attributes. */
function addCodeLocation(attributes: Attributes, location: CodeLocation | undefined): void {
  if (location === undefined) return;
  if (location.functionName !== undefined) {
    attributes[ATTR_CODE_FUNCTION_NAME] = location.functionName;
  }
  attributes[ATTR_CODE_FILE_PATH] = location.filePath;
  attributes[ATTR_CODE_LINE_NUMBER] = location.lineNumber;
  attributes[ATTR_CODE_COLUMN_NUMBER] = location.columnNumber;
}

/**
/** Where `@opentelemetry/api-logs` (2.x line) keeps the global logger provider, and its version. */
const API_LOGS_GLOBAL = Symbol.for('io.opentelemetry.js.api.logs');
const API_LOGS_COMPATIBILITY_VERSION = 1;

type Logger = PoolInstrumentation['logger'];
type LoggerProvider = Parameters<PoolInstrumentation['setLoggerProvider']>[0];

/**
 * The 2.x line's global logger provider, as any copy of `@opentelemetry/api-logs` reads it (a
 * getter taking the API's compatibility version), or `undefined` when none is set. The 3.x line
 * keeps its logs API in `@opentelemetry/api`, one shared copy: nothing to do there.
 */
function globalApiLogsProvider(): LoggerProvider | undefined {
  const getter = (globalThis as Record<symbol, unknown>)[API_LOGS_GLOBAL];
  if (typeof getter !== 'function') return undefined;
  const provider = (getter as (version: number) => unknown)(API_LOGS_COMPATIBILITY_VERSION);
  return typeof (provider as { getLogger?: unknown } | undefined)?.getLogger === 'function' &&
    (provider as object).constructor.name !== 'NoopLoggerProvider'
    ? (provider as LoggerProvider)
    : undefined;
}

/**
 * `@opentelemetry/instrumentation-pg`'s span for a pg-pool `connect()`. It wraps pg-pool's
 * `connect` too; when its wrapper sits above poolwatch's (it was enabled later), its span is the
 * active one while poolwatch's runs, and it ends when the client is handed out: a 0 ms parent
 * for a hold that lasts until the release.
 */
const PG_POOL_CONNECT_SPAN = 'pg-pool.connect';

/**
 * The parent for a hold started in `active`: the span the application had active when it called
 * `connect()`/`query()`/`acquire()`. That is `active` itself, except under instrumentation-pg's
 * `pg-pool.connect` span (see above), which is skipped for its own parent: the context keeps
 * everything else (baggage), and the span becomes its parent's span context, read from the SDK
 * span (`parentSpanContext`, SDK 2.x and 3.x). A `pg-pool.connect` without a parent was a root:
 * the hold becomes a root too.
 */
function holdParent(active: Context): Context {
  const span = trace.getSpan(active) as
    (Span & { readonly name?: unknown; readonly parentSpanContext?: SpanContext }) | undefined;
  if (span === undefined || span.name !== PG_POOL_CONNECT_SPAN) return active;
  const parent = span.parentSpanContext;
  return parent !== undefined && isSpanContextValid(parent)
    ? trace.setSpanContext(active, parent)
    : trace.deleteSpan(active);
}

/**
 * An alert's message as it may be exported: the pool writes the acquisition stack into it
 * (indented, after "acquired at:"), so it gets the same treatment as `code.stacktrace`.
 */
function exportedBody(
  message: string,
  captured: string | undefined,
  exported: string | undefined,
): string {
  if (captured === undefined || captured === exported) return message;
  const indented = (text: string) => `\n    ${text.split('\n').join('\n    ')}`;
  const replacement = exported === undefined ? ' (stack not exported)' : indented(exported);
  return message.split(indented(captured)).join(replacement);
}

/** Attribute sets of one pool, built once: a pool's name and server never change. */
interface PoolAttributes {
  /** Every metric's: the pool name. */
  readonly metric: Attributes;
  readonly idle: Attributes;
  readonly used: Attributes;
  /** Spans': the pool name and where its resources connect. */
  readonly span: Attributes;
}

const poolAttributes = new WeakMap<PoolRef, PoolAttributes>();

function attributesOf(pool: PoolRef): PoolAttributes {
  let attributes = poolAttributes.get(pool);
  if (attributes === undefined) {
    const metric = { [ATTR_DB_CLIENT_CONNECTION_POOL_NAME]: pool.name };
    const span: Attributes = { ...metric };
    const server = pool.server;
    if (server?.system !== undefined) span[ATTR_DB_SYSTEM_NAME] = server.system;
    if (server?.address !== undefined) {
      span[ATTR_SERVER_ADDRESS] = withoutCredentials(server.address);
    }
    if (server?.port !== undefined) span[ATTR_SERVER_PORT] = server.port;
    if (server?.namespace !== undefined) span[ATTR_DB_NAMESPACE] = server.namespace;
    attributes = {
      metric,
      idle: { ...metric, [ATTR_DB_CLIENT_CONNECTION_STATE]: DB_CLIENT_CONNECTION_STATE_VALUE_IDLE },
      used: { ...metric, [ATTR_DB_CLIENT_CONNECTION_STATE]: DB_CLIENT_CONNECTION_STATE_VALUE_USED },
      span,
    };
    poolAttributes.set(pool, attributes);
  }
  return attributes;
}

/**
 * `ServerInfo.address` is a host by contract; should a `user:password@host` slip in anyway, only
 * the host is kept.
 */
function withoutCredentials(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1);
}

/**
 * Records a failed acquire the way `recordException` would, minus the stack, and with a message
 * only when it is poolwatch's own: a driver's message may carry user names, hosts or SQL, and a
 * poolwatch error with a `cause` may quote it (`POOL_CREATE_FAILED` does, and so does a timeout
 * after a failed create). Of those, only the class and code are kept.
 */
function recordAcquireError(span: Span, error: Error): void {
  const code = (error as { code?: unknown }).code;
  const ownCode = typeof code === 'string' && code.startsWith('POOL_') ? code : undefined;
  const message =
    ownCode !== undefined && error.cause === undefined ? summaryOf(error.message) : undefined;
  const attributes: Attributes = { [ATTR_EXCEPTION_TYPE]: error.name };
  if (message !== undefined) attributes[ATTR_EXCEPTION_MESSAGE] = message;
  span.addEvent('exception', attributes);
  span.setAttribute(ATTR_ERROR_TYPE, ownCode ?? error.name);
  span.setStatus({ code: SpanStatusCode.ERROR, message: message ?? ownCode ?? error.name });
}

/**
 * The first line of a poolwatch error message, without the holders it goes on to list: a timeout
 * names the longest holders with their acquisition stacks (other callers' code, which the README
 * promises to keep out of a failed acquire's span), one per line after " Longest holders:".
 */
function summaryOf(message: string): string {
  const firstLine = message.split('\n', 1)[0]!;
  return firstLine.replace(/ Longest holders:$/, '');
}

/**
 * Epoch milliseconds (fractions allowed) as HrTime. A plain number would do for real clocks, but
 * the SDK reads a number smaller than `performance.now()` as a performance timestamp, which a
 * faked `Date.now()` near 0 is.
 */
function hrTimeFromEpochMillis(millis: number): HrTime {
  let seconds = Math.floor(millis / 1000);
  let nanos = Math.round((millis - seconds * 1000) * 1e6);
  if (nanos >= 1e9) {
    seconds += 1;
    nanos -= 1e9;
  }
  return [seconds, nanos];
}
