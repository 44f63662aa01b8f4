/**
 * A mysql2 `Pool` (`mysql.createPool()`, and the core pool under `mysql2/promise`'s) seen as a
 * poolwatch pool. Every checkout goes through the core pool's `getConnection(cb)`: the callback
 * API, the promise API's `getConnection()`, and `pool.query()` / `pool.execute()`, which check
 * out and release by themselves. Every return goes through `releaseConnection(connection)`:
 * `connection.release()`, and `destroy()` or a connection error of a held connection (the
 * connection is out of the pool then: the hold ends as `destroyed`). `../instrumentation/mysql2-pool.ts`
 * patches those and calls into this adapter. Knows nothing of OpenTelemetry.
 *
 * mysql2 has no acquire timeout (a caller waits until a connection comes back), so no timeouts
 * are counted; a leak shows as a suspected leak and as waiting callers.
 */
import type { PoolStats, ServerInfo } from '../types';
import {
  WatchedCheckouts,
  asError,
  nameFromHook,
  type ErrorReporter,
  type ResolvedCheckoutOptions,
} from './checkouts';

/** mysql2's pool, as read here: its configuration and its three queues (mysql2 3.x). */
export interface Mysql2PoolLike {
  readonly config?: {
    readonly connectionLimit?: unknown;
    readonly connectionConfig?: Readonly<Record<string, unknown>>;
  };
  readonly _allConnections?: { readonly length: number };
  readonly _freeConnections?: { readonly length: number };
  readonly _connectionQueue?: { readonly length: number };
  readonly _closed?: boolean;
}

/** A checked-out mysql2 `PoolConnection`: `_pool` is cleared when it leaves the pool. */
interface PoolConnectionLike {
  readonly _pool?: unknown;
}

/** What `mysql2Pool.poolName` receives. */
export interface Mysql2PoolNameInfo {
  /** The pool's configuration as mysql2 keeps it (`pool.config`). */
  readonly config: object;
  /** Where it connects, as telemetry reports it (never credentials). */
  readonly server: ServerInfo;
}

export type ResolvedMysql2PoolOptions = ResolvedCheckoutOptions<Mysql2PoolNameInfo>;

type GetConnectionCallback = (error: unknown, connection?: unknown) => unknown;

/** Marks our callback wrappers: mysql2 re-enters `getConnection` with a queued callback. */
const WRAPPED = Symbol('poolwatch.mysql2.wrapped');

const NO_STACK_HINT =
  "no stack captured: mysql2Pool.captureStacks: 'always' records every checkout";

/**
 * The adapter of one mysql2 pool, created at its first checkout after the patch, in `openPools`
 * until `end()`. `end()` ends the holds still open as `closed`: mysql2 ignores a `release()`
 * after it.
 */
export class WatchedMysql2Pool extends WatchedCheckouts<Mysql2PoolLike> {
  constructor(
    pool: Mysql2PoolLike,
    options: ResolvedMysql2PoolOptions,
    report: ErrorReporter,
    onClose: (watched: WatchedCheckouts) => void,
  ) {
    const server = mysql2ServerInfo(pool.config?.connectionConfig ?? {});
    const fallback = `${server.address}${server.port === undefined ? '' : `:${server.port}`}/${server.namespace ?? ''}`;
    super(
      pool,
      nameFromHook(
        options.poolName,
        { config: pool.config ?? {}, server },
        fallback,
        report,
        'mysql2Pool',
      ),
      server,
      options,
      NO_STACK_HINT,
      report,
      onClose,
    );
  }

  /** mysql2's queues. `max` is `connectionLimit` (0 there means unlimited, reported as 0). */
  stats(): PoolStats {
    const pool = this.pool;
    const size = pool?._allConnections?.length ?? 0;
    const idle = pool?._freeConnections?.length ?? 0;
    const limit = pool?.config?.connectionLimit;
    return {
      name: this.name,
      size,
      idle,
      used: size - idle,
      pending: pool?._connectionQueue?.length ?? 0,
      creating: 0,
      min: 0,
      max: typeof limit === 'number' ? limit : 0,
      created: 0,
      destroyed: 0,
      ...this.leakCounts(),
    };
  }

  /** Runs mysql2's `getConnection(cb)` (`original`) on `pool`, following the checkout. */
  getConnection(
    pool: Mysql2PoolLike,
    original: (this: Mysql2PoolLike, cb: unknown) => unknown,
    cb: unknown,
    above: (...args: never[]) => unknown,
  ): unknown {
    if (typeof cb !== 'function' || (cb as { [WRAPPED]?: true })[WRAPPED]) {
      return original.call(pool, cb);
    }
    const callback = cb as GetConnectionCallback;
    const checkout = this.startCheckout(above, undefined);
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const adapter = this;
    const wrapped = function (this: unknown, error: unknown, connection?: unknown): unknown {
      if (error !== undefined && error !== null) {
        adapter.checkoutFailed(checkout, asError(error), false);
      } else if (typeof connection === 'object' && connection !== null) {
        adapter.checkedOut(checkout, connection);
      }
      // eslint-disable-next-line prefer-rest-params
      return callback.apply(this, arguments as never);
    };
    (wrapped as { [WRAPPED]?: true })[WRAPPED] = true;
    return original.call(pool, wrapped);
  }

  /** `releaseConnection(connection)`: out of the pool already means destroyed. */
  released(connection: unknown): void {
    if (typeof connection !== 'object' || connection === null) return;
    const inPool = (connection as PoolConnectionLike)._pool;
    this.checkedIn(connection, inPool ? 'released' : 'destroyed');
  }
}

/** Where a mysql2 pool connects: host (or socket), port, database; never the user or password. */
export function mysql2ServerInfo(config: Readonly<Record<string, unknown>>): ServerInfo {
  const socket =
    typeof config.socketPath === 'string' && config.socketPath !== ''
      ? config.socketPath
      : undefined;
  const host = typeof config.host === 'string' && config.host !== '' ? config.host : 'localhost';
  const port = Number(config.port ?? 3306);
  const info: { system: string; address: string; port?: number; namespace?: string } = {
    system: 'mysql',
    address: socket ?? host,
  };
  if (socket === undefined && Number.isInteger(port) && port > 0 && port < 65536) info.port = port;
  if (typeof config.database === 'string' && config.database !== '') {
    info.namespace = config.database;
  }
  return info;
}
