export { Pool, Lease, formatLeakReport } from './pool';
export type { CloseReport, LeakReport } from './pool';
export { LeakTracker } from './leak-tracker';
export type { LeakTrackerOptions, TrackedInfo } from './leak-tracker';
export {
  PoolError,
  InvalidOptionError,
  AcquireTimeoutError,
  AcquireAbortedError,
  CreateFailedError,
  PoolClosedError,
  LeaseError,
  SelfDeadlockError,
} from './errors';
export type { LeaseErrorCode } from './errors';
export { DEFAULTS } from './options';
export { CHANNEL_NAMES, channels, subscribe, openPools } from './events';
export type {
  Alert,
  AlertKind,
  AlertMessage,
  ChannelMessages,
  DestroyReason,
  HoldMessage,
  HoldOutcome,
  HoldRunner,
  LeakKind,
  LeakMessage,
  PoolLifecycleMessage,
  PoolRef,
  ResourceMessage,
  TimeoutMessage,
} from './events';
export type {
  AcquireOptions,
  CodeLocation,
  CreateContext,
  HealthOptions,
  LeaseInfo,
  PoolOptions,
  PoolStats,
  ResourceFactory,
  ServerInfo,
  StackCapture,
} from './types';
export { liveView, liveViewSnapshot } from './live-view';
export type {
  LiveViewHandler,
  LiveViewHold,
  LiveViewOptions,
  LiveViewPool,
  LiveViewSnapshot,
} from './live-view';
export { PoolInstrumentation } from './instrumentation';
export type {
  HoldSpanInfo,
  KnexPoolNameInfo,
  LibraryPoolOptions,
  Mysql2PoolNameInfo,
  PgPoolInstrumentationOptions,
  PgPoolNameInfo,
  PoolInstrumentationConfig,
} from './instrumentation';
export {
  pgFactory,
  createPgPool,
  pgServerInfo,
  PgPool,
  PgPoolClient,
  mysqlFactory,
  createMysqlPool,
  mysqlServerInfo,
} from './drivers';
export type {
  PgFactoryOptions,
  PgPoolConfig,
  PgPoolwatchOptions,
  PgClientEvent,
  PgClientListener,
  PgNotice,
  MysqlFactoryOptions,
} from './drivers';
