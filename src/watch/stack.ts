import { dirname, join } from 'node:path';
import { AUTO_STACK_INTERVAL_MILLIS } from '../options';

/**
 * Cheap acquisition stacks. `Error.captureStackTrace` records the frames at once (about a
 * microsecond) but V8 formats them only when `.stack` is read (several more): we read it only when
 * a leak is reported. Frames of poolwatch itself and of Node's internals are trimmed so the first
 * frame shown is the caller's code.
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

/** pg-pool's frames (`pool.query()` calls `connect()`) are pool internals when it is watched. */
const PG_POOL_FRAME = /[\\/]node_modules[\\/]pg-pool[\\/]/;

function isOwnFrame(line: string): boolean {
  return (
    line.includes(OWN_DIR) ||
    line.includes('(node:internal') ||
    line.includes('at node:internal') ||
    PG_POOL_FRAME.test(line)
  );
}

/**
 * Which acquires get a stack. `every`: 0 never, 1 always, N one in N, -1 'auto'. 'auto' is
 * rate-limited rather than one-in-N: at most one stack per `AUTO_STACK_INTERVAL_MILLIS` while
 * relaxed, so a quiet pool records nearly every acquire and a busy one pays a bounded cost (a
 * capture costs microseconds); while `underPressure`, every acquire.
 */
export class StackSampler {
  underPressure = false;
  #lastStackAt = -Infinity;
  #countdown = 0;

  constructor(readonly every: number) {}

  shouldCapture(now: number): boolean {
    const every = this.every;
    if (every === 1) return true;
    if (every === 0) return false;
    if (every < 0) {
      if (!this.underPressure && now - this.#lastStackAt < AUTO_STACK_INTERVAL_MILLIS) return false;
      this.#lastStackAt = now;
      return true;
    }
    if (--this.#countdown <= 0) {
      this.#countdown = every;
      return true;
    }
    return false;
  }
}
