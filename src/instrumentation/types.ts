import type { InstrumentationConfig, SpanCustomizationHook } from '@opentelemetry/instrumentation';
import type { PoolRef } from '../events';
import type { LeaseInfo } from '../types';

/** What `holdHook` receives with the hold span. */
export interface HoldSpanInfo {
  readonly pool: PoolRef;
  readonly lease: LeaseInfo;
}

export interface PoolInstrumentationConfig extends InstrumentationConfig {
  /**
   * One `poolwatch.hold` span per lease, from hand-out to release, child of the span that was
   * active when `acquire()` was called. Leak findings become events on it.
   * @default true
   */
  holdSpans?: boolean;
  /**
   * One `poolwatch.acquire` span per `acquire()` call, covering the wait for a lease. Off by
   * default: the hold span already carries the wait as an attribute, and the
   * `db.client.connection.wait_time` histogram has the distribution.
   * @default false
   */
  waitSpans?: boolean;
  /**
   * Create spans only when `acquire()` is called inside another span, so that background jobs do
   * not start root traces of their own. Metrics and logs are unaffected.
   * @default false
   */
  requireParentSpan?: boolean;
  /**
   * Put the acquisition stack (`code.stacktrace`) on leak span events and alert log records, when
   * the pool captured one (see the pool's `captureStacks` option).
   * @default true
   */
  captureStacks?: boolean;
  /**
   * Called with each hold span right after it starts, to add attributes. Errors it throws are
   * reported through `diag` and ignored.
   */
  holdHook?: SpanCustomizationHook<HoldSpanInfo>;
}
