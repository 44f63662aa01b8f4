/**
 * `PgPool`: a drop-in for `pg.Pool` (node-postgres' pool) on top of a poolwatch `Pool`, so code
 * and libraries written for pg's pool (Kysely's `PostgresDialect`, plain `pool.query()`) get
 * leak detection without changes.
 *
 * Design: the poolwatch pool owns the `pg.Client`s; `connect()` hands out a thin per-checkout
 * handle (`PgPoolClient`) that holds the lease and forwards to the client. The pool references
 * the client, never the handle, so a handle the application drops without `release()` is found
 * by garbage collection and its connection closed (any transaction rolled back by the server).
 * Handing out the raw client, as pg-pool does, would make that impossible: the pool keeps it.
 *
 *     app ──► PgPoolClient ──► Lease ──► Entry (pool) ──► pg.Client
 *                  ▲                                          │
 *                  └──── WeakRef (event forwarders) ◄─────────┘
 *
 * Hazards: anything reachable from the pool (the client, its listeners) must not reference a
 * handle strongly, or a dropped handle is never collected: event listeners added on a handle are
 * forwarded through a WeakRef and removed at release. Differences from pg-pool are listed on
 * `PgPoolConfig` and in README-drivers.md.
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
import { InvalidOptionError } from '../errors';
import { Pool, type Lease } from '../pool';
import type { LeaseInfo, PoolOptions, ResourceFactory } from '../types';
import { rejectUnknownKeys } from '../options';
import { asError } from './common';
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
 * as with pg's pool. Mapping:
 *
 * | pg option | poolwatch |
 * | --- | --- |
 * | `max`, `min` | same (defaults 10, 0) |
 * | `idleTimeoutMillis` | same; pg's default 10000 is kept, `0`/`null` never closes idle clients |
 * | `connectionTimeoutMillis` | `acquireTimeoutMillis` (`0`: wait forever, as in pg; unset: poolwatch's 30 s), and each client's connect timeout (unset: 10 s) |
 * | `maxLifetimeSeconds` | `maxLifetimeMillis` (unset: poolwatch's 30 min; `0`: never) |
 * | `maxUses` | a client is closed at the release that reaches it |
 * | `allowExitOnIdle` | idle clients do not keep the process alive |
 * | `onConnect`, `Client` | as in pg |
 * | `log`, `Promise` | ignored |
 * | `verify` | not supported (use `onConnect`) |
 */
export interface PgPoolConfig extends PoolConfig {
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

/** As in pg: `result` is only meaningful when `error` is undefined. */
type Callback<T> = (error: Error | undefined, result: T) => void;
type ConnectCallback = (
  error: Error | undefined,
  client: PgPoolClient | undefined,
  done: (release?: Error | boolean) => void,
) => void;
type QueryArgs = [text: unknown, values?: unknown, callback?: unknown];

/**
 * A `pg.Pool`-compatible pool. `pool.pool` is the poolwatch `Pool` underneath, for `stats()`,
 * `leakReport()` and telemetry.
 */
export class PgPool extends EventEmitter {
  /** The poolwatch pool that owns the connections. */
  readonly pool: Pool<Client>;
  /** Clients currently checked out: an error on any other client is an idle client's error. */
  readonly #checkedOut = new Set<Client>();
  /** Clients whose first error was already reported on 'error' (pg may emit twice). */
  readonly #reported = new WeakSet<Client>();
  readonly #uses = new WeakMap<Client, number>();
  readonly #maxUses: number;
  readonly #allowExitOnIdle: boolean;
  #ending: Promise<void> | undefined;
  #ended = false;

