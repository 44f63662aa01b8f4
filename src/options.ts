import { InvalidOptionError } from './errors';
import type { HealthOptions, PoolOptions, ResourceFactory, StackCapture } from './types';
import type { Alert } from './events';

/** Every default in one place. */
export const DEFAULTS = {
  min: 0,
  max: 10,
  acquireTimeoutMillis: 30_000,
  idleTimeoutMillis: 30_000,
  maxLifetimeMillis: 1_800_000,
  validateAfterIdleMillis: 500,
  validateTimeoutMillis: 5000,
  resetTimeoutMillis: 5000,
  leakDetection: true,
  leakDetectionThresholdMillis: 30_000,
  reclaimAfterMillis: 0,
  detectCollectedLeaks: true,
  collectWhenStarvedMillis: 2000,
  captureStacks: 'auto' as StackCapture,
  detectSelfDeadlock: true,
  housekeepingIntervalMillis: 1000,
  closeTimeoutMillis: 10_000,
  health: {
    intervalMillis: 5000,
    leakCountThreshold: 1,
    maxHoldMillis: 60_000,
    exhaustion: true,
  },
} as const;

/**
 * The longest delay a Node.js timer takes (2^31-1 ms, about 24.8 days). A longer one overflows:
 * Node warns and fires it after 1 ms, so a "long" timeout would fire at once, or spin.
 */
export const MAX_TIMER_MILLIS = 2 ** 31 - 1;

export interface ResolvedHealth {
  readonly intervalMillis: number;
  readonly leakCountThreshold: number;
  readonly maxHoldMillis: number;
  readonly exhaustion: boolean;
}

export interface ResolvedOptions<T> {
  readonly factory: ResourceFactory<T>;
  readonly name: string | undefined;
  readonly min: number;
  readonly max: number;
  readonly acquireTimeoutMillis: number;
  readonly idleTimeoutMillis: number;
  readonly maxLifetimeMillis: number;
  readonly validateAfterIdleMillis: number;
  readonly validateTimeoutMillis: number;
  readonly resetTimeoutMillis: number;
  readonly leakDetectionThresholdMillis: number;
  readonly reclaimAfterMillis: number;
  readonly detectCollectedLeaks: boolean;
  /** 0: off. */
  readonly collectWhenStarvedMillis: number;
  /** 0: never; 1: always; N: one in N; -1: auto. */
  readonly stackEvery: number;
  readonly detectSelfDeadlock: boolean;
  readonly housekeepingIntervalMillis: number;
  readonly closeTimeoutMillis: number;
  readonly health: ResolvedHealth | undefined;
  readonly onAlert: ((alert: Alert) => void) | undefined;
}

const KNOWN_KEYS = new Set<string>([
  'factory',
  'name',
  'min',
  'max',
  'acquireTimeoutMillis',
  'idleTimeoutMillis',
  'maxLifetimeMillis',
  'validateAfterIdleMillis',
  'validateTimeoutMillis',
  'resetTimeoutMillis',
  'leakDetection',
  'leakDetectionThresholdMillis',
  'reclaimAfterMillis',
  'detectCollectedLeaks',
  'collectWhenStarvedMillis',
  'captureStacks',
  'detectSelfDeadlock',
  'housekeepingIntervalMillis',
  'health',
  'onAlert',
  'closeTimeoutMillis',
]);
const HEALTH_KEYS = new Set<string>(Object.keys(DEFAULTS.health));

function unknownKey(key: string, known: Set<string>, where: string): InvalidOptionError {
  const lower = key.toLowerCase();
  const guess =
    [...known].find(
      (k) => k.toLowerCase() === lower || editDistance(k.toLowerCase(), lower) <= 2,
    ) ??
    // `timeout` for `timeoutMillis`: a known name that starts with the unknown one.
    (lower.length >= 3 ? [...known].find((k) => k.toLowerCase().startsWith(lower)) : undefined);
  return new InvalidOptionError(
    `Unknown ${where} option "${key}".` +
      (guess ? ` Did you mean "${guess}"?` : ` Known options: ${[...known].join(', ')}.`),
  );
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(
        prev[j]! + 1,
        row[j - 1]! + 1,
        prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    prev = row;
  }
  return prev[b.length]!;
}

