/**
 * node-postgres (`pg`) adapter: the mechanics of one `pg.Client` (connect, check, clean, close)
 * as a `ResourceFactory`. It keeps no pool state and never writes onto the client.
 *
 * `pg` is an optional peer dependency: it is loaded with `require()` when the first factory is
 * made, never when poolwatch is imported, and only its types are imported here.
 *
 * Hazards this adapter exists for:
 * - A `pg.Client` without an `'error'` listener crashes the process when the server drops it
 *   (restart, `pg_terminate_backend`, network cut). Every client gets one, for its whole life,
 *   and it marks the client broken so the pool evicts it.
 * - `client.end()` waits for the server to close the socket, which can be forever on a dead
 *   network: `destroy()` waits a bounded time, then destroys the socket.
 * - `pg` connects without a timeout by default: an unreachable host would hold a pool slot
 *   until the kernel gives up (minutes). The factory defaults `connectionTimeoutMillis`.
 * - `pg` turns TCP keepalive off by default: a connection whose peer vanished silently (a
 *   network drop, a NAT or firewall that forgot it) then waits forever, and a holder in a query
 *   on it hangs with it. The factory turns keepalive on (after 10 s idle); the kernel then gives
 *   up on a dead peer after its probes (Linux defaults: 9 probes 75 s apart, ~11 min), the
 *   client errors and the pool evicts it. Node 20 cannot set the probe interval per socket.
 * - No default query timeout, on purpose: how long a query may legitimately run is the
 *   application's knowledge, a client-side timeout does not stop the server's work
 *   (`statement_timeout` does), and pg leaves a client whose `query_timeout` fired with its
 *   query still active. Set `query_timeout` (client) and/or `statement_timeout` (server) in
 *   the pg config; a client released while a query is still active (after a `query_timeout`)
 *   is destroyed, not reused (`isBusy`).
 */
import type { Client, ClientConfig } from 'pg';
import { InvalidOptionError } from '../errors';
import { Pool } from '../pool';
import type { CreateContext, PoolOptions, ResourceFactory, ServerInfo } from '../types';
import {
  asError,
  bounded,
  functionOption,
  millisOption,
  notifyError,
  runOnConnect,
  sqlOption,
  timerMillisOption,
} from './common';
import { rejectUnknownKeys } from '../options';
import {
  parsePgConnectionString,
  resolvePgServer,
  type PgConnectionFields,
} from '../pg-connection-string';

/** What the factory needs from a client class: `pg.Client` or a subclass. */
export type PgClientConstructor<C extends Client = Client> = new (config: ClientConfig) => C;

export interface PgFactoryOptions<C extends Client = Client> {
  /**
   * The client class, e.g. a subclass of `pg.Client`.
   * @default require('pg').Client
   */
  Client?: PgClientConstructor<C>;
  /**
   * Run by `validate()` (a borrow after `validateAfterIdleMillis` idle), after the client's own
   * state was checked. `false` checks the state only (no round trip).
   * @default 'SELECT 1'
   */
  validateQuery?: string | false;
  /**
   * A validation that takes longer fails (and the connection is destroyed).
   * @default 5000
   */
  validateTimeoutMillis?: number;
  /**
   * Run on every release before the connection is reused, e.g. `'DISCARD ALL'` or `'RESET ALL'`.
   * A connection released inside a transaction fails the reset and is destroyed. Unset: no reset
   * (releases stay synchronous).
   */
  resetQuery?: string;
  /**
   * `destroy()` waits this long for a graceful `client.end()`, then destroys the socket.
   * @default 2000
   */
  endTimeoutMillis?: number;
  /**
   * Runs after each successful connect, before the client is first handed out (e.g.
   * `SET search_path`). A throw or rejection closes the client and fails the create.
   */
  onConnect?: (client: C) => void | Promise<void>;
  /**
   * Called with each error a connected client emits (server restart, backend terminated, network
   * cut), after the client was marked broken. Errors it throws are ignored.
   */
  onError?: (error: Error, client: C) => void;
}

