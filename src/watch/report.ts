/** Reports on held leases: the structured report, and the texts people read. */
import type { LeaseInfo, PoolStats } from '../types';
import { codeLocation } from './stack';

/** A structured leak report; `formatLeakReport()` renders it for people. */
export interface LeakReport {
  readonly pool: string;
  readonly stats: PoolStats;
  /** Leases currently held, oldest first. */
  readonly held: LeaseInfo[];
}

/** A stack as an indented block under a line that ends with "acquired at:". */
export function indentStack(stack: string, indent = '    '): string {
  return `\n${indent}${stack.split('\n').join(`\n${indent}`)}`;
}

/**
 * The longest holders, for a timeout message: age and acquiring stack of each, or how to get the
 * stack (`noStackHint`) when none was captured.
 */
export function describeHolders(holders: readonly LeaseInfo[], noStackHint: string): string {
  let text = '';
  for (const h of holders) {
    text += `\n  lease #${h.id} held ${(h.ageMillis / 1000).toFixed(1)} s, acquired at:`;
    text += h.stack ? indentStack(h.stack) : ` (${noStackHint})`;
  }
  return text;
}

/**
 * For a timeout: the holders acquired by a function that is on the waiting caller's stack (the
 * waiter's own frames, and the `async` frames of the calls awaiting it), at another line. That is
 * how a caller that holds one lease and waits for a second from the same pool looks, and it cannot
 * be told apart from an independent caller of the same function: so it is a hint, never a
 * verdict. Returns '' when there is nothing to say.
 */
export function selfWaitHint(
  waiterStack: string | undefined,
  holders: readonly LeaseInfo[],
): string {
  if (!waiterStack) return '';
  const waiterFrames = waiterStack.split('\n').map((line) => codeLocation(line));
  const waitingAt = waiterFrames[0];
  const suspects: string[] = [];
  for (const holder of holders) {
    const at = holder.location;
    if (at?.functionName === undefined) continue;
    const onWaiterStack = waiterFrames.some(
      (f) => f !== undefined && f.functionName === at.functionName && f.filePath === at.filePath,
    );
    const sameLine = waitingAt?.filePath === at.filePath && waitingAt.lineNumber === at.lineNumber;
    if (onWaiterStack && !sameLine) suspects.push(`#${holder.id}`);
  }
  if (suspects.length === 0) return '';
  const fn = holders.find((h) => `#${h.id}` === suspects[0])!.location!;
  return (
    `\nLease ${suspects.join(', ')} was acquired in ${fn.functionName} (${fn.filePath}), which is on this ` +
    `caller's stack: if it is the same call, this caller holds a lease while waiting for another ` +
    `from the same pool and waits on itself. Pass the lease down, release it first, or use ` +
    `pool.use(), which detects this at once.`
  );
}

/** Renders a leak report for people, like a log line per held lease. */
export function formatLeakReport(report: LeakReport): string {
  const { stats } = report;
  const header =
    `Pool "${report.pool}": ${stats.used}/${stats.max} in use, ${stats.idle} idle, ${stats.pending} waiting; ` +
    `${stats.suspectedLeaks} suspected, ${stats.collectedLeaks} collected, ${stats.reclaimedLeaks} reclaimed leak(s).`;
  if (report.held.length === 0) return `${header}\nNo leases held: no leaks.`;
  const lines = [header, `${report.held.length} lease(s) held, oldest first:`];
  for (const lease of report.held) {
    lines.push(
      `  • lease #${lease.id} (resource #${lease.resourceId}) held ${(lease.ageMillis / 1000).toFixed(2)} s` +
        (lease.suspected ? ' [SUSPECTED LEAK]' : ''),
    );
    if (lease.stack) lines.push(...lease.stack.split('\n').map((l) => `      ${l}`));
  }
  return lines.join('\n');
}
