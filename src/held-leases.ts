/**
 * The leases a pool currently holds out, for readers that list or measure them (the live view, the
 * oldest-hold and code-location metrics). `leakReport()` lists them with ages and stacks; a
 * `PoolRef` without it (an older copy of poolwatch in the same process) gives `undefined`: its holds
 * are unknown, which is not the same as none.
 */
import type { PoolRef } from './events';
import type { LeaseInfo } from './types';

interface Reporting {
  leakReport?: () => { readonly held: readonly LeaseInfo[] };
}

/** Every lease `pool` holds out now, oldest first; `undefined` when the pool cannot tell. */
export function heldLeases(pool: PoolRef): readonly LeaseInfo[] | undefined {
  const report = (pool as PoolRef & Reporting).leakReport;
  if (typeof report !== 'function') return undefined;
  return report.call(pool).held;
}
