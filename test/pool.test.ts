import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  AcquireAbortedError,
  AcquireTimeoutError,
  CreateFailedError,
  Lease,
  LeaseError,
  Pool,
  PoolClosedError,
  SelfDeadlockError,
  subscribe,
  type ChannelMessages,
  type PoolOptions,
} from '../src';
import { FakeFactory, plainFactory, type FakeResource } from './support/fake-factory';
import { settle } from './support/settle';
import { useFakeClock } from './support/fake-clock';

describe('Pool', () => {
  const env = useFakeClock<Pool<FakeResource>>();
  const pools = env.open;

  function pool(
    factory: FakeFactory,
    options: Omit<PoolOptions<FakeResource>, 'factory'> = {},
  ): Pool<FakeResource> {
    const p = new Pool({ factory, ...options });
    pools.push(p);
    return p;
  }

  describe('sizing', () => {
    it('creates lazily up to max and reuses released resources (LIFO)', async () => {
      const factory = plainFactory();
      const p = pool(factory, { max: 2 });
      assert.equal(factory.made.length, 0);
      const a = await p.acquire();
      const b = await p.acquire();
      assert.equal(factory.made.length, 2);
      const idA = a.resource.id;
      b.release();
      a.release();
      const c = await p.acquire();
      assert.equal(c.resource.id, idA, 'the last released resource goes out first');
      assert.equal(factory.made.length, 2);
      c.release();
    });

    it('keeps min filled in the background and refills with backoff after failures', async () => {
      const factory = plainFactory();
      factory.failCreates = 2;
      const p = pool(factory, { min: 2, max: 4 });
      await env.clock.tickAsync(0);
      // Both initial creates failed; the retry waits for a backoff of 100 ms.
      assert.equal(p.stats().size, 0);
      await env.clock.tickAsync(99);
      assert.equal(factory.made.length, 0);
      await env.clock.tickAsync(1);
      assert.equal(p.stats().size, 2);
      assert.equal(p.stats().idle, 2);
    });

    it('never overshoots max with concurrent creates', async () => {
      const factory = plainFactory();
      factory.createDelayMillis = 10;
      const p = pool(factory, { max: 3 });
      const all = Array.from({ length: 10 }, () => settle(p.acquire()));
      assert.equal(p.stats().creating, 3);
      await env.clock.tickAsync(10);
      assert.equal(factory.made.length, 3);
      assert.equal(all.filter((s) => s.done).length, 3);
      for (const s of all.filter((s) => s.done)) s.value!.release();
      await env.clock.tickAsync(0);
      assert.equal(all.filter((s) => s.done).length, 6);
      assert.equal(factory.made.length, 3);
      for (const s of all) if (s.value?.active) s.value.release();
      await env.clock.tickAsync(0);
      for (const s of all) if (s.value?.active) s.value.release();
      await env.clock.tickAsync(0);
      for (const s of all) if (s.value?.active) s.value.release();
      assert.ok(all.every((s) => s.done && s.error === undefined));
    });
  });

  describe('acquire', () => {
    it('serves waiters in FIFO order', async () => {
      const p = pool(plainFactory(), { max: 1, detectSelfDeadlock: false });
      const first = await p.acquire();
      const order: number[] = [];
      const waits = [1, 2, 3].map((n) => p.acquire().then((lease) => (order.push(n), lease)));
      first.release();
      for (const w of waits) (await w).release();
      assert.deepEqual(order, [1, 2, 3]);
    });

    it('times out by default after acquireTimeoutMillis, explaining who holds the pool', async () => {
      const factory = plainFactory();
      const p = pool(factory, {
        max: 1,
        acquireTimeoutMillis: 1000,
        captureStacks: 'always',
        detectSelfDeadlock: false,
      });
      const holder = await (async function holdingFunction() {
        return p.acquire();
      })();
      await env.clock.tickAsync(5000);
      const waiting = settle(p.acquire());
      await env.clock.tickAsync(999);
      assert.equal(waiting.done, false);
      await env.clock.tickAsync(1);
      assert.ok(waiting.error instanceof AcquireTimeoutError);
      assert.equal((waiting.error as AcquireTimeoutError).code, 'POOL_ACQUIRE_TIMEOUT');
      const message = waiting.error.message;
      assert.match(message, /Pool "poolwatch-\d+": timed out after 1000 ms/);
      assert.match(message, /total=1 used=1 idle=0 pending=1 max=1/);
      assert.match(message, /lease #\d+ held 6\.0 s, acquired at:/);
      assert.match(message, /holdingFunction .*pool\.test\.ts/, 'names the holder code');
      assert.doesNotMatch(message, /src[/\\]pool\.ts/, "poolwatch's own frames are trimmed");
      assert.equal(p.stats().timeouts, 1);
      holder.release();
    });

    it('carries the last create failure as the cause of a timeout', async () => {
      const factory = plainFactory();
      const p = pool(factory, { max: 1, acquireTimeoutMillis: 100, detectSelfDeadlock: false });
      const held = await p.acquire();
      factory.failCreates = 1;
      held.destroy(); // capacity is back, but the next create fails in the background for nobody
      const waiting = settle(p.acquire({ timeoutMillis: 100 }));
      await env.clock.tickAsync(0);
      // The create for this waiter failed: the waiter gets the failure at once, not a timeout.
      assert.ok(waiting.error instanceof CreateFailedError);
      assert.equal((waiting.error as CreateFailedError).code, 'POOL_CREATE_FAILED');
      assert.equal((waiting.error as Error).cause, factory.createError);
      assert.match(
        waiting.error.message,
        /cannot create a resource \(cannot connect\?\).*ECONNREFUSED/,
      );
      assert.match(waiting.error.message, /This is not pool exhaustion/);
    });

    it('a per-call timeout overrides the default and shares one timer', async () => {
      const p = pool(plainFactory(), {
        max: 1,
        acquireTimeoutMillis: 10_000,
        detectSelfDeadlock: false,
      });
      const held = await p.acquire();
      const slow = settle(p.acquire());
      const fast = settle(p.acquire({ timeoutMillis: 50 }));
      assert.equal(env.clock.countTimers(), 2, 'housekeeping tick + one waiter timer');
      await env.clock.tickAsync(50);
      assert.ok(fast.error instanceof AcquireTimeoutError);
      assert.equal(slow.done, false);
      held.release();
      await env.clock.tickAsync(0);
      assert.ok(slow.value instanceof Lease);
      slow.value.release();
    });

    it('rejects bad per-call timeouts (a rejected promise, never a throw)', async () => {
      const p = pool(plainFactory(), { max: 1 });
      await assert.rejects(p.acquire({ timeoutMillis: -1 }), /timeoutMillis.*>= 0/);
    });

    it('aborts on an AbortSignal, before or while waiting', async () => {
      const p = pool(plainFactory(), { max: 1, detectSelfDeadlock: false });
      const held = await p.acquire();
      const already = settle(p.acquire({ signal: AbortSignal.abort('nope') }));
      const controller = new AbortController();
      const waiting = settle(p.acquire({ signal: controller.signal }));
      await env.clock.tickAsync(0);
      assert.ok(already.error instanceof AcquireAbortedError);
      assert.equal(already.error.cause, 'nope');
      assert.equal(waiting.done, false);
      controller.abort(new Error('client went away'));
      await env.clock.tickAsync(0);
      assert.ok(waiting.error instanceof AcquireAbortedError);
      assert.equal((waiting.error as AcquireAbortedError).code, 'POOL_ACQUIRE_ABORTED');
      assert.equal(p.stats().pending, 0);
      held.release();
      // The aborted waiter's turn is skipped: the resource goes idle.
      assert.equal(p.stats().idle, 1);
    });

    it('serves the resource released by a holder to the next waiter, not to a newcomer', async () => {
      const p = pool(plainFactory(), { max: 1, detectSelfDeadlock: false });
      const held = await p.acquire();
      const waiter = settle(p.acquire());
      held.release();
      const newcomer = settle(p.acquire());
      await env.clock.tickAsync(0);
      assert.ok(waiter.value);
      assert.equal(newcomer.done, false);
      waiter.value.release();
      await env.clock.tickAsync(0);
      assert.ok(newcomer.value);
      newcomer.value.release();
    });
  });

  describe('self-deadlock', () => {
    it('fails fast when code inside use() asks the exhausted pool for another resource', async () => {
      const p = pool(plainFactory(), { max: 1, captureStacks: 'always' });
      await assert.rejects(
        p.use(async () => {
          await Promise.resolve();
          return p.acquire();
        }),
        (error: Error) =>
          error instanceof SelfDeadlockError &&
          error.code === 'POOL_SELF_DEADLOCK' &&
          /exhausted \(1\/1 in use\) and this async context already holds lease #\d+/.test(
            error.message,
          ) &&
          /pool\.test\.ts/.test(error.message),
      );
      assert.equal(p.stats().used, 0, 'the outer lease was destroyed by use() on the error');
    });

    it('does not fire for siblings, when capacity remains, or when turned off', async () => {
      const p = pool(plainFactory(), { max: 2 });
      // Siblings each hold their own lease and wait for each other's: no false alarm.
      const results = await Promise.all([1, 2, 3, 4].map((n) => p.use(async () => n)));
      assert.deepEqual(results, [1, 2, 3, 4]);
      // Nested with capacity left: fine.
      await p.use(() => p.use(() => 'nested'));
      const off = pool(plainFactory(), {
        max: 1,
        detectSelfDeadlock: false,
        acquireTimeoutMillis: 10,
      });
      const nested = settle(off.use(() => off.acquire()));
      await env.clock.tickAsync(10);
      assert.ok(nested.error instanceof AcquireTimeoutError);
    });
  });

  describe('leases', () => {
    it('rejects double release, use after release, foreign and bogus leases with clear errors', async () => {
      const p = pool(plainFactory(), { name: 'a' });
      const other = pool(plainFactory(), { name: 'b' });
      const lease = await p.acquire();
      const foreign = await other.acquire();
      lease.release();
      assert.throws(
        () => lease.release(),
        (e: Error) =>
          e instanceof LeaseError &&
          e.code === 'POOL_LEASE_RELEASED' &&
          /lease #\d+ was already released; release\(\) needs a live lease/.test(e.message),
      );
      assert.throws(() => lease.resource, /already released; use\(\) needs a live lease/);
      assert.throws(
        () => p.release(foreign),
        (e: Error) =>
          e instanceof LeaseError &&
          e.code === 'POOL_LEASE_FOREIGN' &&
          /belongs to pool "b"/.test(e.message),
      );
      assert.throws(
        () => p.release({ id: 1 } as never),
        (e: Error) =>
          e instanceof LeaseError &&
          e.code === 'POOL_LEASE_INVALID' &&
          /Keep the lease and call lease\.release\(\)/.test(e.message),
      );
      // None of that corrupted the counts.
      assert.deepEqual(
        { used: p.stats().used, idle: p.stats().idle, size: p.stats().size },
        { used: 0, idle: 1, size: 1 },
      );
      foreign.release();
      // A stale lease stays stale after its resource is reused.
      const next = await p.acquire();
      assert.throws(() => lease.release(), /already released/);
      assert.equal(next.active, true);
      next.release();
    });

    it('destroy() retires a broken resource and restores capacity', async () => {
      const factory = plainFactory();
      const p = pool(factory, { max: 1 });
      const lease = await p.acquire();
      const first = lease.resource;
      lease.destroy(new Error('socket hang up'));
      await env.clock.tickAsync(0);
      assert.equal(first.destroyed, true);
      const next = await p.acquire();
      assert.notEqual(next.resource.id, first.id);
      assert.throws(() => lease.destroy(), /was already destroyed/);
      next.release();
    });

    it('works with await using', async () => {
      const p = pool(plainFactory());
      {
        await using lease = await p.acquire();
        assert.equal(p.stats().used, 1);
        assert.ok(lease.resource);
      }
      assert.equal(p.stats().used, 0);
    });

    it('use() releases on success and destroys on error', async () => {
      const factory = plainFactory();
      const p = pool(factory);
      const value = await p.use((resource) => resource.id * 10);
      assert.equal(value, 10);
      assert.equal(p.stats().idle, 1);
      await assert.rejects(
        p.use(async () => {
          throw new Error('query failed');
        }),
        /query failed/,
      );
      await env.clock.tickAsync(0);
      assert.equal(factory.made[0]!.destroyed, true);
      assert.deepEqual([p.stats().used, p.stats().size], [0, 0]);
    });

    it('markBroken() evicts an idle resource at once and a held one on release', async () => {
      const factory = plainFactory();
      const p = pool(factory, { max: 2 });
      const a = await p.acquire();
      const b = await p.acquire();
      b.release();
      const idleOne = factory.made[1]!;
      idleOne.context.markBroken(new Error('server closed the connection'));
      await env.clock.tickAsync(0);
      assert.equal(idleOne.destroyed, true);
      assert.equal(p.stats().idle, 0);
      a.resource.context.markBroken();
      a.release();
      await env.clock.tickAsync(0);
      assert.equal(factory.made[0]!.destroyed, true);
      assert.equal(p.stats().size, 0);
    });
  });

  describe('validation and reset', () => {
    it('validates resources idle for a while; a failing one is destroyed and the next tried', async () => {
      const factory = new FakeFactory();
      const p = pool(factory, { max: 3, validateAfterIdleMillis: 500 });
      const leases = await Promise.all([p.acquire(), p.acquire(), p.acquire()]);
      for (const l of leases) l.release();
      // Fresh returns are not validated.
      (await p.acquire()).release();
      assert.equal(factory.validateCalls, 0);
      await env.clock.tickAsync(500);
      factory.invalid.add(3); // the warmest idle one (LIFO) is dead
      const lease = await p.acquire();
      assert.equal(lease.resource.id, 2);
      assert.equal(factory.validateCalls, 2);
      assert.equal(factory.made[2]!.destroyed, true);
      lease.release();
    });

    it('never hands out a dead resource: when all fail, a new one is created', async () => {
      const factory = new FakeFactory();
      const p = pool(factory, { max: 2, validateAfterIdleMillis: 0 });
      const [a, b] = await Promise.all([p.acquire(), p.acquire()]);
      a!.release();
      b!.release();
      factory.invalid.add(1).add(2);
      const lease = await p.acquire();
      assert.equal(lease.resource.id, 3);
      assert.equal(p.stats().size, 1);
      lease.release();
    });

    it('a validation that never answers cannot make acquire() hang, nor close()', async () => {
      const factory = new FakeFactory();
      const p = pool(factory, { max: 1, validateAfterIdleMillis: 0, acquireTimeoutMillis: 100 });
      (await p.acquire()).release();
      factory.validate = () => new Promise<boolean>(() => {}) as unknown as boolean;
      const first = settle(p.acquire());
      await env.clock.tickAsync(100);
      assert.ok(first.error instanceof AcquireTimeoutError, 'timed out while validating');
      const second = settle(p.acquire({ timeoutMillis: 10_000 }));
      await env.clock.tickAsync(0);
      void p.close();
      await env.clock.tickAsync(0);
      assert.ok(
        second.error instanceof PoolClosedError,
        'close() rejects a waiter being validated',
      );
    });

    it('resets before reuse; a failing reset destroys the resource', async () => {
      const factory = plainFactory();
      factory.reset = (r) => {
        r.resets++;
        if (r.resets === 2) throw new Error('DISCARD ALL failed');
      };
      const p = pool(factory, { max: 1 });
      const a = await p.acquire();
      a.release();
      assert.equal(p.stats().idle, 0, 'not idle until reset finished');
      await env.clock.tickAsync(0);
      assert.equal(p.stats().idle, 1);
      const b = await p.acquire();
      assert.equal(b.resource.resets, 1);
      b.release();
      await env.clock.tickAsync(0);
      assert.equal(factory.made[0]!.destroyed, true);
    });
  });

  describe('reuse decisions', () => {
    it('isReusable() false destroys the resource on release instead of reusing it', async () => {
      const factory = plainFactory() as FakeFactory & { isReusable?: (r: FakeResource) => boolean };
      factory.isReusable = (r) => r.id !== 1;
      const p = pool(factory, { max: 2 });
      const a = await p.acquire();
      const b = await p.acquire();
      a.release();
      b.release();
      await env.clock.tickAsync(0);
      assert.equal(factory.made[0]!.destroyed, true);
      assert.equal(factory.made[1]!.destroyed, false);
      assert.deepEqual([p.stats().size, p.stats().idle], [1, 1]);
    });

    it('does not create a new resource for a waiter while a released one is being reset, when no slot is free', async () => {
      const factory = plainFactory();
      let finishReset!: () => void;
      factory.reset = () => new Promise<void>((resolve) => (finishReset = resolve));
      const p = pool(factory, { max: 1, detectSelfDeadlock: false });
      const lease = await p.acquire();
      lease.release();
      const waiting = settle(p.acquire());
      await env.clock.tickAsync(0);
      assert.equal(p.stats().creating, 0, 'the resetting resource will serve the waiter');
      finishReset();
      await env.clock.tickAsync(0);
      assert.equal(waiting.value!.resource.id, 1);
      assert.equal(factory.made.length, 1);
      waiting.value!.release();
      await env.clock.tickAsync(0);
      finishReset();
    });

    it('with a free slot, a waiter gets a new resource instead of waiting for a reset (issue 10 item 8)', async () => {
      const factory = plainFactory();
      let finishReset!: () => void;
      factory.reset = () => new Promise<void>((resolve) => (finishReset = resolve));
      const p = pool(factory, { max: 3, detectSelfDeadlock: false });
      const lease = await p.acquire();
      lease.release();
      const waiting = settle(p.acquire());
      await env.clock.tickAsync(0);
      assert.equal(waiting.value!.resource.id, 2, 'served by a new resource');
      assert.equal(factory.made.length, 2);
      finishReset();
      await env.clock.tickAsync(0);
      assert.equal(p.stats().idle, 1, 'the reset one became idle');
      waiting.value!.release();
      await env.clock.tickAsync(0);
      finishReset();
    });

    it('reports why a broken resource was destroyed', async () => {
      const destroyed: ChannelMessages['destroy'][] = [];
      const unsubscribe = subscribe('destroy', (m) => destroyed.push(m));
      try {
        const factory = plainFactory();
        const p = pool(factory);
        (await p.acquire()).release();
        const cause = new Error('terminating connection due to administrator command');
        factory.made[0]!.context.markBroken(cause);
        await env.clock.tickAsync(0);
        assert.deepEqual(
          destroyed.map((m) => [m.reason, m.error]),
          [['broken', cause]],
        );
      } finally {
        unsubscribe();
      }
    });
  });

  describe('eviction', () => {
    it('destroys idle resources above min after idleTimeoutMillis', async () => {
      const factory = plainFactory();
      const p = pool(factory, { min: 1, max: 3, idleTimeoutMillis: 5000 });
      await env.clock.tickAsync(0);
      const leases = await Promise.all([p.acquire(), p.acquire(), p.acquire()]);
      for (const l of leases) l.release();
      await env.clock.tickAsync(4000);
      assert.equal(p.stats().size, 3);
      await env.clock.tickAsync(2000);
      assert.equal(p.stats().size, 1, 'keeps min');
    });

    it('retires resources past maxLifetimeMillis, but never while held', async () => {
      const factory = plainFactory();
      const p = pool(factory, { max: 2, maxLifetimeMillis: 60_000, idleTimeoutMillis: 0 });
      const held = await p.acquire();
      const idle = await p.acquire();
      idle.release();
      await env.clock.tickAsync(61_000);
      assert.equal(factory.made[1]!.destroyed, true, 'idle one retired');
      assert.equal(factory.made[0]!.destroyed, false, 'held one untouched');
      held.release();
      await env.clock.tickAsync(0);
      assert.equal(factory.made[0]!.destroyed, true, 'retired on release');
    });
  });

  describe('close', () => {
    it('rejects new and pending acquires, waits for leases, is idempotent', async () => {
      const factory = plainFactory();
      const p = pool(factory, { max: 1, detectSelfDeadlock: false });
      const held = await p.acquire();
      const waiting = settle(p.acquire());
      const closing = p.close();
      assert.equal(p.close(), closing);
      await env.clock.tickAsync(0);
      assert.ok(waiting.error instanceof PoolClosedError);
      await assert.rejects(
        p.acquire(),
        (e: Error) =>
          e instanceof PoolClosedError &&
          e.code === 'POOL_CLOSED' &&
          /acquire\(\) was called after close\(\)/.test(e.message),
      );
      held.release();
      const report = await closing;
      assert.deepEqual(report.forced, []);
      assert.equal(factory.live.length, 0);
    });

    it('destroys leases still out after closeTimeoutMillis and reports them with stacks', async () => {
      const factory = plainFactory();
      const p = pool(factory, { closeTimeoutMillis: 1000, captureStacks: 'always' });
      const lease = await p.acquire();
      const closing = settle(p.close());
      await env.clock.tickAsync(999);
      assert.equal(closing.done, false);
      await env.clock.tickAsync(1);
      assert.equal(closing.value!.forced.length, 1);
      assert.match(closing.value!.forced[0]!.stack!, /pool\.test\.ts/);
      assert.equal(factory.live.length, 0);
      assert.throws(
        () => lease.release(),
        (e: Error) =>
          (e as LeaseError).code === 'POOL_LEASE_RECLAIMED' &&
          /when the pool closed/.test(e.message),
      );
    });

    it('destroys resources whose create finishes after close', async () => {
      const factory = plainFactory();
      factory.createDelayMillis = 100;
      const p = pool(factory, { min: 2 });
      const closing = p.close();
      await env.clock.tickAsync(100);
      await closing;
      assert.equal(factory.made.length, 2);
      assert.equal(factory.live.length, 0);
    });

    it('keeps no timer that holds the process open', () => {
      // A real process: a pool with a held lease, a waiter with a long timeout, a refill backoff
      // and the housekeeping tick must still let Node exit once the script's work is done.
      const script = `
        const { Pool } = require('./dist/cjs');
        const pool = new Pool({ factory: { create: async () => ({}), destroy() {} }, max: 1, min: 1,
          detectSelfDeadlock: false, acquireTimeoutMillis: 600000 });
        pool.acquire().then(() => { pool.acquire(); console.log('waiting'); });`;
      const started = Date.now();
      const result = spawnSync(process.execPath, ['-e', script], {
        encoding: 'utf8',
        timeout: 20_000,
      });
      assert.equal(result.signal, null, 'the process was not killed by the timeout');
      assert.equal(result.stdout.trim(), 'waiting');
      assert.ok(Date.now() - started < 10_000);
    });
  });

  describe('stats', () => {
    it('counts created, destroyed, timeouts and the current state', async () => {
      const p = pool(plainFactory(), {
        max: 2,
        acquireTimeoutMillis: 10,
        detectSelfDeadlock: false,
      });
      const a = await p.acquire();
      const b = await p.acquire();
      const late = settle(p.acquire());
      assert.equal(p.stats().pending, 1);
      await env.clock.tickAsync(10);
      assert.ok(late.error);
      b.destroy();
      await env.clock.tickAsync(0);
      assert.deepEqual(
        { ...p.stats() },
        {
          name: p.name,
          size: 1,
          idle: 0,
          used: 1,
          pending: 0,
          creating: 0,
          min: 0,
          max: 2,
          suspectedLeaks: 0,
          collectedLeaks: 0,
          reclaimedLeaks: 0,
          created: 2,
          destroyed: 1,
          timeouts: 1,
          closed: false,
        },
      );
      a.release();
    });
  });

  it('names the pool after its server when the factory knows it', () => {
    const factory = plainFactory() as FakeFactory & { server: object };
    factory.server = { system: 'postgresql', address: 'db.internal', port: 5432, namespace: 'app' };
    assert.equal(pool(factory).name, 'db.internal:5432/app');
  });
});
