/**
 * The options of a library's own pools (`knex`, `mysql2Pool` of `PoolInstrumentationConfig`):
 * validated once, defaults filled in, as `pgPool`'s are.
 */
import type { ResolvedCheckoutOptions } from '../adapters/checkouts';
import { InvalidOptionError } from '../errors';
import { describeValue, parseStackCapture, rejectUnknownKeys, resolveHealth } from '../options';
import type { StackCapture } from '../types';

export const CHECKOUT_DEFAULTS = {
  leakDetectionThresholdMillis: 30_000,
  captureStacks: 'auto' as StackCapture,
} as const;

const KEYS = ['leakDetectionThresholdMillis', 'captureStacks', 'poolName', 'health'];

/**
 * Validates `value`, the option named `option`: `undefined` when it is `false` (the library is
 * left alone). Throws `InvalidOptionError` naming the option and the fix.
 */
export function resolveCheckoutOptions<Info>(
  value: unknown,
  option: string,
): ResolvedCheckoutOptions<Info> | undefined {
  if (value === false) return undefined;
  if (value !== undefined && (typeof value !== 'object' || value === null)) {
    throw new InvalidOptionError(
      `Option "${option}" must be an object or false, got ${describeValue(value)}.`,
    );
  }
  const o = (value ?? {}) as Record<string, unknown>;
  rejectUnknownKeys(o, KEYS, option);
  const threshold =
    o.leakDetectionThresholdMillis ?? CHECKOUT_DEFAULTS.leakDetectionThresholdMillis;
  if (typeof threshold !== 'number' || !(threshold >= 0) || !Number.isFinite(threshold)) {
    throw new InvalidOptionError(
      `Option "${option}.leakDetectionThresholdMillis" must be a duration in milliseconds >= 0 ` +
        `(0 turns detection off), got ${describeValue(threshold)}.`,
    );
  }
  const poolName = o.poolName;
  if (poolName !== undefined && typeof poolName !== 'function') {
    throw new InvalidOptionError(
      `Option "${option}.poolName" must be a function, got ${describeValue(poolName)}.`,
    );
  }
  let health;
  try {
    // Off unless asked for, as for pg.Pool pools.
    health = o.health === undefined ? undefined : resolveHealth(o.health);
  } catch (error) {
    if (!(error instanceof InvalidOptionError)) throw error;
    throw new InvalidOptionError(error.message.replace('"health', `"${option}.health`));
  }
  return {
    leakDetectionThresholdMillis: threshold,
    stackEvery: parseStackCapture(
      o.captureStacks ?? CHECKOUT_DEFAULTS.captureStacks,
      `${option}.captureStacks`,
    ),
    health,
    poolName: poolName as ResolvedCheckoutOptions<Info>['poolName'],
  };
}
