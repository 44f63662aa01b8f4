/**
 * pg-pool 3 ships no type declarations and @types/pg only types it through `pg.Pool`, which
 * always brings pg's real Client. This is the slice of its API the benchmark uses.
 */
declare module 'pg-pool' {
  import type { EventEmitter } from 'node:events';

  namespace Pool {
    interface PoolClient {
      /** Attached by pg-pool on every checkout. */
      release(err?: Error | boolean): void;
    }

    interface Options<C> {
      max?: number;
      min?: number;
      idleTimeoutMillis?: number;
      connectionTimeoutMillis?: number;
      allowExitOnIdle?: boolean;
      /** Constructed as `new Client(poolOptions)` for every new connection. */
      Client?: new (options: unknown) => C;
    }
  }

  class Pool<C extends EventEmitter> extends EventEmitter {
    constructor(options?: Pool.Options<C>);
    connect(): Promise<C & Pool.PoolClient>;
    end(): Promise<void>;
    readonly totalCount: number;
    readonly idleCount: number;
    readonly waitingCount: number;
  }

  export = Pool;
}
