import v8 from 'node:v8';
import vm from 'node:vm';

/**
 * Finding what was dropped: an object that is garbage-collected while still watched was lost
 * without being given back, which is a leak. One `FinalizationRegistry` per watch; the held value
 * (what the callback receives) is the watcher's own record, never the watched object, and doubles
 * as the unregister token.
 */
export class CollectionWatch<R extends object> {
  readonly #registry: FinalizationRegistry<R>;

  constructor(onCollected: (record: R) => void) {
    this.#registry = new FinalizationRegistry(onCollected);
  }

  /** Reports `record` when `target` is collected, unless `unwatch(record)` comes first. */
  watch(target: object, record: R): void {
    this.#registry.register(target, record, record);
  }

  unwatch(record: R): void {
    this.#registry.unregister(record);
  }
}

/**
 * A major garbage collection on demand, for a pool starved by leases that may have been dropped:
 * V8 may run none for a minute or more on a quiet heap (young-generation collections do not find
 * old leases), and until it does, a dropped lease keeps its slot. The collector is `globalThis.gc`
 * under `--expose-gc`, otherwise one obtained at run time (`v8.setFlagsFromString('--expose-gc')`
 * then `gc` from a new context; `globalThis` is left as it was). Process-wide, at most once per
 * `minIntervalMillis` whichever pool asks, and never more than a tenth of the time.
 */
let collector: (() => void) | null | undefined;
let lastForcedAt = -Infinity;

export function collectGarbage(now: number, minIntervalMillis: number): boolean {
  if (now - lastForcedAt < Math.max(minIntervalMillis, lastPauseMillis * PAUSE_SHARE_INVERSE)) {
    return false;
  }
  const gc = obtainCollector();
  if (gc === undefined) return false;
  lastForcedAt = now;
  const start = performance.now();
  gc();
  lastPauseMillis = performance.now() - start;
  return true;
}

/**
 * Forced collections take at most a tenth of the time: on a large heap a full collection pauses
 * for hundreds of milliseconds (about 1 s for 340 MB of small objects on the project's VMs), and
 * the next one waits ten times that.
 */
const PAUSE_SHARE_INVERSE = 10;
let lastPauseMillis = 0;

function obtainCollector(): (() => void) | undefined {
  if (collector === undefined) {
    const global = (globalThis as { gc?: unknown }).gc;
    if (typeof global === 'function') collector = global as () => void;
    else {
      try {
        v8.setFlagsFromString('--expose-gc');
        const gc: unknown = vm.runInNewContext('gc');
        collector = typeof gc === 'function' ? (gc as () => void) : null;
      } catch {
        collector = null;
      }
    }
  }
  return collector ?? undefined;
}
