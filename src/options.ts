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
  const guess = [...known].find(
    (k) => k.toLowerCase() === lower || editDistance(k.toLowerCase(), lower) <= 2,
  );
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
  if (typeof value !== 'number' || !Number.isInteger(value) || value < least) {
    throw new InvalidOptionError(
      `Option "${name}" must be a whole number >= ${least}, got ${describeValue(value)}.`,
    );
  }
  return value;
}

function millis(name: string, value: unknown, fallback: number, allowInfinity = false): number {
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

/** A bad value as an error message shows it. */
export function describeValue(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
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

function resolveHealth(value: unknown): ResolvedHealth | undefined {
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
  const intervalMillis = millis('health.intervalMillis', h.intervalMillis, d.intervalMillis);
  if (intervalMillis === 0) {
    throw new InvalidOptionError(
      'Option "health.intervalMillis" must be > 0; use health: false to turn checks off.',
    );
  }
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
  const housekeepingIntervalMillis = millis(
    'housekeepingIntervalMillis',
    options.housekeepingIntervalMillis,
    DEFAULTS.housekeepingIntervalMillis,
  );
  if (housekeepingIntervalMillis === 0) {
    throw new InvalidOptionError('Option "housekeepingIntervalMillis" must be > 0.');
  }
  const resolved: ResolvedOptions<T> = {
    factory,
    name: options.name,
    min,
    max,
    acquireTimeoutMillis: millis(
      'acquireTimeoutMillis',
      options.acquireTimeoutMillis,
      DEFAULTS.acquireTimeoutMillis,
      true,
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
    ),
    health: resolveHealth(options.health),
    onAlert: options.onAlert,
  };
  if (resolved.acquireTimeoutMillis === 0) {
    throw new InvalidOptionError(
      'Option "acquireTimeoutMillis" must be > 0 (use Infinity to wait forever, which is not recommended).',
    );
  }
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
