import {
  AcquireAbortedError,
  AcquireTimeoutError,
  CreateFailedError,
  LeaseError,
  PoolClosedError,
  SelfDeadlockError,
} from './errors';
import type { Alert, DestroyReason, HoldMessage, HoldOutcome, PoolRef } from './events';
import { resolveOptions, type ResolvedOptions } from './options';
import type { AcquireOptions, LeaseInfo, PoolOptions, PoolStats, ServerInfo } from './types';
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

/** A caller waiting in `acquire()`. */
interface Waiter<T> {
  resolve: (lease: Lease<T>) => void;
  reject: (error: Error) => void;
  readonly startTime: number;
  readonly deadline: number;
  readonly timeoutMillis: number;
  /** Queued, taken for a validation, or settled (served, timed out, aborted, rejected). */
  state: 'queued' | 'binding' | 'settled';
  readonly captured: CapturedStack | undefined;
  readonly message: HoldMessage | undefined;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

/** A FIFO of waiters over an array with a moving head; settled waiters are skipped lazily. */
class WaiterQueue<T> {
  #items: (Waiter<T> | undefined)[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(waiter: Waiter<T>): void {
    this.#items.push(waiter);
  }

  /** Puts a waiter back at the front (after a failed validation it keeps its turn). */
  unshift(waiter: Waiter<T>): void {
    if (this.#head > 0) this.#items[--this.#head] = waiter;
    else this.#items.unshift(waiter);
  }

  /** The first waiter still queued, dropping settled ones on the way. */
  peek(): Waiter<T> | undefined {
    while (this.#head < this.#items.length) {
      const waiter = this.#items[this.#head]!;
      if (waiter.state === 'queued') return waiter;
      this.#drop();
    }
    return undefined;
  }

  shift(): Waiter<T> | undefined {
    const waiter = this.peek();
    if (waiter !== undefined) this.#drop();
    return waiter;
  }

  #drop(): void {
    this.#items[this.#head++] = undefined;
    if (this.#head === this.#items.length) {
      this.#items.length = 0;
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
  }

  *[Symbol.iterator](): IterableIterator<Waiter<T>> {
    for (let i = this.#head; i < this.#items.length; i++) {
      const waiter = this.#items[i]!;
      if (waiter.state === 'queued') yield waiter;
    }
  }
}

/**
 * A lease on one pooled resource: what `acquire()` hands out. Release it exactly once, with
 * `release()` (back to the pool) or `destroy()` (the resource is broken). It also works with
 * `await using`. The pool keeps its bookkeeping in its own entry; this handle is only referenced
 * by the caller, so dropping it without release is noticed after garbage collection.
 */
export class Lease<T> {
  /** @internal */ readonly _pool: Pool<T>;
  /** @internal */ readonly _entry: Entry<T>;
  /** @internal */ readonly _holdId: number;

  /** @internal */
  constructor(pool: Pool<T>, entry: Entry<T>, holdId: number) {
    this._pool = pool;
    this._entry = entry;
    this._holdId = holdId;
  }

  /** The pooled resource. Throws once the lease has ended. */
  get resource(): T {
    if (this._entry.holdId !== this._holdId) throw this._pool._staleLeaseError(this, 'use');
    return this._entry.resource;
  }

  /** True until the lease is released, destroyed or taken back. */
  get active(): boolean {
    return this._entry.holdId === this._holdId;
  }

  /** Identity, age and acquisition stack of this lease. */
  get info(): LeaseInfo {
    return this._pool._leaseInfo(this._entry, this._holdId);
  }

  /** Returns the resource to the pool. */
  release(): void {
    this._pool._release(this);
  }

  /** Ends the lease and destroys the resource (use it when the connection is broken). */
  destroy(error?: Error): void {
    this._pool.destroy(this, error);
  }

  [Symbol.dispose](): void {
    if (this.active) this.release();
  }

