/**
 * The code location of a lease: where the caller acquired it, as the semantic conventions' `code.*`
 * attributes want it (function, file, line, column). The live view and the instrumentation's
 * code-location metrics and leak spans read it here, and only here.
 *
 * A `LeaseInfo` may carry its location already (`location`, filled by the lease-watching core);
 * until then it is derived from the first frame of the captured stack, which the pool has already
 * trimmed to the caller's frames. Either way, no stack captured means no location.
 */
import { fileURLToPath } from 'node:url';
import type { LeaseInfo } from './types';

export interface CodeLocation {
  /** `code.function.name`: absent for anonymous functions and top-level code. */
  readonly functionName?: string;
  /** `code.file.path`: an absolute path where V8 gives one (file: URLs are converted). */
  readonly filePath: string;
  /** `code.line.number`, 1-based. */
  readonly lineNumber: number;
  /** `code.column.number`, 1-based. */
  readonly columnNumber?: number;
}

/** The lease's acquiring code location, if it is known. */
export function codeLocationOf(lease: LeaseInfo): CodeLocation | undefined {
  const given = (lease as { readonly location?: CodeLocation }).location;
  if (given !== undefined) return given;
  const stack = lease.stack;
  if (stack === undefined) return undefined;
  return parseStackFrame(stack.split('\n', 1)[0]!);
}

// `path:line:column`, `path:line`; the path may itself contain colons (Windows drives, URLs).
const POSITION = /^(.*?):(\d+)(?::(\d+))?$/;

/**
 * Parses one V8 stack frame line:
 *
 *     at fn (/app/src/file.js:12:5)          at async Handler.run [as go] (file:///app/x.mjs:3:9)
 *     at /app/src/file.js:12:5               at new Repo (/app/repo.js:1:2)
 *
 * Frames without a file position (`<anonymous>`, `native`, eval without a file) give `undefined`.
 */
export function parseStackFrame(frame: string): CodeLocation | undefined {
  let text = frame.trim();
  if (text.startsWith('at ')) text = text.slice(3);
  if (text.startsWith('async ')) text = text.slice(6);
  let functionName: string | undefined;
  let position = text;
  if (text.endsWith(')')) {
    const open = matchingOpen(text);
    if (open <= 0) return undefined;
    functionName = text.slice(0, open).trim();
    position = text.slice(open + 1, -1);
    // eval frames nest: `eval (eval at f (/app/x.js:1:2), <anonymous>:1:1)`: keep the outer file.
    const evalAt = /^eval at .*?\((.*?)\)/.exec(position);
    if (evalAt) position = evalAt[1]!;
  }
  const match = POSITION.exec(position);
  if (!match) return undefined;
  let filePath = match[1]!;
  if (filePath === '' || filePath === '<anonymous>' || filePath === 'native') return undefined;
  if (filePath.startsWith('file://')) {
    try {
      filePath = fileURLToPath(filePath);
    } catch {
      // keep the URL
    }
  }
  if (functionName !== undefined) {
    functionName = functionName.replace(/^new /, '').replace(/ \[as [^\]]*\]$/, '');
    if (
      functionName === '' ||
      functionName === '<anonymous>' ||
      functionName === 'Object.<anonymous>'
    ) {
      functionName = undefined;
    }
  }
  const location: {
    functionName?: string;
    filePath: string;
    lineNumber: number;
    columnNumber?: number;
  } = { filePath, lineNumber: Number(match[2]) };
  if (functionName !== undefined) location.functionName = functionName;
  if (match[3] !== undefined) location.columnNumber = Number(match[3]);
  return location;
}

/** The index of the `(` that opens the frame's final parenthesised position. */
function matchingOpen(text: string): number {
  let depth = 0;
  for (let i = text.length - 1; i >= 0; i--) {
    const c = text[i];
    if (c === ')') depth++;
    else if (c === '(' && --depth === 0) return i;
  }
  return -1;
}

/** `function (file:line)`, for people. */
export function formatCodeLocation(location: CodeLocation | undefined): string {
  if (location === undefined) return 'unknown (no stack captured)';
  const where = `${location.filePath}:${location.lineNumber}`;
  return location.functionName ? `${location.functionName} (${where})` : where;
}
