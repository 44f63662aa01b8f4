/**
 * poolwatch's own telemetry names: everything the semantic conventions do not define. All live
 * under the `poolwatch.` prefix, never under `db.client.connection.` (which belongs to the spec).
 * The README's Telemetry section documents each one; change both together.
 */
import type { AlertKind, LeakKind } from '../events';

// --- Spans -----------------------------------------------------------------------------------------

/** One span per hold: from the moment a lease is handed out to its release (or other end). */
export const SPAN_HOLD = 'poolwatch.hold';
/** Optional (`waitSpans`): the wait inside `acquire()`, from the call to the lease or the error. */
export const SPAN_ACQUIRE = 'poolwatch.acquire';
/**
 * A short span at the moment of each leak finding (suspected, collected, reclaimed): child of the
 * hold span when that is recorded, else the root of a new trace linked to the acquiring one.
 */
export const SPAN_LEAK = 'poolwatch.leak';

// --- Attributes ------------------------------------------------------------------------------------

/** int: the lease's id, unique per hold within the process. */
export const ATTR_LEASE_ID = 'poolwatch.lease.id';
/** int: the underlying resource's id, stable across holds. */
export const ATTR_RESOURCE_ID = 'poolwatch.resource.id';
/** double, seconds: how long `acquire()` waited for this lease. */
export const ATTR_ACQUIRE_WAIT_TIME = 'poolwatch.acquire.wait_time';
/** string: how the hold ended (`released`, `destroyed`, `reclaimed`, `collected`, `closed`). */
export const ATTR_HOLD_OUTCOME = 'poolwatch.hold.outcome';
/** double, seconds: age of the lease when a finding or alert was made. */
export const ATTR_LEASE_AGE = 'poolwatch.lease.age';
/** string: `suspected`, `returned`, `collected`, `reclaimed`. */
export const ATTR_LEAK_KIND = 'poolwatch.leak.kind';
/**
 * string: the alert's kind, spelled as in the event names: `leak`, `leak_count`, `hold_age`,
 * `exhausted` (see `ALERT_KIND_VALUE`).
 */
export const ATTR_ALERT_KIND = 'poolwatch.alert.kind';
/** double: the measured value behind a threshold alert. */
export const ATTR_ALERT_VALUE = 'poolwatch.alert.value';
/** double: the threshold it crossed. */
export const ATTR_ALERT_THRESHOLD = 'poolwatch.alert.threshold';

// --- Metrics ---------------------------------------------------------------------------------------

/** Observable gauge, `{lease}`: leases currently held past the leak threshold. */
export const METRIC_LEAKS_SUSPECTED = 'poolwatch.leaks.suspected';
/** Counter, `{lease}`: leak findings, by `poolwatch.leak.kind` (`suspected`, `collected`, `reclaimed`). */
export const METRIC_LEAKS = 'poolwatch.leaks';
/** Observable gauge, `s`: age of the oldest lease held now (0 when none). */
export const METRIC_HOLD_OLDEST_AGE = 'poolwatch.hold.oldest_age';
/** Counter, `{lease}`: leak findings by kind and the acquiring code location (`code.*`). */
export const METRIC_CODE_LOCATION_LEAKS = 'poolwatch.code_location.leaks';
/** Observable gauge, `{lease}`: leases suspected now, by the acquiring code location. */
export const METRIC_CODE_LOCATION_LEAKS_SUSPECTED = 'poolwatch.code_location.leaks.suspected';
/** `code.file.path` of findings whose lease had no stack captured. */
export const CODE_LOCATION_UNKNOWN = 'unknown';
/** `code.file.path` of findings past a pool's `maxCodeLocationsPerPool` distinct locations. */
export const CODE_LOCATION_OTHER = 'other';

// --- Span events and log record event names ------------------------------------------------------

/** Leak findings: span events on the hold span, and the `eventName` of their log records. */
export const LEAK_EVENT = {
  suspected: 'poolwatch.leak.suspected',
  returned: 'poolwatch.leak.returned',
  collected: 'poolwatch.leak.collected',
  reclaimed: 'poolwatch.leak.reclaimed',
} as const satisfies Record<LeakKind, string>;

/** `eventName` of the log records of threshold alerts (leak findings use `LEAK_EVENT`). */
export const ALERT_EVENT = {
  'leak-count': 'poolwatch.alert.leak_count',
  'hold-age': 'poolwatch.alert.hold_age',
  exhausted: 'poolwatch.alert.exhausted',
  /** A leak alert without its `leakKind` (the pool always sets it). */
  leak: 'poolwatch.alert.leak',
} as const satisfies Record<AlertKind, string>;

/**
 * `poolwatch.alert.kind` values. The public `Alert.kind` keeps its hyphens (`hold-age`); telemetry
 * spells them with underscores, like the event names (`poolwatch.alert.hold_age`) and the
 * conventions' enum values.
 */
export const ALERT_KIND_VALUE = {
  'leak-count': 'leak_count',
  'hold-age': 'hold_age',
  exhausted: 'exhausted',
  leak: 'leak',
} as const satisfies Record<AlertKind, string>;

/**
 * `error.type` of a hold that ended badly (its span and its ERROR log record): the lease was
 * garbage-collected unreleased, or taken back by the pool.
 */
export const LEASE_ERROR_TYPE = {
  collected: 'poolwatch.lease.collected',
  reclaimed: 'poolwatch.lease.reclaimed',
} as const satisfies Partial<Record<LeakKind, string>>;
