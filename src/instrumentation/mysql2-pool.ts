/**
 * Patches mysql2's core pool class so that an application's own `createPool()` pools (callback
 * and promise APIs alike: the promise pool wraps a core pool) publish poolwatch's events through
 * a `WatchedMysql2Pool` each (see `../adapters/mysql2-pool.ts`).
 *
 * `getConnection`, `releaseConnection` and `end` are wrapped where they are defined (mysql2 3.x:
 * `lib/base/pool.js`, found from the `Pool` class mysql2 exports). `pool.query()` and
 * `pool.execute()` check out through `getConnection`. Wrappers follow `./prototype-patch.ts`;
 * `@opentelemetry/instrumentation-mysql2` wraps the connection's `query`/`execute`, not these.
 */
import type { ErrorReporter, WatchedCheckouts } from '../adapters/checkouts';
import {
  WatchedMysql2Pool,
  type Mysql2PoolLike,
  type ResolvedMysql2PoolOptions,
} from '../adapters/mysql2-pool';
import {
  ownerOf,
  patchPrototype,
  unpatchPrototype,
  type Method,
  type PrototypePatch,
} from './prototype-patch';

/** mysql2 versions patched: the 3.x line (tested 3.24). */
export const MYSQL2_VERSIONS = ['>=3 <4'];

type AnyMethod = (this: unknown, ...args: unknown[]) => unknown;

const METHODS = ['getConnection', 'releaseConnection', 'end'];

export class Mysql2PoolPatcher {
  readonly #options: () => ResolvedMysql2PoolOptions | undefined;
  readonly #report: ErrorReporter;
  #watched = new WeakMap<object, WatchedMysql2Pool | null>();
  readonly #live = new Set<WatchedMysql2Pool>();

  constructor(options: () => ResolvedMysql2PoolOptions | undefined, report: ErrorReporter) {
    this.#options = options;
    this.#report = report;
  }

  /** Patches mysql2's exports (idempotent). */
  patch<T>(moduleExports: T): T {
    try {
      if (this.#options() === undefined) return moduleExports; // mysql2Pool: false
      const proto = poolPrototype(moduleExports);
      if (proto === undefined) {
        this.#report('mysql2 exports no Pool class with getConnection()', undefined);
        return moduleExports;
      }
      patchPrototype(proto, METHODS, wrap, this);
    } catch (error) {
      this.#report('failed to patch mysql2', error);
    }
    return moduleExports;
  }

  unpatch<T>(moduleExports: T): T {
    try {
      const proto = poolPrototype(moduleExports);
      if (proto !== undefined) unpatchPrototype(proto, this);
    } catch (error) {
      this.#report('failed to unpatch mysql2', error);
    }
    for (const watched of this.#live) watched.detach();
    this.#live.clear();
    this.#watched = new WeakMap();
    return moduleExports;
  }

  getConnection(pool: Mysql2PoolLike, original: AnyMethod, cb: unknown, above: Method): unknown {
    const watched = this.#watchedFor(pool);
    if (watched === undefined) return original.call(pool, cb);
    return watched.getConnection(pool, original, cb, above);
  }

  released(pool: Mysql2PoolLike, connection: unknown): void {
    const watched = this.#watched.get(pool);
    if (watched) watched.released(connection);
  }

  /** `end()`: the pool leaves `openPools`, and its open holds end (mysql2 ignores their release). */
  ended(pool: Mysql2PoolLike): void {
    try {
      this.#watched.get(pool)?.close(true);
    } catch (error) {
      this.#report('failed to follow a mysql2 pool end()', error);
    }
  }

  #watchedFor(pool: Mysql2PoolLike): WatchedMysql2Pool | undefined {
    const known = this.#watched.get(pool);
    if (known !== undefined) return known === null || known.closed ? undefined : known;
    const options = this.#options();
    // A closed pool fails the checkout by itself; it gets no adapter.
    if (options === undefined || pool._closed) return undefined;
    try {
      const watched = new WatchedMysql2Pool(pool, options, this.#report, (closed) =>
        this.#live.delete(closed as WatchedMysql2Pool),
      );
      this.#watched.set(pool, watched);
      this.#live.add(watched);
      return watched;
    } catch (error) {
      this.#watched.set(pool, null);
      this.#report('failed to observe a mysql2 pool', error);
      return undefined;
    }
  }

  /** The adapters open now (tests). */
  get live(): ReadonlySet<WatchedCheckouts> {
    return this.#live;
  }
}

/** The prototype that defines the pool's methods (mysql2 3.x: the base pool under `Pool`). */
function poolPrototype(moduleExports: unknown): object | undefined {
  let exported = moduleExports as { default?: unknown; [Symbol.toStringTag]?: unknown } | undefined;
  if (exported?.[Symbol.toStringTag] === 'Module') {
    exported = exported.default as typeof exported;
  }
  const Pool = (exported as { Pool?: { prototype?: unknown } } | undefined)?.Pool;
  const proto = Pool?.prototype;
  if (typeof proto !== 'object' || proto === null) return undefined;
  const owner = ownerOf(proto, 'getConnection');
  if (owner === undefined) return undefined;
  for (const name of METHODS) {
    if (typeof (owner as Record<string, unknown>)[name] !== 'function') return undefined;
  }
  return owner;
}

const wrap = (name: string, original: Method, patch: PrototypePatch<Mysql2PoolPatcher>): Method => {
  const call = original as unknown as AnyMethod;
  if (name === 'getConnection') {
    const getConnection = function (this: Mysql2PoolLike, cb: unknown): unknown {
      const owner = patch.owner;
      // eslint-disable-next-line prefer-rest-params
      if (owner === undefined) return call.apply(this, arguments as never);
      return owner.getConnection(this, call, cb, getConnection as Method);
    };
    return getConnection as Method;
  }
  if (name === 'releaseConnection') {
    return function releaseConnection(this: Mysql2PoolLike, connection: unknown): unknown {
      patch.owner?.released(this, connection);
      // eslint-disable-next-line prefer-rest-params
      return call.apply(this, arguments as never);
    } as Method;
  }
  return function end(this: Mysql2PoolLike): unknown {
    patch.owner?.ended(this);
    // eslint-disable-next-line prefer-rest-params
    return call.apply(this, arguments as never);
  } as Method;
};
