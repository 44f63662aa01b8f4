/**
 * Patches knex 3 so that each knex client's tarn pool publishes poolwatch's events through a
 * `WatchedTarnPool` (see `../adapters/tarn.ts`).
 *
 * Why knex and not tarn: knex turns tarn's timeout into its own error (which is where the holders
 * must be named) and knows transactions (needed to tell a query outside its transaction). And
 * neither layer sees the application's line: `await knex('t')` calls the builder's `then` from a
 * microtask, so the stack at the checkout holds only knex's frames. The line that issued a query
 * is on the stack when the query is *built* (`knex('t')`, `knex.raw()`, `knex.schema`,
 * `knex.transaction()`), so that is where the stack policy takes it; the checkout that runs the
 * builder picks it up.
 *
 *   Client.prototype   queryBuilder/raw/schemaBuilder/transaction ─► stack taken (policy) per builder
 *   Runner.prototype   run ─────────────► that builder's stack is the next checkout's (same tick)
 *   Transaction.proto  acquireConnection ─► same for a transaction; its callback runs holding its
 *                                           connection (self-deadlock detection)
 *   Client.prototype   acquireConnection / releaseConnection ─► the checkout and its end
 *                      destroy ─────────► the pool leaves openPools
 *
 * The builder-to-stack map is a WeakMap written only when a stack was taken ('auto' takes at most
 * one per 10 ms while relaxed). A builder run on a transaction (`trx(...)`) never checks out.
 * Wrappers follow `./prototype-patch.ts` (no shimmer marks; `@opentelemetry/instrumentation-knex`
 * wraps `queryBuilder`, `raw` and `schemaBuilder` too, in either order).
 */
import { InstrumentationNodeModuleFile } from '@opentelemetry/instrumentation';
import type { ErrorReporter, WatchedCheckouts } from '../adapters/checkouts';
import {
  WatchedTarnPool,
  type KnexClientLike,
  type ResolvedKnexOptions,
  type TarnPoolLike,
} from '../adapters/tarn';
import { captureStack, type CapturedStack } from '../watch/stack';
import {
  ownerOf,
  patchPrototype,
  unpatchPrototype,
  type Method,
  type PrototypePatch,
} from './prototype-patch';

/** knex versions patched: the 3.x line (its client, runner and transaction files, tested 3.3). */
export const KNEX_VERSIONS = ['>=3 <4'];

type AnyMethod = (this: unknown, ...args: unknown[]) => unknown;

interface ClientLike extends KnexClientLike {
  /** Set on a transaction's own client (`trx`), whose queries use the transaction's connection. */
  readonly transacting?: boolean;
}

interface RunnerLike {
  readonly builder?: object;
}

interface TransactionLike {
  readonly client: ClientLike;
}

const CLIENT_METHODS = [
  'initializePool',
  'acquireConnection',
  'releaseConnection',
  'destroy',
  'queryBuilder',
  'raw',
  'schemaBuilder',
  'transaction',
];
const BUILDERS = new Set(['queryBuilder', 'raw', 'schemaBuilder', 'transaction']);

/**
 * The stack of the application line behind the checkout about to happen (set by `Runner#run` and
 * `Transaction#acquireConnection` for the synchronous extent of the call that checks out):
 * `null` when the policy took none for it, `undefined` when the checkout comes another way.
 */
let pendingStack: CapturedStack | null | undefined;

/**
 * The knex patch of one `PoolInstrumentation`: installs the wrappers on the three knex files,
 * owns the adapters of the tarn pools used while it is enabled, lets go of all on `unpatch()`.
 */
export class KnexPatcher {
  readonly #options: () => ResolvedKnexOptions | undefined;
  readonly #report: ErrorReporter;
  #watched = new WeakMap<object, WatchedTarnPool | null>();
  readonly #live = new Set<WatchedTarnPool>();
  /** Stacks of builders (and transactions) taken when they were made. */
  #stacks = new WeakMap<object, CapturedStack>();
  readonly #patched = new Set<object>();
  /** Dialect client prototypes whose own builder methods were wrapped (see `#patchDialect`). */
  readonly #dialects = new Set<object>();
  /** knex's `Client.prototype`, once patched. */
  #clientProto: object | undefined;

  constructor(options: () => ResolvedKnexOptions | undefined, report: ErrorReporter) {
    this.#options = options;
    this.#report = report;
  }

  /** The file definitions for `InstrumentationNodeModuleDefinition('knex', …)`. */
  files(): InstrumentationNodeModuleFile[] {
    const file = (path: string, patch: (proto: object) => void) =>
      new InstrumentationNodeModuleFile(
        `knex/lib/${path}`,
        KNEX_VERSIONS,
        (exports: unknown) => {
          this.#apply(exports, path, patch);
          return exports;
        },
        (exports: unknown) => {
          this.#remove(exports);
          return exports;
        },
      );
    return [
      file('client.js', (proto) => {
        patchPrototype(proto, CLIENT_METHODS, wrapClient, this);
        this.#clientProto = proto;
      }),
      file('execution/runner.js', (proto) => patchPrototype(proto, ['run'], wrapRunner, this)),
      file('execution/transaction.js', (proto) =>
        patchPrototype(proto, ['acquireConnection'], wrapTransaction, this),
      ),
    ];
  }

