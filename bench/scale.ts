/**
 * Section "scale": how costs grow with the queue and with the pool.
 *
 *  - `10,000 queued waiters`: one op is one waiter. A round takes every resource of a max-10
 *    pool, queues 10,000 acquires behind them (each releases as soon as it is served), then
 *    releases the 10: the queue drains through release → next waiter → release... Samples are
 *    whole rounds (op counts are multiples of 10,000). Each waiter checks that it was served
 *    after every waiter queued before it; the row's counters report `waiters` and `outOfOrder`
 *    (0 means FIFO held for every waiter of every timed round). A queue that costs O(n) per
 *    dequeue (`Array#shift` on a long array, a sorted insert) shows here as ns/waiter growing
 *    far beyond the peers.
 *  - `pool size`: the bare cycle of bench/peers.ts with max = 10, 100, 1000. At c = max every
 *    worker holds one of `max` live resources, so the pool's per-resource structures are as big
 *    as they get; minimal-pool rows at the same sizes separate what concurrency itself costs
 *    (more workers, more live promises) from what the pool adds. At c = 64 the load is fixed and
 *    only `max` changes (at 100 and 1000, 64 resources exist and nobody waits; at 10, 54
 *    workers always wait). The cost per cycle should stay flat.
 */
import { createPool } from 'generic-pool';
import PgPool from 'pg-pool';
import { Pool as TarnPool } from 'tarn';
import type { Case, Runner } from './harness';
import { drive } from './harness';
import { MinimalPool } from './minimal-pool';
import { loadPoolwatch } from './otel';
import { NoIoClient } from './peers';
import type { Resource } from './resource';
import { MAX, assertReused, resourceFactory } from './resource';

export const QUEUE_LENGTH = 10_000;
export const POOL_SIZES = [10, 100, 1000];

/** A pool seen as separate acquire and release calls (a waiter releases in its continuation). */
export interface Holdable<H> {
  acquire(): Promise<H>;
  release(held: H): void;
  close(): Promise<void>;
}

interface QueueSubject {
  name: string;
  baseline?: boolean;
  /** The peers: for comparison only, measured in full mode. */
  fullOnly?: boolean;
  open(): Holdable<unknown>;
}

function holdable<H>(h: Holdable<H>): Holdable<unknown> {
  return h as Holdable<unknown>;
}

const QUEUE_SUBJECTS: QueueSubject[] = [
  {
    name: 'minimal-pool',
    baseline: true,
    open() {
      const { create, destroy, check } = resourceFactory('minimal-pool');
      const pool = new MinimalPool(create, MAX);
      return holdable<Resource>({
        acquire: () => pool.acquire(),
        release: (r) => pool.release(r),
        close: async () => {
          await pool.close(destroy);
          check();
        },
      });
    },
  },
  {
    name: 'poolwatch default',
    open() {
      const { create, destroy, check } = resourceFactory('poolwatch');
      const pool = new (loadPoolwatch().Pool)<Resource>({ factory: { create, destroy }, max: MAX });
      return holdable({
        acquire: () => pool.acquire(),
        release: (lease) => lease.release(),
        close: async () => {
          await pool.close();
          check();
        },
      });
    },
  },
  {
    name: 'generic-pool',
    fullOnly: true,
    open() {
      const { create, destroy, check } = resourceFactory('generic-pool');
      const pool = createPool({ create, destroy }, { max: MAX });
      return holdable<Resource>({
        acquire: () => pool.acquire(),
        release: (r) => void pool.release(r),
        close: async () => {
          await pool.drain();
          await pool.clear();
          check();
        },
      });
    },
  },
  {
    name: 'tarn',
    fullOnly: true,
    open() {
      const { create, destroy, check } = resourceFactory('tarn');
      const pool = new TarnPool<Resource>({ create, destroy, min: 0, max: MAX });
      return holdable<Resource>({
        acquire: () => pool.acquire().promise,
        release: (r) => void pool.release(r),
        close: async () => {
          await pool.destroy();
          check();
        },
      });
    },
  },
  {
    name: 'pg-pool',
    fullOnly: true,
    open() {
      let created = 0;
      const Client = class extends NoIoClient {
        constructor(options: unknown) {
          super(options, created++);
        }
      };
      const pool = new PgPool<NoIoClient>({ Client, max: MAX });
      return holdable({
        acquire: () => pool.connect(),
        release: (client) => client.release(),
        close: async () => {
          await pool.end();
          assertReused('pg-pool', created);
        },
      });
    },
  },
];

