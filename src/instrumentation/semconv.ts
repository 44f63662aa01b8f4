/**
 * Semantic-convention constants, copied from `@opentelemetry/semantic-conventions` 1.45 as the
 * OpenTelemetry guidelines ask for names that are still in development (the connection-pool ones
 * live only in the package's `/incubating` entry point, which may change in any minor release).
 * The stable ones are copied too, so that poolwatch does not depend on the package at all.
 */

// --- Stable attributes ---------------------------------------------------------------------------

export const ATTR_DB_SYSTEM_NAME = 'db.system.name' as const;
export const ATTR_DB_NAMESPACE = 'db.namespace' as const;
export const ATTR_SERVER_ADDRESS = 'server.address' as const;
export const ATTR_SERVER_PORT = 'server.port' as const;
export const ATTR_ERROR_TYPE = 'error.type' as const;
export const ATTR_EXCEPTION_TYPE = 'exception.type' as const;
export const ATTR_EXCEPTION_MESSAGE = 'exception.message' as const;
export const ATTR_CODE_STACKTRACE = 'code.stacktrace' as const;
export const ATTR_CODE_FUNCTION_NAME = 'code.function.name' as const;
export const ATTR_CODE_FILE_PATH = 'code.file.path' as const;
export const ATTR_CODE_LINE_NUMBER = 'code.line.number' as const;
export const ATTR_CODE_COLUMN_NUMBER = 'code.column.number' as const;

// --- Development (incubating) attributes -----------------------------------------------------------

export const ATTR_DB_CLIENT_CONNECTION_POOL_NAME = 'db.client.connection.pool.name' as const;
export const ATTR_DB_CLIENT_CONNECTION_STATE = 'db.client.connection.state' as const;
export const DB_CLIENT_CONNECTION_STATE_VALUE_IDLE = 'idle' as const;
export const DB_CLIENT_CONNECTION_STATE_VALUE_USED = 'used' as const;

// --- Development (incubating) metrics: model/db/metrics.yaml ---------------------------------------

/** UpDownCounter, `{connection}`: connections in the state given by `db.client.connection.state`. */
export const METRIC_DB_CLIENT_CONNECTION_COUNT = 'db.client.connection.count' as const;
/** UpDownCounter, `{connection}`: maximum number of idle connections allowed. */
export const METRIC_DB_CLIENT_CONNECTION_IDLE_MAX = 'db.client.connection.idle.max' as const;
/** UpDownCounter, `{connection}`: minimum number of idle connections allowed. */
export const METRIC_DB_CLIENT_CONNECTION_IDLE_MIN = 'db.client.connection.idle.min' as const;
/** UpDownCounter, `{connection}`: maximum number of open connections allowed. */
export const METRIC_DB_CLIENT_CONNECTION_MAX = 'db.client.connection.max' as const;
/** UpDownCounter, `{request}`: requests waiting for a connection. */
export const METRIC_DB_CLIENT_CONNECTION_PENDING_REQUESTS =
  'db.client.connection.pending_requests' as const;
/** Counter, `{timeout}`: connection requests that timed out. */
export const METRIC_DB_CLIENT_CONNECTION_TIMEOUTS = 'db.client.connection.timeouts' as const;
/** Histogram, `s`: time to create a new connection. */
export const METRIC_DB_CLIENT_CONNECTION_CREATE_TIME = 'db.client.connection.create_time' as const;
/** Histogram, `s`: time to obtain an open connection from the pool. */
export const METRIC_DB_CLIENT_CONNECTION_WAIT_TIME = 'db.client.connection.wait_time' as const;
/** Histogram, `s`: time between borrowing a connection and returning it to the pool. */
export const METRIC_DB_CLIENT_CONNECTION_USE_TIME = 'db.client.connection.use_time' as const;