  #apply(exports: unknown, path: string, patch: (proto: object) => void): void {
    try {
      if (this.#options() === undefined) return; // knex: false
      const proto = (exports as { prototype?: unknown } | undefined)?.prototype;
      if (typeof proto !== 'object' || proto === null) {
        this.#report(`knex/lib/${path} exports no class`, undefined);
        return;
      }
      patch(proto);
      this.#patched.add(proto);
    } catch (error) {
      this.#report('failed to patch knex', error);
    }
  }

  #remove(exports: unknown): void {
    try {
      const proto = (exports as { prototype?: unknown } | undefined)?.prototype;
      if (typeof proto === 'object' && proto !== null) {
        unpatchPrototype(proto, this);
        this.#patched.delete(proto);
      }
    } catch (error) {
      this.#report('failed to unpatch knex', error);
    }
    // Every file is unpatched on disable: let go of the dialects and the pools once.
    if (this.#patched.size === 0) {
      for (const proto of this.#dialects) unpatchPrototype(proto, this);
      this.#dialects.clear();
      this.#clientProto = undefined;
      for (const watched of this.#live) watched.detach();
      this.#live.clear();
      this.#watched = new WeakMap();
      this.#stacks = new WeakMap();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Called by the wrappers

  /** A builder (or transaction) was made by `client`: the stack policy may take its stack. */
  built(client: ClientLike, builder: unknown, above: Method): void {
    try {
      if (client.transacting || typeof builder !== 'object' || builder === null) return;
      const watched = this.#watchedFor(client);
      if (watched === undefined) return;
      // Inside a transaction callback, a query on the outer knex is the one a self-deadlock
      // error must point at: always take its stack.
      const captured = watched.insideTransaction()
        ? captureStack(above)
        : watched.captureFor(above);
      if (captured !== undefined) this.#stacks.set(builder, captured);
    } catch (error) {
      this.#report('failed to follow a knex query', error);
    }
  }

  /** The stack taken when `builder` was made, `null` if none. */
  stackOf(builder: unknown): CapturedStack | null {
    return (typeof builder === 'object' && builder !== null && this.#stacks.get(builder)) || null;
  }

  acquire(client: ClientLike, original: AnyMethod, args: IArguments, above: Method): unknown {
    const captured = pendingStack;
    pendingStack = undefined;
    const watched = this.#watchedFor(client);
    if (watched === undefined) return original.apply(client, args as unknown as unknown[]);
    return watched.acquire(
      () => original.apply(client, args as unknown as unknown[]) as Promise<object>,
      captured,
      above,
    );
  }

  /** A client made its pool (at construction, or `knex.initialize()`): watch it from now on. */
  poolReady(client: ClientLike): void {
    try {
      this.#watchedFor(client);
    } catch (error) {
      this.#report('failed to observe a knex pool', error);
    }
  }

  release(client: ClientLike, connection: unknown): void {
    if (typeof connection !== 'object' || connection === null || client.pool === undefined) return;
    this.#watched.get(client.pool)?.checkedIn(connection, 'released');
  }

  /** `knex.destroy()`: the pool leaves `openPools`; its open holds are still followed. */
  destroy(client: ClientLike): void {
    try {
      const pool = client.pool;
      if (pool !== undefined) this.#watched.get(pool)?.close();
    } catch (error) {
      this.#report('failed to follow a knex destroy()', error);
    }
  }

  /**
   * A transaction's checkout: its callback `cb(connection)` (which runs the user's transaction
   * callback) runs holding the connection.
   */
  transactionCallback(trx: TransactionLike, cb: unknown): unknown {
    if (typeof cb !== 'function' || trx.client.transacting) return cb;
    const watched = this.#watchedFor(trx.client);
    if (watched === undefined) return cb;
    return (connection: unknown) =>
      typeof connection === 'object' && connection !== null
        ? watched.runHolding(connection, cb as (c: object) => unknown, connection)
        : (cb as (c: unknown) => unknown)(connection);
  }

  #watchedFor(client: ClientLike): WatchedTarnPool | undefined {
    const pool = client.pool;
    if (pool === undefined || pool === null) return undefined;
    const known = this.#watched.get(pool);
    if (known !== undefined) return known === null || known.closed ? undefined : known;
    const options = this.#options();
    if (options === undefined || !isTarnPool(pool)) return undefined;
    try {
      const watched = new WatchedTarnPool(pool, client, options, this.#report, (closed) =>
        this.#live.delete(closed as WatchedTarnPool),
      );
      this.#watched.set(pool, watched);
      this.#live.add(watched);
      this.#patchDialect(client);
      return watched;
    } catch (error) {
      this.#watched.set(pool, null);
      this.#report('failed to observe a knex pool', error);
      return undefined;
    }
  }

  /**
   * knex's dialects override `transaction()` and most `queryBuilder()`s (the pg, mysql, mysql2,
   * mssql, sqlite3… clients), so those are wrapped on the dialect's prototypes too, when a pool
   * of the dialect is first seen: which dialects an application loads is known only then.
   */
  #patchDialect(client: ClientLike): void {
    const base = this.#clientProto;
    if (base === undefined) return;
    const byOwner = new Map<object, string[]>();
    for (const name of BUILDERS) {
      const owner = ownerOf(Object.getPrototypeOf(client) as object, name);
      if (owner === undefined || owner === base) continue;
      const names = byOwner.get(owner) ?? [];
      names.push(name);
      byOwner.set(owner, names);
    }
    for (const [proto, names] of byOwner) {
      patchPrototype(proto, names, wrapClient, this);
      this.#dialects.add(proto);
    }
  }

  /** The adapters open now (tests). */
  get live(): ReadonlySet<WatchedCheckouts> {
    return this.#live;
  }
}

function isTarnPool(pool: unknown): pool is TarnPoolLike {
  const p = pool as Partial<Record<keyof TarnPoolLike, unknown>>;
  return (
    typeof p.numUsed === 'function' &&
    typeof p.numFree === 'function' &&
    typeof p.numPendingAcquires === 'function' &&
    typeof p.numPendingCreates === 'function' &&
    typeof p.max === 'number'
  );
}

// -------------------------------------------------------------------------------------------------
// Wrappers. `arguments` rather than rest parameters: the call's arguments pass through as given.

const wrapClient = (name: string, original: Method, patch: PrototypePatch<KnexPatcher>): Method => {
  const call = original as unknown as AnyMethod;
  if (name === 'acquireConnection') {
    const acquireConnection = function (this: ClientLike): unknown {
      const owner = patch.owner;
      // eslint-disable-next-line prefer-rest-params
      if (owner === undefined) return call.apply(this, arguments as never);
      // eslint-disable-next-line prefer-rest-params
      return owner.acquire(this, call, arguments, acquireConnection as Method);
    };
    return acquireConnection as Method;
  }
  if (name === 'releaseConnection') {
    return function releaseConnection(this: ClientLike, connection: unknown): unknown {
      patch.owner?.release(this, connection);
      // eslint-disable-next-line prefer-rest-params
      return call.apply(this, arguments as never);
    } as Method;
  }
  if (name === 'initializePool') {
    return function initializePool(this: ClientLike): unknown {
      // eslint-disable-next-line prefer-rest-params
      const result = call.apply(this, arguments as never);
      patch.owner?.poolReady(this);
      return result;
    } as Method;
  }
  if (name === 'destroy') {
    return function destroy(this: ClientLike): unknown {
      patch.owner?.destroy(this);
      // eslint-disable-next-line prefer-rest-params
      return call.apply(this, arguments as never);
    } as Method;
  }
  if (BUILDERS.has(name)) {
    const builder = function (this: ClientLike): unknown {
      // eslint-disable-next-line prefer-rest-params
      const made = call.apply(this, arguments as never);
      patch.owner?.built(this, made, builder as Method);
      return made;
    };
    Object.defineProperty(builder, 'name', { value: name });
    return builder as Method;
  }
  return original;
};

const wrapRunner = (_name: string, original: Method, patch: PrototypePatch<KnexPatcher>): Method =>
  function run(this: RunnerLike): unknown {
    const owner = patch.owner;
    const call = original as unknown as AnyMethod;
    // eslint-disable-next-line prefer-rest-params
    if (owner === undefined) return call.apply(this, arguments as never);
    const outer = pendingStack;
    pendingStack = owner.stackOf(this.builder);
    try {
      // eslint-disable-next-line prefer-rest-params
      return call.apply(this, arguments as never);
    } finally {
      pendingStack = outer;
    }
  } as Method;

const wrapTransaction = (
  _name: string,
  original: Method,
  patch: PrototypePatch<KnexPatcher>,
): Method =>
  function acquireConnection(this: TransactionLike, config: unknown, cb: unknown): unknown {
    const owner = patch.owner;
    const call = original as unknown as AnyMethod;
    // eslint-disable-next-line prefer-rest-params
    if (owner === undefined) return call.apply(this, arguments as never);
    const outer = pendingStack;
    pendingStack = owner.stackOf(this);
    try {
      return call.call(this, config, owner.transactionCallback(this, cb));
    } finally {
      pendingStack = outer;
    }
  } as Method;
