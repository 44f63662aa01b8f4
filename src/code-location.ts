/**
 * The code location of a lease: where the caller acquired it, as the semantic conventions' `code.*`
 * attributes want it (function, file, line, column). The live view and the instrumentation's
 * code-location metrics and leak spans read it here, and only here.
 *
 * The lease-watching core puts it on every `LeaseInfo` (`location`: the first application frame,
 * paths relative to the working directory). A lease from another copy of poolwatch in the process
 * may lack it: then it is derived from the stack the same way. No stack captured, no location.
 */
import type { CodeLocation, LeaseInfo } from './types';
import { codeLocation } from './watch/stack';

export type { CodeLocation };

/** The lease's acquiring code location, if it is known. */
export function codeLocationOf(lease: LeaseInfo): CodeLocation | undefined {
  return (lease.location as CodeLocation | undefined) ?? codeLocation(lease.stack);
}

/** `function (file:line)`, for people. */
export function formatCodeLocation(location: CodeLocation | undefined): string {
  if (location === undefined) return 'unknown (no stack captured)';
  const where = `${location.filePath}:${location.lineNumber}`;
  return location.functionName ? `${location.functionName} (${where})` : where;
}
