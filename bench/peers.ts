/**
 * Peer pools on a trivial no-I/O resource, max 10, so that only the pool's own bookkeeping is
 * measured. Every subject's cycle is the same user-shaped code: an async function that awaits
 * an acquire and releases synchronously.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { EventEmitter } from 'node:events';
import { createPool } from 'generic-pool';
import PgPool from 'pg-pool';
import { Pool as TarnPool } from 'tarn';
import type { Case, Subject } from './harness';
import { poolCase } from './harness';
import { MinimalPool } from './minimal-pool';
import type { Resource } from './resource';
import { MAX, assertReused, resourceFactory } from './resource';
import { POOLWATCH_VARIANTS, poolwatchSubject } from './poolwatch';

export const CONCURRENCIES = [1, 64];
/** Packages whose versions the report header prints. */
export const PEER_PACKAGES = ['generic-pool', 'tarn', 'pg-pool'];

/** Cost of the driver itself: an awaited async function that does nothing. */
const floor: Subject = {
  name: 'floor: empty async cycle',
  async setup() {
    return { cycle: async () => {}, teardown: async () => {} };
  },
};

const minimal: Subject = {
  name: 'minimal-pool',
  async setup() {
    const { create, destroy, check } = resourceFactory('minimal-pool');
    const pool = new MinimalPool(create, MAX);
    return {
      async cycle() {
        const r = await pool.acquire();
        pool.release(r);
      },
      async teardown() {
        await pool.close(destroy);
        check();
      },
    };
  },
};

const genericPool: Subject = {
  name: 'generic-pool',
  async setup() {
    const { create, destroy, check } = resourceFactory('generic-pool');
    const pool = createPool({ create, destroy }, { max: MAX });
    return {
      async cycle() {
        const r = await pool.acquire();
        // release() returns a promise that users (and pg/knex-style wrappers) do not await.
        void pool.release(r);
      },
      async teardown() {
        await pool.drain();
        await pool.clear();
        check();
      },
    };
  },
};

const tarn: Subject = {
  name: 'tarn',
  async setup() {
    const { create, destroy, check } = resourceFactory('tarn');
    const pool = new TarnPool<Resource>({ create, destroy, min: 0, max: MAX });
    return {
      async cycle() {
        const r = await pool.acquire().promise;
        pool.release(r);
      },
      async teardown() {
        await pool.destroy();
        check();
      },
    };
  },
};

/**
 * The smallest thing pg-pool accepts as a `Client`. What pg-pool actually needs (read from
 * pg-pool 3.14 index.js):
 *  - `connect(cb)`: called once per new client; we call back on the next tick like a real
 *    connection would (never synchronously, which would change pg-pool's ordering);
 *  - EventEmitter (`on('error')`, `removeListener`, `once('end')`);
 *  - `_queryable` truthy and `_ending` falsy: pg-pool's `_release` checks these *private*
 *    pg.Client fields and otherwise destroys the client on every release, which would turn
 *    the benchmark into a create/destroy benchmark;
 *  - `end(cb)`: called when the pool removes the client;
 *  - `release` is attached by pg-pool on each checkout (typed via pg-pool.d.ts).
 */
export class NoIoClient extends EventEmitter {
  _queryable = true;
  _ending = false;

  constructor(
    _poolOptions: unknown,
    readonly id: number,
  ) {
    super();
  }

  connect(cb: (err?: Error) => void): void {
    process.nextTick(cb);
  }

  end(cb?: () => void): void {
    this._ending = true;
    this._queryable = false;
    this.emit('end');
    if (cb) process.nextTick(cb);
  }
}

/**
 * pg-pool with its defaults, i.e. what users get: idleTimeoutMillis = 10 s means every
 * release arms a setTimeout and every checkout of an idle client clears it, so the timer cost
 * is part of the row. The `idleTimeoutMillis:0` variant shows how much of it that is.
 */
function pgPool(name: string, idleTimeoutMillis?: number): Subject {
  return {
    name,
    async setup() {
      let created = 0;
      // pg-pool calls `new Client(options)`; the subclass numbers clients per pool.
      const Client = class extends NoIoClient {
        constructor(options: unknown) {
          super(options, created++);
        }
      };
      const pool = new PgPool<NoIoClient>({
        Client,
        max: MAX,
        ...(idleTimeoutMillis === undefined ? {} : { idleTimeoutMillis }),
      });
      return {
        async cycle() {
          const c = await pool.connect();
          c.release();
        },
        async teardown() {
          await pool.end();
          assertReused(name, created);
        },
      };
    },
  };
}

export function peerSubjects(): Subject[] {
  return [
    floor,
    minimal,
    genericPool,
    tarn,
    pgPool('pg-pool'),
    pgPool('pg-pool idleTimeoutMillis:0', 0),
    ...POOLWATCH_VARIANTS.map((v) => poolwatchSubject(v.name, v.options)),
  ];
}

/**
 * One case per (concurrency, subject); `baseline` names the row ratios are computed against.
 * With `als`, every case runs with an AsyncLocalStorage enabled (see `withAmbientAls`).
 */
export function peerCases(opts: { baseline: string; als: boolean }): Case[] {
  const cases: Case[] = [];
  for (const c of CONCURRENCIES) {
    for (const subject of peerSubjects()) {
      const poolC = poolCase(subject, c, {
        suite: 'peers',
        group: `max=${MAX} c=${c}`,
        baseline: subject.name === opts.baseline,
      });
      cases.push(opts.als ? withAmbientAls(poolC) : poolC);
    }
  }
  return cases;
}

/**
 * Runs a case the way an app with OpenTelemetry's AsyncLocalStorageContextManager sees it: an
 * AsyncLocalStorage is enabled, so Node 20 runs a PromiseHook for every promise. Which store
 * is current does not matter for that cost; only that one ALS is enabled.
 */
function withAmbientAls(c: Case): Case {
  return {
    ...c,
    group: `${c.group} [ALS on]`,
    async prepare() {
      const als = new AsyncLocalStorage<object>();
      als.enterWith({});
      const runner = await c.prepare();
      return {
        run: (n) => runner.run(n),
        async teardown() {
          try {
            await runner.teardown();
          } finally {
            als.disable();
          }
        },
      };
    },
  };
}
