import type { Alert } from './events';

/** Where a pool's resources connect. Never carries credentials. */
export interface ServerInfo {
  /** Database system, as `db.system.name` in the semantic conventions (`postgresql`, `mysql`). */
  readonly system?: string;
  readonly address?: string;
  readonly port?: number;
  /** The database name (`db.namespace`). */
  readonly namespace?: string;
}

/** Handed to `create()` so a resource can report that it broke while pooled or held. */
export interface CreateContext {
  /**
   * Marks the resource as broken: an idle one is destroyed at once, a held one is destroyed
   * instead of being reused when it is released. Safe to call more than once. `reason` is the
   * destroy reason reported (a driver that retires connections on its own timers says `'idle'`
   * or `'lifetime'`).
   * @default reason 'broken'
   */
  markBroken(error?: Error, reason?: 'broken' | 'idle' | 'lifetime'): void;
}

/**
 * The mechanics of one kind of resource: how to make, check, clean and close it. A driver adapter
 * is one of these; it keeps no pool state.
 */
export interface ResourceFactory<T> {
  create(context: CreateContext): Promise<T>;
  destroy(resource: T): Promise<void> | void;
  /** Resolves true when the resource is still usable. Called on borrow (see `validateAfterIdleMillis`). */
  validate?(resource: T): Promise<boolean> | boolean;
  /** Cleans session state before the resource is reused. A throw destroys the resource. */
  reset?(resource: T): Promise<void> | void;
  /**
   * Called synchronously on release: `false` destroys the resource instead of reusing it (a
   * connection released inside a transaction, or one whose last query hit a fatal error).
   */
  isReusable?(resource: T): boolean;
  /**
   * True while the resource is working for its holder, e.g. a query in flight on the server.
   * Called (guarded: a throw counts as unknown) when an acquire times out, so the error can
   * tell "holders stuck in a query on the server" apart from "a holder forgot to release";
   * also on release, where a busy resource is destroyed instead of reused (its answer would
   * reach the next holder). The pg and mysql2 factories provide it.
   */
  isBusy?(resource: T): boolean;
  /** Where the resources connect, for telemetry. */
  readonly server?: ServerInfo;
}

/**
 * Stack capture for leases: `auto` records at most one stack per 10 ms while the pool is relaxed
 * and every acquire under pressure.
 */
export type StackCapture = 'auto' | 'always' | 'never' | { readonly oneIn: number };

export interface HealthOptions {
  /**
   * How often the health checks run.
   * @default 5000
   */
  intervalMillis?: number;
  /**
   * Alert when the number of suspected leaks reaches this.
   * @default 1
   */
  leakCountThreshold?: number;
  /**
   * Alert when a lease has been held longer than this (0 turns the check off).
   * @default 60000
   */
  maxHoldMillis?: number;
  /**
   * Alert when the pool is exhausted and callers are waiting.
   * @default true
   */
  exhaustion?: boolean;
}