/** A whole number >= `least`, or `Infinity` where allowed. */
function count(name: string, value: unknown, fallback: number, least: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < least) {
    throw new InvalidOptionError(
      `Option "${name}" must be a whole number >= ${least}, got ${describeValue(value)}.`,
    );
  }
  return value;
}

/**
 * A duration in milliseconds: a finite number >= 0, or `Infinity` where allowed. `timer`: the
 * value arms a Node.js timer, so it must not exceed `MAX_TIMER_MILLIS` (durations that are only
 * compared with elapsed time can be any size).
 */
function millis(
  name: string,
  value: unknown,
  fallback: number,
  { allowInfinity = false, timer = false, positive = false } = {},
): number {
  if (value === undefined) return fallback;
  const ok =
    typeof value === 'number' &&
    value >= 0 &&
    (Number.isFinite(value) || (allowInfinity && value === Infinity));
  if (!ok) {
    throw new InvalidOptionError(
      `Option "${name}" must be a duration in milliseconds >= 0` +
        (allowInfinity ? ' (or Infinity)' : '') +
        `, got ${describeValue(value)}.`,
    );
  }
  if (positive && value === 0) {
    throw new InvalidOptionError(
      `Option "${name}" must be > 0` +
        (allowInfinity ? ' (use Infinity to wait forever, which is not recommended).' : ', got 0.'),
    );
  }
  if (timer && value !== Infinity && value > MAX_TIMER_MILLIS) {
    throw new InvalidOptionError(
      `Option "${name}" must be at most ${MAX_TIMER_MILLIS} ms (about 24.8 days, the longest ` +
        `a Node.js timer waits), got ${describeValue(value)}` +
        (allowInfinity ? '. Use Infinity to wait forever.' : '.'),
    );
  }
  return value;
}

function flag(name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') {
    throw new InvalidOptionError(
      `Option "${name}" must be true or false, got ${describeValue(value)}.`,
    );
  }
  return value;
}

/**
 * A bad value as an error message shows it. Never throws: a null-prototype object, a revoked
 * proxy or a throwing `toString` is described by its kind.
 */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'object' && value !== null) {
    if (Array.isArray(value)) return 'an array';
    let proto: unknown;
    try {
      proto = Object.getPrototypeOf(value);
    } catch {
      return 'an object';
    }
    if (proto === null) return 'an object with a null prototype';
    const ctor = (proto as { constructor?: { name?: unknown } }).constructor;
    const name = typeof ctor === 'function' && typeof ctor.name === 'string' ? ctor.name : '';
    return name === '' || name === 'Object' ? 'an object' : `an object of class ${name}`;
  }
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'symbol') return 'a symbol';
  return String(value);
}

/** Throws `InvalidOptionError` for a key of `options` not in `known` (no suggestion). */
export function rejectUnknownKeys(options: object, known: readonly string[], where: string): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new InvalidOptionError(
        `Unknown ${where} option "${key}". Known options: ${known.join(', ')}.`,
      );
    }
  }
}

/**
 * A `StackCapture` option as the sampler's number: 0 never, 1 always, N one in N, -1 auto
 * (also for undefined). `name` is the option's full name, for the error.
 */
export function parseStackCapture(value: unknown, name = 'captureStacks'): number {
  if (value === undefined || value === 'auto') return -1;
  if (value === 'always') return 1;
  if (value === 'never') return 0;
  if (typeof value === 'object' && value !== null && 'oneIn' in value) {
    return count(`${name}.oneIn`, (value as { oneIn: unknown }).oneIn, 1, 1);
  }
  throw new InvalidOptionError(
    `Option "${name}" must be 'auto', 'always', 'never' or { oneIn: N }, got ${describeValue(value)}.`,
  );
}

