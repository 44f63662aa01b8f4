/**
 * Reference micro-benchmarks: the primitives a leak-detecting, instrumented pool is built
 * from. They calibrate the machine (compare runs across machines by these rows first) and give
 * a budget: e.g. if `new Error()` costs ~N× a whole minimal-pool cycle, capturing a stack on
 * every acquire cannot be the default.
 *
 * Each runner loops `n` times itself (no per-op async driver), so a row is the cost of the
 * primitive plus a loop iteration. Groups compare like with like; the first row of a group is
 * its ratio baseline.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import diagnosticsChannel from 'node:diagnostics_channel';
import { performance } from 'node:perf_hooks';
import type { Case, Runner } from './harness';
import { blackhole } from './harness';

const noop = (): void => {};
const asyncNoop = async (): Promise<void> => {};

function micro(
  group: string,
  name: string,
  prepare: () => Runner,
  opts: { baseline?: boolean } = {},
): Case {
  return {
    suite: 'micro',
    group,
    name,
    baseline: opts.baseline ?? false,
    prepare: async () => prepare(),
  };
}

/** A runner with nothing to set up or tear down. */
function loop(run: (n: number) => void | Promise<void>): () => Runner {
  return () => ({ run, teardown: noop });
}

/**
 * Runs `fn` below `depth` extra frames. Stack capture cost grows with the number of frames
 * (up to Error.stackTraceLimit = 10), and a pool's acquire() is called from deep in an app,
 * so the error rows capture a full 10-frame stack rather than the harness's shallow one.
 */
function atDepth<T>(depth: number, fn: () => T): T {
  return depth <= 0 ? fn() : atDepth(depth - 1, fn);
}

// --- clocks and timers -----------------------------------------------------------------------

function clockCases(): Case[] {
  const group = 'clocks & timers';
  return [
    micro(
      group,
      'performance.now()',
      loop((n) => {
        let acc = 0;
        for (let i = 0; i < n; i++) acc += performance.now();
        blackhole.value = acc;
      }),
      { baseline: true },
    ),
    micro(
      group,
      'process.hrtime.bigint()',
      loop((n) => {
        let last = 0n;
        for (let i = 0; i < n; i++) last = process.hrtime.bigint();
        blackhole.value = last;
      }),
    ),
    // The shape of a per-lease "held too long" timer: armed on acquire, cleared on release.
    micro(
      group,
      'setTimeout+unref+clearTimeout',
      loop((n) => {
        for (let i = 0; i < n; i++) {
          const t = setTimeout(noop, 30_000);
          t.unref();
          clearTimeout(t);
        }
      }),
    ),
  ];
}

// --- errors and stacks -----------------------------------------------------------------------

function errorCases(): Case[] {
  const group = 'errors & stacks (10 frames)';
  const makeErrors = (n: number): void => {
    let e: Error | undefined;
    for (let i = 0; i < n; i++) e = new Error('leak');
    blackhole.value = e;
  };
  const formatStacks = (n: number): void => {
    let len = 0;
    for (let i = 0; i < n; i++) len += new Error('leak').stack!.length;
    blackhole.value = len;
  };
  return [
    // Capture only: V8 records frames eagerly but formats `.stack` lazily.
    micro(
      group,
      'new Error()',
      loop((n) => atDepth(12, () => makeErrors(n))),
      { baseline: true },
    ),
    // Under tsx source maps are on, so formatting also maps every frame through a source map.
    micro(group, 'new Error().stack (source maps on)', () =>
      withSourceMaps(true, (n) => atDepth(12, () => formatStacks(n))),
    ),
    // What plain `node dist/...` without --enable-source-maps pays.
    micro(group, 'new Error().stack (source maps off)', () =>
      withSourceMaps(false, (n) => atDepth(12, () => formatStacks(n))),
    ),
  ];
}

function withSourceMaps(enabled: boolean, run: (n: number) => void): Runner {
  const previous = process.sourceMapsEnabled;
  process.setSourceMapsEnabled(enabled);
  return { run, teardown: () => process.setSourceMapsEnabled(previous) };
}

