/**
 * The floor of what a promise-based pool costs: an idle stack, a FIFO queue of waiters and
 * nothing else (no timeouts, no validation, no events, no bookkeeping of borrowed resources).
 * Any real pool pays this plus its features; the gap to this row is the price of those
 * features. Not for production use: a failed `create()` is simply rethrown.
 */
export class MinimalPool<T> {
  private readonly idle: T[] = [];
  /** FIFO of pending acquires; `head` avoids the O(n) cost of `Array#shift`. */
  private waiters: ((resource: T) => void)[] = [];
  private head = 0;
  private size = 0;

  constructor(
    private readonly create: () => Promise<T>,
    private readonly max: number,
  ) {}

  acquire(): Promise<T> {
    // LIFO reuse keeps the hottest resource in use, as most real pools do.
    if (this.idle.length > 0) return Promise.resolve(this.idle.pop()!);
    if (this.size < this.max) {
      this.size++;
      return this.create().catch((err: unknown) => {
        this.size--;
        throw err;
      });
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  release(resource: T): void {
    if (this.head === this.waiters.length) {
      this.idle.push(resource);
      return;
    }
    const waiter = this.waiters[this.head]!;
    this.waiters[this.head++] = undefined!; // drop the reference for the GC
    // Under steady contention the queue never drains, so compact it now and then.
    if (this.head >= 1024 && this.head * 2 >= this.waiters.length) {
      this.waiters = this.waiters.slice(this.head);
      this.head = 0;
    }
    waiter(resource);
  }

  /** Destroys idle resources. Callers must have released everything first. */
  async close(destroy: (resource: T) => Promise<void>): Promise<void> {
    const idle = this.idle.splice(0);
    this.size -= idle.length;
    await Promise.all(idle.map(destroy));
  }
}