export function resolveHealth(value: unknown): ResolvedHealth | undefined {
  if (value === false) return undefined;
  if (value !== undefined && (typeof value !== 'object' || value === null)) {
    throw new InvalidOptionError(
      `Option "health" must be an object or false, got ${describeValue(value)}.`,
    );
  }
  const h = (value ?? {}) as HealthOptions;
  for (const key of Object.keys(h))
    if (!HEALTH_KEYS.has(key)) throw unknownKey(key, HEALTH_KEYS, 'health');
  const d = DEFAULTS.health;
  if (h.intervalMillis === 0) {
    throw new InvalidOptionError(
      'Option "health.intervalMillis" must be > 0; use health: false to turn checks off.',
    );
  }
  const intervalMillis = millis('health.intervalMillis', h.intervalMillis, d.intervalMillis);
  return {
    intervalMillis,
    leakCountThreshold: count(
      'health.leakCountThreshold',
      h.leakCountThreshold,
      d.leakCountThreshold,
      1,
    ),
    maxHoldMillis: millis('health.maxHoldMillis', h.maxHoldMillis, d.maxHoldMillis),
    exhaustion: flag('health.exhaustion', h.exhaustion, d.exhaustion),
  };
}

/** Validates `options` and fills in the defaults. Throws `InvalidOptionError`. */
export function resolveOptions<T>(options: PoolOptions<T>): ResolvedOptions<T> {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidOptionError(
      'new Pool(options) needs an options object with at least a factory.',
    );
  }
  for (const key of Object.keys(options))
    if (!KNOWN_KEYS.has(key)) throw unknownKey(key, KNOWN_KEYS, 'pool');
  const { factory } = options;
  if (
    typeof factory !== 'object' ||
    factory === null ||
    typeof factory.create !== 'function' ||
    typeof factory.destroy !== 'function'
  ) {
    throw new InvalidOptionError(
      'Option "factory" must be an object with create() and destroy() functions (validate(), reset() and isReusable() are optional).',
    );
  }
  for (const fn of ['validate', 'reset', 'isReusable'] as const) {
    if (factory[fn] !== undefined && typeof factory[fn] !== 'function') {
      throw new InvalidOptionError(`Option "factory.${fn}" must be a function when given.`);
    }
  }
  if (options.name !== undefined && (typeof options.name !== 'string' || options.name === '')) {
    throw new InvalidOptionError(
      `Option "name" must be a non-empty string, got ${describeValue(options.name)}.`,
    );
  }
  const max = count('max', options.max, DEFAULTS.max, 1);
  const min = count('min', options.min, DEFAULTS.min, 0);
  if (min > max) {
    throw new InvalidOptionError(`Option "min" (${min}) must not exceed "max" (${max}).`);
  }
  if (options.onAlert !== undefined && typeof options.onAlert !== 'function') {
    throw new InvalidOptionError('Option "onAlert" must be a function.');
  }
  const leak = flag('leakDetection', options.leakDetection, DEFAULTS.leakDetection);
  if (options.housekeepingIntervalMillis === 0) {
    throw new InvalidOptionError('Option "housekeepingIntervalMillis" must be > 0.');
  }
  const housekeepingIntervalMillis = millis(
    'housekeepingIntervalMillis',
    options.housekeepingIntervalMillis,
    DEFAULTS.housekeepingIntervalMillis,
    { timer: true },
  );
  const resolved: ResolvedOptions<T> = {
    factory,
    name: options.name,
    min,
    max,
    acquireTimeoutMillis: millis(
      'acquireTimeoutMillis',
      options.acquireTimeoutMillis,
      DEFAULTS.acquireTimeoutMillis,
      { allowInfinity: true, timer: true, positive: true },
    ),
    idleTimeoutMillis: millis(
      'idleTimeoutMillis',
      options.idleTimeoutMillis,
      DEFAULTS.idleTimeoutMillis,
    ),
    maxLifetimeMillis: millis(
      'maxLifetimeMillis',
      options.maxLifetimeMillis,
      DEFAULTS.maxLifetimeMillis,
    ),
    validateAfterIdleMillis: millis(
      'validateAfterIdleMillis',
      options.validateAfterIdleMillis,
      DEFAULTS.validateAfterIdleMillis,
    ),
    validateTimeoutMillis: millis(
      'validateTimeoutMillis',
      options.validateTimeoutMillis,
      DEFAULTS.validateTimeoutMillis,
      { timer: true, positive: true },
    ),
    resetTimeoutMillis: millis(
      'resetTimeoutMillis',
      options.resetTimeoutMillis,
      DEFAULTS.resetTimeoutMillis,
      { timer: true, positive: true },
    ),
    leakDetectionThresholdMillis: millis(
      'leakDetectionThresholdMillis',
      options.leakDetectionThresholdMillis,
      DEFAULTS.leakDetectionThresholdMillis,
    ),
    reclaimAfterMillis: millis(
      'reclaimAfterMillis',
      options.reclaimAfterMillis,
      DEFAULTS.reclaimAfterMillis,
    ),
    detectCollectedLeaks: flag(
      'detectCollectedLeaks',
      options.detectCollectedLeaks,
      DEFAULTS.detectCollectedLeaks,
    ),
    collectWhenStarvedMillis: millis(
      'collectWhenStarvedMillis',
      options.collectWhenStarvedMillis,
      DEFAULTS.collectWhenStarvedMillis,
    ),
    stackEvery: parseStackCapture(options.captureStacks),
    detectSelfDeadlock: flag(
      'detectSelfDeadlock',
      options.detectSelfDeadlock,
      DEFAULTS.detectSelfDeadlock,
    ),
    housekeepingIntervalMillis,
    closeTimeoutMillis: millis(
      'closeTimeoutMillis',
      options.closeTimeoutMillis,
      DEFAULTS.closeTimeoutMillis,
      { timer: true },
    ),
    health: resolveHealth(options.health),
    onAlert: options.onAlert,
  };
  if (!leak) {
    // The master switch wins over the individual leak options.
    return {
      ...resolved,
      leakDetectionThresholdMillis: 0,
      reclaimAfterMillis: 0,
      detectCollectedLeaks: false,
      collectWhenStarvedMillis: 0,
      stackEvery: 0,
      detectSelfDeadlock: false,
    };
  }
  return resolved;
}

