/**
 * Lifecycle events, published on Node's `diagnostics_channel`.
 *
 * The pool knows nothing of OpenTelemetry: it publishes what happens, and telemetry (or anyone)
 * subscribes. Channels are process-global by name, so a subscriber sees every poolwatch pool in the
 * process, created before or after it subscribed. A channel nobody listens to costs one
 * `hasSubscribers` check; messages are only allocated when someone listens. `diagnostics_channel`
 * catches a throwing subscriber and reports it on `process.nextTick`, never into the pool.
 *
 * One `HoldMessage` object follows an acquire from its start to the end of the hold it produced:
 * subscribers keep their own state (a span, a context) in its `userData` (a WeakMap keyed on
 * short-lived messages costs about a microsecond per acquire in V8).
 *
 * Ordering: every leak finding is published on `leak` and then, as an alert, on `alert`; findings
 * that end a hold (returned, collected, reclaimed) are published before that hold's `holdEnd`.
 */
import diagnostics_channel from 'node:diagnostics_channel';
import type { CodeLocation, LeaseInfo, PoolStats, ServerInfo } from './types';
import type { LeakReport } from './watch/report';

/** What every message says about the pool that published it. */
export interface PoolRef {
  readonly name: string;
  /** Where the pool's resources connect, when the factory knows (never credentials). */
  readonly server: ServerInfo | undefined;
  stats(): PoolStats;
  /**
   * Every lease held now, oldest first, with ages and stacks (poolwatch's pools and the pools
   * poolwatch watches have it).
   */
  leakReport?(): LeakReport;
}

/** How a hold ended. */
export type HoldOutcome = 'released' | 'destroyed' | 'reclaimed' | 'collected' | 'closed';

/**
 * The life of one acquire: published on `acquireStart` (synchronously inside `acquire()`, so the
 * caller's async context is active), then on `acquireEnd` (with `lease` or `error` set), then,
 * if a lease was handed out, on `holdEnd`.
 */
export interface HoldMessage {
  readonly pool: PoolRef;
  /** `performance.now()` when `acquire()` was called. */
  readonly startTime: number;
  /** Milliseconds from `acquire()` to the lease (or the error). */
  waitMillis: number;
  /** Set on `acquireEnd` when the acquire succeeded. */
  lease: LeaseInfo | undefined;
  /** Set on `acquireEnd` when the acquire failed. */
  error: Error | undefined;
  /** Milliseconds the lease was held; set on `holdEnd`. */
  holdMillis: number;
  /** How the hold ended; set on `holdEnd`. */
  outcome: HoldOutcome | undefined;
  /** Free for subscribers' use (the pool never reads it). */
  userData: unknown;
  /**
   * Set by a subscriber at `acquireEnd` to run the code that uses this lease in a context of its
   * own: `pool.use(fn)` calls `runner.run(fn, …)` instead of `fn(…)`. Telemetry uses it to make
   * the hold span the active span while `fn` runs, so that the driver's spans nest under it. The
   * first subscriber to set it wins; the others leave it.
   */
  runner: HoldRunner | undefined;
}

/** See `HoldMessage.runner`. `run` must call `fn(...args)` once and return what it returns. */
export interface HoldRunner {
  run<A extends unknown[], R>(fn: (...args: A) => R, ...args: A): R;
}

export type LeakKind = 'suspected' | 'returned' | 'collected' | 'reclaimed';

/** A finding about one lease. `hold` is present when the acquire was observed. */
export interface LeakMessage {
  readonly pool: PoolRef;
  readonly kind: LeakKind;
  readonly lease: LeaseInfo;
  /** Age of the lease when the finding was made, in milliseconds. */
  readonly ageMillis: number;
  /** The acquisition stack, trimmed to the caller's frames, when one was captured. */
  readonly stack: string | undefined;
  readonly hold: HoldMessage | undefined;
}

export interface ResourceMessage {
  readonly pool: PoolRef;
  /** Milliseconds the create or destroy took. */
  readonly durationMillis: number;
  /** For a failed create; for a destroy, the error that caused it (if any). */
  readonly error: Error | undefined;
  /** For destroys: why the resource was destroyed. */
  readonly reason: DestroyReason | undefined;
}

export type DestroyReason =
  | 'idle'
  | 'lifetime'
  | 'broken'
  | 'validation'
  | 'reset'
  | 'released-destroy'
  | 'reclaimed'
  | 'collected'
  | 'closed';

