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
