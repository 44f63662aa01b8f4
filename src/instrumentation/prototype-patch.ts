/**
 * Wrapping a library class's methods so that several instrumentations can live with it, as
 * `./pg-pool.ts` does for pg-pool (see there for why): no shimmer marks, our wrappers recognised
 * by identity, never stacked twice on one prototype, handed from one patcher to the next, and
 * taken off on unpatch only while they are the outermost wrappers (under someone else's wrapper
 * they stay as pass-throughs, reused by the next patch).
 *
 * Each wrapper looks up the patch's `owner` at each call: `undefined` makes it a pass-through.
 */

export type Method = (this: never, ...args: never[]) => unknown;

export interface PrototypePatch<Owner> {
  readonly original: Readonly<Record<string, Method>>;
  readonly wrapper: Readonly<Record<string, Method>>;
  owner: Owner | undefined;
}

/** Makes the wrapper of one method; it reads `patch.owner` at each call. */
export type WrapperFactory<Owner> = (
  name: string,
  original: Method,
  patch: PrototypePatch<Owner>,
) => Method;

const patches = new WeakMap<object, PrototypePatch<unknown>>();

/**
 * Wraps `names` on `proto` (once, however often it is called) and makes `owner` the one the
 * wrappers call.
 */
export function patchPrototype<Owner>(
  proto: object,
  names: readonly string[],
  wrap: WrapperFactory<Owner>,
  owner: Owner,
): void {
  let patch = patches.get(proto) as PrototypePatch<Owner> | undefined;
  const methods = proto as Record<string, unknown>;
  if (patch === undefined || !names.every((n) => isInChain(methods[n], patch!.wrapper[n]!))) {
    const original: Record<string, Method> = {};
    const wrapper: Record<string, Method> = {};
    const created: PrototypePatch<Owner> = { original, wrapper, owner: undefined };
    for (const name of names) {
      original[name] = methods[name] as Method;
      wrapper[name] = wrap(name, original[name], created);
    }
    for (const name of names) redefine(proto, name, wrapper[name]!);
    patches.set(proto, created as PrototypePatch<unknown>);
    patch = created;
  }
  patch.owner = owner;
}

/**
 * Lets go of `proto` if `owner` owns its patch: the originals come back when every wrapper is
 * still the outermost; otherwise the wrappers stay as pass-throughs.
 */
export function unpatchPrototype(proto: object, owner: unknown): void {
  const patch = patches.get(proto);
  if (patch === undefined || patch.owner !== owner) return;
  patch.owner = undefined;
  const methods = proto as Record<string, unknown>;
  const names = Object.keys(patch.wrapper);
  if (names.every((n) => methods[n] === patch.wrapper[n])) {
    for (const name of names) redefine(proto, name, patch.original[name]!);
    patches.delete(proto);
  }
}

/** Whether `proto` carries a patch with wrappers that are still in place. */
export function isPatched(proto: object): boolean {
  return patches.has(proto);
}

/** Replaces a method, keeping its property attributes (class methods are not enumerable). */
export function redefine(proto: object, name: string, value: unknown): void {
  const descriptor = Object.getOwnPropertyDescriptor(proto, name);
  Object.defineProperty(proto, name, {
    configurable: descriptor?.configurable ?? true,
    enumerable: descriptor?.enumerable ?? false,
    writable: descriptor?.writable ?? true,
    value,
  });
}

/** Whether `target` is `fn` or lies under it in a chain of shimmer wrappers (`__original`). */
export function isInChain(fn: unknown, target: unknown): boolean {
  for (let f = fn, depth = 0; typeof f === 'function' && depth < 16; depth++) {
    if (f === target) return true;
    f = (f as { __original?: unknown }).__original;
  }
  return false;
}

/** The object in `proto`'s chain (itself included) that owns `name` as a function. */
export function ownerOf(proto: object | null, name: string): object | undefined {
  for (
    let p = proto;
    p !== null && p !== Object.prototype;
    p = Object.getPrototypeOf(p) as object | null
  ) {
    const d = Object.getOwnPropertyDescriptor(p, name);
    if (d !== undefined) return typeof d.value === 'function' ? p : undefined;
  }
  return undefined;
}