export interface TimeoutMessage {
  readonly pool: PoolRef;
  readonly waitMillis: number;
  readonly error: Error;
}

export type AlertKind = 'leak-count' | 'hold-age' | 'exhausted' | 'leak';

export interface Alert {
  readonly kind: AlertKind;
  readonly severity: 'info' | 'warning' | 'error';
  readonly pool: string;
  readonly message: string;
  /** `Date.now()` when raised. */
  readonly timestamp: number;
  /** The lease concerned, for per-lease alerts. */
  readonly lease?: LeaseInfo;
  readonly ageMillis?: number;
  readonly stack?: string;
  /** Where the lease was acquired (the first frame of `stack`). */
  readonly location?: CodeLocation;
  /** Leak findings carry their kind; threshold alerts carry the measured value. */
  readonly leakKind?: LeakKind;
  readonly value?: number;
  readonly threshold?: number;
}

export interface AlertMessage {
  readonly pool: PoolRef;
  readonly alert: Alert;
  readonly hold: HoldMessage | undefined;
}

export interface PoolLifecycleMessage {
  readonly pool: PoolRef;
}

/** Channel names, stable API. */
export const CHANNEL_NAMES = {
  poolOpen: 'poolwatch:pool:open',
  poolClose: 'poolwatch:pool:close',
  acquireStart: 'poolwatch:acquire:start',
  acquireEnd: 'poolwatch:acquire:end',
  holdEnd: 'poolwatch:hold:end',
  timeout: 'poolwatch:acquire:timeout',
  create: 'poolwatch:resource:create',
  destroy: 'poolwatch:resource:destroy',
  leak: 'poolwatch:leak',
  alert: 'poolwatch:alert',
} as const;

export const channels = {
  poolOpen: diagnostics_channel.channel(CHANNEL_NAMES.poolOpen),
  poolClose: diagnostics_channel.channel(CHANNEL_NAMES.poolClose),
  acquireStart: diagnostics_channel.channel(CHANNEL_NAMES.acquireStart),
  acquireEnd: diagnostics_channel.channel(CHANNEL_NAMES.acquireEnd),
  holdEnd: diagnostics_channel.channel(CHANNEL_NAMES.holdEnd),
  timeout: diagnostics_channel.channel(CHANNEL_NAMES.timeout),
  create: diagnostics_channel.channel(CHANNEL_NAMES.create),
  destroy: diagnostics_channel.channel(CHANNEL_NAMES.destroy),
  leak: diagnostics_channel.channel(CHANNEL_NAMES.leak),
  alert: diagnostics_channel.channel(CHANNEL_NAMES.alert),
};

export type ChannelMessages = {
  poolOpen: PoolLifecycleMessage;
  poolClose: PoolLifecycleMessage;
  acquireStart: HoldMessage;
  acquireEnd: HoldMessage;
  holdEnd: HoldMessage;
  timeout: TimeoutMessage;
  create: ResourceMessage;
  destroy: ResourceMessage;
  leak: LeakMessage;
  alert: AlertMessage;
};

/**
 * Subscribes `listener` to one channel and returns the function that unsubscribes it. A listener
 * that throws is reported as a process warning: a raw `diagnostics_channel` subscriber that throws
 * would surface as an uncaught exception.
 */
export function subscribe<K extends keyof ChannelMessages>(
  name: K,
  listener: (message: ChannelMessages[K]) => void,
): () => void {
  const channel = channels[name];
  const handler = (message: unknown) => {
    try {
      listener(message as ChannelMessages[K]);
    } catch (error) {
      process.emitWarning(
        `A poolwatch "${name}" listener threw: ${error instanceof Error ? error.message : String(error)}`,
        { code: 'POOLWATCH_LISTENER_ERROR' },
      );
    }
  };
  channel.subscribe(handler);
  return () => {
    channel.unsubscribe(handler);
  };
}

/**
 * Every open pool in the process, for observers that read stats (metrics). Kept on `globalThis`
 * under a registered symbol so that two copies of poolwatch in one process share it.
 */
const REGISTRY_KEY = Symbol.for('poolwatch.registry');
type Registry = Set<PoolRef>;
const globalWithRegistry = globalThis as typeof globalThis & { [REGISTRY_KEY]?: Registry };
export const openPools: Registry = (globalWithRegistry[REGISTRY_KEY] ??= new Set());
