/**
 * `PgPool`: a drop-in for `pg.Pool` (node-postgres' pool) on top of a poolwatch `Pool`, so code
 * and libraries written for pg's pool (Kysely's `PostgresDialect`, plain `pool.query()`) get
 * leak detection without changes. Everything a pg.Pool user can observe behaves as in pg-pool
 * 3.x, except the differences listed in the README ("Drop-in for pg.Pool"), each with its reason;
 * `test/integration/pg-compat.test.ts` runs that table against a real pg.Pool and a PgPool.
 *
 * Design: the poolwatch pool owns the `pg.Client`s; `connect()` hands out a per-checkout handle
 * (`PgPoolClient`, wrapped in a Proxy) that holds the lease, implements what must differ (query
 * and end only while checked out, listeners that go away at release) and falls back to the
 * client for every other property, so `binary`, `processID`, `connectionParameters` and fields an
 * `onConnect` hook or a `'connect'` listener set read as on pg's client. The pool references the
 * client, never the handle, so a handle the application drops without `release()` is found by
 * garbage collection and its connection closed (any transaction rolled back by the server).
 * Handing out the raw client, as pg-pool does, would make that impossible: the pool keeps it.
 *
 *     app ──► Proxy ──► PgPoolClient ──► Lease ──► Entry (pool) ──► pg.Client
 *                            ▲   ▲                                      │
 *                            │   └──── WeakRef (event forwarders) ◄─────┘
 *                            └──────── PgPool#pinned while it has listeners
 *
 * Hazards: anything reachable from the pool (the client, its listeners) must not reference a
 * handle strongly, or a dropped handle is never collected: listeners added on a handle are
 * forwarded through a WeakRef and removed at release. A handle with listeners other than
 * `'error'` (a LISTEN consumer waiting for `'notification'`) is in use even when no variable
 * references it: the facade pins it until the listeners are removed or the client released.
 *
 * Timing that pg users rely on lives here, per client, as in pg-pool: the idle deadline
 * (`idleTimeoutMillis` after a release while above `min`; one pool timer serves them all) and the
 * lifetime timer (`maxLifetimeSeconds`). They evict through the factory's `markBroken`, so the
 * poolwatch pool underneath runs without its own idle and lifetime eviction (its destroy reason
 * reads `broken`). `test/integration/pg-compat-table.ts` is the behaviour table run on both pools.
 */
import { EventEmitter } from 'node:events';
import type {
  Client,
  ClientBase,
  ClientConfig,
  Notification,
  PoolConfig,
  QueryArrayConfig,
  QueryArrayResult,
  QueryConfig,
  QueryResult,
  QueryResultRow,
  TransactionStatus,
} from 'pg';
import {
  AcquireTimeoutError,
  CreateFailedError,
  InvalidOptionError,
  LeaseError,
  PoolClosedError,
} from '../errors';
import { Pool, type Lease } from '../pool';
import type { CreateContext, LeaseInfo, PoolOptions, ResourceFactory } from '../types';
import { DEFAULTS, describeValue, rejectUnknownKeys } from '../options';
import { asError, functionOption, millisOption } from './common';
import { isPgClientUsable, pgFactory, type PgFactoryOptions } from './pg';

/** poolwatch options for a `PgPool`: the pool's own (minus `factory`) and the adapter's. */
export interface PgPoolwatchOptions
  extends
    Omit<PoolOptions<Client>, 'factory'>,
    Pick<
      PgFactoryOptions,
      'validateQuery' | 'validateTimeoutMillis' | 'resetQuery' | 'endTimeoutMillis'
    > {}

/**
 * `pg.PoolConfig` plus `poolwatch`. Every key that is not a pool option goes to `new pg.Client()`,
 * as with pg's pool. Mapping (README, "Drop-in for pg.Pool", has the reasons):
 *
 * | pg option | poolwatch |
 * | --- | --- |
 * | `max` (legacy `poolSize`), `min` | same (defaults 10, 0); `min` clients are also opened ahead |
 * | `idleTimeoutMillis` | per-client timer as in pg (default 10000; `0`/`null` never) |
 * | `connectionTimeoutMillis` | `acquireTimeoutMillis` (`0`: wait forever, as in pg; unset: poolwatch's 30 s), and each client's connect timeout (unset: 10 s) |
 * | `maxLifetimeSeconds` | per-client timer as in pg (unset: poolwatch's 30 min; `0`: never) |
 * | `maxUses` | a client is closed at the release that reaches it |
 * | `allowExitOnIdle` | idle clients and timers do not keep the process alive |
 * | `onConnect`, `verify`, `log`, `Client` | as in pg |
 * | `Promise` | ignored (native promises) |
 */
export interface PgPoolConfig extends PoolConfig {
  /** pg-pool's legacy name for `max`. */
  poolSize?: number;
  /** poolwatch options: leak detection, alerts, names... A key also given as a pg option is an error. */
  poolwatch?: PgPoolwatchOptions;
}

/** Events a client handle forwards from its connection while it is checked out. */
export type PgClientEvent = 'error' | 'notice' | 'notification' | 'end' | 'drain';
export type PgClientListener<E extends PgClientEvent> = E extends 'error'
  ? (error: Error) => void
  : E extends 'notification'
    ? (message: Notification) => void
    : E extends 'notice'
      ? (notice: PgNotice) => void
      : () => void;

/** The fields of a server notice (`RAISE NOTICE`, warnings) that pg passes to 'notice'. */
export interface PgNotice {
  readonly message?: string;
  readonly severity?: string;
  readonly code?: string;
  readonly detail?: string;
  readonly hint?: string;
}

