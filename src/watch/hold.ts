/**
 * The watch record of one resource: who holds it now, since when, from where. Every lease source
 * keeps one per resource (poolwatch's pool entry, the pg-pool adapter's per-client entry) by
 * extending `Hold`, so starting a hold writes a few fields and allocates nothing.
 *
 * A record never references the lease the user holds, except `unwatchedLease` until the first
 * housekeeping tick (see `CollectionWatch`): otherwise a dropped lease could never be collected.
 */
import type { HoldMessage, HoldOutcome } from '../events';
import type { CodeLocation, LeaseInfo } from '../types';
import { codeLocation, formatStack, type CapturedStack } from './stack';

export class Hold {
  /** The current hold's number (`poolwatch.lease.id`); 0 when the resource is not held. */
  holdId = 0;
  /** `performance.now()` when the current hold began. */
  acquiredAt = 0;
  /** The acquiring stack, when one was captured. */
  captured: CapturedStack | undefined = undefined;
  /** Held past the leak threshold (reported once per hold). */
  suspected = false;
  /** Held past `health.maxHoldMillis` (alerted once per hold). */
  holdAgeAlerted = false;
  /** The observed acquire that produced this hold, when someone listens to the channels. */
  message: HoldMessage | undefined = undefined;
  /** The user's lease, until it is handed to the collection watch (see `CollectionWatch`). */
  unwatchedLease: object | undefined = undefined;
  /** Registered with the collection watch. */
  watched = false;
  /** How the previous hold ended, so a stale lease's error can say what happened to it. */
  lastHoldId = 0;
  lastOutcome: HoldOutcome | undefined = undefined;

  /** @param resourceId `poolwatch.resource.id`: stable across holds. */
  constructor(readonly resourceId: number) {}

  get held(): boolean {
    return this.holdId !== 0;
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

  get location(): CodeLocation | undefined {
    return codeLocation(this.stack);
  }

  toJSON(): object {
    return { ...this, stack: this.stack, location: this.location };
  }
}
