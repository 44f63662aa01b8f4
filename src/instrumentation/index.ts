export { PoolInstrumentation } from './instrumentation';
export type {
  HoldSpanInfo,
  PgPoolInstrumentationOptions,
  PgPoolNameInfo,
  PoolInstrumentationConfig,
} from './types';
