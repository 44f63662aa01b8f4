/**
 * The lease-watching core: how a leak is found, and how what happens to a lease becomes events.
 *
 * Every lease source (poolwatch's `Pool`, and each adapter that watches a library's own pool)
 * owns one `LeaseWatcher` and tells it when a hold begins and ends; the source keeps one `Hold`
 * record per resource. The watcher owns everything else about holds:
 *
 *     source.acquire ─► startAcquire ─► capture? ─► begin ─────────────► end ─► holdEnd
 *                       (acquireStart)              (acquireEnd)          │ (returned, if suspected)
 *                                                        │ tick: age ≥ threshold ──► suspected
 *                                                        │ lease collected ──► collected
 *                                                        │ source takes it back ─► reclaimed
 *
 * - hold ages, threshold findings ("suspected") and late returns ("returned"), counted once;
 * - the stack policy (`StackSampler`, under pressure while holds age or acquires time out);
 * - collection of dropped leases (`CollectionWatch`, registered at the first tick of a hold, so
 *   short holds never pay for it);
 * - health checks (leak count, hold age, exhaustion), each alerting once until it clears;
 * - reports (lease snapshots, holders oldest first) and the texts of findings;
 * - publishing on the `diagnostics_channel` channels of `../events.ts` (and `onAlert`).
 *
 * It knows nothing of OpenTelemetry (see `../instrumentation`) and nothing of resources: ending a
 * hold never destroys anything; the source does that.
 */
import {
  channels,
  openPools,
  type Alert,
  type DestroyReason,
  type HoldMessage,
  type HoldOutcome,
  type LeakKind,
  type PoolRef,
} from '../events';
import type { ResolvedHealth } from '../options';
import type { LeaseInfo } from '../types';
import { collectGarbage, CollectionWatch } from './collect';
import { LeaseSnapshot, type Hold } from './hold';
import { indentStack } from './report';
import { captureStack, formatStack, StackSampler, type CapturedStack } from './stack';

let lastHoldId = 0;
let lastResourceId = 0;

/** A new hold number (`poolwatch.lease.id`), unique in the process across every lease source. */
export function newHoldId(): number {
  return ++lastHoldId;
}

/** A new resource number (`poolwatch.resource.id`), unique in the process. */
export function newResourceId(): number {
  return ++lastResourceId;
}

/**
 * `base`, or `base#2`, `#3`… when an open pool (of any kind) already has the name. A name is
 * freed when its pool ends, and reused by the next pool that wants it.
 */
export function uniquePoolName(base: string): string {
  const taken = new Set<string>();
  for (const pool of openPools) taken.add(pool.name);
  if (!taken.has(base)) return base;
  for (let n = 2; ; n++) {
    const name = `${base}#${n}`;
    if (!taken.has(name)) return name;
  }
}

export interface WatchOptions<H extends Hold> {
  /** Every hold record currently held (read at ticks, health checks and reports). */
  readonly holds: () => Iterable<H>;
  /** 0: off. */
  readonly leakDetectionThresholdMillis: number;
  /** 0: never; 1: always; N: one in N; -1: auto (see `StackSampler`). */
  readonly stackEvery: number;
  /** What a finding without a stack says about getting one. */
  readonly noStackHint: string;
  readonly health?: ResolvedHealth | undefined;
  readonly onAlert?: ((alert: Alert) => void) | undefined;
  /**
   * Watch leases for garbage collection: called when a lease of a hold that is still open was
   * collected. The source ends the hold (`collected()` has already reported it) and destroys the
   * resource.
   */
  readonly onCollected?: ((hold: H) => void) | undefined;
  /**
   * With `onCollected`: while the source is starved (see `tick()`) and leases held past a tick are
   * out, force a major collection at most once per this many milliseconds (process-wide). 0: off.
   */
  readonly collectWhenStarvedMillis?: number;
}

export class LeaseWatcher<H extends Hold> {
  readonly #source: PoolRef;
  readonly #o: WatchOptions<H>;
  readonly #stacks: StackSampler;
  readonly #collection: CollectionWatch<H> | undefined;

  #suspected = 0;
  #collected = 0;
  #reclaimed = 0;
  #timeouts = 0;
  /** Timeouts counted at the last tick: one since then keeps the stack policy under pressure. */
  #timeoutsAtTick = 0;
  #lastHealthCheck = performance.now();
  #leakCountAlerted = false;
  #exhaustedAlerted = false;
  /** Nothing is published any more (the source was let go of, e.g. instrumentation disabled). */
  #muted = false;

