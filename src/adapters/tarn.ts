/**
 * A knex client's tarn pool seen as a poolwatch pool. knex checks connections out of tarn in
 * `client.acquireConnection()` and gives them back in `client.releaseConnection()`;
 * `../instrumentation/knex.ts` patches those and calls into this adapter, which feeds the
 * lease-watching core: hold spans, the `db.client.connection.*` metrics from tarn's counts,
 * suspected leaks with the stack of the application line that issued the query, and two things
 * specific to knex:
 *
 * - its timeout error ("Knex: Timeout acquiring a connection. The pool is probably full. Are you
 *   missing a .transacting(trx) call?") keeps its class and text, and gets the longest holders,
 *   their ages and acquiring lines appended;
 * - a query issued on the outer `knex` from inside a `knex.transaction(async (trx) => …)` callback
 *   while every connection is held, the transaction's own among them, fails at once instead of
 *   timing out: the transaction callback runs in a frame that holds its connection (see
 *   `../watch/context.ts`), so such a query knows it waits for a connection its own transaction
 *   holds.
 *
 * Knows nothing of OpenTelemetry. Holds only a weak reference to the tarn pool.
 */
import { SelfDeadlockError } from '../errors';
import type { PoolStats, ServerInfo } from '../types';
import { heldBySource, runHolding } from '../watch/context';
import { describeHolders, indentStack } from '../watch/report';
import { formatStack, type CapturedStack } from '../watch/stack';
import {
  WatchedCheckouts,
  asError,
  nameFromHook,
  type ErrorReporter,
  type ResolvedCheckoutOptions,
} from './checkouts';
import { pgPoolServerInfo } from './pg-pool';

/** The parts of a tarn 3 `Pool` that are read here: its public API. */
export interface TarnPoolLike {
  readonly min: number;
  readonly max: number;
  numUsed(): number;
  numFree(): number;
  numPendingAcquires(): number;
  numPendingCreates(): number;
}

/** The parts of a knex 3 client read here (never its password). */
export interface KnexClientLike {
  readonly pool: TarnPoolLike | undefined;
  readonly dialect?: unknown;
  readonly driverName?: unknown;
  readonly connectionSettings?: unknown;
}

/** What `knex.poolName` receives. */
export interface KnexPoolNameInfo {
  /** The knex client (`knex.client`): `client.config` has the configuration knex was given. */
  readonly client: object;
  /** Where it connects, as telemetry reports it (never credentials). */
  readonly server: ServerInfo;
}

export type ResolvedKnexOptions = ResolvedCheckoutOptions<KnexPoolNameInfo>;

/** knex's message for an acquire that timed out in tarn (matched by applications: kept as is). */
export const KNEX_TIMEOUT_MESSAGE =
  'Knex: Timeout acquiring a connection. The pool is probably full. ' +
  'Are you missing a .transacting(trx) call?';

const NO_STACK_HINT = "no stack captured: knex.captureStacks: 'always' records every query";

/** How many holders a timeout message names. */
const HOLDERS_IN_TIMEOUT = 3;

/**
 * The adapter of one tarn pool of a knex client, created at the client's first query after the
 * patch, in `openPools` until `knex.destroy()`.
 *
 * Hazards: a connection handed out before the patch is unknown here. Holds still open at
 * `destroy()` are followed to their release (tarn's `destroy()` waits for them).
 */
export class WatchedTarnPool extends WatchedCheckouts<TarnPoolLike> {
  constructor(
    pool: TarnPoolLike,
    client: KnexClientLike,
    options: ResolvedKnexOptions,
    report: ErrorReporter,
    onClose: (watched: WatchedCheckouts) => void,
  ) {
    const server = knexServerInfo(client);
    super(
      pool,
      nameFromHook(options.poolName, { client, server }, defaultName(server), report, 'knex'),
      server,
      options,
      NO_STACK_HINT,
      report,
      onClose,
    );
  }

  /** tarn's counts: `used` is checked out (or being validated), `creating` is being created. */
  stats(): PoolStats {
    const pool = this.pool;
    const used = pool?.numUsed() ?? 0;
    const idle = pool?.numFree() ?? 0;
    return {
      name: this.name,
      size: used + idle,
      idle,
      used,
      pending: pool?.numPendingAcquires() ?? 0,
      creating: pool?.numPendingCreates() ?? 0,
      min: pool?.min ?? 0,
      max: pool?.max ?? 0,
      created: 0,
      destroyed: 0,
      ...this.leakCounts(),
    };
  }

  // ---------------------------------------------------------------------------------------------
  // Checkout

  /**
   * Runs knex's `acquireConnection()` (`acquire`), following the checkout. `captured`: the stack of
   * the application line that issued the query, taken when the query was built (`null`: the
   * policy took none then; `undefined`: not known, the policy may take one now, above `above`).
   */
  acquire(
    acquire: () => Promise<object>,
    captured: CapturedStack | null | undefined,
    above: (...args: never[]) => unknown,
  ): Promise<object> {
    const checkout = this.startCheckout(above, captured);
    const deadlock = this.#selfDeadlock(checkout.captured, above);
    if (deadlock !== undefined) {
      this.checkoutFailed(checkout, deadlock, false);
      return Promise.reject(deadlock);
    }
    return acquire().then(
      (connection) => {
        this.checkedOut(checkout, connection);
        return connection;
      },
      (error: unknown) => {
        const timedOut = isKnexTimeout(error);
        if (timedOut) this.#explainTimeout(error);
        this.checkoutFailed(checkout, asError(error), timedOut);
        throw error;
      },
    );
  }