  [Symbol.asyncDispose](): Promise<void> {
    if (this.active) this.release();
    return Promise.resolve();
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
  readonly #waiters = new WaiterQueue<T>();
  #used = 0;
  /** Waiters still in the queue (not settled, not taken for a validation). */
  #queued = 0;
  /** Waiters taken out of the queue while a resource is validated for them. */
  readonly #binding = new Set<Waiter<T>>();
  #creating = 0;
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
    const captured = watch.capture(startTime, this.acquire);

    // Fast path: an idle resource that needs no validation, and nobody ahead in the queue.
    if (this.#queued === 0) {
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
    const lease = await this.acquire(options);
    let result: Awaited<R>;
    try {
      if (this.#o.detectSelfDeadlock) {
        result = await runHolding(this, lease._entry, fn, lease.resource, lease);
      } else {
        result = await fn(lease.resource, lease);
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
    if (signal?.aborted)
      return this.#fail(message, new AcquireAbortedError(this.name, signal.reason));
    const timeoutMillis = options?.timeoutMillis ?? this.#o.acquireTimeoutMillis;
    if (!(timeoutMillis > 0)) {
      throw new TypeError(`acquire({ timeoutMillis }) must be > 0, got ${String(timeoutMillis)}.`);
    }
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
      signal,
      onAbort: undefined,
    };
    if (signal !== undefined) {
      waiter.onAbort = () =>
        this.#settleWaiter(waiter, new AcquireAbortedError(this.name, signal.reason));
      signal.addEventListener('abort', waiter.onAbort, { once: true });
    }
    this.#waiters.push(waiter);
    this.#queued++;
    this.#armWaitTimer(waiter.deadline);
    this.#dispense();
    return promise;
  }

  /** Ends a waiter with an error, wherever it is. */
  #settleWaiter(waiter: Waiter<T>, error: Error): void {
    if (waiter.state === 'settled') return;
    if (waiter.state === 'queued') this.#queued--;
    else this.#binding.delete(waiter);
    waiter.state = 'settled';
    this.#unlisten(waiter);
    if (error instanceof AcquireTimeoutError) {
      this.#watch.timedOut(performance.now() - waiter.startTime, error);
    }
    this.#finishFailed(waiter.message, error, waiter.startTime);
    waiter.reject(error);
  }

  #unlisten(waiter: Waiter<T>): void {
    if (waiter.onAbort !== undefined) {
      waiter.signal!.removeEventListener('abort', waiter.onAbort);
      waiter.onAbort = undefined;
      waiter.signal = undefined;
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
      this.#waiters.shift();
      this.#queued--;
      if (this.#needsValidation(entry, now)) this.#validateFor(entry, waiter);
      else this.#serve(entry, waiter, now);
    }
    // Resources being created or reset will serve waiters soon: only the rest need a create.
    let wanted = this.#queued - this.#creating - this.#resetting;
    while (wanted-- > 0 && this.#entries.size + this.#creating < this.#o.max) this.#create(true);
  }

  #serve(entry: Entry<T>, waiter: Waiter<T>, now: number): void {
    waiter.state = 'settled';
    this.#unlisten(waiter);
    waiter.resolve(this.#handOut(entry, now, waiter.captured, waiter.message, waiter.startTime));
  }

  #validateFor(entry: Entry<T>, waiter: Waiter<T>): void {
    entry.state = State.Validating;
    waiter.state = 'binding';
    this.#binding.add(waiter);
    const factory = this.#o.factory;
    this.#track(
      Promise.resolve()
        .then(() => factory.validate!(entry.resource))
        .then(
          (ok) => ok === true && !entry.broken,
          () => false,
        )
        .then((ok) => {
          if (entry.state !== State.Validating) return; // destroyed by close() meanwhile
          if (waiter.state === 'binding') {
            this.#binding.delete(waiter);
            waiter.state = 'queued';
            if (ok && !this.#closed) return this.#serve(entry, waiter, performance.now());
            // Not served: it keeps its place at the head of the queue.
            this.#waiters.unshift(waiter);
            this.#queued++;
          }
          if (ok) this.#makeAvailable(entry, performance.now());
          else {
            this.#destroy(entry, 'validation');
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
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) {
      this.#queued--;
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
    const entry = lease._entry;
    if (entry.holdId !== lease._holdId) throw this._staleLeaseError(lease, 'release');
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
    if (entry.broken || now >= entry.expiresAt) {
      this.#destroy(entry, entry.broken ? 'broken' : 'lifetime');
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
    if (lease._pool !== this) {
      throw new LeaseError(
        'POOL_LEASE_FOREIGN',
        `Pool "${this.name}": this lease belongs to pool "${lease._pool.name}". ` +
          `Call ${action}() on the pool that issued it, or simply lease.${action}().`,
        this.name,
      );
    }
    if (lease._entry.holdId !== lease._holdId) throw this._staleLeaseError(lease, action);
    return lease._entry;
  }

  /** @internal The error for a lease that has ended (released twice, used after release...). */
  _staleLeaseError(lease: Lease<T>, action: string): LeaseError {
    const entry = lease._entry;
    const outcome = entry.lastHoldId === lease._holdId ? entry.lastOutcome : 'released';
    if (outcome === 'reclaimed' || outcome === 'closed') {
      return new LeaseError(
        'POOL_LEASE_RECLAIMED',
        `Pool "${this.name}": lease #${lease._holdId} was taken back by the pool ` +
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
      `Pool "${this.name}": lease #${lease._holdId} was already ${outcome === 'destroyed' ? 'destroyed' : 'released'}; ` +
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
    this.#resetting++;
    const factory = this.#o.factory;
    this.#track(
      Promise.resolve()
        .then(() => factory.reset!(entry.resource))
        .finally(() => this.#resetting--)
        .then(
          () => {
            if (entry.state !== State.Resetting) return;
            if (entry.broken) this.#destroy(entry, 'broken');
            else this.#makeAvailable(entry, performance.now());
            this.#dispense();
          },
          (error: unknown) => {
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
    this.#creating++;
    const started = performance.now();
    let entry: Entry<T> | undefined;
    let brokenEarly = false;
    const context = {
      markBroken: (error?: Error) => {
        if (entry !== undefined) this.#markBroken(entry, error);
        else brokenEarly = true;
      },
    };
    const factory = this.#o.factory;
    this.#track(
      Promise.resolve()
        .then(() => factory.create(context))
        .then(
          (resource) => {
            this.#creating--;
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
            this.#creating--;
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
              forWaiter && this.#queued > this.#creating ? this.#waiters.peek() : undefined;
            if (waiter !== undefined)
              this.#settleWaiter(waiter, new CreateFailedError(this.name, error));
            else this.#scheduleRefill();
          },
        ),
    );
  }

  #markBroken(entry: Entry<T>, error: Error | undefined): void {
    if (entry.broken) return;
    entry.broken = true;
    entry.brokenError = error;
    if (entry.state === State.Idle) {
      this.#idle.splice(this.#idle.indexOf(entry), 1);
      this.#destroy(entry, 'broken');
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
    let missing = this.#o.min - (this.#entries.size + this.#creating);
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
    let next = Infinity;
    // Waiters whose resource is being validated expire too: a validation may hang.
    for (const waiter of [...this.#waiters, ...this.#binding]) {
      if (waiter.deadline <= now) this.#settleWaiter(waiter, this.#timeoutError(waiter, now));
      else next = Math.min(next, waiter.deadline);
    }
    if (next !== Infinity) this.#armWaitTimer(next);
  }

  #timeoutError(waiter: Waiter<T>, now: number): AcquireTimeoutError {
    const s = this.stats();
    const holders = this.#watch.holders(now).slice(0, 3);
    let message =
      `Pool "${this.name}": timed out after ${Math.round(now - waiter.startTime)} ms waiting for a resource ` +
      `(total=${s.size} used=${s.used} idle=${s.idle} pending=${s.pending} max=${s.max}).`;
    if (holders.length > 0) {
      message +=
        ` Longest holders:` +
        describeHolders(holders, "no stack captured; set captureStacks: 'always' to see it");
    }
    const cause = this.#lastCreateError;
    if (cause !== undefined) message += `\nLast create failure: ${asError(cause).message}`;
    else if (s.used >= s.max) {
      message +=
        selfWaitHint(formatStack(waiter.captured), this.#watch.holders(now)) +
        `\nEvery resource is in use: release leases sooner (look for a missing release()), or raise max.`;
    }
    return new AcquireTimeoutError(message, this.name, cause);
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
    this.#watch.tick(now, waiting, this.#queued > 0 && this.#used >= o.max);
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
      pending: this.#queued + this.#binding.size,
      creating: this.#creating,
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

  async #close(): Promise<CloseReport> {
    this.#closed = true;
    clearInterval(this.#tick);
    if (this.#waitTimer !== undefined) clearTimeout(this.#waitTimer);
    if (this.#refillTimer !== undefined) clearTimeout(this.#refillTimer);
    this.#watch.closed();
    for (const waiter of [...this.#waiters, ...this.#binding]) {
      this.#settleWaiter(
        waiter,
        new PoolClosedError(this.name, 'the pool closed while acquire() waited'),
      );
    }
    for (const entry of this.#idle.splice(0)) this.#destroy(entry, 'closed');

    if (this.#used > 0) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.#drained = resolve;
        timer = setTimeout(resolve, this.#o.closeTimeoutMillis);
      });
      clearTimeout(timer);
      this.#drained = undefined;
    }
    const forced: LeaseInfo[] = [];
    const now = performance.now();
    for (const entry of [...this.#entries]) {
      if (entry.state === State.Used) forced.push(this.#takeBack(entry, 'closed', now));
    }
    // Creates, validations, resets and destroys still running; each destroys what it ends with.
    // A factory call that never settles must not hang close(): each wait is bounded.
    await this.#settleInFlight();
    for (const entry of [...this.#entries]) this.#destroy(entry, 'closed');
    await this.#settleInFlight();
    return { forced };
  }

  /** Waits for the factory calls in flight, at most `closeTimeoutMillis`. */
  async #settleInFlight(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.#o.closeTimeoutMillis);
    });
    let expired = false;
    void timedOut.then(() => (expired = true));
    while (this.#inFlight.size > 0 && !expired) {
      await Promise.race([Promise.allSettled([...this.#inFlight]), timedOut]);
    }
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
