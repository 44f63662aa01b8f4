import { inspect } from 'node:util';
import {
  AcquireAbortedError,
  AcquireTimeoutError,
  CreateFailedError,
  InvalidOptionError,
  LeaseError,
  PoolClosedError,
  SelfDeadlockError,
} from './errors';
import type { Alert, DestroyReason, HoldMessage, HoldOutcome, PoolRef } from './events';
import {
  checkAcquireOptions,
  describeValue as describeOption,
  resolveOptions,
  type ResolvedOptions,
} from './options';
import type { AcquireOptions, LeaseInfo, PoolOptions, PoolStats, ServerInfo } from './types';
import {
  Deadlines,
  WaiterQueue,
  type AbortGroup as AbortGroupOf,
  type Waiter as WaiterOf,
} from './waiters';
import { heldBySource, runHolding } from './watch/context';
import { Hold } from './watch/hold';
import { describeHolders, indentStack, selfWaitHint, type LeakReport } from './watch/report';
import { formatStack, type CapturedStack } from './watch/stack';
import { LeaseWatcher, newHoldId, newResourceId } from './watch/watcher';

export { formatLeakReport, type LeakReport } from './watch/report';

/** Entry states. A resource is in exactly one; the counters below follow the transitions. */
const enum State {
  /** In `idle`, ready to hand out. */
  Idle,
  /** Handed out under a lease. */
  Used,
  /** Taken from `idle` for a waiter, being validated. */
  Validating,
  /** Released, being reset before it becomes idle. */
  Resetting,
  /** Gone (or going) through `factory.destroy`. */
  Destroyed,
}

let nextPoolNumber = 1;

/**
 * The pool's record of one resource. It is never handed to the user (the user gets a `Lease`).
 * Its hold fields (who holds it, since when, from where) are the lease-watching core's (`Hold`);
 * the core keeps the current lease reachable only until the next housekeeping tick, or a dropped
 * lease could never be collected and detected.
 */
class Entry<T> extends Hold {
  state = State.Idle;
  /** When it became idle (performance.now()). */
  idleSince: number;
  /** Retirement time; a held entry past it is destroyed on release. */
  readonly expiresAt: number;
  broken = false;
  /** Why it broke, for the destroy event. */
  brokenError: Error | undefined = undefined;
  brokenReason: 'broken' | 'idle' | 'lifetime' = 'broken';
  /** When it entered Validating or Resetting (performance.now()), for the timeout message. */
  busySince = 0;

  constructor(
    readonly resource: T,
    now: number,
    maxLifetimeMillis: number,
  ) {
    super(newResourceId());
    this.idleSince = now;
    // Up to 2.5% jitter, so resources created together do not all retire together.
    this.expiresAt =
      maxLifetimeMillis > 0 ? now + maxLifetimeMillis * (1 - Math.random() * 0.025) : Infinity;
  }
}

/** A caller waiting in `acquire()`, and the abort listener shared by waiters of one signal. */
type Waiter<T> = WaiterOf<Lease<T>>;
type AbortGroup<T> = AbortGroupOf<Lease<T>>;

// The pool's access to a lease's private fields (set in Lease's static block).
let leasePool: <T>(lease: Lease<T>) => Pool<T>;
let leaseEntry: <T>(lease: Lease<T>) => Entry<T>;
let leaseHoldId: <T>(lease: Lease<T>) => number;

/**
 * A lease on one pooled resource: what `acquire()` hands out. Release it exactly once, with
 * `release()` (back to the pool) or `destroy()` (the resource is broken). It also works with
 * `await using`. The pool keeps its bookkeeping in its own entry; this handle is only referenced
 * by the caller, so dropping it without release is noticed after garbage collection.
 */
export class Lease<T> {
  // Private: util.inspect (even with showHidden) and enumeration never reach the pool's entry,
  // and through it the driver's client and its password.
  readonly #pool: Pool<T>;
  readonly #entry: Entry<T>;
  readonly #holdId: number;

  /** @internal */
  constructor(pool: Pool<T>, entry: Entry<T>, holdId: number) {
    this.#pool = pool;
    this.#entry = entry;
    this.#holdId = holdId;
  }

  static {
    leasePool = <U>(lease: Lease<U>) => lease.#pool;
    leaseEntry = <U>(lease: Lease<U>) => lease.#entry;
    leaseHoldId = <U>(lease: Lease<U>) => lease.#holdId;
  }

  /** The pooled resource. Throws once the lease has ended. */
  get resource(): T {
    if (this.#entry.holdId !== this.#holdId) throw this.#pool._staleLeaseError(this, 'use');
    return this.#entry.resource;
  }

  /** True until the lease is released, destroyed or taken back. */
  get active(): boolean {
    return this.#entry.holdId === this.#holdId;
  }

  /** Identity, age and acquisition stack of this lease. */
  get info(): LeaseInfo {
    return this.#pool._leaseInfo(this.#entry, this.#holdId);
  }

  /** Returns the resource to the pool. */
  release(): void {
    this.#pool._release(this);
  }

  /** Ends the lease and destroys the resource (use it when the connection is broken). */
  destroy(error?: Error): void {
    this.#pool.destroy(this, error);
  }

  [Symbol.dispose](): void {
    if (this.active) this.release();
  }

  [Symbol.asyncDispose](): Promise<void> {
    if (this.active) this.release();
    return Promise.resolve();
  }

  /** What `console.log(lease)` shows: identity and state, never the resource. */
  [inspect.custom](): string {
    return `Lease { id: ${this.#holdId}, pool: ${JSON.stringify(this.#pool.name)}, active: ${this.active} }`;
  }
}

/** What `close()` reports. */
export interface CloseReport {
  /** Leases still out when the close timeout ran out; their resources were destroyed. */
  readonly forced: LeaseInfo[];
}

/**
 * A pool of resources with leak detection.
 *
 * State lives in a few named places, and every change goes through `#dispense()`, which matches
 * waiters with idle resources and starts creates for the rest:
 *
 *     acquire() ──► idle (LIFO) ──► Used ──release()──► reset? ──► waiter (FIFO) or idle
 *                    ▲   │                                 │
 *          create ───┘   └─ validate (if idle a while) ────┘── fail ──► destroyed
 *
 * Hazards: a used entry is only referenced from `#entries`; forgetting to release its lease keeps
 * it used until the leak detectors (threshold, garbage collection, reclaim) notice. The hot path
 * (an idle resource, no waiters) arms no timer: waiter deadlines share one timer, and eviction,
 * leak checks and health run on one unref'd housekeeping tick. A lease still held at a tick is
 * registered for garbage-collection detection then, so the common short hold never pays for it.
 */
export class Pool<T> implements PoolRef, AsyncDisposable {
  readonly name: string;
  readonly server: ServerInfo | undefined;
  readonly #o: ResolvedOptions<T>;

