/**
 * A pool's counts and the leases it currently holds out, for readers that list or measure them
 * (the live view, the metrics' batch callback). `leakReport()` gives both from one `stats()`; a
 * `PoolRef` without it (an older copy of poolwatch in the same process) gives its stats and
 * `held: undefined`: its holds are unknown, which is not the same as none.
 */
import type { PoolRef } from './events';
import type { LeaseInfo, PoolStats } from './types';

export interface PoolReport {
  readonly stats: PoolStats;
  /** Every lease held now, oldest first; `undefined` when the pool cannot tell. */
  readonly held: readonly LeaseInfo[] | undefined;
}

interface Reporting {
  leakReport?: () => { readonly stats: PoolStats; readonly held: readonly LeaseInfo[] };
}

/** One `stats()` call either way. */
export function poolReport(pool: PoolRef): PoolReport {
  const leakReport = (pool as PoolRef & Reporting).leakReport;
  if (typeof leakReport !== 'function') return { stats: pool.stats(), held: undefined };
  const { stats, held } = leakReport.call(pool);
  return { stats, held };
}