  constructor(source: PoolRef, options: WatchOptions<H>) {
    this.#source = source;
    this.#o = options;
    this.#stacks = new StackSampler(options.stackEvery);
    const onCollected = options.onCollected;
    if (onCollected !== undefined) {
      this.#collection = new CollectionWatch<H>((hold) => {
        if (hold.held) onCollected(hold);
      });
    }
  }

  /** Suspected leaks open now. */
  get suspectedLeaks(): number {
    return this.#suspected;
  }
  get collectedLeaks(): number {
    return this.#collected;
  }
  get reclaimedLeaks(): number {
    return this.#reclaimed;
  }
  get timeouts(): number {
    return this.#timeouts;
  }

  // ---------------------------------------------------------------------------------------------
  // The source's life

  /** The source is open: into `openPools`, and announced. */
  opened(): void {
    openPools.add(this.#source);
    if (channels.poolOpen.hasSubscribers) channels.poolOpen.publish({ pool: this.#source });
  }

  /** The source closed (idempotent): out of `openPools`, and announced. */
  closed(): void {
    if (!openPools.delete(this.#source)) return;
    if (channels.poolClose.hasSubscribers) channels.poolClose.publish({ pool: this.#source });
  }

  /** Publishes nothing from now on; holds still end (the source's bookkeeping stays right). */
  mute(): void {
    this.#muted = true;
  }

  /** A resource was created or destroyed. */
  resourceEvent(
    kind: 'create' | 'destroy',
    durationMillis: number,
    error: Error | undefined,
    reason: DestroyReason | undefined,
  ): void {
    const channel = channels[kind];
    if (channel.hasSubscribers && !this.#muted) {
      channel.publish({ pool: this.#source, durationMillis, error, reason });
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Acquire

  /**
   * Starts following an acquire when someone listens (publishing `acquireStart` synchronously, in
   * the caller's async context), and costs two `hasSubscribers` checks otherwise.
   */
  startAcquire(startTime: number): HoldMessage | undefined {
    if (
      this.#muted ||
      !(channels.acquireStart.hasSubscribers || channels.acquireEnd.hasSubscribers)
    ) {
      return undefined;
    }
    const message: HoldMessage = {
      pool: this.#source,
      startTime,
      waitMillis: 0,
      lease: undefined,
      error: undefined,
      holdMillis: 0,
      outcome: undefined,
      userData: undefined,
      runner: undefined,
    };
    channels.acquireStart.publish(message);
    return message;
  }

  /** The acquiring stack, if the stack policy takes one now; `above` and its callees are hidden. */
  capture(now: number, above: (...args: never[]) => unknown): CapturedStack | undefined {
    const stacks = this.#stacks;
    if (!stacks.shouldCapture(now)) return undefined;
    if (stacks.every > 0) return captureStack(above);
    // 'auto' spends a time budget: measure what this capture costs.
    const start = performance.now();
    const captured = captureStack(above);
    stacks.spent(performance.now() - start);
    return captured;
  }

  /**
   * Hold `holdId` (from `newHoldId()`) begins: `hold` goes to the acquirer of `message` (if
   * observed), who holds it through `lease` (watched for collection from the next tick on).
   * Publishes `acquireEnd`.
   */
  begin(
    hold: H,
    holdId: number,
    now: number,
    captured: CapturedStack | undefined,
    message: HoldMessage | undefined,
    startTime: number,
    lease: object | undefined,
  ): void {
    hold.holdId = holdId;
    hold.acquiredAt = now;
    hold.captured = captured;
    hold.message = message;
    if (this.#collection !== undefined) hold.unwatchedLease = lease;
    if (message !== undefined) {
      message.waitMillis = now - startTime;
      message.lease = this.leaseInfo(hold, holdId, now);
      channels.acquireEnd.publish(message);
    }
  }

  /** An acquire failed: publishes `acquireEnd` with the error. */
  failed(message: HoldMessage | undefined, error: Error, startTime: number, now: number): void {
    if (message === undefined) return;
    message.error = error;
    message.waitMillis = now - startTime;
    channels.acquireEnd.publish(message);
  }

  /** An acquire timed out (before `failed()`): counted, and the stack policy goes under pressure. */
  timedOut(waitMillis: number, error: Error): void {
    this.#timeouts++;
    this.#stacks.underPressure = true;
    if (channels.timeout.hasSubscribers && !this.#muted) {
      channels.timeout.publish({ pool: this.#source, waitMillis, error });
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Release

  /** A hold ends. A suspected one is reported as returned if it came back by itself. */
  end(hold: H, now: number, outcome: HoldOutcome): void {
    if (hold.suspected) {
      this.#suspected--;
      if (outcome === 'released' || outcome === 'destroyed') {
        this.#finding(hold, 'returned', now - hold.acquiredAt);
      }
    }
    const message = hold.message;
    if (message !== undefined && !this.#muted) {
      message.holdMillis = now - hold.acquiredAt;
      message.outcome = outcome;
      channels.holdEnd.publish(message);
    }
    hold.lastHoldId = hold.holdId;
    hold.lastOutcome = outcome;
    hold.holdId = 0;
    hold.captured = undefined;
    hold.suspected = false;
    hold.holdAgeAlerted = false;
    hold.message = undefined;
    hold.unwatchedLease = undefined;
    if (hold.watched) {
      hold.watched = false;
      this.#collection!.unwatch(hold);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Findings

  /**
   * The housekeeping tick: formats the stacks of holds that outlived a tick (an unformatted stack
   * keeps the acquiring code's objects, and so maybe the lease, alive), watches leases held since
   * the last tick for collection, reports holds that crossed the leak threshold, and sets the
   * stack policy's pressure (`waiting`: the source has callers that have waited a while).
   * `starved`: callers wait on a source that has handed nothing out for a while; if some of the
   * holds may have been dropped, a garbage collection finds out now rather than at V8's leisure.
   */
  tick(now: number, waiting: boolean, starved = false): void {
    const threshold = this.#o.leakDetectionThresholdMillis;
    let pressure = waiting;
    let watched = false;
    for (const hold of this.#o.holds()) {
      formatStack(hold.captured);
      if (hold.unwatchedLease !== undefined) {
        this.#collection!.watch(hold.unwatchedLease, hold);
        hold.unwatchedLease = undefined;
        hold.watched = true;
      }
      watched ||= hold.watched;
      if (threshold > 0) {
        const age = now - hold.acquiredAt;
        if (!hold.suspected && age >= threshold) {
          hold.suspected = true;
          this.#suspected++;
          this.#finding(hold, 'suspected', age);
        }
        if (age >= threshold / 4) pressure = true;
      }
    }
    // A timeout since the last tick keeps the pressure on for one more tick.
    this.#stacks.underPressure =
      pressure || (this.#stacks.underPressure && this.#timeouts !== this.#timeoutsAtTick);
    this.#timeoutsAtTick = this.#timeouts;
    if (starved && watched) this.#collect(now);
  }

  /**
   * The source is starved right now (an acquire timed out with every resource held): if some
   * holds may have been dropped, find out now.
   */
  starved(now: number): void {
    for (const hold of this.#o.holds()) {
      if (hold.watched) return this.#collect(now);
    }
  }

  #collect(now: number): void {
    const every = this.#o.collectWhenStarvedMillis ?? 0;
    if (every > 0) collectGarbage(now, every);
  }

  /** Runs the health checks if `health.intervalMillis` has passed since the last run. */
  healthTick(now: number): void {
    const health = this.#o.health;
    if (health !== undefined && now - this.#lastHealthCheck >= health.intervalMillis) {
      this.#lastHealthCheck = now;
      this.checkHealth();
    }
  }

  /** The source took a hold back (reclaim): reported before the source ends the hold. */
  reclaimed(hold: H, now: number): void {
    this.#reclaimed++;
    this.#finding(hold, 'reclaimed', now - hold.acquiredAt);
  }

  /** A hold's lease was collected: reported before the source ends the hold. */
  collected(hold: H, now: number): void {
    this.#collected++;
    this.#finding(hold, 'collected', now - hold.acquiredAt);
  }

  #finding(hold: H, kind: LeakKind, ageMillis: number): void {
    if (this.#muted) return;
    const lease = this.leaseInfo(hold, hold.holdId);
    const stack = lease.stack;
    const message = hold.message;
    const pool = this.#source;
    // Leaky code runs again: make sure its next finding names its line.
    if (stack === undefined && kind !== 'returned') this.#stacks.hunt(performance.now());
    if (channels.leak.hasSubscribers) {
      channels.leak.publish({ pool, kind, lease, ageMillis, stack, hold: message });
    }
    if (!channels.alert.hasSubscribers && this.#o.onAlert === undefined) return;
    const seconds = (ageMillis / 1000).toFixed(1);
    const where = stack ? `, acquired at:${indentStack(stack)}` : ` (${this.#o.noStackHint})`;
    const name = `lease #${lease.id} of pool "${pool.name}"`;
    const text: Record<LeakKind, string> = {
      suspected: `Possible leak: ${name} held for ${seconds} s${where}`,
      returned: `Previously suspected ${name} was returned after ${seconds} s.`,
      collected: `Leak: ${name} was garbage-collected without release after ${seconds} s; its resource was destroyed${where}`,
      reclaimed: `Leak: ${name} was reclaimed after ${seconds} s (reclaimAfterMillis) and its resource destroyed${where}`,
    };
    this.#alert(
      {
        kind: 'leak',
        leakKind: kind,
        severity: kind === 'returned' ? 'info' : kind === 'suspected' ? 'warning' : 'error',
        pool: pool.name,
        message: text[kind],
        timestamp: Date.now(),
        lease,
        ageMillis,
        stack,
        location: lease.location,
      },
      message,
    );
  }

  #alert(alert: Alert, hold: HoldMessage | undefined): void {
    if (channels.alert.hasSubscribers) {
      channels.alert.publish({ pool: this.#source, alert, hold });
    }
    const onAlert = this.#o.onAlert;
    if (onAlert === undefined) return;
    try {
      onAlert(alert);
    } catch {
      // The user's alert callback must never break the pool.
    }
  }

  /**
   * Runs the health checks now: suspected leaks at or over the threshold, holds older than
   * `maxHoldMillis`, an exhausted source with waiters. Each condition alerts once, and again only
   * after it cleared.
   */
  checkHealth(): Alert[] {
    const health = this.#o.health;
    if (health === undefined || this.#muted) return [];
    const pool = this.#source;
    const raised: Alert[] = [];
    const raise = (alert: Omit<Alert, 'pool' | 'timestamp'>, hold?: HoldMessage) => {
      const full: Alert = { ...alert, pool: pool.name, timestamp: Date.now() };
      raised.push(full);
      this.#alert(full, hold);
    };
    const now = performance.now();
    const leaks = this.#suspected;
    if (leaks >= health.leakCountThreshold) {
      if (!this.#leakCountAlerted) {
        raise({
          kind: 'leak-count',
          severity: 'warning',
          message: `Pool "${pool.name}": ${leaks} suspected leak(s), at or over the threshold of ${health.leakCountThreshold}.`,
          value: leaks,
          threshold: health.leakCountThreshold,
        });
      }
      this.#leakCountAlerted = true;
    } else this.#leakCountAlerted = false;

    if (health.maxHoldMillis > 0) {
      for (const hold of this.#o.holds()) {
        if (hold.holdAgeAlerted) continue;
        const age = now - hold.acquiredAt;
        if (age < health.maxHoldMillis) continue;
        hold.holdAgeAlerted = true;
        const lease = this.leaseInfo(hold, hold.holdId, now);
        raise(
          {
            kind: 'hold-age',
            severity: 'warning',
            message: `Pool "${pool.name}": lease #${lease.id} held for ${(age / 1000).toFixed(1)} s, longer than ${health.maxHoldMillis} ms.`,
            lease,
            ageMillis: age,
            stack: lease.stack,
            location: lease.location,
            value: age,
            threshold: health.maxHoldMillis,
          },
          hold.message,
        );
      }
    }

    if (health.exhaustion) {
      const { used, max, pending } = pool.stats();
      if (used >= max && pending > 0) {
        if (!this.#exhaustedAlerted) {
          raise({
            kind: 'exhausted',
            severity: 'warning',
            message: `Pool "${pool.name}" is exhausted: ${used}/${max} in use and ${pending} caller(s) waiting.`,
            value: pending,
            threshold: max,
          });
        }
        this.#exhaustedAlerted = true;
      } else this.#exhaustedAlerted = false;
    }
    return raised;
  }

  // ---------------------------------------------------------------------------------------------
  // Reports

  /** A snapshot of hold `holdId` of `hold` (an ended hold: age 0, no stack). */
  leaseInfo(hold: H, holdId: number, now = performance.now()): LeaseInfo {
    const current = hold.holdId === holdId;
    const ageMillis = current ? now - hold.acquiredAt : 0;
    return new LeaseSnapshot(
      holdId,
      hold.resourceId,
      this.#source.name,
      Date.now() - ageMillis,
      ageMillis,
      current && hold.suspected,
      current ? hold.captured : undefined,
    );
  }

  /** Every hold open now, oldest first. */
  holders(now = performance.now()): LeaseInfo[] {
    const held: LeaseInfo[] = [];
    for (const hold of this.#o.holds()) held.push(this.leaseInfo(hold, hold.holdId, now));
    return held.sort((a, b) => b.ageMillis - a.ageMillis);
  }
}
