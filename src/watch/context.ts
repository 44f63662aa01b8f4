/**
 * What an async context holds, for self-deadlock detection: the chain of holds whose callbacks it
 * runs inside. A lease source runs a holder's callback in a new frame with
 * `AsyncLocalStorage.run()` (`runHolding`), so only the callback and the work it starts see the
 * frame; siblings (`Promise.all` over `use()` calls) never do. A frame whose hold has ended (the
 * record moved on to another hold) is dead. Frames reference watch records, never leases.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Hold } from './hold';

export interface HoldFrame {
  /** The lease source (a pool) the hold belongs to. */
  readonly source: object;
  readonly hold: Hold;
  readonly holdId: number;
  readonly parent: HoldFrame | undefined;
}

const heldInContext = new AsyncLocalStorage<HoldFrame>();

function isLive(frame: HoldFrame): boolean {
  return frame.hold.holdId === frame.holdId;
}

/** Runs `fn(...args)` in a context that holds `hold` of `source` (and whatever the caller held). */
export function runHolding<A extends unknown[], R>(
  source: object,
  hold: Hold,
  fn: (...args: A) => R,
  ...args: A
): R {
  const frame: HoldFrame = {
    source,
    hold,
    holdId: hold.holdId,
    parent: prune(heldInContext.getStore()),
  };
  return heldInContext.run(frame, fn, ...args);
}

/** The live hold of `source` that the current async context runs inside, if any. */
export function heldBySource(source: object): Hold | undefined {
  for (let f = heldInContext.getStore(); f !== undefined; f = f.parent) {
    if (f.source === source && isLive(f)) return f.hold;
  }
  return undefined;
}

/** The live part of a frame chain, so nested holders never keep dead frames. */
function prune(frame: HoldFrame | undefined): HoldFrame | undefined {
  if (frame === undefined) return undefined;
  const parent = prune(frame.parent);
  if (!isLive(frame)) return parent;
  return parent === frame.parent ? frame : { ...frame, parent };
}