/**
 * One round: hold all `MAX` resources, queue `waiters` acquires, release the held ones, wait
 * until every waiter was served (and released). Returns how many waiters were served after a
 * waiter queued later than them (0 for a FIFO pool).
 */
export async function queueRound<H>(pool: Holdable<H>, waiters: number): Promise<number> {
  const held: H[] = [];
  for (let i = 0; i < MAX; i++) held.push(await pool.acquire());
  let lastServed = -1;
  let outOfOrder = 0;
  const served: Promise<void>[] = new Array(waiters);
  for (let i = 0; i < waiters; i++) {
    served[i] = pool.acquire().then((resource) => {
      if (i < lastServed) outOfOrder++;
      else lastServed = i;
      pool.release(resource);
    });
  }
  for (const resource of held) pool.release(resource);
  await Promise.all(served);
  return outOfOrder;
}

function queueCase(subject: QueueSubject): Case {
  return {
    suite: 'scale',
    group: `${QUEUE_LENGTH.toLocaleString('en-US')} queued waiters, max=${MAX} (ns/op = per waiter)`,
    name: subject.name,
    baseline: subject.baseline ?? false,
    fullOnly: subject.fullOnly ?? false,
    quantum: QUEUE_LENGTH,
    async prepare(): Promise<Runner> {
      const pool = subject.open();
      let waiters = 0;
      let outOfOrder = 0;
      return {
        async run(n) {
          for (let done = 0; done < n; done += QUEUE_LENGTH) {
            outOfOrder += await queueRound(pool, QUEUE_LENGTH);
            waiters += QUEUE_LENGTH;
          }
        },
        counters: () => ({ waiters, outOfOrder }),
        teardown: () => pool.close(),
      };
    },
  };
}

/** The bare cycle (as in bench/peers.ts) on a pool of `max`, with `concurrency` workers. */
function sizeCase(
  kind: 'poolwatch' | 'minimal-pool',
  max: number,
  concurrency: number,
  group: string,
): Case {
  const name = `${kind} max=${max}`;
  return {
    suite: 'scale',
    group,
    name,
    baseline: kind === 'poolwatch' && max === POOL_SIZES[0],
    async prepare(): Promise<Runner> {
      const { create, destroy, check } = resourceFactory(name, max);
      let cycle: () => Promise<void>;
      let close: () => Promise<void>;
      if (kind === 'poolwatch') {
        const pool = new (loadPoolwatch().Pool)<Resource>({ factory: { create, destroy }, max });
        cycle = async () => {
          const lease = await pool.acquire();
          lease.release();
        };
        close = async () => void (await pool.close());
      } else {
        const pool = new MinimalPool(create, max);
        cycle = async () => {
          pool.release(await pool.acquire());
        };
        close = () => pool.close(destroy);
      }
      return {
        run: (n) => drive(cycle, n, concurrency),
        async teardown() {
          await close();
          check();
        },
      };
    },
  };
}

export const SIZE_GROUP_C_MAX = 'pool size, c=max';
export const SIZE_GROUP_C64 = 'pool size, c=64';

export function scaleCases(): Case[] {
  return [
    ...QUEUE_SUBJECTS.map(queueCase),
    ...POOL_SIZES.flatMap((max) => [
      sizeCase('minimal-pool', max, max, SIZE_GROUP_C_MAX),
      sizeCase('poolwatch', max, max, SIZE_GROUP_C_MAX),
    ]),
    ...POOL_SIZES.map((max) => sizeCase('poolwatch', max, 64, SIZE_GROUP_C64)),
  ];
}
