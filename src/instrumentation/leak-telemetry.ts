/**
 * Telemetry of holds and leaks where operators look: a `poolwatch.leak` span at each finding (so a
 * lease that never comes back still appears in a trace), the age of the oldest hold, leak findings
 * and suspected leases by the code location that acquired them, and the last word on a closed
 * pool's gauges. `PoolInstrumentation` calls into here from its event handlers and its batch
 * observable callback.
 */
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  trace,
  type Attributes,
  type BatchObservableResult,
  type Context,
  type Link,
  type Observable,
  type Span,
  type SpanContext,
  type Tracer,
} from '@opentelemetry/api';
import { codeLocationOf } from '../code-location';
import type { LeakMessage, PoolRef } from '../events';
import type { LeaseInfo } from '../types';
import {
  LEASE_ERROR_TYPE,
  ATTR_LEAK_KIND,
  ATTR_LEASE_AGE,
  ATTR_LEASE_ID,
  ATTR_RESOURCE_ID,
  CODE_LOCATION_OTHER,
  CODE_LOCATION_UNKNOWN,
  SPAN_LEAK,
} from './names';
import {
  ATTR_ERROR_TYPE,
  ATTR_CODE_COLUMN_NUMBER,
  ATTR_CODE_FILE_PATH,
  ATTR_CODE_FUNCTION_NAME,
  ATTR_CODE_LINE_NUMBER,
  ATTR_CODE_STACKTRACE,
} from './semconv';

// --- The leak span ---------------------------------------------------------------------------------

/** What the instrumentation knows of the acquire behind a finding. */
export interface AcquireTrace {
  /** The context active at `acquire()`. */
  readonly parent: Context;
  /** The hold span, if one was started (it may not be recorded). */
  readonly holdSpan: Span | undefined;
}

/**
 * Records one finding as a zero-length `poolwatch.leak` span at the moment it was made. Where:
 *
 * - the hold span is sampled: its child, so the trace reads request → hold → leak (exported at
 *   once, before the hold ends, if it ever does);
 * - no hold span, but the acquiring span is sampled (`holdSpans: false`): child of that span;
 * - otherwise (the acquiring trace was not sampled, the acquire had no span, or began before the
 *   instrumentation was enabled): the root of a new trace, linked to the hold span or the
 *   acquiring span when there is one. The sampler still decides on that root: a finding is rare,
 *   and a parent-based sampler over always-on keeps it.
 */
export function recordLeakSpan(
  tracer: Tracer,
  message: LeakMessage,
  acquire: AcquireTrace | undefined,
  poolAttributes: Attributes,
  withStack: boolean,
  at: [number, number],
): void {
  const { lease, kind } = message;
  const holdContext = acquire?.holdSpan?.spanContext();
  const acquiring = acquire && trace.getSpanContext(acquire.parent);
  let parent: Context = ROOT_CONTEXT;
  const links: Link[] = [];
  if (acquire !== undefined && holdContext !== undefined && sampled(holdContext)) {
    parent = trace.setSpan(acquire.parent, acquire.holdSpan!);
  } else if (acquire !== undefined && holdContext === undefined && sampled(acquiring)) {
    parent = acquire.parent;
  } else {
    const original = valid(holdContext) ? holdContext : valid(acquiring) ? acquiring : undefined;
    if (original !== undefined) links.push({ context: original });
  }
  const attributes: Attributes = Object.assign({}, poolAttributes);
  attributes[ATTR_LEAK_KIND] = kind;
  attributes[ATTR_LEASE_ID] = lease.id;
  attributes[ATTR_RESOURCE_ID] = lease.resourceId;
  attributes[ATTR_LEASE_AGE] = message.ageMillis / 1000;
  const stack = message.stack ?? lease.stack;
  if (withStack && stack !== undefined) attributes[ATTR_CODE_STACKTRACE] = stack;
  // Like the stack, the code location is left out under `captureStacks: false`.
  const location = withStack ? codeLocationOf(lease) : undefined;
  if (location !== undefined) {
    if (location.functionName !== undefined) {
      attributes[ATTR_CODE_FUNCTION_NAME] = location.functionName;
    }
    attributes[ATTR_CODE_FILE_PATH] = location.filePath;
    attributes[ATTR_CODE_LINE_NUMBER] = location.lineNumber;
    if (location.columnNumber !== undefined) {
      attributes[ATTR_CODE_COLUMN_NUMBER] = location.columnNumber;
    }
  }
  const span = tracer.startSpan(
    SPAN_LEAK,
    { kind: SpanKind.INTERNAL, startTime: at, attributes, links },
    parent,
  );
  if (kind === 'collected' || kind === 'reclaimed') {
    span.setAttribute(ATTR_ERROR_TYPE, LEASE_ERROR_TYPE[kind]);
    span.setStatus({ code: SpanStatusCode.ERROR, message: `lease ${kind}` });
  }
  span.end(at);
}

function valid(spanContext: SpanContext | undefined): spanContext is SpanContext {
  return spanContext !== undefined && trace.isSpanContextValid(spanContext);
}

function sampled(spanContext: SpanContext | undefined): boolean {
  return valid(spanContext) && (spanContext.traceFlags & TraceFlags.SAMPLED) !== 0;
}