// Keys of PgPoolConfig that configure the pool, not the client. `connectionTimeoutMillis` is
// both (as in pg-pool), so it is not listed: the clients get it too.
const POOL_KEYS = new Set([
  'max',
  'poolSize',
  'min',
  'idleTimeoutMillis',
  'maxUses',
  'maxLifetimeSeconds',
  'allowExitOnIdle',
  'Client',
  'onConnect',
  'verify',
  'log',
  'Promise',
  'poolwatch',
]);
const DRIVER_KEYS = [
  'validateQuery',
  'validateTimeoutMillis',
  'resetQuery',
  'endTimeoutMillis',
] as const;
/** pg-pool's default idle timeout, kept for compatibility (poolwatch's own is 30 s). */
const PG_IDLE_TIMEOUT_MILLIS = 10_000;
const WHERE = 'PgPool';
/** The longest delay Node's timers take. */
const MAX_TIMER_MILLIS = 2 ** 31 - 1;

// pg-pool's own messages, first line of the facade's errors so code that matches them works.
const PG_TIMEOUT = 'timeout exceeded when trying to connect';
const PG_CONNECT_TIMEOUT = 'Connection terminated due to connection timeout';
const PG_ENDED = 'Cannot use a pool after calling end on the pool';
const PG_END_TWICE = 'Called end on pool more than once';
const PG_DOUBLE_RELEASE = 'Release called on client which has already been released to the pool.';

/** As in pg: `result` is only meaningful when `error` is undefined. */
type Callback<T> = (error: Error | undefined, result: T) => void;
type ConnectCallback = (
  error: Error | undefined,
  client: PgPoolClient | undefined,
  done: (release?: Error | boolean) => void,
) => void;
type QueryArgs = [text: unknown, values?: unknown, callback?: unknown];
type Verify = (client: Client, done: (error?: Error) => void) => void;
type Log = (...messages: unknown[]) => void;
// EventEmitter's own listener type (Node's typings use any[] too).
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyListener = (...args: any[]) => void;

/** What the facade keeps per pg.Client, from connect to close. Never references a handle. */
interface ClientRecord {
  /** The factory context's markBroken: evicts the client now if idle, else at its release. */
  readonly evict: (error: Error, reason: 'idle' | 'lifetime') => void;
  /** When the idle timer closes it (performance.now()); Infinity when checked out or exempt. */
  idleDeadline: number;
  lifetimeTimer: NodeJS.Timeout | undefined;
  /** Past maxLifetimeSeconds (pg's `_expired`): closed at release, counted by `expiredCount`. */
  expired: boolean;
  /** 'connect' was emitted (pg emits it once, at the client's first checkout). */
  announced: boolean;
  /** Releases so far, for maxUses. */
  uses: number;
}

/**
 * A `pg.Pool`-compatible pool. `pool.pool` is the poolwatch `Pool` underneath, for `stats()`,
 * `leakReport()` and telemetry.
 */
export class PgPool extends EventEmitter {
  /** The poolwatch pool that owns the connections. */
  readonly pool: Pool<Client>;
  /** Every connected client, with the facade's timers and counters for it. */
  readonly #clients = new Map<Client, ClientRecord>();
  /** Clients currently checked out: an error on any other client is an idle client's error. */
  readonly #checkedOut = new Set<Client>();
  /** Clients whose first error was already reported on 'error' (pg may emit twice). */
  readonly #reported = new WeakSet<Client>();
  /** Handles with listeners other than 'error': in use even if no variable references them. */
  readonly #pinned = new Set<PgPoolClient>();
  readonly #min: number;
  readonly #maxUses: number;
  readonly #idleTimeoutMillis: number;
  /** 0: never. With `jitter`, up to 2.5% earlier (poolwatch's default lifetime only). */
  readonly #lifetimeMillis: number;
  readonly #lifetimeJitter: boolean;
  readonly #closeTimeoutMillis: number;
  readonly #allowExitOnIdle: boolean;
  readonly #log: Log;
  /** The idle timer (see #armIdleTimer), armed for `#idleTimerAt`. */
  #idleTimer: NodeJS.Timeout | undefined;
  #idleTimerAt = Infinity;
  #ending: Promise<void> | undefined;
  /** Resolves end()'s wait for queued callers (set while ending with callers queued). */
  #waitersDone: (() => void) | undefined;
  #ended = false;

  constructor(config: PgPoolConfig = {}) {
    super();
    if (typeof config !== 'object' || config === null) {
      throw new InvalidOptionError(`new ${WHERE}(config) needs a pg.PoolConfig object.`);
    }
    const clientConfig: ClientConfig = {};
    for (const key of Object.keys(config)) {
      if (!POOL_KEYS.has(key)) {
        (clientConfig as Record<string, unknown>)[key] = (config as Record<string, unknown>)[key];
      }
    }
    if ('password' in clientConfig) {
      // As pg does: the password stays out of enumeration (console.log, JSON).
      Object.defineProperty(clientConfig, 'password', { enumerable: false });
    }
    const { poolwatch = {} } = config;
    if (typeof poolwatch !== 'object' || poolwatch === null) {
      throw new InvalidOptionError(
        `${WHERE} option "poolwatch" must be an object of pool options.`,
      );
    }
    const poolOptions: Record<string, unknown> = {};
    const driverOptions: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(poolwatch)) {
      if (key === 'factory') {
        throw new InvalidOptionError(
          `${WHERE} builds its own factory: remove "factory" from the poolwatch options.`,
        );
      }
      ((DRIVER_KEYS as readonly string[]).includes(key) ? driverOptions : poolOptions)[key] = value;
    }
    rejectUnknownKeys(driverOptions, DRIVER_KEYS, `${WHERE} poolwatch`);
    this.#maxUses = positiveOrInfinity('maxUses', config.maxUses);
    if (config.allowExitOnIdle !== undefined && typeof config.allowExitOnIdle !== 'boolean') {
      throw new InvalidOptionError(
        `${WHERE} option "allowExitOnIdle" must be true or false, got ${describeValue(config.allowExitOnIdle)}.`,
      );
    }
    this.#allowExitOnIdle = config.allowExitOnIdle === true;
    this.#log = functionOption<Log>(WHERE, 'log', config.log as Log | undefined) ?? noop;
    const verify = functionOption<Verify>(WHERE, 'verify', config.verify as Verify | undefined);
    const onConnect = functionOption(
      WHERE,
      'onConnect',
      config.onConnect as ((client: Client) => unknown) | undefined,
    );