const FACTORY_KEYS = [
  'Client',
  'validateQuery',
  'validateTimeoutMillis',
  'resetQuery',
  'endTimeoutMillis',
  'onConnect',
  'onError',
] as const;
const WHERE = 'pgFactory';

/** Applied when the client config has no `connectionTimeoutMillis` (pg's own default is none). */
export const PG_DEFAULT_CONNECTION_TIMEOUT_MILLIS = 10_000;
/** Applied when the client config has no `keepAlive` (pg's own default is off). */
export const PG_DEFAULT_KEEPALIVE_INITIAL_DELAY_MILLIS = 10_000;
const DEFAULT_VALIDATE_TIMEOUT_MILLIS = 5000;
const DEFAULT_END_TIMEOUT_MILLIS = 2000;

/**
 * The internal state pg-pool itself reads to decide whether a client can be reused (pg has no
 * public API for it). Read-only here, and every field is optional so a client without them
 * (another implementation) is simply treated as usable.
 */
interface PgClientInternals {
  readonly _activeQuery?: unknown;
  readonly _queryQueue?: readonly unknown[];
  readonly _queryable?: boolean;
  readonly _ending?: boolean;
  readonly _ended?: boolean;
  readonly connection?: {
    readonly stream?: { destroy(): void };
    on?(event: 'errorMessage', listener: (message: { severity?: string }) => void): unknown;
  };
}

/** True when the client can still run queries: not ended, not broken by a connection error. */
export function isPgClientUsable(client: Client): boolean {
  const c = client as unknown as PgClientInternals;
  return c._queryable !== false && c._ending !== true && c._ended !== true;
}

/**
 * True while the client has a query in flight or queued (pg's own state, as pg-pool reads it).
 * pg < 8.12 named the field `activeQuery`; reading that name on a newer pg prints a deprecation
 * warning, so it is read only when the new one does not exist.
 */
export function isPgClientBusy(client: Client): boolean {
  const c = client as unknown as PgClientInternals & { readonly activeQuery?: unknown };
  const active = '_activeQuery' in c ? c._activeQuery : c.activeQuery;
  return (active !== null && active !== undefined) || (c._queryQueue?.length ?? 0) > 0;
}

/**
 * A `ResourceFactory` for `pg.Client`. `config` is a connection string or a `pg.ClientConfig`
 * (what `new pg.Client()` takes).
 *
 * ```ts
 * const pool = new Pool({ factory: pgFactory(process.env.DATABASE_URL), max: 10 });
 * ```
 */
