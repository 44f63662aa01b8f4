export { PoolInstrumentation } from './instrumentation';
export type {
  HoldSpanInfo,
  KnexPoolNameInfo,
  LibraryPoolOptions,
  Mysql2PoolNameInfo,
  PgPoolInstrumentationOptions,
  PgPoolNameInfo,
  PoolInstrumentationConfig,
} from './types';
