/**
 * Driver adapters: `pg` (node-postgres) and `mysql2`. The drivers are optional peer dependencies,
 * loaded only when a factory is made, so importing poolwatch never requires them.
 */
export {
  pgFactory,
  createPgPool,
  pgServerInfo,
  isPgClientUsable,
  isPgClientBusy,
  PG_DEFAULT_CONNECTION_TIMEOUT_MILLIS,
} from './pg';
export type { PgFactoryOptions, PgClientConstructor } from './pg';
export { PgPool, PgPoolClient } from './pg-compat';
export type {
  PgPoolConfig,
  PgPoolwatchOptions,
  PgClientEvent,
  PgClientListener,
  PgNotice,
} from './pg-compat';
export {
  mysqlFactory,
  createMysqlPool,
  mysqlServerInfo,
  isMysqlConnectionUsable,
  isMysqlConnectionBusy,
} from './mysql';
export type { MysqlFactoryOptions } from './mysql';