  constructor(config: PgPoolConfig = {}) {
    super();
    if (typeof config !== 'object' || config === null) {
      throw new InvalidOptionError(`new ${WHERE}(config) needs a pg.PoolConfig object.`);
    }
    if (config.verify !== undefined) {
      throw new InvalidOptionError(
        `${WHERE} does not support pg's "verify" option: use onConnect (an async hook run after each connect).`,
      );
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
    this.#maxUses = positiveOrInfinity('maxUses', config.maxUses);
    if (config.allowExitOnIdle !== undefined && typeof config.allowExitOnIdle !== 'boolean') {
      throw new InvalidOptionError(
        `${WHERE} option "allowExitOnIdle" must be true or false, got ${String(config.allowExitOnIdle)}.`,
      );
    }
    this.#allowExitOnIdle = config.allowExitOnIdle === true;
    const mapped = mapPgOptions(config);
    for (const key of Object.keys(mapped)) {
      if (key in poolOptions) {
        throw new InvalidOptionError(
          `${WHERE}: "${key}" is given both as a pg option (${PG_NAME[key] ?? key}) and in poolwatch; give it once.`,
        );
      }
    }
    rejectUnknownKeys(driverOptions, DRIVER_KEYS, `${WHERE} poolwatch`);
    // pg-pool's idle default, unless either side sets one.
    if (!('idleTimeoutMillis' in mapped) && !('idleTimeoutMillis' in poolOptions)) {
      mapped.idleTimeoutMillis = PG_IDLE_TIMEOUT_MILLIS;
    }

    const onConnect = config.onConnect as ((client: Client) => unknown) | undefined;
    const base = pgFactory<Client>(clientConfig, {
      ...(driverOptions as PgFactoryOptions),
      ...(config.Client !== undefined
        ? { Client: config.Client as unknown as new (c: ClientConfig) => Client }
        : {}),
      onConnect: async (client) => {
        if (onConnect !== undefined) await onConnect(client);
        if (this.#allowExitOnIdle) setRef(client, false);
        // pg-pool emits 'connect' for a new client before its first checkout.
        this.emit('connect', client);
      },
      onError: (error, client) => this.#clientError(error, client),
    });
    const factory: ResourceFactory<Client> = {
      server: base.server,
      create: (context) => base.create(context),
      destroy: async (client) => {
        this.#checkedOut.delete(client);
        await base.destroy(client);
        this.emit('remove', client);
      },
      validate: (client) => base.validate!(client),
    };
    if (base.reset !== undefined) factory.reset = (client) => base.reset!(client);
    this.pool = new Pool<Client>({ ...mapped, ...poolOptions, factory } as PoolOptions<Client>);
  }

  /** Clients that exist, connected or connecting (pg's `totalCount`). */
  get totalCount(): number {
    const s = this.pool.stats();
    return s.size + s.creating;
  }

  get idleCount(): number {
    return this.pool.stats().idle;
  }

  /** Callers waiting for a client. */
  get waitingCount(): number {
    return this.pool.stats().pending;
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
    // acquire() runs synchronously here, in the caller's stack: that is the stack a leak report
    // and a timeout show (poolwatch's own frames are trimmed).
    const checkout = this.pool.acquire().then((lease) => this.#checkOut(lease));
    if (callback === undefined) return checkout;
    checkout.then(
      (client) => callback(undefined, client, (release) => client.release(release)),
      (error: unknown) => callback(asError(error), undefined, () => undefined),
    );
  }

  /**
   * Runs one query on a pooled client, like `pg.Pool#query`: `query(text, values?)`,
   * `query(config)`, or the callback forms. The client is released when the query settles; one
   * that broke (connection error, query timeout) is closed instead.
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
    if (text === null || text === undefined) {
      result = Promise.reject(new TypeError('pool.query() was passed a null or undefined query'));
    } else if (typeof text === 'function') {
      result = Promise.reject(
        new TypeError('Passing a function as the first parameter to pool.query is not supported'),
      );
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
      (res) => cb(undefined, res),
      (error: unknown) => cb(asError(error)),
    );
  }

  /**
   * Closes the pool: waiters fail, idle clients close, checked-out clients are waited for up to
   * poolwatch's `closeTimeoutMillis` and then closed. Idempotent.
   */
  end(): Promise<void>;
  end(callback: (error?: Error) => void): void;
  end(callback?: (error?: Error) => void): Promise<void> | void {
    this.#ending ??= this.pool.close().then(() => {
      this.#ended = true;
    });
    if (callback === undefined) return this.#ending;
    this.#ending.then(
      () => callback(),
      (error: unknown) => callback(asError(error)),
    );
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.end();
  }

