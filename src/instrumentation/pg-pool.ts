/**
 * Patches `pg-pool` (what `pg.Pool` is) so that an application's own pools publish poolwatch's
 * events through a `WatchedPgPool` adapter each (see `./pg-pool-watch.ts`).
 *
 * Only `Pool.prototype.connect` and `.end` are wrapped: `pool.query()` checks out through
 * `connect()`. Per-pool state is created at a pool's first `connect()` after the patch and kept
 * in a WeakMap keyed on the pool, never on the pool or its clients.
 *
 * The wrappers carry no shimmer marks (`__wrapped`), on purpose. `InstrumentationBase._wrap`
 * unwraps whatever shimmer-wrapped method it finds before wrapping, and contrib's
 * `@opentelemetry/instrumentation-pg` wraps this same `connect`: with shimmer marks on both, the
 * instrumentation registered second would silently remove the other's wrapper. Ours is therefore
 * recognised by identity (in `patches`), an `instrumentation-pg` wrapper on top of it is kept, and
 * ours is never stacked twice. Disabling restores the original methods when ours is the outermost
 * wrapper; under someone else's wrapper it cannot be removed without removing theirs, so it is
 * left in place as a pass-through (and reused by the next enable).
 */
import { InvalidOptionError } from '../errors';
import { describeValue, parseStackCapture, rejectUnknownKeys } from '../options';
import type { StackCapture } from '../types';
import {
  WatchedPgPool,
  type ErrorReporter,
  type PgPoolLike,
  type ReleaseTracking,
  type ResolvedPgPoolOptions,
} from '../adapters/pg-pool';
import { isInChain, redefine } from './prototype-patch';

/** pg-pool versions patched: what `pg` 7 and 8 depend on. */
export const PG_POOL_VERSIONS = ['>=2 <4'];

type Method = (this: PgPoolLike, ...args: unknown[]) => unknown;

interface PgPoolPrototype {
  connect: Method;
  end: Method;
}

/** The wrapping of one pg-pool `Pool.prototype`, whichever instrumentation instance owns it. */
interface Patch {
  readonly original: { readonly connect: Method; readonly end: Method };
  readonly wrapper: { readonly connect: Method; readonly end: Method };
  readonly tracking: ReleaseTracking;
  /** The patcher the wrappers call; `undefined` makes them plain pass-throughs. */
  owner: PgPoolPatcher | undefined;
}

/** The pg-pool `Pool` behind each adapter, for `reportedByInstrumentationPg()`. */
const pgPools = new WeakMap<object, WeakRef<object>>();

/**
 * Adapters whose pool instrumentation-pg was seen to report (it never stops once it has started;
 * kept on the adapter, so that it is still known once the pool is gone).
 */
const seenByInstrumentationPg = new WeakSet<object>();

/**
 * The mark `@opentelemetry/instrumentation-pg` (0.4x to 0.77 at least) leaves on a pool once it
 * has attached the listeners that feed its `db.client.connection.count` and `.pending_requests`
 * (it records `.max` at the same call). A private symbol, found by its description.
 */
const INSTRUMENTATION_PG_MARK = 'opentelemetry.instrumentation.pg.eventListenersSet';

/** Whether `pool` is the adapter of a pg-pool `Pool` (rather than a poolwatch pool). */
export function isPgPoolAdapter(pool: object): boolean {
  return pgPools.has(pool);
}

/**
 * Whether `pool` is a pg.Pool adapter whose pool `@opentelemetry/instrumentation-pg` reports
 * (`db.client.connection.count`, `.pending_requests`, `.max`). Checked at each collection: it
 * marks a pool at its first `connect()` it does not skip (`requireParentSpan`).
 */
export function reportedByInstrumentationPg(adapter: object): boolean {
  if (seenByInstrumentationPg.has(adapter)) return true;
  const pool = pgPools.get(adapter)?.deref();
  if (pool === undefined) return false;
  for (const symbol of Object.getOwnPropertySymbols(pool)) {
    if (
      symbol.description === INSTRUMENTATION_PG_MARK &&
      (pool as Record<symbol, unknown>)[symbol] === true
    ) {
      seenByInstrumentationPg.add(adapter);
      return true;
    }
  }
  return false;
}

/** Keyed on the prototype, so one `Pool` class is wrapped once, however often it is patched. */
const patches = new WeakMap<object, Patch>();

/**
 * The pg-pool patch of one `PoolInstrumentation`: installs the wrappers, owns the adapters of the
 * pools used while it is enabled, and lets go of all of them on `unpatch()` (disable).
 */
