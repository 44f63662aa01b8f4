/**
 * Zero-code set-up: what `node --require poolwatch/register` (or `--import`) runs. It registers
 * one `PoolInstrumentation`, configured from the environment (`./env.ts`), with the global
 * providers, next to whatever OpenTelemetry set-up the application runs, in either order.
 *
 * The order problem. `@opentelemetry/auto-instrumentations-node/register` starts a NodeSDK that
 * sets the global providers; a preload that runs before it sees only the API's defaults:
 *
 * - traces go through the API's `ProxyTracerProvider`, which delegates to the provider set later;
 * - metrics have no proxy (API 1.9): instruments made on the no-op meter stay no-ops;
 * - logs (2.x line) have a proxy, but one per copy of `@opentelemetry/api-logs`, and a 2.x tree
 *   has several (`@opentelemetry/instrumentation` and `sdk-node` each pin their own exact
 *   version): the SDK sets the global through its copy, and the proxy that `InstrumentationBase`
 *   took from its own never hears of it. Measured: 0 log records in this order.
 *
 * So when no SDK has set providers at registration, poolwatch registers again as soon as one has:
 * checked once the preloads have run (`setImmediate`), and at each pool event (`poolOpen`,
 * `acquireStart`) until then (one global lookup each). By the time an application's code opens a
 * pool, every `--require`/`--import` preload has run, so nothing a pool reports is lost.
 *
 * The pg-pool patch must be in place before the application loads `pg`, so the instrumentation is
 * enabled at once, in the preload, whatever the order.
 */
import { createNoopMeter, metrics } from '@opentelemetry/api';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { subscribe } from '../events';
import { configFromEnv, enabledByEnv } from './env';
import { PoolInstrumentation } from './instrumentation';
import { PACKAGE_NAME, PACKAGE_VERSION } from './version';

/** One registration per process, however many copies or entry points (`--require` and `--import`). */
const REGISTERED = Symbol.for('poolwatch.register');
type Registry = { [REGISTERED]?: { instrumentation: PoolInstrumentation | undefined } };

/**
 * Registers poolwatch from the environment, once per process. Returns the instrumentation, or
 * `undefined` when the environment turns it off (or is invalid: then a process warning names the
 * variable, and nothing is patched).
 */
export function registerFromEnv(
  env: Readonly<Record<string, string | undefined>> = process.env,
): PoolInstrumentation | undefined {
  const registry = globalThis as typeof globalThis & Registry;
  const done = registry[REGISTERED];
  if (done !== undefined) return done.instrumentation;
  registry[REGISTERED] = { instrumentation: undefined };
  if (!enabledByEnv(env)) return undefined;
  let instrumentation: PoolInstrumentation;
  try {
    instrumentation = new PoolInstrumentation(configFromEnv(env));
  } catch (error) {
    process.emitWarning(
      `${error instanceof Error ? error.message : String(error)} poolwatch/register did not ` +
        'register poolwatch (nothing is patched).',
      { code: 'POOLWATCH_INVALID_ENV' },
    );
    return undefined;
  }
  registerInstrumentations({ instrumentations: [instrumentation] });
  registry[REGISTERED] = { instrumentation };
  followGlobalProviders(instrumentation);
  return instrumentation;
}

/**
 * Registers `instrumentation` again once an SDK has set its global providers after this
 * registration (see the file comment). `registerInstrumentations` then hands it the globals as the
 * OpenTelemetry line in use reads them, through its own copies of the API packages.
 */
function followGlobalProviders(instrumentation: PoolInstrumentation): void {
  if (providersSet()) return;
  let unsubscribers: (() => void)[] = [];
  const check = (): void => {
    if (unsubscribers.length === 0 || !providersSet()) return;
    for (const unsubscribe of unsubscribers) unsubscribe();
    unsubscribers = [];
    registerInstrumentations({ instrumentations: [instrumentation] });
  };
  unsubscribers = [subscribe('poolOpen', check), subscribe('acquireStart', check)];
  setImmediate(check).unref();
}

/** Where `@opentelemetry/api-logs` (the 2.x line's logs API) keeps the global logger provider. */
const API_LOGS_GLOBAL = Symbol.for('io.opentelemetry.js.api.logs');
const NoopMeter = createNoopMeter().constructor;

/**
 * Whether an SDK has set global providers: a meter provider that hands out real meters, or a
 * logger provider. (A NodeSDK sets all of its providers in one synchronous `start()`. Tracer
 * providers are left out: the API's proxy follows them, and the check would always say yes.)
 */
function providersSet(): boolean {
  if (!(metrics.getMeterProvider().getMeter(PACKAGE_NAME, PACKAGE_VERSION) instanceof NoopMeter)) {
    return true;
  }
  return (globalThis as Record<symbol, unknown>)[API_LOGS_GLOBAL] !== undefined;
}