    const mapped = mapPgOptions(config);
    for (const key of Object.keys(mapped)) {
      if (key in poolOptions) {
        throw new InvalidOptionError(
          `${WHERE}: "${key}" is given both as a pg option (${PG_NAME[key] ?? key}) and in poolwatch; give it once.`,
        );
      }
    }
    const options = { ...mapped, ...poolOptions } as Partial<PoolOptions<Client>>;
    // Idle and lifetime eviction run here, per client, with pg-pool's timing; the pool
    // underneath gets 0 (never) for both. Either side may set them (pg names win the defaults).
    this.#idleTimeoutMillis = millisOption(
      WHERE,
      'idleTimeoutMillis',
      options.idleTimeoutMillis,
      PG_IDLE_TIMEOUT_MILLIS,
    );
    this.#lifetimeJitter = options.maxLifetimeMillis === undefined;
    this.#lifetimeMillis = millisOption(
      WHERE,
      'maxLifetimeMillis',
      options.maxLifetimeMillis,
      DEFAULTS.maxLifetimeMillis,
    );
    // Both arm a Node timer per client: beyond 2^31-1 ms, Node fires it after 1 ms instead.
    for (const [name, millis] of [
      ['idleTimeoutMillis', this.#idleTimeoutMillis],
      [
        config.maxLifetimeSeconds !== undefined ? 'maxLifetimeSeconds' : 'maxLifetimeMillis',
        this.#lifetimeMillis,
      ],
    ] as const) {
      if (millis > MAX_TIMER_MILLIS) {
        throw new InvalidOptionError(
          `${WHERE} option "${name}" is too long for a timer (at most ${MAX_TIMER_MILLIS} ms, about 24.8 days); use 0 for never.`,
        );
      }
    }
    this.#closeTimeoutMillis = millisOption(
      WHERE,
      'closeTimeoutMillis',
      options.closeTimeoutMillis,
      DEFAULTS.closeTimeoutMillis,
    );
    this.#min = typeof options.min === 'number' ? options.min : 0; // the pool validates it

    const base = pgFactory<Client>(clientConfig, {
      ...(driverOptions as PgFactoryOptions),
      ...(config.Client !== undefined
        ? { Client: config.Client as unknown as new (c: ClientConfig) => Client }
        : {}),
      onConnect: async (client) => {
        if (onConnect !== undefined) await onConnect(client);
        // pg-pool runs verify after connecting a new client, before handing it out.
        if (verify !== undefined) {
          await new Promise<void>((resolve, reject) =>
            verify(client, (error) => (error ? reject(error) : resolve())),
          );
        }
        if (this.#allowExitOnIdle) setRef(client, false);
      },
      onError: (error, client) => this.#clientError(error, client),
    });
    const factory: ResourceFactory<Client> = {
      server: base.server,
      create: (context) => this.#create(base, context),
      destroy: async (client) => {
        this.#forget(client);
        await base.destroy(client);
        // Outside the pool's promise chain: a throwing listener throws, as in pg-pool.
        this.#emitOutside('remove', client);
      },
      validate: (client) => base.validate!(client),
    };
    if (base.reset !== undefined) factory.reset = (client) => base.reset!(client);
    this.pool = new Pool<Client>({
      ...options,
      idleTimeoutMillis: 0,
      maxLifetimeMillis: 0,
      factory,
    } as PoolOptions<Client>);
  }

  /** Clients that exist, connected or connecting (pg's `totalCount`). */
  get totalCount(): number {
    const s = this.pool.stats();
    return s.size + s.creating;
  }

  get idleCount(): number {
    return this.pool.stats().idle;
  }

  /** Callers waiting for a client, not counting those a new client is being connected for (as pg). */
  get waitingCount(): number {
    const s = this.pool.stats();
    return Math.max(0, s.pending - s.creating);
  }

  /** Clients past `maxLifetimeSeconds` still checked out; each is closed at its release. */
  get expiredCount(): number {
    let expired = 0;
    for (const record of this.#clients.values()) if (record.expired) expired++;
    return expired;
  }

  get ending(): boolean {
    return this.#ending !== undefined;
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** Checks out a client. Release it with `client.release()` (`release(err)` closes it). */
  connect(): Promise<PgPoolClient>;
  connect(callback: ConnectCallback): void;
  connect(callback?: ConnectCallback): Promise<PgPoolClient> | void {
    let checkout: Promise<PgPoolClient>;
    if (this.#ending !== undefined) {
      checkout = Promise.reject(
        withPgMessage(
          new PoolClosedError(this.pool.name, 'connect() was called after end()'),
          PG_ENDED,
        ),
      );
    } else {
      // acquire() runs synchronously here, in the caller's stack: that is the stack a leak report
      // and a timeout show (poolwatch's own frames are trimmed).
      checkout = this.pool.acquire().then(
        (lease) => {
          const handle = this.#checkOut(lease);
          this.#checkEnding();
          return handle;
        },
        (error: unknown) => {
          this.#checkEnding();
          throw pgCompatible(error);
        },
      );
    }
    if (callback === undefined) return checkout;
    checkout.then(
      (client) => callOutside(callback, undefined, client, (release) => client.release(release)),
      (error: unknown) => callOutside(callback, asError(error), undefined, noop),
    );
  }

  /**
   * Runs one query on a pooled client, like `pg.Pool#query`: `query(text, values?)`,
   * `query(config)`, or the callback forms. The client is released when the query settles, and
   * closed if the query failed (as pg-pool does).
   */
  query<R extends unknown[] = unknown[]>(
    config: QueryArrayConfig,
    values?: readonly unknown[],
  ): Promise<QueryArrayResult<R>>;
  query<R extends QueryResultRow = QueryResultRow>(
    textOrConfig: string | QueryConfig,
    values?: readonly unknown[],
  ): Promise<QueryResult<R>>;
  query<R extends QueryResultRow = QueryResultRow>(
    textOrConfig: string | QueryConfig,
    callback: Callback<QueryResult<R>>,
  ): void;
  query<R extends QueryResultRow = QueryResultRow>(
    text: string,
    values: readonly unknown[] | undefined,
    callback: Callback<QueryResult<R>>,
  ): void;
  query(...args: QueryArgs): Promise<QueryResult> | void {
    const text = args[0];
    let [, values, callback] = args;
    if (typeof values === 'function') {
      callback = values;
      values = undefined;
    }
    let result: Promise<QueryResult>;
    if (typeof text === 'function') {
      // pg-pool's legacy guard: the function is taken as the callback and told why.
      callback = text;
      result = Promise.reject(
        new Error('Passing a function as the first parameter to pool.query is not supported'),
      );
    } else if (text === null || text === undefined) {
      result = Promise.reject(new TypeError('pool.query() was passed a null or undefined query'));
    } else if (typeof (text as { submit?: unknown } | null)?.submit === 'function') {
      result = Promise.reject(
        new TypeError(
          'pool.query() does not take a cursor or stream (a Submittable): check out a client with ' +
            'pool.connect(), run it there, then release the client.',
        ),
      );
    } else {
      result = this.#query(text, values);
    }
    if (typeof callback !== 'function') return result;
    const cb = callback as (error: Error | undefined, result?: QueryResult) => void;
    result.then(
      (res) => callOutside(cb, undefined, res),
      (error: unknown) => callOutside(cb, asError(error)),
    );
  }

  /**
   * Ends the pool, as pg-pool does: later `connect()`/`query()` calls fail, callers already
   * queued are still served, idle clients close, and checked-out clients close at their release
   * (after poolwatch's `closeTimeoutMillis` they are closed anyway). A second call fails with
   * "Called end on pool more than once".
   */
  end(): Promise<void>;
  end(callback: (error?: Error) => void): void;
  end(callback?: (error?: Error) => void): Promise<void> | void {
    this.#log('ending');
    if (this.#ending !== undefined) {
      const error = new Error(PG_END_TWICE);
      if (callback === undefined) return Promise.reject(error);
      return callOutside(callback, error);
    }
    this.#ending = this.#waitForQueued()
      .then(() => this.pool.close())
      .then(() => {
        this.#ended = true;
        clearTimeout(this.#idleTimer);
        for (const client of [...this.#clients.keys()]) this.#forget(client);
      });
    if (callback === undefined) return this.#ending;
    this.#ending.then(
      () => callOutside(callback),
      (error: unknown) => callOutside(callback, asError(error)),
    );
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await (this.#ending ?? this.end());
  }

  // Not called directly by users: the handle calls them.

  /** @internal Ends a checkout: `err` (or `true`) closes the client, like pg-pool. */
  _release(
    lease: Lease<Client>,
    target: PgPoolClient,
    handle: PgPoolClient,
    err: Error | boolean | undefined,
  ): void {
    if (!lease.active) {
      try {
        lease.release(); // throws the pool's LeaseError for this stale lease
      } catch (error) {
        // Taken back by the pool (reclaimAfterMillis, or end() after closeTimeoutMillis): the
        // client is already closed and reported. Throwing here, typically in a finally block,
        // would replace the error the caller is handling ("Connection terminated"...).
        if (error instanceof LeaseError && error.code === 'POOL_LEASE_RECLAIMED') return;
        throw error instanceof LeaseError ? withPgMessage(error, PG_DOUBLE_RELEASE) : error;
      }
    }
    const client = lease.resource;
    target._detach();
    this.#pinned.delete(target);
    this.#checkedOut.delete(client);
    const record = this.#clients.get(client);
    const uses = record === undefined ? 1 : ++record.uses;
    const reason = closeReason(client, err, uses, this.#maxUses);
    const expired = reason === undefined && record?.expired === true;
    if (expired) this.#log('remove expired client');
    else if (uses >= this.#maxUses) this.#log('remove expended client');
    try {
      this.emit('release', err, handle);
    } finally {
      if (reason !== undefined) lease.destroy(reason);
      else if (expired) {
        // Retired, not broken: the pool destroys it on release with the reason 'lifetime'.
        record.evict(new Error('past maxLifetimeSeconds'), 'lifetime');
        lease.release();
      } else {
        if (this.#allowExitOnIdle) setRef(client, false);
        lease.release();
        if (record !== undefined) this.#armIdleTimer(record);
      }
    }
  }

  /** @internal Pins a handle (listeners other than 'error') or unpins it. */
  _pin(target: PgPoolClient, pinned: boolean): void {
    if (pinned) this.#pinned.add(target);
    else this.#pinned.delete(target);
  }

  async #create(base: ResourceFactory<Client>, context: CreateContext): Promise<Client> {
    this.#log('connecting new client');
    let client: Client;
    try {
      client = await base.create(context);
    } catch (error) {
      this.#log('client failed to connect', error);
      throw error;
    }
    this.#log('new client connected');
    const record: ClientRecord = {
      evict: (error, reason) => context.markBroken(error, reason),
      idleDeadline: Infinity,
      lifetimeTimer: undefined,
      expired: false,
      announced: false,
      uses: 0,
    };
    this.#clients.set(client, record);
    if (this.#lifetimeMillis > 0) {
      const lifetime = this.#lifetimeJitter
        ? this.#lifetimeMillis * (1 - Math.random() * 0.025)
        : this.#lifetimeMillis;
      record.lifetimeTimer = setTimeout(() => {
        this.#log('ending client due to expired lifetime');
        record.expired = true;
        if (!this.#checkedOut.has(client)) {
          record.evict(
            new Error(`reached maxLifetimeSeconds (${this.#lifetimeMillis / 1000} s)`),
            'lifetime',
          );
        }
      }, lifetime);
      record.lifetimeTimer.unref();
    }
    return client;
  }

  /** The client is gone (destroyed) or the pool ended: drop its record and timers. */
  #forget(client: Client): void {
    const record = this.#clients.get(client);
    if (record === undefined) return;
    clearTimeout(record.lifetimeTimer);
    this.#clients.delete(client);
    this.#checkedOut.delete(client);
    // A handle still pinned by its listeners when the pool took its client back (reclaim, end):
    // its listeners will never fire again, so the facade lets go of it.
    for (const handle of this.#pinned) if (clientOf(handle) === client) this.#pinned.delete(handle);
  }

  /**
   * pg-pool's idle timer: a client released while the pool is above `min` closes
   * `idleTimeoutMillis` later unless checked out again (and if still above `min` then). One timer
   * per pool, armed at the earliest deadline, serves every client: a release only stamps its
   * deadline, a checkout clears it, so the hot path arms no timer.
   */
  #armIdleTimer(record: ClientRecord): void {
    if (this.#idleTimeoutMillis === 0 || !this.#aboveMin()) return;
    record.idleDeadline = performance.now() + this.#idleTimeoutMillis;
    if (this.#idleTimerAt <= record.idleDeadline) return; // an earlier deadline is armed
    this.#scheduleIdleTimer(record.idleDeadline);
  }

  #scheduleIdleTimer(deadline: number): void {
    clearTimeout(this.#idleTimer);
    this.#idleTimerAt = deadline;
    this.#idleTimer = setTimeout(
      () => this.#evictIdle(),
      Math.max(0, deadline - performance.now()),
    );
    // As in pg-pool: the idle timer keeps the process alive unless allowExitOnIdle.
    if (this.#allowExitOnIdle) this.#idleTimer.unref();
  }

  #evictIdle(): void {
    this.#idleTimer = undefined;
    this.#idleTimerAt = Infinity;
    const now = performance.now();
    let next = Infinity;
    for (const [client, record] of this.#clients) {
      if (record.idleDeadline > now) {
        next = Math.min(next, record.idleDeadline);
        continue;
      }
      record.idleDeadline = Infinity;
      if (this.#checkedOut.has(client) || !this.#aboveMin()) continue;
      this.#log('remove idle client');
      record.evict(new Error(`idle for ${this.#idleTimeoutMillis} ms (idleTimeoutMillis)`), 'idle');
    }
    if (next !== Infinity && !this.#ended) this.#scheduleIdleTimer(next);
  }

  #aboveMin(): boolean {
    return this.#min === 0 || this.totalCount > this.#min;
  }

  #checkOut(lease: Lease<Client>): PgPoolClient {
    const client = lease.resource;
    this.#checkedOut.add(client);
    const record = this.#clients.get(client);
    if (record !== undefined) record.idleDeadline = Infinity;
    if (this.#allowExitOnIdle) setRef(client, true);
    const handle = newHandle(this, lease, client);
    // pg-pool emits 'connect' at a new client's first checkout, then 'acquire', with the object
    // the caller gets. A throwing listener throws (uncaught), as there; the checkout goes on.
    if (record !== undefined && !record.announced) {
      record.announced = true;
      this.#emitOutside('connect', handle);
    }
    this.#emitOutside('acquire', handle);
    return handle;
  }

  async #query(text: unknown, values: unknown): Promise<QueryResult> {
    const client = await this.connect();
    this.#log('dispatching query');
    let result: QueryResult;
    try {
      result = await (client.query as (t: unknown, v: unknown) => Promise<QueryResult>)(
        text,
        values,
      );
    } catch (error) {
      this.#log('query dispatched');
      // As pg-pool: any error closes the client (a server error too: pg cannot tell whether the
      // session is still in a usable state, e.g. after an error in a multi-statement query).
      client.release(asError(error));
      throw error;
    }
    this.#log('query dispatched');
    client.release();
    return result;
  }

  /** end() waits until no caller is queued (served, or timed out), at most closeTimeoutMillis. */
  #waitForQueued(): Promise<void> {
    if (this.pool.stats().pending === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, this.#closeTimeoutMillis);
      timer.unref();
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#waitersDone = done;
    });
  }

  #checkEnding(): void {
    if (this.#waitersDone !== undefined && this.pool.stats().pending === 0) {
      const done = this.#waitersDone;
      this.#waitersDone = undefined;
      done();
    }
  }

  /** An error on a pooled client: reported on 'error' if the client was idle (pg-pool does). */
  #clientError(error: Error, client: Client): void {
    if (this.#checkedOut.has(client) || this.#reported.has(client)) return;
    this.#reported.add(client);
    // Unlike pg-pool, an idle client's error never crashes the process when nobody listens: the
    // client is already evicted, there is nothing for the application to do.
    if (this.listenerCount('error') > 0) this.#emitOutside('error', error, client);
  }

  /**
   * Emits a pool event; a listener's exception is rethrown outside the pool's own code (an
   * uncaught exception, as pg-pool's events, emitted from driver callbacks, give).
   */
  #emitOutside(event: string, ...args: unknown[]): void {
    try {
      this.emit(event, ...args);
    } catch (error) {
      process.nextTick(rethrow, error);
    }
  }
}

/**
 * The handle itself, under a symbol: its methods, called on the proxy, find their private fields
 * through `this[SELF]` (a trap), with no per-checkout WeakMap entry.
 */
const SELF = Symbol('PgPoolClient');
let clientOf: (handle: PgPoolClient) => Client;

function own(handle: PgPoolClient): PgPoolClient {
  return (handle as unknown as { [SELF]: PgPoolClient })[SELF];
}

/**
 * A checked-out client: what `PgPool#connect()` returns (through a Proxy, see `newHandle`). It
 * forwards to the pooled `pg.Client` while the checkout lasts; after `release()`, `query()` and
 * `end()` fail with `POOL_LEASE_RELEASED` (pg-pool would run them on a client someone else may
 * now hold), while reading properties and attaching listeners still work, as on pg's idle client.
 * Any property the handle does not define is the client's: `binary`, `processID`,
 * `connectionParameters`, `escapeLiteral()`, fields set by `onConnect` or a `'connect'` listener.
 */
export class PgPoolClient {
  readonly #owner: PgPool;
  readonly #lease: Lease<Client>;
  readonly #client: Client;
  /** Listeners added on this handle, and the forwarders installed on the client for them. */
  #events: EventEmitter | undefined;
  #forwarders: Map<string | symbol, (...args: unknown[]) => void> | undefined;

  // pg.Client's own members, read from the client (see newHandle); declared for the types only.
  declare readonly processID: number | null;
  declare readonly secretKey: number | null;
  declare readonly binary: boolean;
  declare readonly pipeline: boolean;
  declare readonly user: string | undefined;
  declare readonly database: string | undefined;
  declare readonly host: string;
  declare readonly port: number;
  declare readonly readyForQuery: boolean;
  declare escapeIdentifier: ClientBase['escapeIdentifier'];
  declare escapeLiteral: ClientBase['escapeLiteral'];
  /** pg's transaction status (`'I'` idle, `'T'` in a transaction, `'E'` failed one), pg >= 8.21. */
  declare getTransactionStatus: () => TransactionStatus;

  /** `client.query()`, every form pg's client takes (text and values, config, cursor, callback). */
  declare query: ClientBase['query'];

  static {
    // On the prototype (one function for all handles), typed as pg's overloads.
    PgPoolClient.prototype.query = function query(this: PgPoolClient, ...args: unknown[]) {
      const client = own(this).#live();
      return (client.query as (...a: unknown[]) => unknown).apply(client, args);
    } as ClientBase['query'];
    clientOf = (handle) => handle.#client;
  }

  /** True for the handles `connect()` returns (their prototype reads as the pg.Client's). */
  static [Symbol.hasInstance](value: unknown): boolean {
    return (
      typeof value === 'object' &&
      value !== null &&
      (value as { [SELF]?: unknown })[SELF] !== undefined
    );
  }

  /** @internal See `own()`. */
  readonly [SELF]: PgPoolClient = this;

  /** @internal Use `newHandle()`: users only ever see the Proxy. */
  constructor(owner: PgPool, lease: Lease<Client>, client: Client) {
    this.#owner = owner;
    this.#lease = lease;
    this.#client = client;
  }

  /**
   * Returns the client to the pool. With an error or `true`, the client is closed instead (a
   * client released inside an open transaction is closed too, so its locks end with it).
   */
  release(err?: Error | boolean): void {
    const self = own(this);
    self.#owner._release(self.#lease, self, this, err);
  }

  /** True until released. */
  get active(): boolean {
    return this.#lease.active;
  }

  /** The lease's identity, age and acquisition stack. */
  get leaseInfo(): LeaseInfo {
    return this.#lease.info;
  }

  /** `client.end()`: closes this connection (the pool closes it at release and opens another). */
  end(): Promise<void>;
  end(callback: (error?: Error) => void): void;
  end(callback?: (error?: Error) => void): Promise<void> | void {
    const client = own(this).#live();
    return callback === undefined ? client.end() : client.end(callback);
  }

  /**
   * Emits on the client, as `client.emit()` on pg's client does (its listeners and this handle's
   * run). As with any EventEmitter, an `'error'` nobody on this handle listens to is thrown.
   * After release: nothing happens (the client may be someone else's), returns false.
   */
  emit(event: string | symbol, ...args: unknown[]): boolean {
    const self = own(this);
    if (!self.#lease.active) return false;
    const emitted = self.#client.emit(event, ...args);
    if (event === 'error' && self.listenerCount('error') === 0) {
      throw args[0] instanceof Error ? args[0] : new Error(`Unhandled error. (${String(args[0])})`);
    }
    return emitted;
  }

  on<E extends PgClientEvent>(event: E, listener: PgClientListener<E>): this;
  on(event: string | symbol, listener: AnyListener): this;
  on(event: string | symbol, listener: AnyListener): this {
    own(this).#add(event, listener, 'on');
    return this;
  }

  addListener<E extends PgClientEvent>(event: E, listener: PgClientListener<E>): this;
  addListener(event: string | symbol, listener: AnyListener): this;
  addListener(event: string | symbol, listener: AnyListener): this {
    own(this).#add(event, listener, 'on');
    return this;
  }

  once<E extends PgClientEvent>(event: E, listener: PgClientListener<E>): this;
  once(event: string | symbol, listener: AnyListener): this;
  once(event: string | symbol, listener: AnyListener): this {
    own(this).#add(event, listener, 'once');
    return this;
  }

  prependListener(event: string | symbol, listener: AnyListener): this {
    own(this).#add(event, listener, 'prependListener');
    return this;
  }

  prependOnceListener(event: string | symbol, listener: AnyListener): this {
    own(this).#add(event, listener, 'prependOnceListener');
    return this;
  }

  off<E extends PgClientEvent>(event: E, listener: PgClientListener<E>): this;
  off(event: string | symbol, listener: AnyListener): this;
  off(event: string | symbol, listener: AnyListener): this {
    const self = own(this);
    self.#events?.off(event, listener);
    self.#repin();
    return this;
  }

  removeListener<E extends PgClientEvent>(event: E, listener: PgClientListener<E>): this;
  removeListener(event: string | symbol, listener: AnyListener): this;
  removeListener(event: string | symbol, listener: AnyListener): this {
    return this.off(event, listener);
  }

  removeAllListeners(event?: string | symbol): this {
    const self = own(this);
    if (event === undefined) self.#events?.removeAllListeners();
    else self.#events?.removeAllListeners(event);
    self.#repin();
    return this;
  }

  listenerCount(event: string | symbol): number {
    return own(this).#events?.listenerCount(event) ?? 0;
  }

  listeners(event: string | symbol): AnyListener[] {
    return (own(this).#events?.listeners(event) ?? []) as AnyListener[];
  }

  rawListeners(event: string | symbol): AnyListener[] {
    return (own(this).#events?.rawListeners(event) ?? []) as AnyListener[];
  }

  eventNames(): (string | symbol)[] {
    return own(this).#events?.eventNames() ?? [];
  }

  setMaxListeners(n: number): this {
    own(this).#emitterOnly().setMaxListeners(n);
    return this;
  }

  getMaxListeners(): number {
    return own(this).#events?.getMaxListeners() ?? EventEmitter.defaultMaxListeners;
  }

  [Symbol.dispose](): void {
    if (own(this).#lease.active) this.release();
  }

  /** @internal Removes the forwarders from the client and the listeners (at release). */
  _detach(): void {
    if (this.#forwarders !== undefined) {
      const client = this.#client as EventEmitter;
      for (const [event, forwarder] of this.#forwarders) client.off(event, forwarder);
      this.#forwarders = undefined;
    }
    this.#events?.removeAllListeners();
  }

  /** The client, or the lease's error once it was released. */
  #live(): Client {
    return this.#lease.resource;
  }

  #emitterOnly(): EventEmitter {
    return (this.#events ??= new EventEmitter());
  }

  #add(
    event: string | symbol,
    listener: AnyListener,
    how: 'on' | 'once' | 'prependListener' | 'prependOnceListener',
  ): void {
    const events = this.#emitterOnly();
    events[how](event, listener);
    // Released: attached (pg lets you attach to an idle client) but never forwarded.
    if (!this.#lease.active) return;
    const forwarders = (this.#forwarders ??= new Map());
    if (!forwarders.has(event)) {
      // The client is reachable from the pool: it must only reach this handle weakly.
      const self = new WeakRef(this);
      const forwarder = (...args: unknown[]): void => {
        const handle = self.deref();
        const events = handle === undefined ? undefined : handle.#events;
        if (events === undefined || events.listenerCount(event) === 0) return;
        try {
          events.emit(event, ...args);
        } finally {
          handle!.#repin(); // once-listeners are gone now
        }
      };
      forwarders.set(event, forwarder);
      (this.#client as EventEmitter).on(event, forwarder);
    }
    this.#repin();
  }

  /**
   * A handle somebody listens on (a LISTEN consumer awaiting 'notification') is in use even when
   * no variable references it: pinned by the facade while it has any listener but 'error'. An
   * 'error' listener alone does not pin, so a dropped handle with one is still found.
   */
  #repin(): void {
    const events = this.#events;
    let listening = false;
    if (events !== undefined && this.#lease.active) {
      for (const name of events.eventNames()) {
        if (name !== 'error' && events.listenerCount(name) > 0) {
          listening = true;
          break;
        }
      }
    }
    this.#owner._pin(this, listening);
  }
}

/**
 * Every member the handle defines is the handle's; every other property reads (and writes) the
 * pooled client's, as on pg-pool's client. Its prototype reads as the client's, so `client
 * instanceof pg.Client` holds as with pg-pool, and code that tells pools from clients by the
 * constructor's name (Drizzle: `constructor.name.includes('Pool')`) sees a `Client`.
 * `instanceof PgPoolClient` still holds (Symbol.hasInstance). The target is the handle itself,
 * so `util.inspect` shows the handle, never the client (and its connection parameters).
 */
const HANDLE_TRAPS: ProxyHandler<PgPoolClient> = {
  getPrototypeOf(target) {
    return Object.getPrototypeOf(clientOf(target)) as object | null;
  },
  get(target, key) {
    if (key in target) return Reflect.get(target, key, target);
    return Reflect.get(clientOf(target), key);
  },
  set(target, key, value) {
    if (key in target) return Reflect.set(target, key, value, target);
    return Reflect.set(clientOf(target), key, value);
  },
  has(target, key) {
    return key in target || key in clientOf(target);
  },
};

function newHandle(owner: PgPool, lease: Lease<Client>, client: Client): PgPoolClient {
  const handle = new PgPoolClient(owner, lease, client);
  return new Proxy(handle, HANDLE_TRAPS);
}

/** Why a released client must be closed rather than reused, or undefined. */
function closeReason(
  client: Client,
  err: Error | boolean | undefined,
  uses: number,
  maxUses: number,
): Error | undefined {
  // pg-pool closes the client for any truthy argument.
  if (err) return err === true ? new Error('released with release(true)') : asError(err);
  if (!isPgClientUsable(client)) return new Error('the connection is broken or ended');
  // getTransactionStatus() is pg >= 8.21; with an older pg this check is skipped.
  const status = client.getTransactionStatus?.();
  if (status === 'T' || status === 'E') {
    return new Error(
      `released inside an open transaction (status ${status}): closed rather than handed to the ` +
        'next caller with its transaction and locks. COMMIT or ROLLBACK before release().',
    );
  }
  if (uses >= maxUses) return new Error(`reached maxUses (${maxUses})`);
  return undefined;
}

/**
 * poolwatch's error in the shape pg-pool's callers test for: a failed connect is the driver's
 * (or the onConnect/verify hook's) own error, as pg passes it (`err.code` 28P01, ECONNREFUSED...);
 * a timeout keeps its class, holders and stacks under pg's message as the first line.
 */
function pgCompatible(error: unknown): unknown {
  if (error instanceof CreateFailedError) {
    const cause = error.cause;
    // pgFactory's connect timeout (ETIMEDOUT, "Connecting to PostgreSQL at ... timed out"): pg-pool
    // reports its own as "Connection terminated due to connection timeout".
    if (
      cause instanceof Error &&
      (cause as Error & { code?: unknown }).code === 'ETIMEDOUT' &&
      cause.message.startsWith('Connecting to PostgreSQL at ')
    ) {
      const timeout = new Error(`${PG_CONNECT_TIMEOUT}\n${cause.message}`, { cause: cause.cause });
      (timeout as Error & { code?: string }).code = 'ETIMEDOUT';
      return timeout;
    }
    return cause;
  }
  if (error instanceof AcquireTimeoutError) {
    return new AcquireTimeoutError(
      `${PG_TIMEOUT}\n${error.message}`,
      error.poolName ?? '',
      error.cause,
    );
  }
  if (error instanceof PoolClosedError) return withPgMessage(error, PG_ENDED);
  return error;
}

/** Puts pg-pool's message first, keeping poolwatch's explanation (and class, code) after it. */
function withPgMessage<E extends Error>(error: E, pgMessage: string): E {
  error.message = `${pgMessage}\n${error.message}`;
  Error.captureStackTrace(error, withPgMessage);
  return error;
}

/** Calls a user callback; its exception is thrown outside the promise chain, as in pg. */
function callOutside<A extends unknown[]>(fn: (...args: A) => unknown, ...args: A): void {
  try {
    fn(...args);
  } catch (error) {
    process.nextTick(rethrow, error);
  }
}

function rethrow(error: unknown): never {
  throw error;
}

function noop(): void {}

/** pg's client.ref()/unref() (on its socket), which @types/pg does not declare. */
function setRef(client: Client, ref: boolean): void {
  const c = client as unknown as { ref?: () => void; unref?: () => void };
  if (ref) c.ref?.();
  else c.unref?.();
}

const PG_NAME: Record<string, string> = {
  max: 'max or poolSize',
  acquireTimeoutMillis: 'connectionTimeoutMillis',
  maxLifetimeMillis: 'maxLifetimeSeconds',
};

/** pg-pool's options given in `config`, as poolwatch options. */
function mapPgOptions(config: PgPoolConfig): Partial<PoolOptions<Client>> {
  const mapped: Partial<PoolOptions<Client>> = {};
  // pg-pool: max || poolSize || 10. A 0 is an error here rather than silently 10.
  const max = config.max ?? config.poolSize;
  if (max !== undefined) mapped.max = max;
  if (config.min !== undefined) mapped.min = config.min;
  if (config.idleTimeoutMillis !== undefined) {
    mapped.idleTimeoutMillis = config.idleTimeoutMillis ?? 0; // null: never, as in pg
  }
  const connectionTimeout: unknown = config.connectionTimeoutMillis;
  if (connectionTimeout !== undefined) {
    if (
      typeof connectionTimeout !== 'number' ||
      !Number.isFinite(connectionTimeout) ||
      connectionTimeout < 0
    ) {
      throw new InvalidOptionError(
        `${WHERE} option "connectionTimeoutMillis" must be a duration in milliseconds >= 0 ` +
          `(0 waits forever), got ${describeValue(connectionTimeout)}.`,
      );
    }
    mapped.acquireTimeoutMillis = connectionTimeout === 0 ? Infinity : connectionTimeout;
  }
  if (config.maxLifetimeSeconds !== undefined) {
    if (typeof config.maxLifetimeSeconds !== 'number' || !(config.maxLifetimeSeconds >= 0)) {
      throw new InvalidOptionError(
        `${WHERE} option "maxLifetimeSeconds" must be a number >= 0, got ${describeValue(config.maxLifetimeSeconds)}.`,
      );
    }
    mapped.maxLifetimeMillis = config.maxLifetimeSeconds * 1000;
  }
  return mapped;
}

function positiveOrInfinity(name: string, value: unknown): number {
  if (value === undefined) return Infinity;
  if (typeof value === 'number' && (Number.isInteger(value) || value === Infinity) && value >= 1) {
    return value;
  }
  throw new InvalidOptionError(
    `${WHERE} option "${name}" must be a whole number >= 1, got ${describeValue(value)}.`,
  );
}
