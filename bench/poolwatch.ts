/**
 * ============================================================================================
 *  ADAPTER: poolwatch (src/) — the only place the benchmark touches the pool under development.
 * ============================================================================================
 *
 * Until src/index.ts exists (or while it fails to load) every poolwatch row prints "n/a" and
 * the rest of the suite runs normally. When the real API lands, check it against the expected
 * shape below (`PoolwatchModule`); if it differs, adapt `poolwatchSubject()` here, not the
 * harness. The import is dynamic with a non-literal specifier on purpose: a static import (or
 * a literal one, which tsc resolves) would make the whole bench fail to type-check and run
 * while src/ is incomplete.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Subject } from './harness';
import { SubjectUnavailableError } from './harness';
import { MAX, resourceFactory } from './resource';

/** The slice of the poolwatch API the benchmark relies on (as specified, not yet built). */
export interface PoolwatchOptions {
  leakDetection?: boolean;
  captureStacks?: 'always' | (string & {});
  [option: string]: unknown;
}

interface Lease {
  release(): void;
}

interface PoolwatchPool {
  acquire(): Promise<Lease>;
  close(): Promise<void>;
}

interface PoolwatchModule {
  Pool: new (
    options: {
      factory: { create(): Promise<{ id: number }>; destroy(r: { id: number }): Promise<void> };
      max: number;
    } & PoolwatchOptions,
  ) => PoolwatchPool;
}

/** The rows the peers suite shows for poolwatch. */
export const POOLWATCH_VARIANTS: { name: string; options: PoolwatchOptions }[] = [
  { name: 'poolwatch leakDetection:false', options: { leakDetection: false } },
  { name: 'poolwatch default', options: {} },
  { name: "poolwatch captureStacks:'always'", options: { captureStacks: 'always' } },
];

const SRC_DIR = path.resolve(__dirname, '..', 'src');

let loading: Promise<PoolwatchModule | string> | undefined;

/** Loads src/ once. Resolves to the module, or to a reason string why it is unavailable. */
export function loadPoolwatch(): Promise<PoolwatchModule | string> {
  loading ??= importSrc();
  return loading;
}

async function importSrc(): Promise<PoolwatchModule | string> {
  if (!fs.existsSync(path.join(SRC_DIR, 'index.ts'))) {
    return 'poolwatch: src/index.ts does not exist yet (adapter in bench/poolwatch.ts)';
  }
  const specifier: string = '../src'; // non-literal on purpose: see the header comment
  let mod: Partial<PoolwatchModule>;
  try {
    mod = (await import(specifier)) as Partial<PoolwatchModule>;
  } catch (err) {
    return `poolwatch: importing src/ failed: ${err instanceof Error ? err.message : String(err)}`;
  }
  if (typeof mod.Pool !== 'function') return 'poolwatch: src/index.ts does not export Pool yet';
  return mod as PoolwatchModule;
}

/** A peers-suite subject for poolwatch with the given options (max 10, no-I/O resource). */
export function poolwatchSubject(name: string, options: PoolwatchOptions): Subject {
  return {
    name,
    async setup() {
      const mod = await loadPoolwatch();
      if (typeof mod === 'string') throw new SubjectUnavailableError(mod);
      const { create, destroy, check } = resourceFactory(name);
      const pool = new mod.Pool({ factory: { create, destroy }, max: MAX, ...options });
      return {
        async cycle() {
          const lease = await pool.acquire();
          lease.release();
        },
        async teardown() {
          await pool.close();
          check();
        },
      };
    },
  };
}
