/** Reports on held leases: the structured report, and the texts people read. */
import type { LeaseInfo, PoolStats } from '../types';

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
