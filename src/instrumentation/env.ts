/**
 * `PoolInstrumentation`'s configuration from the environment, for `poolwatch/register`
 * (zero-code). The switches are OpenTelemetry's own (`OTEL_SDK_DISABLED`,
 * `OTEL_NODE_ENABLED_INSTRUMENTATIONS`, `OTEL_NODE_DISABLED_INSTRUMENTATIONS`, where poolwatch's
 * short name is `poolwatch`); the options take the `OTEL_INSTRUMENTATION_POOLWATCH_` prefix, the
 * per-instrumentation form the OpenTelemetry agents use. The README's "Zero-code" section lists
 * them; change both together.
 */
import { InvalidOptionError } from '../errors';
import { describeValue } from '../options';
import type { StackCapture } from '../types';
import type { PgPoolInstrumentationOptions, PoolInstrumentationConfig } from './types';

/** poolwatch's name in `OTEL_NODE_ENABLED_INSTRUMENTATIONS` / `OTEL_NODE_DISABLED_INSTRUMENTATIONS`. */
export const SHORT_NAME = 'poolwatch';

/** The prefix of poolwatch's own variables. */
export const ENV_PREFIX = 'OTEL_INSTRUMENTATION_POOLWATCH_';

/** Every variable read, by the option it sets (for the error listing known names). */
export const ENV = {
  holdSpans: `${ENV_PREFIX}HOLD_SPANS`,
  waitSpans: `${ENV_PREFIX}WAIT_SPANS`,
  requireParentSpan: `${ENV_PREFIX}REQUIRE_PARENT_SPAN`,
  pgPool: `${ENV_PREFIX}PG_POOL`,
  leakDetectionThresholdMillis: `${ENV_PREFIX}LEAK_DETECTION_THRESHOLD_MILLIS`,
  captureStacks: `${ENV_PREFIX}CAPTURE_STACKS`,
  connectionMetrics: `${ENV_PREFIX}PG_POOL_CONNECTION_METRICS`,
} as const;

type Env = Readonly<Record<string, string | undefined>>;

/**
 * Whether the environment lets poolwatch run, as `auto-instrumentations-node` decides for its own
 * instrumentations: not when `OTEL_SDK_DISABLED` is true, not when `poolwatch` is in
 * `OTEL_NODE_DISABLED_INSTRUMENTATIONS`, and when `OTEL_NODE_ENABLED_INSTRUMENTATIONS` is set,
 * only if `poolwatch` is in it.
 */
export function enabledByEnv(env: Env = process.env): boolean {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return false;
  if (names(env.OTEL_NODE_DISABLED_INSTRUMENTATIONS).includes(SHORT_NAME)) return false;
  const enabled = env.OTEL_NODE_ENABLED_INSTRUMENTATIONS;
  return !enabled || names(enabled).includes(SHORT_NAME);
}

function names(list: string | undefined): string[] {
  return (list ?? '').split(',').map((name) => name.trim());
}

/**
 * The instrumentation's configuration from `OTEL_INSTRUMENTATION_POOLWATCH_*`. Unset or empty
 * variables keep the defaults. Throws `InvalidOptionError` naming the variable, its value and what
 * it accepts; unknown `OTEL_INSTRUMENTATION_POOLWATCH_*` variables (typos) are errors too.
 */
export function configFromEnv(env: Env = process.env): PoolInstrumentationConfig {
  const known: readonly string[] = Object.values(ENV);
  for (const name of Object.keys(env)) {
    if (name.startsWith(ENV_PREFIX) && !known.includes(name)) {
      throw new InvalidOptionError(
        `Unknown environment variable ${name}. Known ones: ${known.join(', ')}.`,
      );
    }
  }
  const config: PoolInstrumentationConfig = {};
  const holdSpans = flag(env, ENV.holdSpans);
  if (holdSpans !== undefined) config.holdSpans = holdSpans;
  const waitSpans = flag(env, ENV.waitSpans);
  if (waitSpans !== undefined) config.waitSpans = waitSpans;
  const requireParentSpan = flag(env, ENV.requireParentSpan);
  if (requireParentSpan !== undefined) config.requireParentSpan = requireParentSpan;

  const stacks = stackCapture(env);
  // 'never' also keeps stacks the pool captured anyway out of spans and log records.
  if (stacks === 'never') config.captureStacks = false;

  const pgPool: PgPoolInstrumentationOptions = {};
  const threshold = value(env, ENV.leakDetectionThresholdMillis);
  if (threshold !== undefined) {
    const millis = Number(threshold);
    if (!/^\d+(\.\d+)?$/.test(threshold) || !Number.isFinite(millis)) {
      throw new InvalidOptionError(
        `${ENV.leakDetectionThresholdMillis} must be a duration in milliseconds >= 0 ` +
          `(0 turns leak detection off), got ${describeValue(threshold)}.`,
      );
    }
    pgPool.leakDetectionThresholdMillis = millis;
  }
  if (stacks !== undefined) pgPool.captureStacks = stacks;
  const connectionMetrics = value(env, ENV.connectionMetrics)?.toLowerCase();
  if (connectionMetrics !== undefined) {
    if (
      connectionMetrics !== 'auto' &&
      connectionMetrics !== 'always' &&
      connectionMetrics !== 'never'
    ) {
      throw new InvalidOptionError(
        `${ENV.connectionMetrics} must be auto, always or never, got ${describeValue(connectionMetrics)}.`,
      );
    }
    pgPool.connectionMetrics = connectionMetrics;
  }
  config.pgPool = flag(env, ENV.pgPool) === false ? false : pgPool;
  return config;
}

function value(env: Env, name: string): string | undefined {
  const text = env[name]?.trim();
  return text === undefined || text === '' ? undefined : text;
}

/** `true` / `false`, in any case, as OpenTelemetry's boolean variables. */
function flag(env: Env, name: string): boolean | undefined {
  const text = value(env, name)?.toLowerCase();
  if (text === undefined) return undefined;
  if (text === 'true') return true;
  if (text === 'false') return false;
  throw new InvalidOptionError(`${name} must be true or false, got ${describeValue(env[name])}.`);
}

/** `auto`, `always`, `never`, or a number N (one checkout in N). */
function stackCapture(env: Env): StackCapture | undefined {
  const text = value(env, ENV.captureStacks)?.toLowerCase();
  if (text === undefined) return undefined;
  if (text === 'auto' || text === 'always' || text === 'never') return text;
  if (/^[1-9]\d*$/.test(text)) return { oneIn: Number(text) };
  throw new InvalidOptionError(
    `${ENV.captureStacks} must be auto, always, never or a whole number N >= 1 (one checkout ` +
      `in N), got ${describeValue(env[ENV.captureStacks])}.`,
  );
}