export function pgFactory<C extends Client = Client>(
  config: string | ClientConfig,
  options: PgFactoryOptions<C> = {},
): ResourceFactory<C> {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidOptionError(`${WHERE} options must be an object.`);
  }
  rejectUnknownKeys(options, FACTORY_KEYS, WHERE);
  const validateQuery: string | false = sqlOption(
    WHERE,
    'validateQuery',
    options.validateQuery,
    'SELECT 1' as string | false,
    true,
  );
  const validateTimeoutMillis = millisOption(
    WHERE,
    'validateTimeoutMillis',
    options.validateTimeoutMillis,
    DEFAULT_VALIDATE_TIMEOUT_MILLIS,
    true,
    true,
  );
  const resetQuery = sqlOption(WHERE, 'resetQuery', options.resetQuery, undefined, false);
  const endTimeoutMillis = millisOption(
    WHERE,
    'endTimeoutMillis',
    options.endTimeoutMillis,
    DEFAULT_END_TIMEOUT_MILLIS,
    false,
    true,
  );
  const onConnect = functionOption(WHERE, 'onConnect', options.onConnect);
  const onError = functionOption(WHERE, 'onError', options.onError);
  const ClientClass = functionOption(WHERE, 'Client', options.Client) ?? loadPg<C>().Client;

  const clientConfig = withConnectTimeout(config);
  const server = pgServerInfo(clientConfig);
  const connectTimeoutMillis = clientConfig.connectionTimeoutMillis ?? 0;

  const destroy = async (client: C): Promise<void> => {
    const stream = (client as unknown as PgClientInternals).connection?.stream;
    // end() sends Terminate and waits for the server to close; the server then ends the
    // session, rolling back any open transaction and freeing its locks.
    await bounded(
      client.end().catch(() => undefined),
      endTimeoutMillis,
      () => undefined,
    );
    stream?.destroy();
  };

  const factory: ResourceFactory<C> = {
    server,

    async create(context: CreateContext): Promise<C> {
      const client = new ClientClass(clientConfig);
      let connected = false;
      // Attached before connect() and never removed: pg emits 'error' on a client that lost its
      // connection, and an EventEmitter without an 'error' listener throws (crashing the process).
      client.on('error', (error: Error) => {
        context.markBroken(error);
        if (connected) notifyError(onError, error, client);
      });
      client.on('end', () => context.markBroken());
      const started = performance.now();
      try {
        await client.connect();
      } catch (error) {
        (client as unknown as PgClientInternals).connection?.stream?.destroy();
        throw describeConnectError(error, server, connectTimeoutMillis, started);
      }
      connected = true;
      // A FATAL error ends the session, but pg hands one that arrives during a query to that
      // query only, and emits 'error' later, when the socket closes: a holder releasing in
      // between would return a dead connection for the next caller. pg's protocol connection
      // announces every error message before the query's promise settles; mark it broken there.
      (client as unknown as PgClientInternals).connection?.on?.('errorMessage', (message) => {
        if (message.severity === 'FATAL' || message.severity === 'PANIC') {
          context.markBroken(asError(message));
        }
      });
      return runOnConnect(onConnect, client, destroy);
    },

    destroy,

    isBusy: isPgClientBusy,

    async validate(client: C): Promise<boolean> {
      if (!isPgClientUsable(client)) return false;
      // A pooled connection must not sit in a transaction; one that does was released wrongly.
      const status = client.getTransactionStatus?.();
      if (status === 'T' || status === 'E') return false;
      if (validateQuery === false) return true;
      return bounded(
        client.query(validateQuery).then(
          () => true,
          () => false,
        ),
        validateTimeoutMillis,
        () => false,
      );
    },
  };

  if (resetQuery !== undefined) {
    factory.reset = async (client: C): Promise<void> => {
      const status = client.getTransactionStatus?.();
      if (status === 'T' || status === 'E') {
        throw new Error(
          `Connection released inside an open transaction (status ${status}): destroyed instead of ` +
            'reset, so its transaction and locks end with it. COMMIT or ROLLBACK before release().',
        );
      }
      const done = await bounded(
        client.query(resetQuery).then(() => true),
        validateTimeoutMillis,
        () => false,
      );
      if (!done) throw new Error(`resetQuery did not finish within ${validateTimeoutMillis} ms.`);
    };
  }
  return factory;
}

/**
 * A poolwatch `Pool` of `pg.Client`s: `new Pool({ factory: pgFactory(config, factoryOptions),
 * ...poolOptions })`.
 */
export function createPgPool<C extends Client = Client>(
  config: string | ClientConfig,
  poolOptions: Omit<PoolOptions<C>, 'factory'> = {},
  factoryOptions?: PgFactoryOptions<C>,
): Pool<C> {
  return new Pool<C>({ ...poolOptions, factory: pgFactory<C>(config, factoryOptions) });
}

/**
 * Where `config` connects, without credentials: `{ system: 'postgresql', address, port,
 * namespace }`, resolved the way pg resolves it (connection string over fields, then `PG*`
 * environment variables, then pg's defaults, the database defaulting to the user name).
 *
 * A connection string poolwatch cannot read unambiguously (no `postgres://` scheme, an unencoded
 * `/`, `?` or `#` in the password, a libpq `key=value` string) is rejected without quoting it:
 * pg would read part of the password as the host or the database, and from there it would reach
 * pool names, spans and metrics (see ../pg-connection-string.ts).
 */
