/**
 * What every adapter of a library's pool that hands out connections by checkout (knex's tarn pool,
 * mysql2's own pool) does the same way: a watch record per connection, the set of connections
 * held now, one leak-check timer per pool, opening and closing in `openPools`, and letting go on
 * disable. A subclass says how a checkout and its end are seen, reads the library's counts
 * (`stats()`), and names the pool.
 *
 *     startCheckout() ─► checkedOut(connection) ─► … ─► checkedIn(connection, outcome)
 *       (acquireStart)     (acquireEnd)                    (holdEnd)
 *            │ error: checkoutFailed()
 *
 * Checkouts are kept here, never on the library's objects: `#entries` maps each connection to its
 * record (a WeakMap over long-lived connections), `#held` lists the records held now for the
 * watcher's tick. A connection checked out before the patch is unknown here: its return is
 * ignored. Knows nothing of OpenTelemetry.
 */
import type { HoldMessage, HoldOutcome, PoolRef } from '../events';
import type { ResolvedHealth } from '../options';
import type { PoolStats, ServerInfo } from '../types';
import { Hold } from '../watch/hold';
import type { LeakReport } from '../watch/report';
import type { CapturedStack } from '../watch/stack';
import { LeaseWatcher, newHoldId, newResourceId, uniquePoolName } from '../watch/watcher';

/** Reports an internal failure (to `diag`): telemetry never throws into the application. */
export type ErrorReporter = (what: string, error: unknown) => void;

/** The validated options of one library's pools (`knex`, `mysql2Pool`). */
export interface ResolvedCheckoutOptions<Info> {
  /** 0: off. */
  readonly leakDetectionThresholdMillis: number;
  /** 0: never; 1: always; N: one in N; -1: auto. */
  readonly stackEvery: number;
  readonly health: ResolvedHealth | undefined;
  readonly poolName: ((pool: Info) => string | undefined) | undefined;
}

/** The watch record of one connection, for as long as the connection lives. */
export class ConnectionHold extends Hold {
  constructor() {
    super(newResourceId());
  }
}

/** One checkout in progress: from `startCheckout()` to `checkedOut()` or `checkoutFailed()`. */
export interface Checkout {
  readonly startTime: number;
  readonly message: HoldMessage | undefined;
  readonly captured: CapturedStack | undefined;
}

export abstract class WatchedCheckouts<P extends object = object> implements PoolRef {
  readonly name: string;
  readonly server: ServerInfo;
  protected readonly report: ErrorReporter;
  /** Leak findings, stacks, health and events for this pool. */
  protected readonly watch: LeaseWatcher<ConnectionHold>;
  readonly #entries = new WeakMap<object, ConnectionHold>();
  readonly #held = new Set<ConnectionHold>();
  readonly #onClose: (watched: WatchedCheckouts) => void;
  /** The library's pool, held weakly: one dropped without being closed must not be kept alive. */
  readonly #pool: WeakRef<P>;
  #tick: NodeJS.Timeout | undefined;
  /** Out of `openPools`; open holds are still followed to their return. */
  #closed = false;
  /** The instrumentation let go of the pool (disable): nothing is published any more. */
  #detached = false;

