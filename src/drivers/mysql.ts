/**
 * mysql2 adapter: the mechanics of one `mysql2/promise` connection as a `ResourceFactory`. It
 * keeps no pool state and never writes onto the connection.
 *
 * `mysql2` is an optional peer dependency, loaded with `require()` when the first factory is made;
 * only its types are imported here.
 *
 * Hazards: mysql2 emits 'error' on a connection that lost its server (KILL, restart, network) when
 * no command is waiting, and an EventEmitter without an 'error' listener throws, crashing the
 * process. Every connection gets a listener for life, which marks it broken. `end()` sends QUIT
 * and waits for the server: `destroy()` bounds the wait, then closes the socket.
 *
 * TCP keepalive: mysql2 turns it on, but with the kernel's initial delay (2 h on Linux) unless
 * `keepAliveInitialDelay` is set; the factory sets 10 s, so a silently dead peer is found in
 * ~11 min (Linux probe defaults) rather than 2 h 11 min. No default query timeout, for the
 * reasons given in ./pg.ts; mysql2 takes one per query (`{ sql, timeout }`) and closes the
 * connection when it fires, which the pool sees. A connection released with a command still
 * running is destroyed, not reused (`isBusy`).
 */
import type { Connection, ConnectionOptions } from 'mysql2/promise';
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
} from './common';
import { rejectUnknownKeys } from '../options';

export interface MysqlFactoryOptions {
  /**
   * A validation (a ping, on a borrow after `validateAfterIdleMillis` idle) that takes longer
   * fails, and the connection is destroyed.
   * @default 5000
   */
  validateTimeoutMillis?: number;
  /**
   * Cleans session state on every release before reuse: `'reset'` sends COM_RESET_CONNECTION
   * (MySQL 5.7+, MariaDB 10.2+: rolls back, drops temporary tables, user variables, prepared
   * statements), a string runs that SQL. Unset: no reset (releases stay synchronous).
   */
  reset?: 'reset' | string;
  /**
   * `destroy()` waits this long for a graceful `end()` (QUIT), then destroys the socket.
   * @default 2000
   */
  endTimeoutMillis?: number;
  /** Runs after each connect, before first use. A throw closes the connection and fails the create. */
  onConnect?: (connection: Connection) => void | Promise<void>;
  /** Called with each error a connected connection emits, after it was marked broken. */
  onError?: (error: Error, connection: Connection) => void;
}

const FACTORY_KEYS = [
  'validateTimeoutMillis',
  'reset',
  'endTimeoutMillis',
  'onConnect',
  'onError',
] as const;
const WHERE = 'mysqlFactory';
const DEFAULT_VALIDATE_TIMEOUT_MILLIS = 5000;
const DEFAULT_END_TIMEOUT_MILLIS = 2000;

/** mysql2's core connection state (public getters on the core object, not on the promise wrapper's types). */
interface MysqlCore {
  readonly _command?: unknown;
  readonly _commands?: { readonly length: number };
  readonly _fatalError?: unknown;
  readonly _protocolError?: unknown;
  readonly _closing?: boolean;
  readonly stream?: { readonly destroyed?: boolean; destroy(): void };
}

function core(connection: Connection): MysqlCore | undefined {
  return (connection as unknown as { connection?: MysqlCore }).connection;
}

/** True unless the connection failed or is closing. */
export function isMysqlConnectionUsable(connection: Connection): boolean {
  const c = core(connection);
  if (c === undefined) return true;
  return !c._fatalError && !c._protocolError && c._closing !== true && c.stream?.destroyed !== true;
}

/** True while a command (a query, a ping) runs or waits on the connection. */
export function isMysqlConnectionBusy(connection: Connection): boolean {
  const c = core(connection);
  if (c === undefined) return false;
  return (c._command !== null && c._command !== undefined) || (c._commands?.length ?? 0) > 0;
}

/** Applied when the config has no `keepAliveInitialDelay` (mysql2 leaves it to the kernel: 2 h). */
export const MYSQL_DEFAULT_KEEPALIVE_INITIAL_DELAY_MILLIS = 10_000;

/**
 * A `ResourceFactory` for mysql2 connections (`mysql2/promise`). `config` is a
 * `mysql://user:password@host:port/database` URI or mysql2 `ConnectionOptions`.
 */