  /** Every resource that exists, in any state but Destroyed. */
  readonly #entries = new Set<Entry<T>>();
  /** Idle resources; the last pushed is the warmest and goes out first. */
  readonly #idle: Entry<T>[] = [];
  /** Waiters in line (not settled, not taken for a validation), FIFO. */
  readonly #waiters = new WaiterQueue<Lease<T>>();
  /** Every unsettled waiter with a finite deadline, queued or binding. */
  readonly #deadlines = new Deadlines<Lease<T>>();
  /** One abort listener per signal that waiters of this pool share. */
  readonly #abortGroups = new Map<AbortSignal, AbortGroup<T>>();
  #used = 0;
  /** Waiters taken out of the queue while a resource is validated for them. */
  readonly #binding = new Set<Waiter<T>>();
  /** Creates in flight, by their start time (performance.now()). */
  readonly #creates = new Set<{ readonly started: number }>();
  /** Entries being validated for a waiter. */
  #validating = 0;
  /** Released resources being reset; each becomes available (or is destroyed) soon. */
  #resetting = 0;
  readonly #inFlight = new Set<Promise<unknown>>();

  #closed = false;
  #closing: Promise<CloseReport> | undefined;
  #drained: (() => void) | undefined;

  // Counters for stats() (leak and timeout counts are the watcher's).
  #created = 0;
  #destroyed = 0;

  #lastCreateError: unknown;
  #createBackoffMillis = 0;
  #refillTimer: NodeJS.Timeout | undefined;

  /** One timer for every waiter's deadline, armed at the earliest. */
  #waitTimer: NodeJS.Timeout | undefined;
  #waitTimerAt = Infinity;
  readonly #tick: NodeJS.Timeout;

  /** Leak findings, stacks, health, reports and events: the lease-watching core. */
  readonly #watch: LeaseWatcher<Entry<T>>;
  /** When the last lease was handed out (see `#housekeep()`: a starved pool hands out none). */
  #lastHandOutAt = 0;
  /** The clock as last read by an acquire or the housekeeping tick (see release()). */
  #recentNow = performance.now();

