/**
 * A pool's counts and the leases it currently holds out, for readers that list or measure them
 * (the live view, the metrics' batch callback). `leakReport()` gives both from one `stats()`; a
 * `PoolRef` without it (`leakReport` is optional: an older copy of poolwatch in the process, a
 * hand-written source) gives its stats and `held: undefined`: its holds are unknown, which is not
 * the same as none.
 */
import type { PoolRef } from './events';
import type { LeaseInfo, PoolStats } from './types';

export interface PoolReport {
  readonly stats: PoolStats;
  /** Every lease held now, oldest first; `undefined` when the pool cannot tell. */
  readonly held: readonly LeaseInfo[] | undefined;
}

/** One `stats()` call either way. */
export function poolReport(pool: PoolRef): PoolReport {
  if (typeof pool.leakReport !== 'function') return { stats: pool.stats(), held: undefined };
  const { stats, held } = pool.leakReport();
  return { stats, held };
}