export function mysqlFactory(
  config: string | ConnectionOptions,
  options: MysqlFactoryOptions = {},
): ResourceFactory<Connection> {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidOptionError(`${WHERE} options must be an object.`);
  }
  rejectUnknownKeys(options, FACTORY_KEYS, WHERE);
  if (typeof config !== 'string' && (typeof config !== 'object' || config === null)) {
    throw new InvalidOptionError(
      `${WHERE} needs a mysql:// URI or a mysql2 ConnectionOptions object, got ${typeof config}.`,
    );
  }
  const validateTimeoutMillis = millisOption(
    WHERE,
    'validateTimeoutMillis',
    options.validateTimeoutMillis,
    DEFAULT_VALIDATE_TIMEOUT_MILLIS,
    true,
    true,
  );
  const endTimeoutMillis = millisOption(
    WHERE,
    'endTimeoutMillis',
    options.endTimeoutMillis,
    DEFAULT_END_TIMEOUT_MILLIS,
    false,
    true,
  );
  const reset = sqlOption(WHERE, 'reset', options.reset, undefined, false);
  const onConnect = functionOption(WHERE, 'onConnect', options.onConnect);
  const onError = functionOption(WHERE, 'onError', options.onError);
  const { createConnection } = loadMysql2();
  const server = mysqlServerInfo(config);

  const destroy = async (connection: Connection): Promise<void> => {
    await bounded(
      connection.end().catch(() => undefined),
      endTimeoutMillis,
      () => undefined,
    );
    // mysql2's destroy() only half-closes (stream.end()); a dead peer would keep the socket.
    connection.destroy();
    core(connection)?.stream?.destroy();
  };

  const factory: ResourceFactory<Connection> = {
    server,

    async create(context: CreateContext): Promise<Connection> {
      // mysql2 rejects this promise on connect errors and connectTimeout (default 10 s).
      // A copy: mysql2 writes the fields it parses from `uri` into the options object.
      const connection = await createConnection(
        typeof config === 'string'
          ? { uri: config, keepAliveInitialDelay: MYSQL_DEFAULT_KEEPALIVE_INITIAL_DELAY_MILLIS }
          : {
              ...config,
              keepAliveInitialDelay:
                config.keepAliveInitialDelay ?? MYSQL_DEFAULT_KEEPALIVE_INITIAL_DELAY_MILLIS,
            },
      );
      // Never removed: see the file comment.
      connection.on('error', (error: Error) => {
        context.markBroken(error);
        notifyError(onError, error, connection);
      });
      connection.on('end', () => context.markBroken());
      return runOnConnect(onConnect, connection, destroy);
    },

    destroy,

    isBusy: isMysqlConnectionBusy,

    // A connection that failed while held (mysql2 closes one whose query timed out) is
    // destroyed at release rather than idled until its next validation.
    isReusable: isMysqlConnectionUsable,

    async validate(connection: Connection): Promise<boolean> {
      if (!isMysqlConnectionUsable(connection)) return false;
      return bounded(
        connection.ping().then(
          () => true,
          () => false,
        ),
        validateTimeoutMillis,
        () => false,
      );
    },
  };

  if (reset !== undefined) {
    factory.reset = async (connection: Connection): Promise<void> => {
      const work: Promise<unknown> =
        reset === 'reset' ? connection.reset() : connection.query(reset);
      const done = await bounded(
        work.then(() => true),
        validateTimeoutMillis,
        () => false,
      );
      if (!done) throw new Error(`mysql reset did not finish within ${validateTimeoutMillis} ms.`);
    };
  }
  return factory;
}

/** A poolwatch `Pool` of mysql2 connections. */
export function createMysqlPool(
  config: string | ConnectionOptions,
  poolOptions: Omit<PoolOptions<Connection>, 'factory'> = {},
  factoryOptions?: MysqlFactoryOptions,
): Pool<Connection> {
  return new Pool<Connection>({ ...poolOptions, factory: mysqlFactory(config, factoryOptions) });
}

/** Where `config` connects, without credentials: `{ system: 'mysql', address, port, namespace }`. */
export function mysqlServerInfo(config: string | ConnectionOptions): ServerInfo {
  let host: string | undefined;
  let port: number | undefined;
  let database: string | undefined;
  const uri = typeof config === 'string' ? config : config.uri;
  if (uri !== undefined) {
    let url: URL;
    try {
      url = new URL(uri);
    } catch (error) {
      // The URL error carries the input (password included) in `.input`: pass on its class only.
      throw new InvalidOptionError(
        `${WHERE}: the MySQL URI could not be parsed (${asError(error).name}). ` +
          'Expected mysql://user:password@host:port/database.',
      );
    }
    host = url.hostname || undefined;
    port = url.port !== '' ? Number(url.port) : undefined;
    const path = decodeURIComponent(url.pathname.replace(/^\//, ''));
    database = path !== '' ? path : undefined;
  }
  if (typeof config !== 'string') {
    // As mysql2: explicit fields win over the URI.
    host = config.socketPath ?? config.host ?? host;
    port = config.socketPath !== undefined ? undefined : (config.port ?? port);
    database = config.database ?? database;
  }
  const isSocket = typeof config !== 'string' && config.socketPath !== undefined;
  const info: { system: string; address?: string; port?: number; namespace?: string } = {
    system: 'mysql',
    address: host ?? 'localhost',
  };
  if (!isSocket) info.port = port ?? 3306;
  if (database !== undefined && database !== '') info.namespace = database;
  return info;
}

interface Mysql2Promise {
  createConnection(config: ConnectionOptions): Promise<Connection>;
}

function loadMysql2(): Mysql2Promise {
  try {
    // Loaded on first use only: mysql2 is an optional peer dependency of poolwatch.
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- lazy: optional peer dependency
    return require('mysql2/promise') as Mysql2Promise;
  } catch (error) {
    throw new Error("poolwatch's MySQL adapter needs the 'mysql2' package: npm install mysql2.", {
      cause: error,
    });
  }
}