export interface PoolOptions<T> {
  /** The resource mechanics. */
  factory: ResourceFactory<T>;
  /**
   * Unique name in the application; it labels every metric. Defaults to
   * `address:port/namespace` when the factory knows them, else `poolwatch-N`.
   */
  name?: string;
  /** @default 0 */
  min?: number;
  /** @default 10 */
  max?: number;
  /**
   * How long `acquire()` waits before failing. `Infinity` waits forever (not recommended).
   * @default 30000
   */
  acquireTimeoutMillis?: number;
  /**
   * Idle resources above `min` are destroyed after this long unused (0 never).
   * @default 30000
   */
  idleTimeoutMillis?: number;
  /**
   * Resources are retired after this age, with up to 2.5% random jitter so they do not all
   * retire at once; a held resource is retired when it is released (0 never).
   * @default 1800000
   */
  maxLifetimeMillis?: number;
  /**
   * A resource idle for longer than this is validated before it is handed out (0: every borrow).
   * Only used when the factory has `validate`.
   * @default 500
   */
  validateAfterIdleMillis?: number;
  /**
   * A `factory.validate()` that takes longer fails: the resource is destroyed and its slot freed
   * (the waiter it was validated for keeps its place). A hung validation can never hold a slot.
   * At most 2^31-1.
   * @default 5000
   */
  validateTimeoutMillis?: number;
  /**
   * A `factory.reset()` that takes longer fails: the resource is destroyed and its slot freed.
   * At most 2^31-1.
   * @default 5000
   */
  resetTimeoutMillis?: number;
  /**
   * Master switch for leak tracking. `false` turns off suspected, collected and reclaimed
   * detection, stack capture and self-deadlock detection.
   * @default true
   */
  leakDetection?: boolean;
  /**
   * A lease held longer than this is reported once as a suspected leak (0 turns it off).
   * @default 30000
   */
  leakDetectionThresholdMillis?: number;
  /**
   * A lease held longer than this is taken back and its resource destroyed (0 never).
   * @default 0
   */
  reclaimAfterMillis?: number;
  /**
   * Detect leases that were dropped without release, after garbage collection.
   * @default true
   */
  detectCollectedLeaks?: boolean;
  /**
   * While callers wait on an exhausted pool that has handed out nothing for a while (a quarter
   * of their timeout, between 250 ms and 1 s), and leases held past a housekeeping tick are out,
   * run a major garbage collection at most once per this many milliseconds (one for the whole
   * process, and at most a tenth of the time), so that dropped leases are found in seconds rather
   * than whenever V8 next runs one (a minute or more on a quiet heap). A busy pool whose queue
   * moves never triggers it. 0 turns it off. Without `--expose-gc` the collector is obtained at
   * run time (`v8.setFlagsFromString('--expose-gc')`), the first time it is needed.
   * @default 2000
   */
  collectWhenStarvedMillis?: number;
  /** @default 'auto' */
  captureStacks?: StackCapture;
  /**
   * Fail fast when an async context that holds a lease waits for another from an exhausted pool.
   * @default true
   */
  detectSelfDeadlock?: boolean;
  /**
   * The shared housekeeping tick: idle and lifetime eviction, leak checks, `min` refill.
   * @default 1000
   */
  housekeepingIntervalMillis?: number;
  /** Health checks; `false` turns them off. */
  health?: HealthOptions | false;
  /** Called with every alert (health checks and leak findings). Errors it throws are ignored. */
  onAlert?: (alert: Alert) => void;
  /**
   * The bound on `close()`: it resolves within this time. Leases still out when it runs out are
   * taken back and their resources destroyed; creates, validations, resets and destroys still
   * running then are left to finish (or not) in the background. At most 2^31-1.
   * @default 10000
   */
  closeTimeoutMillis?: number;
}

/** What the pool tells about a lease. Read-only; stable for the duration of one hold. */
export interface LeaseInfo {
  /** Unique per hold within the process. */
  readonly id: number;
  /** Identifies the underlying resource (stable across holds). */
  readonly resourceId: number;
  readonly poolName: string;
  /** `Date.now()` when the lease was handed out. */
  readonly acquiredAt: number;
  /** Milliseconds held so far. */
  readonly ageMillis: number;
  /** The acquisition stack (trimmed to the caller's frames), if one was captured. */
  readonly stack: string | undefined;
  /** True once the lease was reported as a suspected leak. */
  readonly suspected: boolean;
  /** Where it was acquired: the first frame of `stack`, when one was captured. */
  readonly location: CodeLocation | undefined;
}

/**
 * A line of code, as the semantic conventions' `code.function.name`, `code.file.path`,
 * `code.line.number` and `code.column.number` attributes name it. `filePath` is relative to the
 * working directory when the file is under it.
 */
export interface CodeLocation {
  readonly functionName?: string;
  readonly filePath: string;
  readonly lineNumber: number;
  readonly columnNumber: number;
}

export interface PoolStats {
  readonly name: string;
  /** Resources that exist (idle + used + being validated or reset). */
  readonly size: number;
  readonly idle: number;
  readonly used: number;
  /** Callers waiting in `acquire()`. */
  readonly pending: number;
  /** Resources being created. */
  readonly creating: number;
  readonly min: number;
  readonly max: number;
  /** Leases currently held past the leak threshold. */
  readonly suspectedLeaks: number;
  /** Leases found dropped without release, since the pool opened. */
  readonly collectedLeaks: number;
  /** Leases taken back after `reclaimAfterMillis`, since the pool opened. */
  readonly reclaimedLeaks: number;
  readonly created: number;
  readonly destroyed: number;
  readonly timeouts: number;
  readonly closed: boolean;
}

export interface AcquireOptions {
  /** Overrides the pool's `acquireTimeoutMillis` for this call (> 0, at most 2^31-1, or Infinity). */
  timeoutMillis?: number;
  signal?: AbortSignal;
}