export class PgPoolPatcher {
  readonly #options: () => ResolvedPgPoolOptions | undefined;
  readonly #report: ErrorReporter;
  #watchers = new WeakMap<object, WatchedPgPool | null>();
  /** Adapters of pools that have not ended, for `unpatch()`. */
  readonly #live = new Set<WatchedPgPool>();

  constructor(options: () => ResolvedPgPoolOptions | undefined, report: ErrorReporter) {
    this.#options = options;
    this.#report = report;
  }

  /** Idempotent: a prototype already wrapped (by any patcher) is only handed to this one. */
  patch<T>(moduleExports: T, version: string | undefined): T {
    try {
      if (this.#options() === undefined) return moduleExports; // pgPool: false
      const proto = prototypeOf(moduleExports);
      if (proto === undefined) {
        this.#report('pg-pool exports no Pool class with connect() and end()', undefined);
        return moduleExports;
      }
      let patch = patches.get(proto);
      if (patch === undefined || !isInChain(proto.connect, patch.wrapper.connect)) {
        patch = install(proto, releaseTrackingFor(version));
        patches.set(proto, patch);
      }
      patch.owner = this;
    } catch (error) {
      this.#report('failed to patch pg-pool', error);
    }
    return moduleExports;
  }

  unpatch<T>(moduleExports: T): T {
    try {
      const proto = prototypeOf(moduleExports);
      const patch = proto && patches.get(proto);
      if (proto !== undefined && patch !== undefined && patch.owner === this) {
        patch.owner = undefined;
        if (proto.connect === patch.wrapper.connect && proto.end === patch.wrapper.end) {
          redefine(proto, 'connect', patch.original.connect);
          redefine(proto, 'end', patch.original.end);
          patches.delete(proto);
        }
      }
    } catch (error) {
      this.#report('failed to unpatch pg-pool', error);
    }
    for (const watcher of this.#live) watcher.detach();
    this.#live.clear();
    this.#watchers = new WeakMap();
    return moduleExports;
  }

  /** The patched `connect`, for the patcher that owns the prototype. */
  connect(pool: PgPoolLike, original: Method, args: IArguments, above: Method): unknown {
    const watcher = this.#watcherFor(pool);
    if (watcher === undefined) return original.apply(pool, args as unknown as unknown[]);
    return watcher.connect(pool, original, args, above);
  }

  /** The patched `end`: the pool leaves `openPools` (its open holds are still followed). */
  end(pool: PgPoolLike): void {
    try {
      if (pool.ending) return; // pg-pool rejects a second end()
      this.#watchers.get(pool)?.close();
    } catch (error) {
      this.#report('failed to follow a pg-pool end()', error);
    }
  }

  #watcherFor(pool: PgPoolLike): WatchedPgPool | undefined {
    const known = this.#watchers.get(pool);
    if (known !== undefined) return known === null || known.closed ? undefined : known;
    // An ended pool fails the connect by itself; it gets no adapter.
    const options = this.#options();
    if (pool.ending || options === undefined) return undefined;
    const patch = findPatch(pool);
    try {
      const watcher = new WatchedPgPool(
        pool,
        options,
        patch?.tracking ?? 'wrap',
        this.#report,
        (closed) => this.#live.delete(closed),
      );
      this.#watchers.set(pool, watcher);
      this.#live.add(watcher);
      pgPools.set(watcher, new WeakRef(pool));
      return watcher;
    } catch (error) {
      // Not retried at every connect: this pool stays unobserved.
      this.#watchers.set(pool, null);
      this.#report('failed to observe a pg-pool Pool', error);
      return undefined;
    }
  }
}

/**
 * Wraps `connect` and `end` on `proto`. The wrappers look up the patch's owner at each call, so
 * that disabling and enabling again only hands them over.
 */
function install(proto: PgPoolPrototype, tracking: ReleaseTracking): Patch {
  const original = { connect: proto.connect, end: proto.end };
  // `arguments` rather than rest parameters: the call's arguments pass through exactly as given,
  // with no array allocated per call.
  const connect = function connect(this: PgPoolLike): unknown {
    const owner = patch.owner;
    // eslint-disable-next-line prefer-rest-params
    if (owner === undefined) return original.connect.apply(this, arguments as never);
    // The captured stack starts at the caller of the outermost wrapper: under another
    // instrumentation's wrapper (instrumentation-pg enabled later), at the caller of that one.
    const top = (this as { connect?: unknown }).connect;
    const above = top === connect || !isInChain(top, connect) ? connect : (top as Method);
    // eslint-disable-next-line prefer-rest-params
    return owner.connect(this, original.connect, arguments, above);
  };
  const end = function end(this: PgPoolLike): unknown {
    patch.owner?.end(this);
    // eslint-disable-next-line prefer-rest-params
    return original.end.apply(this, arguments as never);
  };
  const patch: Patch = { original, wrapper: { connect, end }, tracking, owner: undefined };
  redefine(proto, 'connect', connect);
  redefine(proto, 'end', end);
  return patch;
}

/** The patch of the pg-pool `Pool` class `pool` was made from (pg's `BoundPool` is a subclass). */
function findPatch(pool: object): Patch | undefined {
  for (let p = Object.getPrototypeOf(pool) as object | null; p !== null;) {
    const patch = patches.get(p);
    if (patch !== undefined) return patch;
    p = Object.getPrototypeOf(p) as object | null;
  }
  return undefined;
}

/** The `Pool` prototype from pg-pool's exports (CommonJS: the class; ESM: the namespace). */
function prototypeOf(moduleExports: unknown): PgPoolPrototype | undefined {
  let exported = moduleExports as { default?: unknown; [Symbol.toStringTag]?: unknown } | undefined;
  if (exported?.[Symbol.toStringTag] === 'Module') {
    exported = exported.default as typeof exported;
  }
  const proto = (exported as { prototype?: Partial<PgPoolPrototype> } | undefined)?.prototype;
  if (typeof proto?.connect !== 'function' || typeof proto.end !== 'function') return undefined;
  return proto as PgPoolPrototype;
}

/** pg-pool emits `release` since 3.6.0; older versions (or an unknown one) get `release` wrapped. */
function releaseTrackingFor(version: string | undefined): ReleaseTracking {
  const match = /^(\d+)\.(\d+)\./.exec(version ?? '');
  if (match === null) return 'wrap';
  const major = Number(match[1]);
  const minor = Number(match[2]);
  return major > 3 || (major === 3 && minor >= 6) ? 'event' : 'wrap';
}

// -------------------------------------------------------------------------------------------------
// Options

export const PG_POOL_DEFAULTS = {
  leakDetectionThresholdMillis: 30_000,
  captureStacks: 'auto' as StackCapture,
} as const;

const PG_POOL_KEYS = [
  'leakDetectionThresholdMillis',
  'captureStacks',
  'poolName',
  'connectionMetrics',
];
const CONNECTION_METRICS = ['auto', 'always', 'never'];

/** `ResolvedPgPoolOptions` plus what only the instrumentation reads. */
export interface ResolvedPgPoolConfig extends ResolvedPgPoolOptions {
  readonly connectionMetrics: 'auto' | 'always' | 'never';
}

/**
 * Validates `PoolInstrumentationConfig.pgPool` and fills in the defaults: `undefined` when it is
 * `false` (pg-pool is left alone). Throws `InvalidOptionError`.
 */
export function resolvePgPoolOptions(value: unknown): ResolvedPgPoolConfig | undefined {
  if (value === false) return undefined;
  if (value !== undefined && (typeof value !== 'object' || value === null)) {
    throw new InvalidOptionError(
      `Option "pgPool" must be an object or false, got ${describeValue(value)}.`,
    );
  }
  const o = (value ?? {}) as Record<string, unknown>;
  rejectUnknownKeys(o, PG_POOL_KEYS, 'pgPool');
  const threshold = o.leakDetectionThresholdMillis ?? PG_POOL_DEFAULTS.leakDetectionThresholdMillis;
  if (typeof threshold !== 'number' || !(threshold >= 0) || !Number.isFinite(threshold)) {
    throw new InvalidOptionError(
      `Option "pgPool.leakDetectionThresholdMillis" must be a duration in milliseconds >= 0 ` +
        `(0 turns detection off), got ${describeValue(threshold)}.`,
    );
  }
  const poolName = o.poolName;
  if (poolName !== undefined && typeof poolName !== 'function') {
    throw new InvalidOptionError(
      `Option "pgPool.poolName" must be a function, got ${describeValue(poolName)}.`,
    );
  }
  const connectionMetrics = o.connectionMetrics ?? 'auto';
  if (typeof connectionMetrics !== 'string' || !CONNECTION_METRICS.includes(connectionMetrics)) {
    throw new InvalidOptionError(
      `Option "pgPool.connectionMetrics" must be 'auto', 'always' or 'never', got ${describeValue(connectionMetrics)}.`,
    );
  }
  return {
    connectionMetrics: connectionMetrics as ResolvedPgPoolConfig['connectionMetrics'],
    leakDetectionThresholdMillis: threshold,
    stackEvery: parseStackCapture(
      o.captureStacks ?? PG_POOL_DEFAULTS.captureStacks,
      'pgPool.captureStacks',
    ),
    poolName: poolName as ResolvedPgPoolOptions['poolName'],
  };
}
