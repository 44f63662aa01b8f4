/**
 * What every lease source (poolwatch's pool, and the adapter that watches existing pg pools)
 * shares for observation: the hold message that telemetry follows, the stack sampling policy and
 * lease snapshots.
 */
import { channels, type HoldMessage, type PoolRef } from './events';
import { AUTO_STACK_INTERVAL_MILLIS } from './options';
import { formatStack, type CapturedStack } from './stack';
import type { LeaseInfo } from './types';

/**
 * Starts following an acquire when someone listens (publishing `acquireStart`), and costs two
 * `hasSubscribers` checks otherwise.
 */
export function startHold(pool: PoolRef, startTime: number): HoldMessage | undefined {
  if (!(channels.acquireStart.hasSubscribers || channels.acquireEnd.hasSubscribers)) {
    return undefined;
  }
  const message: HoldMessage = {
    pool,
    startTime,
    waitMillis: 0,
    lease: undefined,
    error: undefined,
    holdMillis: 0,
    outcome: undefined,
    userData: undefined,
  };
  channels.acquireStart.publish(message);
  return message;
}

/**
 * Which acquires get a stack. `every`: 0 never, 1 always, N one in N, -1 'auto'. 'auto' is
 * rate-limited rather than one-in-N: at most one stack per AUTO_STACK_INTERVAL_MILLIS while
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

/** A lease's identity and age at one moment. The stack is formatted only when read. */
export class LeaseSnapshot implements LeaseInfo {
  readonly #captured: CapturedStack | undefined;

  constructor(
    readonly id: number,
    readonly resourceId: number,
    readonly poolName: string,
    readonly acquiredAt: number,
    readonly ageMillis: number,
    readonly suspected: boolean,
    captured: CapturedStack | undefined,
  ) {
    this.#captured = captured;
  }

  get stack(): string | undefined {
    return formatStack(this.#captured);
  }

  toJSON(): object {
    return { ...this, stack: this.stack };
  }
}
