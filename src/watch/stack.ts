import { dirname, isAbsolute, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CodeLocation } from '../types';

/**
 * Acquisition stacks. `Error.captureStackTrace` records the frames at once (2 to 6 µs on the
 * project's VMs, about 0.5 µs a frame) but V8 formats them only when `.stack` is read (as much
 * again). Until then V8 keeps each frame's receiver and function alive: a lease referenced from
 * `this` or a closure of the acquiring code would stay reachable, and a dropped one would never be
 * collected. So a stack is formatted (`formatStack`) as soon as its hold outlives the first
 * housekeeping tick; short holds, the common case, never pay for formatting. Frames of poolwatch
 * itself and of Node's internals are trimmed so the first frame shown is the caller's code.
 */
export interface CapturedStack {
  stack?: string;
}

// The parent of this file's folder is the root of poolwatch's own code, in src/ (tsx) and in
// dist/cjs/.
const OWN_DIR = join(dirname(__filename), '..');

/** Captures the current stack, hiding `above` and everything it called. */
export function captureStack(above: (...args: never[]) => unknown): CapturedStack {
  const holder: CapturedStack = {};
  Error.captureStackTrace(holder, above);
  return holder;
}

const formatted = new WeakMap<CapturedStack, string>();

/** The captured stack as text, without the header line and without poolwatch's own frames. */
export function formatStack(captured: CapturedStack | undefined): string | undefined {
  if (captured === undefined) return undefined;
  let text = formatted.get(captured);
  if (text === undefined) {
    const lines = (captured.stack ?? '').split('\n').slice(1);
    const kept = lines.filter((line) => !isOwnFrame(line));
    text = (kept.length > 0 ? kept : lines).map((l) => l.trim()).join('\n');
    formatted.set(captured, text);
  }
  return text;
}

/**
 * Watched pools' frames are pool internals: pg-pool's (`pool.query()` calls `connect()`),
 * mysql2's (`pool.query()` calls `getConnection()`), knex's and tarn's.
 */
const WATCHED_LIBRARY_FRAME = /[\\/]node_modules[\\/](?:pg-pool|mysql2|knex|tarn)[\\/]/;

function isOwnFrame(line: string): boolean {
  return (
    line.includes(OWN_DIR) ||
    line.includes('(node:internal') ||
    line.includes('at node:internal') ||
    // The executor a library's `new Promise(…)` runs (knex's transaction(), mysql2's promise pool).
    line.endsWith('at new Promise (<anonymous>)') ||
    WATCHED_LIBRARY_FRAME.test(line)
  );
}

/**
 * Where the stack's first frame is (`formatStack`'s first line): the code location of the acquire,
 * as the semantic conventions' `code.*` attributes name it. Paths under the working directory are
 * relative to it (stable across machines and shorter); `file:` URLs become paths.
 */
export function codeLocation(stack: string | undefined): CodeLocation | undefined {
  if (!stack) return undefined;
  const line = stack.split('\n', 1)[0]!;
  const match = FRAME.exec(line);
  if (match === null) return undefined;
  const [, name, inParens, bare] = match;
  const where = LOCATION.exec((inParens ?? bare)!);
  if (where === null) return undefined;
  const location: {
    functionName?: string;
    filePath: string;
    lineNumber: number;
    columnNumber: number;
  } = {
    filePath: displayPath(where[1]!),
    lineNumber: Number(where[2]),
    columnNumber: Number(where[3]),
  };
  const functionName = name?.replace(/^async /, '');
  if (functionName && functionName !== '<anonymous>') location.functionName = functionName;
  return location;
}

/** `at name (location)` or `at location`. */
const FRAME = /^at (?:(.+?) \((.+)\)|(.+))$/;
/** `path:line:column`, the path possibly with colons of its own (Windows drives, URLs). */
const LOCATION = /^(.+):(\d+):(\d+)$/;

function displayPath(path: string): string {
  if (path.startsWith('file://')) {
    try {
      path = fileURLToPath(path);
    } catch {
      return path;
    }
  }
  if (!isAbsolute(path)) return path;
  const fromCwd = relative(process.cwd(), path);
  return fromCwd.length < path.length && !fromCwd.startsWith('..') ? fromCwd : path;
}

/**
 * Which acquires get a stack. `every`: 0 never, 1 always, N one in N, -1 'auto'.
 *
 * 'auto' spends a budget rather than sampling one-in-N: stack captures may take at most
 * `AUTO_STACK_BUDGET` of wall-clock time (measured: `spent()` is told what each capture cost),
 * saved up to `AUTO_STACK_BURST_MILLIS`. A pool whose acquires are spaced out (real database round
 * trips, tests, bursts after a pause) captures every acquire; one that hands out millions a second
 * pays about 1% of its time. It captures every acquire while `underPressure` (holds aging, callers
 * waiting, timeouts) and for `AUTO_STACK_HUNT_MILLIS` after a finding that had no stack: leaky code
 * runs again, and its next leak is then reported with its line.
 */
export class StackSampler {
  underPressure = false;
  #huntUntil = -Infinity;
  /** Capture time still allowed, in milliseconds. */
  #credit = AUTO_STACK_BURST_MILLIS;
  #creditAt = 0;
  /** The last capture came out of the budget (not pressure or a hunt, which are free). */
  #charged = false;
  #countdown = 0;

  constructor(readonly every: number) {}

  shouldCapture(now: number): boolean {
    const every = this.every;
    if (every === 1) return true;
    if (every === 0) return false;
    if (every < 0) {
      if (this.underPressure || now < this.#huntUntil) {
        this.#charged = false;
        return true;
      }
      const credit = this.#credit + (now - this.#creditAt) * AUTO_STACK_BUDGET;
      this.#credit = credit < AUTO_STACK_BURST_MILLIS ? credit : AUTO_STACK_BURST_MILLIS;
      this.#creditAt = now;
      this.#charged = true;
      return credit > 0;
    }
    if (--this.#countdown <= 0) {
      this.#countdown = every;
      return true;
    }
    return false;
  }

  /**
   * The capture just allowed took `millis` of wall-clock time. A process descheduled during a
   * capture measures the wait too: a charge is capped at `AUTO_STACK_MAX_CHARGE_MILLIS`, so a busy
   * machine does not empty the budget for seconds.
   */
  spent(millis: number): void {
    if (this.#charged) {
      this.#credit -= millis < AUTO_STACK_MAX_CHARGE_MILLIS ? millis : AUTO_STACK_MAX_CHARGE_MILLIS;
    }
  }

  /** A finding had no stack: capture every acquire for a while. */
  hunt(now: number): void {
    if (this.every < 0) this.#huntUntil = now + AUTO_STACK_HUNT_MILLIS;
  }
}

/** 'auto': the share of wall-clock time stack captures may take. */
export const AUTO_STACK_BUDGET = 0.01;
/** 'auto': how much capture time can be saved up for a burst (about 300 captures). */
export const AUTO_STACK_BURST_MILLIS = 2;
/** 'auto': the most one capture is charged (ten times what the slowest capture measured costs). */
export const AUTO_STACK_MAX_CHARGE_MILLIS = 0.1;
/** 'auto': how long every acquire is captured after a finding without a stack. */
export const AUTO_STACK_HUNT_MILLIS = 5 * 60_000;