  constructor(
    pool: P,
    baseName: string,
    server: ServerInfo,
    options: ResolvedCheckoutOptions<never>,
    noStackHint: string,
    report: ErrorReporter,
    /** Called once, when the pool closes. */
    onClose: (watched: WatchedCheckouts) => void,
  ) {
    this.server = server;
    this.name = uniquePoolName(baseName);
    this.report = report;
    this.#onClose = onClose;
    this.#pool = new WeakRef(pool);
    const threshold = options.leakDetectionThresholdMillis;
    this.watch = new LeaseWatcher<ConnectionHold>(this, {
      holds: () => this.#held,
      leakDetectionThresholdMillis: threshold,
      stackEvery: threshold === 0 ? 0 : options.stackEvery,
      noStackHint,
      health: options.health,
    });
    const health = options.health?.intervalMillis ?? Infinity;
    const leaks = threshold > 0 ? Math.min(1000, Math.max(10, threshold / 4)) : Infinity;
    const every = Math.min(leaks, health);
    if (every !== Infinity) {
      this.#tick = setInterval(() => this.#housekeep(), every);
      this.#tick.unref();
    }
    this.watch.opened();
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The library's counts, with the watcher's. */
  abstract stats(): PoolStats;

  /** The library's pool, or `undefined` once it was collected without being closed. */
  protected get pool(): P | undefined {
    return this.#pool.deref();
  }

  // ---------------------------------------------------------------------------------------------
  // Checkouts

  /**
   * A checkout starts: published in the caller's async context. `captured` is a stack taken
   * earlier for it (at the call that led here); otherwise the stack policy may take one now,
   * hiding `above`.
   */
  startCheckout(
    above: (...args: never[]) => unknown,
    captured: CapturedStack | null | undefined,
  ): Checkout {
    const startTime = performance.now();
    const message = this.#detached ? undefined : this.watch.startAcquire(startTime);
    if (captured === undefined) captured = this.watch.capture(startTime, above);
    return { startTime, message, captured: captured ?? undefined };
  }

  /** Whether the stack policy takes a stack now (for a checkout that will follow). */
  captureFor(above: (...args: never[]) => unknown): CapturedStack | undefined {
    return this.watch.capture(performance.now(), above);
  }

  /** The checkout got `connection`. Never throws. */
  checkedOut(checkout: Checkout, connection: object): void {
    try {
      if (this.#detached) return;
      const now = performance.now();
      let entry = this.#entries.get(connection);
      if (entry === undefined) {
        entry = new ConnectionHold();
        this.#entries.set(connection, entry);
      } else if (entry.held) {
        // Its last return went unseen: end that hold now.
        this.#endHold(entry, now, 'released');
      }
      this.#held.add(entry);
      this.watch.begin(
        entry,
        newHoldId(),
        now,
        checkout.captured,
        checkout.message,
        checkout.startTime,
        undefined,
      );
    } catch (failure) {
      this.report('failed to follow a checkout', failure);
    }
  }

  /** The checkout failed (`timedOut`: the library's acquire timeout). Never throws. */
  checkoutFailed(checkout: Checkout, error: Error, timedOut: boolean): void {
    try {
      if (this.#detached) return;
      const now = performance.now();
      if (timedOut) this.watch.timedOut(now - checkout.startTime, error);
      this.watch.failed(checkout.message, error, checkout.startTime, now);
    } catch (failure) {
      this.report('failed to follow a failed checkout', failure);
    }
  }

  /** `connection` came back (or was destroyed while held). Never throws. */
  checkedIn(connection: object, outcome: HoldOutcome): void {
    try {
      const entry = this.#entries.get(connection);
      if (entry === undefined || !entry.held) return;
      this.#endHold(entry, performance.now(), outcome);
    } catch (failure) {
      this.report('failed to follow a return', failure);
    }
  }

  /** The watch record of `connection` while it is held. */
  holdOf(connection: object): ConnectionHold | undefined {
    const entry = this.#entries.get(connection);
    return entry?.held ? entry : undefined;
  }

  /** Connections held now. */
  get heldCount(): number {
    return this.#held.size;
  }

  #endHold(entry: ConnectionHold, now: number, outcome: HoldOutcome): void {
    this.#held.delete(entry);
    this.watch.end(entry, now, outcome);
    if (this.#closed && this.#held.size === 0) this.#stopTick();
  }

  // ---------------------------------------------------------------------------------------------
  // Leaks and reports

  #housekeep(): void {
    try {
      if (this.pool === undefined) {
        // Its connections are gone with it: nothing is held any more. The holds end as if the
        // pool had closed, so their spans end too.
        this.close(true);
        return;
      }
      const now = performance.now();
      this.watch.tick(now, false);
      this.watch.healthTick(now);
    } catch (error) {
      this.report('the leak check failed', error);
    }
  }

  /** Every checkout open now, oldest first, with ages and stacks. */
  leakReport(): LeakReport {
    return { pool: this.name, stats: this.stats(), held: this.watch.holders() };
  }

  /** The watcher's counts, for `stats()`. */
  protected leakCounts(): Pick<
    PoolStats,
    'suspectedLeaks' | 'collectedLeaks' | 'reclaimedLeaks' | 'timeouts' | 'closed'
  > {
    return {
      suspectedLeaks: this.watch.suspectedLeaks,
      collectedLeaks: 0,
      reclaimedLeaks: 0,
      timeouts: this.watch.timeouts,
      closed: this.#closed,
    };
  }

  // ---------------------------------------------------------------------------------------------
  // Lifecycle

  /**
   * The pool closed: it leaves `openPools`. With `endHolds`, holds still open end now as
   * `closed` (the library will never report their return); otherwise they are still followed.
   */
  close(endHolds = false): void {
    if (this.#closed) return;
    this.#closed = true;
    this.watch.closed();
    if (endHolds) {
      const now = performance.now();
      for (const entry of [...this.#held]) this.#endHold(entry, now, 'closed');
    }
    if (this.#held.size === 0) this.#stopTick();
    this.#onClose(this);
  }

  /** The instrumentation was disabled: stop everything; open holds get no end. */
  detach(): void {
    if (this.#detached) return;
    this.#detached = true;
    this.#closed = true;
    this.watch.mute();
    this.#stopTick();
    this.watch.closed();
    this.#held.clear();
  }

  #stopTick(): void {
    if (this.#tick === undefined) return;
    clearInterval(this.#tick);
    this.#tick = undefined;
  }
}

/** Builds the pool's name: the `poolName` hook's answer, or `fallback`. */
export function nameFromHook<Info>(
  hook: ((pool: Info) => string | undefined) | undefined,
  info: Info,
  fallback: string,
  report: ErrorReporter,
  option: string,
): string {
  if (hook !== undefined) {
    try {
      const name = hook(info);
      if (typeof name === 'string' && name !== '') return name;
    } catch (error) {
      report(`the ${option}.poolName option threw`, error);
    }
  }
  return fallback;
}

export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

export function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}
