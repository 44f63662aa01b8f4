import { CollectionWatch } from './watch/collect';
import { captureStack, formatStack, type CapturedStack } from './watch/stack';

/** One tracked object, as `LeakTracker.live()` reports it. */
export interface TrackedInfo {
  readonly name: string;
  readonly kind: string;
  /** `Date.now()` when tracking began. */
  readonly createdAt: number;
  readonly ageMillis: number;
  /** Where `track()` was called, trimmed to the caller's frames; absent when not captured. */
  readonly stack: string | undefined;
}

export interface LeakTrackerOptions {
  /** Capture the caller's stack on `track()`. @default true */
  captureStacks?: boolean;
  /**
   * Called when a tracked object is garbage-collected without `untrack()`: it was dropped
   * while still live, which is a leak.
   */
  onCollected?: (info: TrackedInfo) => void;
}

interface Record {
  readonly name: string;
  readonly kind: string;
  readonly createdAt: number;
  readonly startedAt: number;
  readonly captured: CapturedStack | undefined;
}

/**
 * Tracks live objects by name and kind, with their age and the stack that created them, without
 * keeping them alive: an object that is collected while still tracked is reported through
 * `onCollected`. A thin public face of the lease-watching core (`./watch`): the same stack
 * capture and trimming, and the same collection watch, as the pool's leases.
 *
 * The tracker holds each object only weakly (a WeakMap from object to record, and a
 * `CollectionWatch` whose record is the held value); the set of records is what `live()` reads.
 */
export class LeakTracker {
  readonly #records = new Set<Record>();
  readonly #byObject = new WeakMap<object, Record>();
  readonly #collection: CollectionWatch<Record>;
  readonly #captureStacks: boolean;
  readonly #onCollected: ((info: TrackedInfo) => void) | undefined;

  constructor(options: LeakTrackerOptions = {}) {
    this.#captureStacks = options.captureStacks ?? true;
    this.#onCollected = options.onCollected;
    this.#collection = new CollectionWatch((record) => {
      if (!this.#records.delete(record)) return;
      try {
        this.#onCollected?.(toInfo(record, performance.now()));
      } catch {
        // A throwing callback must not break finalization of other records.
      }
    });
  }

  /** Starts tracking `object`. Tracking an object twice replaces its record. */
  track(object: object, meta: { name: string; kind?: string }): void {
    if (typeof object !== 'object' && typeof object !== 'function') {
      throw new TypeError('LeakTracker.track(object, meta) needs an object or function to track.');
    }
    this.untrack(object);
    const record: Record = {
      name: meta.name,
      kind: meta.kind ?? 'resource',
      createdAt: Date.now(),
      startedAt: performance.now(),
      captured: this.#captureStacks ? captureStack(this.track) : undefined,
    };
    // Formatted now: an unformatted stack would keep the caller's frames, and so maybe `object`
    // itself (`track(this)` in a constructor), alive.
    formatStack(record.captured);
    this.#records.add(record);
    this.#byObject.set(object, record);
    this.#collection.watch(object, record);
  }

  /** Stops tracking `object`; returns false if it was not tracked. */
  untrack(object: object): boolean {
    const record = this.#byObject.get(object);
    if (record === undefined) return false;
    this.#byObject.delete(object);
    this.#records.delete(record);
    this.#collection.unwatch(record);
    return true;
  }

  /** Every tracked object still live, oldest first. */
  live(): TrackedInfo[] {
    const now = performance.now();
    return [...this.#records].sort((a, b) => a.startedAt - b.startedAt).map((r) => toInfo(r, now));
  }

  get size(): number {
    return this.#records.size;
  }

  /** Forgets everything tracked (nothing is reported). */
  clear(): void {
    this.#records.clear();
  }
}

function toInfo(record: Record, now: number): TrackedInfo {
  return {
    name: record.name,
    kind: record.kind,
    createdAt: record.createdAt,
    ageMillis: now - record.startedAt,
    stack: formatStack(record.captured),
  };
}