const ACQUIRE_KEYS = ['timeoutMillis', 'signal'] as const;

/**
 * Checks the options of one `acquire()` call. Returns the error instead of throwing it: the pool
 * rejects the acquire's promise with it, on every path (an idle resource or not).
 */
export function checkAcquireOptions(options: unknown): InvalidOptionError | undefined {
  if (options === undefined) return undefined;
  try {
    if (typeof options !== 'object' || options === null) {
      throw new InvalidOptionError(
        `acquire(options) takes an object { timeoutMillis?, signal? }, got ${describeValue(options)}.`,
      );
    }
    for (const key of Object.keys(options)) {
      if (!(ACQUIRE_KEYS as readonly string[]).includes(key)) {
        throw unknownKey(key, new Set(ACQUIRE_KEYS), 'acquire()');
      }
    }
    const { timeoutMillis, signal } = options as { timeoutMillis?: unknown; signal?: unknown };
    millis('acquire({ timeoutMillis })', timeoutMillis, 0, {
      allowInfinity: true,
      timer: true,
      positive: true,
    });
    if (signal !== undefined && !isAbortSignal(signal)) {
      throw new InvalidOptionError(
        `acquire({ signal }) must be an AbortSignal (e.g. AbortSignal.timeout(ms) or an ` +
          `AbortController's signal), got ${describeValue(signal)}.`,
      );
    }
  } catch (error) {
    if (error instanceof InvalidOptionError) return error;
    throw error;
  }
  return undefined;
}

/**
 * An `AbortSignal`, or one from a polyfill or another realm that behaves like one (an `aborted`
 * flag, a `reason`, and event listeners): `instanceof` alone would reject those.
 */
function isAbortSignal(value: unknown): value is AbortSignal {
  if (value instanceof AbortSignal) return true;
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Partial<
    Record<'aborted' | 'addEventListener' | 'removeEventListener', unknown>
  >;
  return (
    typeof v.aborted === 'boolean' &&
    typeof v.addEventListener === 'function' &&
    typeof v.removeEventListener === 'function'
  );
}
