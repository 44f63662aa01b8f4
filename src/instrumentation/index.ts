export { PoolInstrumentation } from './instrumentation';
export type { HoldSpanInfo, PoolInstrumentationConfig } from './types';
