/**
 * Small pieces shared by the driver adapters: strict option checks (the same rules as the pool's
 * own options) and bounded waits for driver calls that can otherwise wait forever.
 */
import { InvalidOptionError } from '../errors';
import { describeValue, MAX_TIMER_MILLIS } from '../options';

/**
 * A duration option: a finite number >= 0 (or > 0 with `positive`), else the fallback. `timer`:
 * it arms a Node.js timer, so at most 2^31-1 (Node fires a longer one after 1 ms).
 */
export function millisOption(
  where: string,
  name: string,
  value: unknown,
  fallback: number,
  positive = false,
  timer = false,
): number {
  if (value === undefined) return fallback;
  if (
    typeof value !== 'number' ||
    !Number.isFinite(value) ||
    value < 0 ||
    (positive && value === 0) ||
    (timer && value > MAX_TIMER_MILLIS)
  ) {
    throw new InvalidOptionError(
      `${where} option "${name}" must be a duration in milliseconds ${positive ? '> 0' : '>= 0'}` +
        `${timer ? ` and at most ${MAX_TIMER_MILLIS} (a Node.js timer's limit)` : ''}, got ${describeValue(value)}.`,
    );
  }
  return value;
}

/**
 * A duration that a driver hands to a timer (pg's connect timeout): a finite number from 0 to
 * 2^31-1, else the fallback when undefined. Drivers read a negative or non-numeric value as "no
 * timeout" without a word; a larger one overflows Node's timers.
 */
export function timerMillisOption(
  where: string,
  name: string,
  value: unknown,
  fallback: number,
  zeroMeaning = '',
): number {
  if (value === undefined) return fallback;
  if (
    typeof value !== 'number' ||
    !Number.isFinite(value) ||
    value < 0 ||
    value > MAX_TIMER_MILLIS
  ) {
    throw new InvalidOptionError(
      `${where} option "${name}" must be a duration in milliseconds from 0 to ${MAX_TIMER_MILLIS}` +
        `${zeroMeaning}, got ${describeValue(value)}.`,
    );
  }
  return value;
}

/** A function option, or undefined. */
export function functionOption<F>(
  where: string,
  name: string,
  value: F | undefined,
): F | undefined {
  if (value !== undefined && typeof value !== 'function') {
    throw new InvalidOptionError(
      `${where} option "${name}" must be a function, got ${describeValue(value)}.`,
    );
  }
  return value;
}

/** A SQL text option: a non-empty string, `false` where allowed, or undefined. */
export function sqlOption<D extends string | false | undefined>(
  where: string,
  name: string,
  value: unknown,
  fallback: D,
  allowFalse: boolean,
): string | D {
  if (value === undefined) return fallback;
  if ((typeof value === 'string' && value.trim() !== '') || (allowFalse && value === false)) {
    return value as string | D;
  }
  throw new InvalidOptionError(
    `${where} option "${name}" must be a non-empty SQL string${allowFalse ? ' or false' : ''}, got ${describeValue(value)}.`,
  );
}

/**
 * Resolves with `promise`'s outcome, or with `onTimeout()` once `ms` have passed. The timer is
 * unref'd: a bounded wait never keeps the process alive on its own.
 */
export function bounded<T, U>(promise: Promise<T>, ms: number, onTimeout: () => U): Promise<T | U> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<U>((resolve) => {
    timer = setTimeout(() => resolve(onTimeout()), ms);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** `value` as an Error (drivers sometimes reject with other things). */
export function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}

/** Calls the user's error observer; a throwing observer must not turn a handled error into a crash. */
export function notifyError<R>(
  onError: ((error: Error, resource: R) => void) | undefined,
  error: Error,
  resource: R,
): void {
  if (onError === undefined) return;
  try {
    onError(error, resource);
  } catch {
    // Deliberately ignored: see above.
  }
}

/** Runs the user's `onConnect`; when it fails, the new connection is closed and the error thrown. */
export async function runOnConnect<R>(
  onConnect: ((resource: R) => unknown) | undefined,
  resource: R,
  destroy: (resource: R) => Promise<void>,
): Promise<R> {
  if (onConnect === undefined) return resource;
  try {
    await onConnect(resource);
  } catch (error) {
    await destroy(resource);
    throw error;
  }
  return resource;
}
