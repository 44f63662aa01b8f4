/**
 * A pg-pool `Pool` seen as a poolwatch pool: it feeds the lease-watching core (`../watch`) with
 * pg-pool's checkouts and releases, so the pool publishes poolwatch's lifecycle events and sits in
 * `openPools`, and `PoolInstrumentation` turns it into the same spans, metrics and log records as a
 * poolwatch pool. What is specific to pg-pool stays here: how a checkout and its end are seen,
 * pg-pool's counts, its naming. This file knows nothing of OpenTelemetry;
 * `../instrumentation/pg-pool.ts` patches pg-pool and calls into it.
 */
import type { HoldMessage, HoldOutcome, PoolRef } from '../events';
import type { PgPoolNameInfo } from '../instrumentation/types';
import { pgPoolServerInfo } from '../pg-connection-string';
import type { PoolStats, ServerInfo } from '../types';
import { Hold } from '../watch/hold';
import type { LeakReport } from '../watch/report';
import type { CapturedStack } from '../watch/stack';
import { LeaseWatcher, newHoldId, newResourceId, uniquePoolName } from '../watch/watcher';

// Naming reads the connection string with the one careful parser the drivers use (issue 10).
export { pgPoolServerInfo };

/** The parts of a pg-pool `Pool` (2.x and 3.x) that are read here: its public API only. */
export interface PgPoolLike {
  readonly options: Readonly<Record<string, unknown>>;
  readonly totalCount: number;
  readonly idleCount: number;
  readonly waitingCount: number;
  readonly ending?: boolean;
  on(event: 'release', listener: (error: unknown, client: object) => void): unknown;
  removeListener(event: 'release', listener: (error: unknown, client: object) => void): unknown;
}

/** A checked-out pg client: pg-pool sets `release` on it at each checkout. */
interface PgClientLike {
  release: (error?: unknown) => void;
}

/** The validated `pgPool` options of `PoolInstrumentation` (see `PgPoolInstrumentationOptions`). */
export interface ResolvedPgPoolOptions {
  /** 0: off. */
  readonly leakDetectionThresholdMillis: number;
  /** 0: never; 1: always; N: one in N; -1: auto. */
  readonly stackEvery: number;
  readonly poolName: ((pool: PgPoolNameInfo) => string | undefined) | undefined;
}

/**
 * How the end of a checkout is seen. pg-pool 3.6 and later emit `release` on the pool (no need to
 * touch the client); older versions emit nothing, so the `release` function that pg-pool puts on
 * the client at each checkout is wrapped (the one place the client is written to).
 */
export type ReleaseTracking = 'event' | 'wrap';

/** Reports an internal failure (to `diag`): telemetry never throws into the application. */
export type ErrorReporter = (what: string, error: unknown) => void;

/** What the adapter keeps per pg client, for as long as the client lives (a WeakMap value). */
class ClientEntry extends Hold {
  constructor() {
    super(newResourceId());
  }
}

/** pg-pool's messages for a connect that timed out (waiting in its queue, or connecting). */
function isTimeout(error: Error): boolean {
  return (
    error.message === 'timeout exceeded when trying to connect' ||
    error.message.startsWith('Connection terminated due to connection timeout')
  );
}

/**
 * The adapter for one pg-pool `Pool`, created at its first `connect()` (or `query()`) after the
 * patch, and registered in `openPools` until `end()`.
 *
 *     connect() ─► acquireStart ─► pg-pool's callback ─► acquireEnd ─► … ─► release ─► holdEnd
 *                                        │ error               │ held past the threshold
 *                                        ▼                     ▼ (leak tick)
 *                            acquireEnd with error    leak + alert "suspected" … "returned"
 *
 * Checkouts are kept in the adapter, never on pg's objects: `#clients` maps each client to its
 * entry (a WeakMap: clients are long-lived, so its cost is that of a property lookup), and
 * `#held` lists the entries held now for the watcher's tick, one unref'd interval per pool. The end of a
 * checkout comes from pg-pool's `release` event (see `ReleaseTracking` for older versions).
 *
 * Hazards: the adapter holds the pool only weakly (a pool dropped without `end()` must not be kept
 * alive by `openPools`); its `stats()` and tick notice when the pool is gone and close it. A
 * checkout made before the patch was applied is unknown here: its release is ignored. If the
 * application removes every `release` listener from the pool, holds are ended late (at the
 * client's next checkout), as if leaked. After `end()` the instrumentation forgets the adapter;
 * holds still open then are followed to their release by the adapter alone, even across a
 * disable.
 */
export class WatchedPgPool implements PoolRef {
  readonly name: string;
  readonly server: ServerInfo;
  readonly #pool: WeakRef<PgPoolLike>;
  readonly #options: ResolvedPgPoolOptions;
  readonly #tracking: ReleaseTracking;
  readonly #report: ErrorReporter;
  readonly #onClose: (watcher: WatchedPgPool) => void;