export function pgServerInfo(config: string | ClientConfig): ServerInfo {
  const fields: PgConnectionFields =
    typeof config === 'string' ? { connectionString: config } : config;
  const { connectionString } = fields;
  if (connectionString !== undefined && parsePgConnectionString(connectionString) === undefined) {
    throw new InvalidOptionError(
      `${WHERE}: the PostgreSQL connection string cannot be read unambiguously (it is not quoted ` +
        'here: it may hold a password). Expected postgres://user:password@host:port/database, ' +
        'with reserved characters in the user and password percent-encoded (/ as %2F, ? as %3F, ' +
        '# as %23, @ as %40), or pass a config object with a separate password.',
    );
  }
  return resolvePgServer(fields, { databaseFromUser: true });
}

/**
 * The client config with poolwatch's defaults: a connect timeout and TCP keepalive (pg has
 * neither by default). A `connectionTimeoutMillis` the user gives is checked: pg reads a
 * negative or non-numeric one as "no timeout", silently.
 */
function withConnectTimeout(config: string | ClientConfig): ClientConfig {
  if (typeof config === 'string') {
    return {
      connectionString: config,
      connectionTimeoutMillis: PG_DEFAULT_CONNECTION_TIMEOUT_MILLIS,
      keepAlive: true,
      keepAliveInitialDelayMillis: PG_DEFAULT_KEEPALIVE_INITIAL_DELAY_MILLIS,
    };
  }
  if (typeof config !== 'object' || config === null) {
    throw new InvalidOptionError(
      `${WHERE} needs a connection string or a pg ClientConfig object, got ${typeof config}.`,
    );
  }
  const connectionTimeoutMillis = timerMillisOption(
    WHERE,
    'connectionTimeoutMillis',
    config.connectionTimeoutMillis,
    PG_DEFAULT_CONNECTION_TIMEOUT_MILLIS,
    ' (0 waits forever, as pg does by default)',
  );
  // A copy, with the password kept out of enumeration (and so out of console.log) as pg does.
  const copy: ClientConfig = { ...config, connectionTimeoutMillis };
  if (config.keepAlive === undefined) {
    copy.keepAlive = true;
    copy.keepAliveInitialDelayMillis ??= PG_DEFAULT_KEEPALIVE_INITIAL_DELAY_MILLIS;
  }
  if ('password' in config) {
    Object.defineProperty(copy, 'password', {
      value: config.password,
      enumerable: false,
      writable: true,
      configurable: true,
    });
  }
  return copy;
}

/**
 * pg reports its own connect timeout as a bare "timeout expired": say what timed out. Every other
 * error is the driver's, passed on as is.
 */
function describeConnectError(
  error: unknown,
  server: ServerInfo,
  timeoutMillis: number,
  started: number,
): unknown {
  const elapsed = performance.now() - started;
  if (
    timeoutMillis > 0 &&
    elapsed >= timeoutMillis * 0.9 &&
    error instanceof Error &&
    /timeout expired|connection timeout/i.test(error.message)
  ) {
    const where = `${server.address ?? 'localhost'}${server.port !== undefined ? `:${server.port}` : ''}`;
    const wrapped = new Error(
      `Connecting to PostgreSQL at ${where} timed out after ${Math.round(elapsed)} ms ` +
        `(connectionTimeoutMillis: ${timeoutMillis}). Is the server reachable?`,
      { cause: error },
    );
    (wrapped as Error & { code?: string }).code = 'ETIMEDOUT';
    return wrapped;
  }
  return error;
}

interface PgModule<C extends Client> {
  Client: PgClientConstructor<C>;
}

function loadPg<C extends Client>(): PgModule<C> {
  try {
    // Loaded on first use only: pg is an optional peer dependency of poolwatch.
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- lazy: optional peer dependency
    return require('pg') as PgModule<C>;
  } catch (error) {
    throw new Error(
      "poolwatch's PostgreSQL adapter needs the 'pg' package: npm install pg (8.x).",
      { cause: error },
    );
  }
}
