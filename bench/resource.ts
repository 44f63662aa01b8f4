/**
 * The resource every benchmarked pool hands out, and a check that pools really reuse it.
 * (Its own module so that peers.ts and the poolwatch adapter can share it without a cycle.)
 */

/** Pool size for every peer row. */
export const MAX = 10;

export interface Resource {
  id: number;
}

/**
 * The resource every pool hands out: a plain object, created and destroyed without I/O.
 * `check()` (called at teardown) fails the run if the pool created more than `MAX` resources:
 * a pool that silently destroys and recreates resources per cycle would turn its row into a
 * create/destroy benchmark (pg-pool does exactly that with a client it thinks is broken).
 */
export function resourceFactory(
  name: string,
  max = MAX,
): {
  create: () => Promise<Resource>;
  destroy: (r: Resource) => Promise<void>;
  check: () => void;
} {
  let created = 0;
  return {
    create: async () => ({ id: created++ }),
    destroy: async () => {},
    check: () => assertReused(name, created, max),
  };
}

export function assertReused(name: string, created: number, max = MAX): void {
  if (created > max) {
    throw new Error(`${name}: created ${created} resources for max ${max}; it is not reusing them`);
  }
}