// --- Code locations --------------------------------------------------------------------------------

const UNKNOWN: Attributes = Object.freeze({ [ATTR_CODE_FILE_PATH]: CODE_LOCATION_UNKNOWN });
const OTHER: Attributes = Object.freeze({ [ATTR_CODE_FILE_PATH]: CODE_LOCATION_OTHER });

/** One pool's code locations, in the order they were first seen, and its gauge series. */
interface PoolLocations {
  /** Metric attributes (pool name + `code.*`) per location key; at most `limit` entries. */
  readonly known: Map<string, Attributes>;
  readonly unknown: Attributes;
  readonly other: Attributes;
  /** Attribute sets the suspected-by-location gauge has reported (each gets a 0 when cleared). */
  readonly gaugeSeries: Set<Attributes>;
  /** The oldest-hold gauge was reported (the pool can list its holds). */
  oldestReported: boolean;
}

/**
 * The `code.*` attributes of the `poolwatch.code_location.*` metrics, bounded per pool: the first
 * `limit` distinct locations (function, file, line) get their own series, later ones share one
 * with `code.file.path="other"`; a lease with no stack captured is `code.file.path="unknown"`.
 * Each attribute set is built once and reused, so the SDK hashes the same objects.
 */
export class CodeLocationSeries {
  /** Weak: a pool closed while no collection runs (no meter provider) is not kept. */
  readonly #pools = new WeakMap<PoolRef, PoolLocations>();

  constructor(readonly limit: number) {}

  /** The metric attributes (the pool's, plus `code.*`) of `lease`'s acquiring location. */
  attributes(pool: PoolRef, poolAttributes: Attributes, lease: LeaseInfo): Attributes {
    const locations = this.#of(pool, poolAttributes);
    const location = codeLocationOf(lease);
    if (location === undefined) return locations.unknown;
    const key = `${location.functionName ?? ''}\0${location.filePath}\0${location.lineNumber}`;
    let attributes = locations.known.get(key);
    if (attributes !== undefined) return attributes;
    if (locations.known.size >= this.limit) return locations.other;
    attributes = Object.assign({}, poolAttributes);
    if (location.functionName !== undefined) {
      attributes[ATTR_CODE_FUNCTION_NAME] = location.functionName;
    }
    attributes[ATTR_CODE_FILE_PATH] = location.filePath;
    attributes[ATTR_CODE_LINE_NUMBER] = location.lineNumber;
    locations.known.set(key, attributes);
    return attributes;
  }

  /**
   * Observes the oldest hold's age and the suspected leases by location, from the leases `pool`
   * holds now. A location whose suspected leases are gone reports 0 (the SDK would repeat its last
   * value).
   */
  observe(
    result: BatchObservableResult,
    oldestAge: Observable,
    suspected: Observable,
    pool: PoolRef,
    poolAttributes: Attributes,
    held: readonly LeaseInfo[],
  ): void {
    const locations = this.#of(pool, poolAttributes);
    let oldest = 0;
    const counts = new Map<Attributes, number>();
    for (const lease of held) {
      if (lease.ageMillis > oldest) oldest = lease.ageMillis;
      if (!lease.suspected) continue;
      const attributes = this.attributes(pool, poolAttributes, lease);
      counts.set(attributes, (counts.get(attributes) ?? 0) + 1);
    }
    result.observe(oldestAge, oldest / 1000, poolAttributes);
    locations.oldestReported = true;
    for (const attributes of locations.gaugeSeries) {
      if (!counts.has(attributes)) result.observe(suspected, 0, attributes);
    }
    for (const [attributes, count] of counts) {
      result.observe(suspected, count, attributes);
      locations.gaugeSeries.add(attributes);
    }
  }

  /** A closed pool's last word: 0 on every series it reported here; then it is forgotten. */
  retire(
    result: BatchObservableResult,
    oldestAge: Observable,
    suspected: Observable,
    pool: PoolRef,
    poolAttributes: Attributes,
  ): void {
    const locations = this.#pools.get(pool);
    if (locations === undefined) return;
    this.#pools.delete(pool);
    if (locations.oldestReported) result.observe(oldestAge, 0, poolAttributes);
    for (const attributes of locations.gaugeSeries) result.observe(suspected, 0, attributes);
  }

  #of(pool: PoolRef, poolAttributes: Attributes): PoolLocations {
    let locations = this.#pools.get(pool);
    if (locations === undefined) {
      locations = {
        known: new Map(),
        unknown: Object.assign({}, poolAttributes, UNKNOWN),
        other: Object.assign({}, poolAttributes, OTHER),
        gaugeSeries: new Set(),
        oldestReported: false,
      };
      this.#pools.set(pool, locations);
    }
    return locations;
  }
}

// --- Names -----------------------------------------------------------------------------------------

/**
 * Names a pool gets when the application gives none: `poolwatch-N` (a pool without a name or a
 * known server), `…#N` (a second pool with the same name, e.g. two pg.Pool on one database).
 * They depend on creation order, so their series change across restarts.
 */
const AUTO_NUMBERED = /^poolwatch-\d+$|#\d+$/;

export function isAutoNumbered(name: string): boolean {
  return AUTO_NUMBERED.test(name);
}
