/**
 * poolwatch's errors: one base class, a subclass per failure, a stable `code` for programs and a
 * message for people that names the problem and the fix.
 */
export class PoolError extends Error {
  readonly code: string;
  /** The pool's name, when the error comes from a pool. */
  readonly poolName: string | undefined;

  constructor(code: string, message: string, options?: { cause?: unknown; poolName?: string }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.poolName = options?.poolName;
  }
}

/** An option is missing, unknown or out of range. Thrown by the constructor. */
export class InvalidOptionError extends PoolError {
  constructor(message: string) {
    super('POOL_INVALID_OPTION', message);
  }
}

/** `acquire()` waited `acquireTimeoutMillis` without getting a resource. */
export class AcquireTimeoutError extends PoolError {
  constructor(message: string, poolName: string, cause?: unknown) {
    super('POOL_ACQUIRE_TIMEOUT', message, { cause, poolName });
  }
}

/** The caller's `AbortSignal` fired while it waited. `cause` is the signal's reason. */
export class AcquireAbortedError extends PoolError {
  constructor(poolName: string, reason: unknown) {
    super('POOL_ACQUIRE_ABORTED', `Pool "${poolName}": acquire() was aborted by its signal.`, {
      cause: reason,
      poolName,
    });
  }
}

/** The factory failed to create a resource for this caller. `cause` is the factory's error. */
export class CreateFailedError extends PoolError {
  constructor(poolName: string, cause: unknown) {
    const detail = cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
    super(
      'POOL_CREATE_FAILED',
      `Pool "${poolName}" cannot create a resource (cannot connect?): ${detail}. ` +
        'This is not pool exhaustion: check that the server is reachable and the credentials are right.',
      { cause, poolName },
    );
  }
}

/** The pool is closed (or closing). */
export class PoolClosedError extends PoolError {
  constructor(poolName: string, what: string) {
    super(
      'POOL_CLOSED',
      `Pool "${poolName}" is closed: ${what}. Create a new pool, or close this one only at shutdown.`,
      { poolName },
    );
  }
}

/** A lease was used after it ended, or handed to a pool that did not issue it. */
export class LeaseError extends PoolError {
  constructor(code: LeaseErrorCode, message: string, poolName: string | undefined) {
    super(code, message, { poolName });
  }
}

export type LeaseErrorCode =
  'POOL_LEASE_RELEASED' | 'POOL_LEASE_RECLAIMED' | 'POOL_LEASE_FOREIGN' | 'POOL_LEASE_INVALID';

/**
 * The caller already holds a lease from this pool and asks for another while the pool is
 * exhausted: waiting could deadlock on itself, so the pool fails at once.
 */
export class SelfDeadlockError extends PoolError {
  constructor(message: string, poolName: string) {
    super('POOL_SELF_DEADLOCK', message, { poolName });
  }
}