  /**
   * Runs `fn(...args)` (a transaction's work on `connection`) in a frame that holds the
   * connection, so that a query issued inside it on the outer knex can tell it would wait for
   * its own transaction.
   */
  runHolding<A extends unknown[], R>(connection: object, fn: (...args: A) => R, ...args: A): R {
    const hold = this.holdOf(connection);
    if (hold === undefined) return fn(...args);
    return runHolding(this, hold, fn, ...args);
  }

  /** Whether this async context runs inside a transaction of this pool. */
  insideTransaction(): boolean {
    return heldBySource(this) !== undefined;
  }

  /**
   * The error for a query issued outside its transaction while every connection is held and
   * the transaction's own is among them: it would wait for a connection that only comes back
   * when the code waiting for it finishes.
   */
  #selfDeadlock(
    captured: CapturedStack | undefined,
    above: (...args: never[]) => unknown,
  ): SelfDeadlockError | undefined {
    const pool = this.pool;
    if (pool === undefined || pool.numUsed() < pool.max) return undefined;
    const held = heldBySource(this);
    if (held === undefined) return undefined;
    const issued = formatStack(captured ?? this.#stackNow(above));
    const acquired = formatStack(held.captured);
    return new SelfDeadlockError(
      `Knex pool "${this.name}" is full (${pool.numUsed()}/${pool.max} in use) and this query runs ` +
        `outside its transaction and waits for a connection the transaction holds ` +
        `(lease #${held.holdId}): it would wait until the pool's timeout.` +
        (issued ? ` Query issued at:${indentStack(issued)}` : '') +
        (acquired ? `\nThe transaction took its connection at:${indentStack(acquired)}` : '') +
        '\nRun the query on the transaction (trx(...), or .transacting(trx)), or raise pool.max.',
      this.name,
    );
  }

  #stackNow(above: (...args: never[]) => unknown): CapturedStack {
    const holder: CapturedStack = {};
    Error.captureStackTrace(holder, above);
    return holder;
  }

  /**
   * Appends the longest holders to knex's timeout error, in place: its class, its message's
   * beginning and its `cause` stay as knex made them.
   */
  #explainTimeout(error: Error): void {
    const stats = this.stats();
    const holders = this.watch.holders().slice(0, HOLDERS_IN_TIMEOUT);
    let text = ` Pool "${this.name}": ${stats.used}/${stats.max} in use, ${stats.pending} waiting (poolwatch).`;
    if (holders.length > 0) text += ` Longest holders:${describeHolders(holders, NO_STACK_HINT)}`;
    // V8 writes `stack` when it is first read, with the message of that moment: read it first.
    const stack = error.stack;
    const before = error.message;
    error.message = before + text;
    if (typeof stack === 'string' && stack.includes(before)) {
      error.stack = stack.replace(before, error.message);
    }
  }
}

function isKnexTimeout(error: unknown): error is Error {
  return (
    error instanceof Error &&
    error.name === 'KnexTimeoutError' &&
    error.message.startsWith(KNEX_TIMEOUT_MESSAGE)
  );
}

// -------------------------------------------------------------------------------------------------
// Naming

/** `db.system.name` for knex's dialects. */
const SYSTEMS: Record<string, string> = {
  postgresql: 'postgresql',
  postgres: 'postgresql',
  pg: 'postgresql',
  pgnative: 'postgresql',
  cockroachdb: 'cockroachdb',
  redshift: 'redshift',
  mysql: 'mysql',
  mysql2: 'mysql',
  sqlite3: 'sqlite',
  sqlite: 'sqlite',
  'better-sqlite3': 'sqlite',
  mssql: 'microsoft.sql_server',
  oracledb: 'oracle.db',
};

/**
 * Where a knex client connects, from its connection settings: host, port and database only,
 * never the user or password. PostgreSQL settings are read as pg reads them (connection string,
 * `PG*` variables); others default to `localhost` and the dialect's port.
 */
export function knexServerInfo(client: KnexClientLike): ServerInfo {
  const dialect = typeof client.dialect === 'string' ? client.dialect : '';
  const system = SYSTEMS[dialect] ?? (dialect || 'other_sql');
  const settings =
    typeof client.connectionSettings === 'object' && client.connectionSettings !== null
      ? (client.connectionSettings as Record<string, unknown>)
      : {};
  if (system === 'postgresql' || system === 'cockroachdb' || system === 'redshift') {
    return { ...pgPoolServerInfo(settings), system };
  }
  if (system === 'sqlite') {
    const file = stringOf(settings.filename);
    return file === undefined ? { system } : { system, namespace: file };
  }
  const info: { system: string; address?: string; port?: number; namespace?: string } = { system };
  const socket = stringOf(settings.socketPath);
  info.address = socket ?? stringOf(settings.host) ?? stringOf(settings.server) ?? 'localhost';
  const port = Number(settings.port);
  if (Number.isInteger(port) && port > 0 && port < 65536) info.port = port;
  else if (socket === undefined && system === 'mysql') info.port = 3306;
  else if (system === 'microsoft.sql_server') info.port = 1433;
  const database = stringOf(settings.database);
  if (database !== undefined) info.namespace = database;
  return info;
}

function defaultName(server: ServerInfo): string {
  if (server.address === undefined) return `${server.system ?? 'knex'}:${server.namespace ?? ''}`;
  const port = server.port === undefined ? '' : `:${server.port}`;
  return `${server.address}${port}/${server.namespace ?? ''}`;
}

function stringOf(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}