// --- GC-based leak tracking ------------------------------------------------------------------

function finalizationCases(): Case[] {
  const group = 'leak tracking';
  return [
    // The lease-tracking pattern: register on acquire, unregister on release.
    micro(group, 'FinalizationRegistry register+unregister', () => {
      const registry = new FinalizationRegistry<number>(noop);
      return {
        run(n) {
          for (let i = 0; i < n; i++) {
            const lease = { id: i };
            registry.register(lease, i, lease);
            registry.unregister(lease);
          }
          blackhole.value = registry;
        },
        teardown: noop,
      };
    }),
  ];
}

// --- promises and AsyncLocalStorage ----------------------------------------------------------

/**
 * Enabling any AsyncLocalStorage on Node 20 installs a PromiseHook, which then taxes *every*
 * promise in the process, not just the ones that read the store. OpenTelemetry's
 * AsyncLocalStorageContextManager does exactly that, so instrumented apps run in the "ALS on"
 * regime. `disable()` in teardown removes the hook again so other rows are not affected
 * (the interleaved "ALS off" rows double as a check of that).
 */
function withAls(body: (n: number, check: () => void) => Promise<void>): () => Runner {
  return () => {
    const als = new AsyncLocalStorage<{ id: number }>();
    return {
      async run(n) {
        const store = { id: 1 };
        als.enterWith(store);
        await body(n, () => {
          if (als.getStore() !== store) throw new Error('AsyncLocalStorage context lost');
        });
      },
      teardown: () => als.disable(),
    };
  };
}

async function awaitAsyncFn(n: number, after: () => void = noop): Promise<void> {
  for (let i = 0; i < n; i++) {
    await asyncNoop();
    after();
  }
}

async function awaitThen(n: number, after: () => void = noop): Promise<void> {
  for (let i = 0; i < n; i++) {
    await Promise.resolve().then(noop);
    after();
  }
}

function promiseCases(): Case[] {
  const group = 'promises & AsyncLocalStorage';
  return [
    micro(
      group,
      'await asyncFn() (ALS off)',
      loop((n) => awaitAsyncFn(n)),
      { baseline: true },
    ),
    micro(group, 'await asyncFn() + getStore (ALS on)', withAls(awaitAsyncFn)),
    micro(
      group,
      'await Promise.resolve().then() (ALS off)',
      loop((n) => awaitThen(n)),
    ),
    micro(group, 'await Promise.resolve().then() + getStore (ALS on)', withAls(awaitThen)),
  ];
}

// --- diagnostics_channel ---------------------------------------------------------------------

function diagnosticsChannelCases(): Case[] {
  const group = 'diagnostics_channel';
  // Held strongly: channels without subscribers are only weakly referenced by the registry.
  const channel = diagnosticsChannel.channel('poolwatch.bench.micro');
  const guarded = (n: number): void => {
    for (let i = 0; i < n; i++) {
      // The recommended pattern: do not even build the message if nobody listens.
      if (channel.hasSubscribers) channel.publish({ id: i });
    }
  };
  const unguarded = (n: number): void => {
    for (let i = 0; i < n; i++) channel.publish({ id: i });
  };
  const withSubscriber = (): Runner => {
    let seen = 0;
    const onMessage = (): void => {
      seen++;
    };
    diagnosticsChannel.subscribe(channel.name, onMessage);
    return {
      run: (n) => {
        guarded(n);
        blackhole.value = seen;
      },
      teardown: () => {
        diagnosticsChannel.unsubscribe(channel.name, onMessage);
      },
    };
  };
  return [
    micro(group, 'hasSubscribers && publish (0 subscribers)', loop(guarded), { baseline: true }),
    micro(group, 'publish, unguarded (0 subscribers)', loop(unguarded)),
    micro(group, 'hasSubscribers && publish (1 subscriber)', withSubscriber),
  ];
}

export function microCases(): Case[] {
  return [
    ...clockCases(),
    ...errorCases(),
    ...finalizationCases(),
    ...promiseCases(),
    ...diagnosticsChannelCases(),
  ];
}