  // Not called directly by users: the handle calls it.
  /** @internal Ends a checkout: `err` (or `true`) closes the client, like pg-pool. */
  _release(lease: Lease<Client>, handle: PgPoolClient, err: Error | boolean | undefined): void {
    // A released lease throws the pool's LeaseError here (release twice, use after release).
    if (!lease.active) return lease.release();
    const client = lease.resource;
    handle._detach();
    this.#checkedOut.delete(client);
    const uses = (this.#uses.get(client) ?? 0) + 1;
    this.#uses.set(client, uses);
    const reason = closeReason(client, err, uses, this.#maxUses);
    try {
      this.emit('release', err, handle);
    } finally {
      if (reason !== undefined) lease.destroy(reason);
      else {
        if (this.#allowExitOnIdle) setRef(client, false);
        lease.release();
      }
    }
  }

  #checkOut(lease: Lease<Client>): PgPoolClient {
    const client = lease.resource;
    this.#checkedOut.add(client);
    if (this.#allowExitOnIdle) setRef(client, true);
    const handle = new PgPoolClient(this, lease, client);
    try {
      this.emit('acquire', handle);
    } catch (error) {
      // A throwing listener must not leak the checkout.
      this._release(lease, handle, undefined);
      throw error;
    }
    return handle;
  }

  async #query(text: unknown, values: unknown): Promise<QueryResult> {
    const client = await this.connect();
    let result: QueryResult;
    try {
      result = await (client.query as (t: unknown, v: unknown) => Promise<QueryResult>)(
        text,
        values,
      );
    } catch (error) {
      // A server-reported error (syntax, constraint) leaves the connection usable; anything else
      // (connection lost, query_timeout with the query still running) closes it.
      client.release(isRecoverableServerError(error) ? undefined : asError(error));
      throw error;
    }
    client.release();
    return result;
  }

  /** An error on a pooled client: reported on 'error' if the client was idle (pg-pool does). */
  #clientError(error: Error, client: Client): void {
    if (this.#checkedOut.has(client) || this.#reported.has(client)) return;
    this.#reported.add(client);
    // Unlike pg-pool, an idle client's error never crashes the process when nobody listens: the
    // client is already evicted, there is nothing for the application to do.
    if (this.listenerCount('error') > 0) this.emit('error', error, client);
  }
}

/**
 * A checked-out client: what `PgPool#connect()` returns. It forwards to the pooled `pg.Client`
 * while the checkout lasts; after `release()` every use fails with `POOL_LEASE_RELEASED` (pg-pool
 * would let it run on a client someone else now holds).
 */
export class PgPoolClient {
  readonly #owner: PgPool;
  readonly #lease: Lease<Client>;
  readonly #client: Client;
  /** Listeners added on this handle, and the forwarders installed on the client for them. */
  #events: EventEmitter | undefined;
  #forwarders: Map<PgClientEvent, (...args: unknown[]) => void> | undefined;

  /** `client.query()`, every form pg's client takes (text and values, config, cursor, callback). */
  declare query: ClientBase['query'];

  static {
    // On the prototype (one function for all handles), typed as pg's overloads.
    PgPoolClient.prototype.query = function query(this: PgPoolClient, ...args: unknown[]) {
      const client = this.#live();
      return (client.query as (...a: unknown[]) => unknown).apply(client, args);
    } as ClientBase['query'];
  }

  /** @internal */
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
    this.#owner._release(this.#lease, this, err);
  }

  /** True until released. */
  get active(): boolean {
    return this.#lease.active;
  }

  /** The lease's identity, age and acquisition stack. */
  get leaseInfo(): LeaseInfo {
    return this.#lease.info;
  }

  /** The server process id of this connection (`pg_backend_pid()`). */
  get processID(): number | null {
    return (this.#live() as Client & { processID: number | null }).processID;
  }

  escapeIdentifier(str: string): string {
    return this.#client.escapeIdentifier(str);
  }

  escapeLiteral(str: string): string {
    return this.#client.escapeLiteral(str);
  }

  /** pg's transaction status (`'I'` idle, `'T'` in a transaction, `'E'` failed one), pg >= 8.21 (null before). */
  getTransactionStatus(): TransactionStatus {
    return this.#live().getTransactionStatus?.() ?? null;
  }

  on<E extends PgClientEvent>(event: E, listener: PgClientListener<E>): this {
    this.#emitter(event).on(event, listener);
    return this;
  }

  addListener<E extends PgClientEvent>(event: E, listener: PgClientListener<E>): this {
    return this.on(event, listener);
  }

  once<E extends PgClientEvent>(event: E, listener: PgClientListener<E>): this {
    this.#emitter(event).once(event, listener);
    return this;
  }

  off<E extends PgClientEvent>(event: E, listener: PgClientListener<E>): this {
    this.#events?.off(event, listener);
    return this;
  }

  removeListener<E extends PgClientEvent>(event: E, listener: PgClientListener<E>): this {
    return this.off(event, listener);
  }

  removeAllListeners(event?: PgClientEvent): this {
    if (event === undefined) this.#events?.removeAllListeners();
    else this.#events?.removeAllListeners(event);
    return this;
  }

  listenerCount(event: PgClientEvent): number {
    return this.#events?.listenerCount(event) ?? 0;
  }

  [Symbol.dispose](): void {
    if (this.#lease.active) this.release();
  }

  /** @internal Removes the forwarders from the client (at release). */
  _detach(): void {
    if (this.#forwarders !== undefined) {
      for (const [event, forwarder] of this.#forwarders) this.#client.off(event, forwarder);
      this.#forwarders = undefined;
    }
    this.#events?.removeAllListeners();
  }

  /** The client, or the lease's error once it was released. */
  #live(): Client {
    return this.#lease.resource;
  }

  #emitter(event: PgClientEvent): EventEmitter {
    this.#live();
    const events = (this.#events ??= new EventEmitter());
    const forwarders = (this.#forwarders ??= new Map());
    if (!forwarders.has(event)) {
      // The client is reachable from the pool: it must only reach this handle weakly.
      const self = new WeakRef(this);
      const forwarder = (...args: unknown[]): void => {
        const handle = self.deref();
        const events = handle === undefined ? undefined : handle.#events;
        if (events !== undefined && events.listenerCount(event) > 0) events.emit(event, ...args);
      };
      forwarders.set(event, forwarder);
      this.#client.on(event, forwarder);
    }
    return events;
  }
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

/** pg's client.ref()/unref() (on its socket), which @types/pg does not declare. */
function setRef(client: Client, ref: boolean): void {
  const c = client as unknown as { ref?: () => void; unref?: () => void };
  if (ref) c.ref?.();
  else c.unref?.();
}

function isRecoverableServerError(error: unknown): boolean {
  const e = error as { severity?: unknown; code?: unknown } | null;
  return (
    typeof e?.severity === 'string' &&
    typeof e.code === 'string' &&
    e.severity !== 'FATAL' &&
    e.severity !== 'PANIC'
  );
}

const PG_NAME: Record<string, string> = {
  acquireTimeoutMillis: 'connectionTimeoutMillis',
  maxLifetimeMillis: 'maxLifetimeSeconds',
};

/** pg-pool's options given in `config`, as poolwatch options. */
function mapPgOptions(config: PgPoolConfig): Partial<PoolOptions<Client>> {
  const mapped: Partial<PoolOptions<Client>> = {};
  if (config.max !== undefined) mapped.max = config.max;
  if (config.min !== undefined) mapped.min = config.min;
  if (config.idleTimeoutMillis !== undefined) {
    mapped.idleTimeoutMillis = config.idleTimeoutMillis ?? 0; // null: never, as in pg
  }
  if (config.connectionTimeoutMillis !== undefined) {
    mapped.acquireTimeoutMillis =
      config.connectionTimeoutMillis === 0 ? Infinity : config.connectionTimeoutMillis;
  }
  if (config.maxLifetimeSeconds !== undefined) {
    if (typeof config.maxLifetimeSeconds !== 'number' || !(config.maxLifetimeSeconds >= 0)) {
      throw new InvalidOptionError(
        `${WHERE} option "maxLifetimeSeconds" must be a number >= 0, got ${String(config.maxLifetimeSeconds)}.`,
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
    `${WHERE} option "${name}" must be a whole number >= 1, got ${String(value)}.`,
  );
}