  readonly #clients = new WeakMap<object, ClientEntry>();
  /** Entries held now, for the watcher. */
  readonly #held = new Set<ClientEntry>();
  readonly #onRelease: (error: unknown, client: object) => void;
  #tick: NodeJS.Timeout | undefined;
  /**
   * Leak findings, stacks and events. Its stack policy is under pressure while a hold ages or a
   * connect timed out; a queue of waiters alone is not pressure: pg-pool does not say how long
   * they have waited, and a busy pool often has a short queue.
   */
  readonly #watch: LeaseWatcher<ClientEntry>;
  /** `end()` was called: out of `openPools`; open holds are still followed to their release. */
  #closed = false;
  /** The instrumentation let go of the pool (disable): nothing is published any more. */
  #detached = false;

  constructor(
    pool: PgPoolLike,
    options: ResolvedPgPoolOptions,
    tracking: ReleaseTracking,
    report: ErrorReporter,
    /** Called once, when the pool ends (or was dropped without `end()`). */
    onClose: (watcher: WatchedPgPool) => void,
  ) {
    this.#pool = new WeakRef(pool);
    this.#onClose = onClose;
    this.#options = options;
    this.#tracking = tracking;
    this.#report = report;
    this.server = pgPoolServerInfo(pool.options);
    this.name = uniquePoolName(this.#baseName(pool));
    this.#watch = new LeaseWatcher<ClientEntry>(this, {
      holds: () => this.#held,
      leakDetectionThresholdMillis: options.leakDetectionThresholdMillis,
      stackEvery: options.leakDetectionThresholdMillis === 0 ? 0 : options.stackEvery,
      noStackHint: "no stack captured: pgPool.captureStacks: 'always' records every checkout",
    });
    this.#onRelease = (error, client) => {
      try {
        this.#released(client, undefined, error);
      } catch (failure) {
        this.#report('failed to handle a pg-pool release', failure);
      }
    };
    if (tracking === 'event') pool.on('release', this.#onRelease);
    if (options.leakDetectionThresholdMillis > 0) {
      const every = Math.min(1000, Math.max(10, options.leakDetectionThresholdMillis / 4));
      this.#tick = setInterval(() => this.#checkLeaks(), every);
      this.#tick.unref();
    }
    this.#watch.opened();
  }

  get closed(): boolean {
    return this.#closed || this.#detached;
  }

  #baseName(pool: PgPoolLike): string {
    const hook = this.#options.poolName;
    if (hook !== undefined) {
      try {
        const name = hook({ options: pool.options, server: this.server });
        if (typeof name === 'string' && name !== '') return name;
      } catch (error) {
        this.#report('the pgPool.poolName option threw', error);
      }
    }
    const { address, port, namespace } = this.server;
    return `${address}:${port}/${namespace ?? ''}`;
  }

  // ---------------------------------------------------------------------------------------------
  // Checkout

  /**
   * Runs pg-pool's `connect()` (`original`) on `pool`, following the checkout it makes. Called by
   * the patched `connect`, which is passed as `above`: the captured stack starts at its caller.
   */
  connect(
    pool: PgPoolLike,
    original: (this: PgPoolLike, ...args: unknown[]) => unknown,
    args: IArguments,
    above: (...args: never[]) => unknown,
  ): unknown {
    const callback: unknown = args[0];
    const startTime = performance.now();
    const message = this.#watch.startAcquire(startTime);
    const captured = this.#watch.capture(startTime, above);

    if (typeof callback === 'function') {
      return original.call(pool, (error: unknown, client: unknown, done: unknown) => {
        const release = this.#checkedOut(error, client, done, startTime, captured, message);
        return (callback as (...args: unknown[]) => unknown)(error, client, release);
      });
    }
    const result = original.apply(pool, args as unknown as unknown[]);
    if (!isThenable(result)) return result;
    // A new promise rather than a handler on pg-pool's: attaching a rejection handler to it would
    // hide the application's unhandled rejections.
    return result.then(
      (client: unknown) => {
        this.#checkedOut(undefined, client, undefined, startTime, captured, message);
        return client;
      },
      (error: unknown) => {
        this.#checkedOut(error, undefined, undefined, startTime, captured, message);
        throw error;
      },
    );
  }

  /**
   * pg-pool answered a `connect()`. Returns the `done` function to hand to a callback: pg-pool's,
   * or with `ReleaseTracking` 'wrap', the wrapper that also ends the hold. Never throws.
   */
  #checkedOut(
    error: unknown,
    client: unknown,
    done: unknown,
    startTime: number,
    captured: CapturedStack | undefined,
    message: HoldMessage | undefined,
  ): unknown {
    try {
      if (this.#detached) return done;
      const now = performance.now();
      if (error !== undefined && error !== null) {
        this.#failed(asError(error), startTime, now, message);
        return done;
      }
      if (typeof client !== 'object' || client === null) return done;
      let entry = this.#clients.get(client);
      if (entry === undefined) {
        entry = new ClientEntry();
        this.#clients.set(client, entry);
      } else if (entry.held) {
        // Its last release went unseen (the `release` listener was removed): end that hold now.
        this.#endHold(entry, now, 'released');
      }
      const holdId = newHoldId();
      this.#held.add(entry);
      this.#watch.begin(entry, holdId, now, captured, message, startTime, undefined);
      if (this.#tracking === 'wrap') return this.#wrapRelease(client as PgClientLike, holdId);
    } catch (failure) {
      this.#report('failed to follow a pg-pool checkout', failure);
    }
    return done;
  }

  #failed(error: Error, startTime: number, now: number, message: HoldMessage | undefined): void {
    if (isTimeout(error)) this.#watch.timedOut(now - startTime, error);
    this.#watch.failed(message, error, startTime, now);
  }

  /** pg-pool < 3.6: wraps the `release` pg-pool just put on the client for this checkout. */
  #wrapRelease(client: PgClientLike, holdId: number): (error?: unknown) => void {
    const pgRelease = client.release;
    const release = (error?: unknown): void => {
      try {
        this.#released(client, holdId, error);
      } catch (failure) {
        this.#report('failed to handle a pg-pool release', failure);
      }
      // pg-pool's own, with its double-release error.
      pgRelease(error);
    };
    client.release = release;
    return release;
  }

  // ---------------------------------------------------------------------------------------------
  // Release

  /**
   * A client came back (with `error`: pg-pool destroys it). `holdId`: the hold expected, if
   * known.
   */
  #released(client: object, holdId: number | undefined, error: unknown): void {
    const entry = this.#clients.get(client);
    if (entry === undefined || !entry.held || (holdId !== undefined && entry.holdId !== holdId)) {
      return;
    }
    const destroyed = error !== undefined && error !== null && error !== false;
    this.#endHold(entry, performance.now(), destroyed ? 'destroyed' : 'released');
  }

  #endHold(entry: ClientEntry, now: number, outcome: HoldOutcome): void {
    this.#held.delete(entry);
    this.#watch.end(entry, now, outcome);
    if (this.#closed && this.#held.size === 0) this.#stopTick();
  }

  // ---------------------------------------------------------------------------------------------
  // Leaks

  #checkLeaks(): void {
    try {
      if (this.#pool.deref() === undefined) return this.#collectedPool();
      this.#watch.tick(performance.now(), false);
    } catch (error) {
      this.#report('the pg-pool leak check failed', error);
    }
  }

  /** Every checkout open now, oldest first, with ages and stacks. */
  leakReport(): LeakReport {
    return { pool: this.name, stats: this.stats(), held: this.#watch.holders() };
  }

  // ---------------------------------------------------------------------------------------------
  // Stats and lifecycle

  /**
   * pg-pool's own counts. A client that is still connecting is in `totalCount` and not idle, so
   * it counts as used (as in contrib's pg instrumentation); `creating` is therefore 0.
   */
  stats(): PoolStats {
    const pool = this.#pool.deref();
    if (pool === undefined) this.#collectedPool();
    const size = pool?.totalCount ?? 0;
    const idle = pool?.idleCount ?? 0;
    const max = pool?.options.max;
    const min = pool?.options.min;
    return {
      name: this.name,
      size,
      idle,
      used: size - idle,
      pending: pool?.waitingCount ?? 0,
      creating: 0,
      min: typeof min === 'number' ? min : 0,
      max: typeof max === 'number' ? max : 10,
      suspectedLeaks: this.#watch.suspectedLeaks,
      collectedLeaks: 0,
      reclaimedLeaks: 0,
      created: 0,
      destroyed: 0,
      timeouts: this.#watch.timeouts,
      closed: this.closed,
    };
  }

  /** `end()` was called on the pool: it leaves `openPools`; open holds are still followed. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#unregister();
    if (this.#held.size === 0) this.#stopTick();
    this.#onClose(this);
  }

  /** The instrumentation was disabled: stop everything; open holds get no end. */
  detach(): void {
    if (this.#detached) return;
    this.#detached = true;
    this.#closed = true;
    this.#watch.mute();
    this.#stopTick();
    this.#pool.deref()?.removeListener('release', this.#onRelease);
    this.#unregister();
    this.#held.clear();
  }

  #unregister(): void {
    this.#watch.closed();
  }

  #collectedPool(): void {
    // Its clients are gone with it: nothing is held any more. The holds end as if the pool had
    // closed, so their spans end too.
    const now = performance.now();
    for (const entry of [...this.#held]) this.#endHold(entry, now, 'closed');
    this.close();
  }

  #stopTick(): void {
    if (this.#tick === undefined) return;
    clearInterval(this.#tick);
    this.#tick = undefined;
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}