  constructor(options: PoolOptions<T>) {
    this.#o = resolveOptions(options);
    const o = this.#o;
    this.server = o.factory.server;
    this.name = o.name ?? defaultName(o.factory.server);
    this.#watch = new LeaseWatcher<Entry<T>>(this, {
      holds: () => this.#held(),
      leakDetectionThresholdMillis: o.leakDetectionThresholdMillis,
      stackEvery: o.stackEvery,
      noStackHint: "no stack captured: captureStacks: 'always' records every acquire",
      health: o.health,
      onAlert: o.onAlert,
      onCollected: o.detectCollectedLeaks ? (entry) => this.#collected(entry) : undefined,
      collectWhenStarvedMillis: o.collectWhenStarvedMillis,
    });
    this.#tick = setInterval(() => this.#housekeep(), o.housekeepingIntervalMillis);
    this.#tick.unref();
    this.#watch.opened();
    this.#refill();
  }

  /** The entries held now. */
  *#held(): Generator<Entry<T>> {
    for (const entry of this.#entries) if (entry.state === State.Used) yield entry;
  }

  // ---------------------------------------------------------------------------------------------
  // Acquire

  /**
   * Leases a resource. Waits (FIFO) when none is idle, at most `timeoutMillis` (default: the
   * pool's `acquireTimeoutMillis`), and gives up when `signal` aborts.
   */
  acquire(options?: AcquireOptions): Promise<Lease<T>> {
    const startTime = performance.now();
    this.#recentNow = startTime;
    const watch = this.#watch;
    const message = watch.startAcquire(startTime);
    if (this.#closed) {
      return this.#fail(
        message,
        new PoolClosedError(this.name, 'acquire() was called after close()'),
      );
    }
    // Checked on every path, idle resource or not, and reported as a rejection, never a throw.
    if (options !== undefined) {
      const invalid = checkAcquireOptions(options);
      if (invalid !== undefined) return this.#fail(message, invalid);
      const signal = options.signal;
      if (signal?.aborted) {
        return this.#fail(message, new AcquireAbortedError(this.name, signal.reason));
      }
    }
    const captured = watch.capture(startTime, this.acquire);

    // Fast path: an idle resource that needs no validation, and nobody ahead in the queue.
    if (this.#waiters.length === 0) {
      const entry = this.#takeIdle(startTime, false);
      if (entry !== undefined) {
        return Promise.resolve(this.#handOut(entry, startTime, captured, message, startTime));
      }
    }
    return this.#wait(options, startTime, captured, message);
  }

  /**
   * Runs `fn` with a leased resource: releases it when `fn` resolves, destroys it when `fn`
   * throws (the resource may be in an unknown state). With `detectSelfDeadlock`, an acquire
   * from this pool made inside `fn` while the pool is exhausted fails at once.
   */
  async use<R>(
    fn: (resource: T, lease: Lease<T>) => R | PromiseLike<R>,
    options?: AcquireOptions,
  ): Promise<Awaited<R>> {
    // Checked before acquiring: a call that cannot run must not cost a healthy connection.
    if (typeof fn !== 'function') {
      throw new InvalidOptionError(
        `pool.use(fn) needs a function (resource, lease) => result, got ${describeOption(fn)}. ` +
          'To run a query: pool.use((client) => client.query(sql)).',
      );
    }
    const lease = await this.acquire(options);
    // A subscriber (telemetry) may run `fn` in a context of its own: see `HoldMessage.runner`.
    const runner = leaseEntry(lease).message?.runner;
    let result: Awaited<R>;
    try {
      if (this.#o.detectSelfDeadlock) {
        result = await (runner === undefined
          ? runHolding(this, leaseEntry(lease), fn, lease.resource, lease)
          : runner.run(runHolding, this, leaseEntry(lease), fn, lease.resource, lease));
      } else {
        result = await (runner === undefined
          ? fn(lease.resource, lease)
          : runner.run(fn, lease.resource, lease));
      }
    } catch (error) {
      if (lease.active) lease.destroy(error instanceof Error ? error : undefined);
      throw error;
    }
    if (lease.active) lease.release();
    return result;
  }

  #wait(
    options: AcquireOptions | undefined,
    startTime: number,
    captured: CapturedStack | undefined,
    message: HoldMessage | undefined,
  ): Promise<Lease<T>> {
    const signal = options?.signal;
    const timeoutMillis = options?.timeoutMillis ?? this.#o.acquireTimeoutMillis;
    // Only when every resource is leased can waiting depend on a lease this caller holds.
    if (this.#o.detectSelfDeadlock && this.#used >= this.#o.max) {
      const held = heldBySource(this);
      if (held !== undefined) return this.#fail(message, this.#selfDeadlockError(held));
    }
    let resolve!: (lease: Lease<T>) => void;
    let reject!: (error: Error) => void;
    const promise = new Promise<Lease<T>>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const waiter: Waiter<T> = {
      resolve,
      reject,
      startTime,
      deadline: startTime + timeoutMillis,
      timeoutMillis,
      state: 'queued',
      captured,
      message,
      abortGroup: undefined,
      prev: undefined,
      next: undefined,
      heapIndex: -1,
      dprev: undefined,
      dnext: undefined,
    };
    if (signal !== undefined) this.#listen(waiter, signal);
    this.#waiters.push(waiter);
    if (waiter.deadline !== Infinity) {
      this.#deadlines.push(waiter);
      if (this.#deadlines.peek() === waiter) this.#armWaitTimer(waiter.deadline);
    }
    this.#dispense();
    return promise;
  }

  /** Ends a waiter with an error, wherever it is. */
  #settleWaiter(waiter: Waiter<T>, error: Error): void {
    if (waiter.state === 'settled') return;
    this.#leave(waiter);
    if (error instanceof AcquireTimeoutError) {
      const now = performance.now();
      this.#watch.timedOut(now - waiter.startTime, error);
      if (this.#starved(now, waiter.timeoutMillis)) this.#watch.starved(now);
    }
    this.#finishFailed(waiter.message, error, waiter.startTime);
    waiter.reject(error);
  }

  /** Takes a waiter out of every structure that holds it: queue or binding set, heap, signal. */
  #leave(waiter: Waiter<T>): void {
    if (waiter.state === 'queued') this.#waiters.remove(waiter);
    else if (waiter.state === 'binding') this.#binding.delete(waiter);
    waiter.state = 'settled';
    this.#deadlines.remove(waiter);
    this.#unlisten(waiter);
  }

  /** Joins the waiter to the one abort listener this pool keeps for `signal`. */
  #listen(waiter: Waiter<T>, signal: AbortSignal): void {
    let group = this.#abortGroups.get(signal);
    if (group === undefined) {
      const waiters = new Set<Waiter<T>>();
      const created: AbortGroup<T> = {
        signal,
        waiters,
        firing: false,
        listener: () => {
          created.firing = true;
          this.#abortGroups.delete(signal);
          for (const w of waiters) {
            w.abortGroup = undefined;
            this.#settleWaiter(w, new AcquireAbortedError(this.name, signal.reason));
          }
          waiters.clear();
        },
      };
      group = created;
      this.#abortGroups.set(signal, group);
      signal.addEventListener('abort', group.listener, { once: true });
    }
    group.waiters.add(waiter);
    waiter.abortGroup = group;
  }

  #unlisten(waiter: Waiter<T>): void {
    const group = waiter.abortGroup;
    if (group === undefined) return;
    waiter.abortGroup = undefined;
    if (group.firing) return;
    group.waiters.delete(waiter);
    if (group.waiters.size === 0) {
      group.signal.removeEventListener('abort', group.listener);
      this.#abortGroups.delete(group.signal);
    }
  }

  #fail(message: HoldMessage | undefined, error: Error): Promise<never> {
    this.#finishFailed(message, error, message?.startTime ?? 0);
    return Promise.reject(error);
  }

  #finishFailed(message: HoldMessage | undefined, error: Error, startTime: number): void {
    if (message !== undefined) this.#watch.failed(message, error, startTime, performance.now());
  }

  #selfDeadlockError(held: Hold): SelfDeadlockError {
    const stack = formatStack(held.captured);
    return new SelfDeadlockError(
      `Pool "${this.name}" is exhausted (${this.#used}/${this.#o.max} in use) and this async context ` +
        `already holds lease #${held.holdId} from it` +
        (stack ? `, acquired at:${indentStack(stack)}\n` : '. ') +
        'Waiting for a second resource while holding one can deadlock the pool. Pass the resource ' +
        'you hold down to the code that needs it (e.g. run the query on the same transaction), ' +
        'release it first, or raise max. Set detectSelfDeadlock: false to wait instead.',
      this.name,
    );
  }

  // ---------------------------------------------------------------------------------------------
  // Matching waiters with resources

  /** Pops an idle entry that can go out now; destroys expired ones on the way. */
  #takeIdle(now: number, allowValidation: boolean): Entry<T> | undefined {
    for (;;) {
      const entry = this.#idle.pop();
      if (entry === undefined) return undefined;
      if (now >= entry.expiresAt) {
        this.#destroy(entry, 'lifetime');
        continue;
      }
      if (!allowValidation && this.#needsValidation(entry, now)) {
        this.#idle.push(entry);
        return undefined;
      }
      return entry;
    }
  }

  #needsValidation(entry: Entry<T>, now: number): boolean {
    return (
      this.#o.factory.validate !== undefined &&
      now - entry.idleSince >= this.#o.validateAfterIdleMillis
    );
  }

  /** Serves queued waiters from idle resources and starts the creates the rest need. */
  #dispense(): void {
    if (this.#closed) return;
    let waiter: Waiter<T> | undefined;
    // Check for an idle resource before reading the clock: a caller that must wait pays nothing.
    while (this.#idle.length > 0 && (waiter = this.#waiters.peek()) !== undefined) {
      const now = performance.now();
      const entry = this.#takeIdle(now, true);
      if (entry === undefined) break;
      if (this.#needsValidation(entry, now)) this.#validateFor(entry, waiter, now);
      else this.#serve(entry, waiter, now);
    }
    // Creates in flight will serve waiters soon: only the rest need a create. A resource being
    // reset is supply only when no slot is free (the loop's bound): with a free slot, a waiter
    // gets a new resource rather than wait for a reset of unknown length.
    let wanted = this.#waiters.length - this.#creates.size;
    while (wanted-- > 0 && this.#entries.size + this.#creates.size < this.#o.max)
      this.#create(true);
  }

  #serve(entry: Entry<T>, waiter: Waiter<T>, now: number): void {
    this.#leave(waiter);
    waiter.resolve(this.#handOut(entry, now, waiter.captured, waiter.message, waiter.startTime));
  }

  #validateFor(entry: Entry<T>, waiter: Waiter<T>, now: number): void {
    entry.state = State.Validating;
    entry.busySince = now;
    this.#validating++;
    this.#waiters.remove(waiter);
    waiter.state = 'binding';
    this.#binding.add(waiter);
    const factory = this.#o.factory;
    const timeoutMillis = this.#o.validateTimeoutMillis;
    this.#track(
      bounded(
        Promise.resolve()
          .then(() => factory.validate!(entry.resource))
          .then(
            (ok) => ok === true && !entry.broken,
            () => false,
          ),
        timeoutMillis,
      ).then((ok) => {
        this.#validating--;
        if (entry.state !== State.Validating) return; // destroyed by close() meanwhile
        if (waiter.state === 'binding') {
          if (ok === true && !this.#closed) return this.#serve(entry, waiter, performance.now());
          // Not served: it keeps its place at the head of the queue.
          this.#binding.delete(waiter);
          waiter.state = 'queued';
          this.#waiters.unshift(waiter);
        }
        if (ok === true) this.#makeAvailable(entry, performance.now());
        else {
          // A validation that did not settle in time may never settle: the resource is
          // destroyed (which usually ends the hung call), and its slot is free again.
          const error =
            ok === TIMED_OUT
              ? new Error(
                  `validate() did not settle within validateTimeoutMillis (${timeoutMillis} ms)`,
                )
              : undefined;
          this.#destroy(entry, 'validation', error);
          this.#dispense();
        }
      }),
    );
  }

  #handOut(
    entry: Entry<T>,
    now: number,
    captured: CapturedStack | undefined,
    message: HoldMessage | undefined,
    startTime: number,
  ): Lease<T> {
    this.#lastHandOutAt = now;
    entry.state = State.Used;
    this.#used++;
    const holdId = newHoldId();
    const lease = new Lease(this, entry, holdId);
    this.#watch.begin(entry, holdId, now, captured, message, startTime, lease);
    return lease;
  }

  /** Gives a free entry to the next waiter, or makes it idle. */
  #makeAvailable(entry: Entry<T>, now: number): void {
    if (this.#closed) return this.#destroy(entry, 'closed');
    const waiter = this.#waiters.peek();
    if (waiter !== undefined) {
      this.#serve(entry, waiter, now);
      return;
    }
    entry.state = State.Idle;
    entry.idleSince = now;
    this.#idle.push(entry);
  }

  // ---------------------------------------------------------------------------------------------
  // Release

  /** Returns a lease's resource to the pool. */
  release(lease: Lease<T>): void {
    this.#check(lease, 'release');
    this._release(lease);
  }

  /**
   * @internal `Lease#release()`: the lease is known to be a Lease of this pool, so only the
   * stale check remains on the hot path.
   */
  _release(lease: Lease<T>): void {
    const entry = leaseEntry(lease);
    if (entry.holdId !== leaseHoldId(lease)) throw this._staleLeaseError(lease, 'release');
    // Reading the clock is a fifth of a bare cycle. Without validation, an observer or a
    // suspected leak to report, the time of the last acquire or tick is precise enough: it
    // only stamps idleSince (for idle eviction) and checks the lifetime.
    const now =
      entry.message !== undefined || entry.suspected || this.#o.factory.validate !== undefined
        ? performance.now()
        : this.#recentNow;
    this.#endHold(entry, now, 'released');
    const factory = this.#o.factory;
    if (!entry.broken && factory.isReusable !== undefined && !isReusable(factory, entry.resource)) {
      entry.broken = true;
    }
    // Released while still working (a query the holder gave up on, e.g. after a client-side
    // query timeout): its answer, or its hang, would reach the next holder.
    if (
      !entry.broken &&
      factory.isBusy !== undefined &&
      isBusy(factory, entry.resource) !== false
    ) {
      entry.broken = true;
    }
    if (entry.broken || now >= entry.expiresAt) {
      this.#destroy(entry, entry.broken ? entry.brokenReason : 'lifetime');
      this.#dispense();
    } else if (factory.reset !== undefined) {
      this.#reset(entry);
    } else {
      this.#makeAvailable(entry, now);
    }
  }

  /** Ends a lease and destroys its resource. */
  destroy(lease: Lease<T>, error?: Error): void {
    const entry = this.#check(lease, 'destroy');
    this.#endHold(entry, performance.now(), 'destroyed');
    this.#destroy(entry, 'released-destroy', error);
    this.#dispense();
  }

  #check(lease: Lease<T>, action: 'release' | 'destroy'): Entry<T> {
    if (!(lease instanceof Lease)) {
      throw new LeaseError(
        'POOL_LEASE_INVALID',
        `Pool "${this.name}": ${action}() needs the lease returned by acquire(), got ${describeValue(lease)}. ` +
          'Keep the lease and call lease.release(), not the resource.',
        this.name,
      );
    }
    if (leasePool(lease) !== this) {
      throw new LeaseError(
        'POOL_LEASE_FOREIGN',
        `Pool "${this.name}": this lease belongs to pool "${leasePool(lease).name}". ` +
          `Call ${action}() on the pool that issued it, or simply lease.${action}().`,
        this.name,
      );
    }
    const entry = leaseEntry(lease);
    if (entry.holdId !== leaseHoldId(lease)) throw this._staleLeaseError(lease, action);
    return entry;
  }

  /** @internal The error for a lease that has ended (released twice, used after release...). */
  _staleLeaseError(lease: Lease<T>, action: string): LeaseError {
    const entry = leaseEntry(lease);
    const holdId = leaseHoldId(lease);
    const outcome = entry.lastHoldId === holdId ? entry.lastOutcome : 'released';
    if (outcome === 'reclaimed' || outcome === 'closed') {
      return new LeaseError(
        'POOL_LEASE_RECLAIMED',
        `Pool "${this.name}": lease #${holdId} was taken back by the pool ` +
          (outcome === 'closed'
            ? 'when the pool closed'
            : `after being held longer than reclaimAfterMillis (${this.#o.reclaimAfterMillis} ms)`) +
          `, and its resource destroyed; ${action}() is no longer possible. Release leases sooner` +
          (outcome === 'closed' ? ' than the close timeout.' : ', or raise reclaimAfterMillis.'),
        this.name,
      );
    }
    return new LeaseError(
      'POOL_LEASE_RELEASED',
      `Pool "${this.name}": lease #${holdId} was already ${outcome === 'destroyed' ? 'destroyed' : 'released'}; ` +
        `${action}() needs a live lease. Release each lease exactly once (pool.use() does it for you).`,
      this.name,
    );
  }

  /** Ends the current hold of `entry` (the watcher reports a late return). */
  #endHold(entry: Entry<T>, now: number, outcome: HoldOutcome): void {
    this.#watch.end(entry, now, outcome);
    this.#used--;
    if (this.#used === 0) this.#drained?.();
  }

  #reset(entry: Entry<T>): void {
    entry.state = State.Resetting;
    entry.busySince = performance.now();
    this.#resetting++;
    const factory = this.#o.factory;
    const timeoutMillis = this.#o.resetTimeoutMillis;
    this.#track(
      bounded(
        Promise.resolve().then(() => factory.reset!(entry.resource)),
        timeoutMillis,
      ).then(
        (outcome) => {
          this.#resetting--;
          if (entry.state !== State.Resetting) return;
          if (outcome === TIMED_OUT) {
            // A reset that did not settle in time may never settle: destroy the resource (which
            // usually ends the hung call) so its slot is free again.
            this.#destroy(
              entry,
              'reset',
              new Error(`reset() did not settle within resetTimeoutMillis (${timeoutMillis} ms)`),
            );
          } else if (entry.broken) this.#destroy(entry, entry.brokenReason);
          else this.#makeAvailable(entry, performance.now());
          this.#dispense();
        },
        (error: unknown) => {
          this.#resetting--;
          if (entry.state !== State.Resetting) return;
          this.#destroy(entry, 'reset', asError(error));
          this.#dispense();
        },
      ),
    );
  }

  // ---------------------------------------------------------------------------------------------
  // Create and destroy

  /** Starts one create. `forWaiter`: a failure is handed to the first waiter. */
  #create(forWaiter: boolean): void {
    const started = performance.now();
    const token = { started };
    this.#creates.add(token);
    let entry: Entry<T> | undefined;
    let brokenEarly = false;
    const context = {
      markBroken: (error?: Error, reason?: 'broken' | 'idle' | 'lifetime') => {
        if (entry !== undefined) this.#markBroken(entry, error, reason);
        else brokenEarly = true;
      },
    };
    const factory = this.#o.factory;
    this.#track(
      Promise.resolve()
        .then(() => factory.create(context))
        .then((resource) => {
          // A create that resolves nothing has failed: an undefined resource handed out would
          // fail far from its cause.
          if (resource === undefined || resource === null) {
            throw new TypeError(
              `factory.create() resolved ${String(resource)}: it must resolve the new resource (or reject).`,
            );
          }
          return resource;
        })
        .then(
          (resource) => {
            this.#creates.delete(token);
            this.#created++;
            this.#createBackoffMillis = 0;
            this.#lastCreateError = undefined;
            const now = performance.now();
            this.#watch.resourceEvent('create', now - started, undefined, undefined);
            entry = new Entry(resource, now, this.#o.maxLifetimeMillis);
            this.#entries.add(entry);
            if (brokenEarly) this.#destroy(entry, 'broken');
            else this.#makeAvailable(entry, now);
            this.#dispense();
          },
          (error: unknown) => {
            this.#creates.delete(token);
            this.#lastCreateError = error;
            this.#watch.resourceEvent(
              'create',
              performance.now() - started,
              asError(error),
              undefined,
            );
            if (this.#closed) return;
            // One failed attempt fails one caller: no retry loop, and the caller learns why at once.
            const waiter =
              forWaiter && this.#waiters.length > this.#creates.size
                ? this.#waiters.peek()
                : undefined;
            if (waiter !== undefined)
              this.#settleWaiter(waiter, new CreateFailedError(this.name, error));
            else this.#scheduleRefill();
          },
        ),
    );
  }

  #markBroken(
    entry: Entry<T>,
    error: Error | undefined,
    reason: 'broken' | 'idle' | 'lifetime' = 'broken',
  ): void {
    if (entry.broken) return;
    entry.broken = true;
    entry.brokenError = error;
    entry.brokenReason = reason;
    if (entry.state === State.Idle) {
      this.#idle.splice(this.#idle.indexOf(entry), 1);
      this.#destroy(entry, reason);
      this.#refill();
    }
    // Used: destroyed on release. Validating or resetting: checked when that finishes.
  }

  /** Removes an entry from the pool and destroys its resource in the background. */
  #destroy(entry: Entry<T>, reason: DestroyReason, error = entry.brokenError): void {
    if (entry.state === State.Destroyed) return;
    entry.state = State.Destroyed;
    this.#entries.delete(entry);
    this.#destroyed++;
    const started = performance.now();
    const factory = this.#o.factory;
    this.#track(
      Promise.resolve()
        .then(() => factory.destroy(entry.resource))
        .then(
          () => this.#watch.resourceEvent('destroy', performance.now() - started, error, reason),
          (destroyError: unknown) =>
            this.#watch.resourceEvent(
              'destroy',
              performance.now() - started,
              asError(destroyError),
              reason,
            ),
        ),
    );
  }

  /** Keeps `min` resources, with backoff after failures. */
  #refill(): void {
    if (this.#closed || this.#refillTimer !== undefined) return;
    let missing = this.#o.min - (this.#entries.size + this.#creates.size);
    while (missing-- > 0) this.#create(false);
  }

  #scheduleRefill(): void {
    if (this.#closed || this.#refillTimer !== undefined || this.#o.min === 0) return;
    this.#createBackoffMillis = Math.min(Math.max(this.#createBackoffMillis * 2, 100), 10_000);
    this.#refillTimer = setTimeout(() => {
      this.#refillTimer = undefined;
      this.#refill();
    }, this.#createBackoffMillis);
    this.#refillTimer.unref();
  }

  #track(promise: Promise<unknown>): void {
    this.#inFlight.add(promise);
    void promise.finally(() => this.#inFlight.delete(promise));
  }

  // ---------------------------------------------------------------------------------------------
  // Timers: waiter deadlines and housekeeping

  #armWaitTimer(deadline: number): void {
    if (deadline >= this.#waitTimerAt || deadline === Infinity) return;
    if (this.#waitTimer !== undefined) clearTimeout(this.#waitTimer);
    this.#waitTimerAt = deadline;
    this.#waitTimer = setTimeout(
      () => this.#expireWaiters(),
      Math.max(0, deadline - performance.now()),
    );
    this.#waitTimer.unref();
  }

  #expireWaiters(): void {
    this.#waitTimer = undefined;
    this.#waitTimerAt = Infinity;
    const now = performance.now();
    // Waiters whose resource is being validated expire too: a validation may hang.
    let waiter: Waiter<T> | undefined;
    while ((waiter = this.#deadlines.peek()) !== undefined && waiter.deadline <= now) {
      this.#settleWaiter(waiter, this.#timeoutError(waiter, now));
    }
    if (waiter !== undefined) this.#armWaitTimer(waiter.deadline);
  }

  /**
   * The timeout error explains itself: the counts (including resources being created, validated
   * or reset, which are neither idle nor used), what those are doing and for how long, which
   * holders are working on the server (stuck queries: a server or network problem) and which
   * just hold (a missing release()), the longest holders with their stacks, and the last create
   * failure as the cause.
   */
  #timeoutError(waiter: Waiter<T>, now: number): AcquireTimeoutError {
    const s = this.stats();
    const seconds = (millis: number) => `${(millis / 1000).toFixed(1)} s`;
    let message =
      `Pool "${this.name}": timed out after ${Math.round(now - waiter.startTime)} ms waiting for a resource ` +
      `(total=${s.size} used=${s.used} idle=${s.idle} pending=${s.pending} max=${s.max}, ` +
      `creating=${s.creating} validating=${this.#validating} resetting=${this.#resetting}).`;

    if (this.#creates.size > 0) {
      let oldest = now;
      for (const c of this.#creates) oldest = Math.min(oldest, c.started);
      message +=
        `\n${this.#creates.size} resource(s) being created (connecting), the oldest for ${seconds(now - oldest)}: ` +
        "the server may be slow or unreachable; each create is bounded by the factory's connect timeout.";
    }
    if (this.#validating > 0 || this.#resetting > 0) {
      const oldest = { [State.Validating]: now, [State.Resetting]: now };
      for (const entry of this.#entries) {
        if (entry.state === State.Validating || entry.state === State.Resetting) {
          oldest[entry.state] = Math.min(oldest[entry.state], entry.busySince);
        }
      }
      if (this.#validating > 0) {
        message +=
          `\n${this.#validating} resource(s) being validated before hand-out, the oldest for ` +
          `${seconds(now - oldest[State.Validating])} (bounded by validateTimeoutMillis, ${this.#o.validateTimeoutMillis} ms).`;
      }
      if (this.#resetting > 0) {
        message +=
          `\n${this.#resetting} resource(s) being reset after release, the oldest for ` +
          `${seconds(now - oldest[State.Resetting])} (bounded by resetTimeoutMillis, ${this.#o.resetTimeoutMillis} ms).`;
      }
    }

    // Holders working on the server (a query in flight) against holders that just hold.
    const factory = this.#o.factory;
    if (s.used > 0 && factory.isBusy !== undefined) {
      const busy: number[] = [];
      let busyOldest = now;
      const idle: number[] = [];
      let idleOldest = now;
      for (const entry of this.#entries) {
        if (entry.state !== State.Used) continue;
        const working = isBusy(factory, entry.resource);
        if (working === true) {
          busy.push(entry.holdId);
          busyOldest = Math.min(busyOldest, entry.acquiredAt);
        } else if (working === false) {
          idle.push(entry.holdId);
          idleOldest = Math.min(idleOldest, entry.acquiredAt);
        }
      }
      const ids = (list: number[]) =>
        list
          .slice(0, 5)
          .map((id) => `#${id}`)
          .join(', ') + (list.length > 5 ? ', …' : '');
      if (busy.length > 0) {
        message +=
          `\n${busy.length} of ${s.used} holder(s) are stuck in a query on the server (lease ${ids(busy)}), ` +
          `held up to ${seconds(now - busyOldest)}: the server or the network is not answering. Check the ` +
          'server; a query timeout (pg: query_timeout, statement_timeout) ends such queries.';
      }
      if (idle.length > 0) {
        message +=
          `\n${idle.length} of ${s.used} holder(s) hold a resource without using it (lease ${ids(idle)}), ` +
          `the longest for ${seconds(now - idleOldest)}: look for a missing release().`;
      }
    }
    const holders = this.#watch.holders(now).slice(0, 3);
    if (holders.length > 0) {
      message +=
        `\nLongest holders:` +
        describeHolders(holders, "no stack captured; set captureStacks: 'always' to see it");
    }
    const cause = this.#lastCreateError;
    if (cause !== undefined) message += `\nLast create failure: ${asError(cause).message}`;
    else if (s.used >= s.max) {
      message += selfWaitHint(formatStack(waiter.captured), this.#watch.holders(now));
      if (factory.isBusy === undefined) {
        message += `\nEvery resource is in use: release leases sooner (look for a missing release()), or raise max.`;
      }
    }
    return new AcquireTimeoutError(message, this.name, cause);
  }

  /**
   * Starved: every resource held and nothing handed out for a while, a quarter of the callers'
   * timeout but between 250 ms and 1 s (a busy pool whose queue moves hands out all the time).
   */
  #starved(now: number, timeoutMillis: number): boolean {
    return (
      this.#used >= this.#o.max &&
      now - this.#lastHandOutAt >= Math.max(250, Math.min(1000, timeoutMillis / 4))
    );
  }

  /** The shared tick: reclaim, eviction, leak checks, refill, health. */
  #housekeep(): void {
    const now = performance.now();
    this.#recentNow = now;
    const o = this.#o;
    for (const entry of [...this.#entries]) {
      if (entry.state === State.Used) {
        if (o.reclaimAfterMillis > 0 && now - entry.acquiredAt >= o.reclaimAfterMillis) {
          this.#takeBack(entry, 'reclaimed', now);
        }
      } else if (entry.state === State.Idle) {
        const idleFor = now - entry.idleSince;
        const expired = now >= entry.expiresAt;
        const surplus =
          o.idleTimeoutMillis > 0 && idleFor >= o.idleTimeoutMillis && this.#entries.size > o.min;
        if (expired || surplus) {
          this.#idle.splice(this.#idle.indexOf(entry), 1);
          this.#destroy(entry, expired ? 'lifetime' : 'idle');
        }
      }
    }
    // A caller that has waited a while puts the stack policy under pressure.
    const oldestWaiter = this.#waiters.peek();
    const waiting =
      oldestWaiter !== undefined &&
      now - oldestWaiter.startTime >= Math.min(1000, oldestWaiter.timeoutMillis / 10);
    const starved = oldestWaiter !== undefined && this.#starved(now, oldestWaiter.timeoutMillis);
    this.#watch.tick(now, waiting, starved);
    this.#refill();
    this.#dispense();
    if (!this.#closed) this.#watch.healthTick(now);
  }

  /** Forcibly ends a hold (reclaim, close) and destroys its resource. */
  #takeBack(entry: Entry<T>, outcome: 'reclaimed' | 'closed', now: number): LeaseInfo {
    const info = this._leaseInfo(entry, entry.holdId, now);
    if (outcome === 'reclaimed') this.#watch.reclaimed(entry, now);
    this.#endHold(entry, now, outcome);
    this.#destroy(entry, outcome === 'reclaimed' ? 'reclaimed' : 'closed');
    this.#dispense();
    return info;
  }

  /** A lease was garbage-collected while held: destroy its resource, restore capacity. */
  #collected(entry: Entry<T>): void {
    if (entry.state !== State.Used) return;
    const now = performance.now();
    this.#watch.collected(entry, now);
    this.#endHold(entry, now, 'collected');
    // Never reuse it: it may hold an open transaction or locks.
    this.#destroy(entry, 'collected');
    this.#dispense();
  }

  /**
   * Runs the health checks now (they also run every `health.intervalMillis`): suspected leaks at
   * or over the threshold, leases held longer than `maxHoldMillis`, an exhausted pool with waiters.
   * Each condition alerts once, and again only after it cleared.
   */
  checkHealth(): Alert[] {
    return this.#closed ? [] : this.#watch.checkHealth();
  }

  // ---------------------------------------------------------------------------------------------
  // Reports

  /** @internal */
  _leaseInfo(entry: Entry<T>, holdId: number, now = performance.now()): LeaseInfo {
    return this.#watch.leaseInfo(entry, holdId, now);
  }

  /** A snapshot of the pool's counters. */
  stats(): PoolStats {
    return {
      name: this.name,
      size: this.#entries.size,
      idle: this.#idle.length,
      used: this.#used,
      pending: this.#waiters.length + this.#binding.size,
      creating: this.#creates.size,
      min: this.#o.min,
      max: this.#o.max,
      suspectedLeaks: this.#watch.suspectedLeaks,
      collectedLeaks: this.#watch.collectedLeaks,
      reclaimedLeaks: this.#watch.reclaimedLeaks,
      created: this.#created,
      destroyed: this.#destroyed,
      timeouts: this.#watch.timeouts,
      closed: this.#closed,
    };
  }

  /** Every lease currently held, oldest first, with ages and stacks. */
  leakReport(): LeakReport {
    return { pool: this.name, stats: this.stats(), held: this.#watch.holders() };
  }

  // ---------------------------------------------------------------------------------------------
  // Close

  /**
   * Closes the pool: new acquires fail, waiters are rejected, idle resources destroyed; leases
   * still out are waited for up to `closeTimeoutMillis`, then destroyed and reported. Idempotent.
   */
  close(): Promise<CloseReport> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /**
   * One deadline bounds the whole close: waiting for leases, then for the factory calls in
   * flight (creates, validations, resets, destroys). What is still running then finishes (or
   * not) in the background; everything it ends with is destroyed, as the pool is closed.
   */
  async #close(): Promise<CloseReport> {
    const deadline = performance.now() + this.#o.closeTimeoutMillis;
    this.#closed = true;
    clearInterval(this.#tick);
    if (this.#waitTimer !== undefined) clearTimeout(this.#waitTimer);
    if (this.#refillTimer !== undefined) clearTimeout(this.#refillTimer);
    this.#watch.closed();
    const error = new PoolClosedError(this.name, 'the pool closed while acquire() waited');
    for (const waiter of [...this.#waiters, ...this.#binding]) this.#settleWaiter(waiter, error);
    for (const entry of this.#idle.splice(0)) this.#destroy(entry, 'closed');

    if (this.#used > 0) {
      await untilOrDeadline(new Promise<void>((resolve) => (this.#drained = resolve)), deadline);
      this.#drained = undefined;
    }
    const forced: LeaseInfo[] = [];
    const now = performance.now();
    for (const entry of [...this.#entries]) {
      if (entry.state === State.Used) forced.push(this.#takeBack(entry, 'closed', now));
    }
    // Creates, validations, resets and destroys still running; each destroys what it ends with.
    await this.#settleInFlight(deadline);
    for (const entry of [...this.#entries]) this.#destroy(entry, 'closed');
    await this.#settleInFlight(deadline);
    return { forced };
  }

  /** Waits for the factory calls in flight (and those they start), until `deadline`. */
  async #settleInFlight(deadline: number): Promise<void> {
    while (this.#inFlight.size > 0) {
      const done = await untilOrDeadline(Promise.allSettled([...this.#inFlight]), deadline);
      if (!done) return;
    }
  }
}

/** Waits for `promise` until `deadline` (performance.now()); true when it settled in time. */
async function untilOrDeadline(promise: Promise<unknown>, deadline: number): Promise<boolean> {
  const left = deadline - performance.now();
  if (left <= 0) return false;
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), left);
  });
  try {
    return await Promise.race([promise.then(() => true), expired]);
  } finally {
    clearTimeout(timer);
  }
}

function defaultName(server: ServerInfo | undefined): string {
  if (server?.address !== undefined) {
    return `${server.address}${server.port !== undefined ? `:${server.port}` : ''}/${server.namespace ?? ''}`;
  }
  return `poolwatch-${nextPoolNumber++}`;
}

function describeValue(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (typeof value === 'object') return `an object of class ${value.constructor?.name ?? 'Object'}`;
  return typeof value;
}

/** A throwing `isReusable` means "not reusable". */
function isReusable<T>(factory: { isReusable?(resource: T): boolean }, resource: T): boolean {
  try {
    return factory.isReusable!(resource) === true;
  } catch {
    return false;
  }
}

function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}

/** A throwing or non-boolean `isBusy` means "unknown" (undefined). */
function isBusy<T>(factory: { isBusy?(resource: T): boolean }, resource: T): boolean | undefined {
  try {
    const busy = factory.isBusy!(resource);
    return typeof busy === 'boolean' ? busy : undefined;
  } catch {
    return undefined;
  }
}

/** What `bounded()` resolves with when the time ran out. */
const TIMED_OUT: unique symbol = Symbol('timed out');

/**
 * `work`'s outcome, or `TIMED_OUT` after `ms`. The timer is unref'd and cleared when `work`
 * settles first. `work` keeps running: the caller decides what to do with what it holds.
 */
function bounded<R>(work: Promise<R>, ms: number): Promise<R | typeof TIMED_OUT> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), ms);
    timer.unref();
  });
  return Promise.race([work, expired]).finally(() => clearTimeout(timer));
}
