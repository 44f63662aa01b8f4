/**
 * Issue 10, pool mechanics (items 5, 6, 7, 8, 11, 12 and the pool side of 4): each `describe`
 * is named after the bug it pins down, and fails on the pool before the fix.
 */
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import {
  AcquireAbortedError,
  AcquireTimeoutError,
  Pool,
  type PoolOptions,
  type ResourceFactory,
} from '../../src';
import { useFakeClock } from '../support/fake-clock';
import { FakeFactory, plainFactory, type FakeResource } from '../support/fake-factory';
import { settle } from '../support/settle';

const never = <T>() => new Promise<T>(() => undefined);

describe('regression (issue 10): pool faults', () => {
  const env = useFakeClock<Pool<FakeResource>>();

  function pool(
    factory: ResourceFactory<FakeResource>,
    options: Omit<PoolOptions<FakeResource>, 'factory'> = {},
  ): Pool<FakeResource> {
    const p = new Pool({ factory, detectSelfDeadlock: false, health: false, ...options });
    env.open.push(p);
    return p;
  }

  describe('item 4: the timeout blamed a missing release() for holders stuck in a query', () => {
    it('tells holders in a query on the server apart from holders that just hold', async () => {
      const factory = plainFactory();
      const busy = new Set<number>();
      const busyFactory: ResourceFactory<FakeResource> = Object.assign(factory, {
        isBusy: (r: FakeResource) => busy.has(r.id),
      });
      const p = pool(busyFactory, { max: 3 });
      const leases = await Promise.all([p.acquire(), p.acquire(), p.acquire()]);
      busy.add(leases[0]!.resource.id);
      busy.add(leases[1]!.resource.id);
      await env.clock.tickAsync(12_000);
      const waiting = settle(p.acquire({ timeoutMillis: 1000 }));
      await env.clock.tickAsync(1000);
      const error = waiting.error!;
      assert.ok(error instanceof AcquireTimeoutError);
      assert.match(
        error.message,
        new RegExp(
          `2 of 3 holder\\(s\\) are stuck in a query on the server \\(lease #${leases[0]!.info.id}, #${leases[1]!.info.id}\\), held up to 13\\.0 s`,
        ),
      );
      assert.match(
        error.message,
        new RegExp(
          `1 of 3 holder\\(s\\) hold a resource without using it \\(lease #${leases[2]!.info.id}\\), the longest for 13\\.0 s: look for a missing release\\(\\)`,
        ),
      );
      // A resource released while still busy is destroyed, not handed to the next caller.
      leases[0]!.release();
      leases[2]!.release();
      await env.clock.tickAsync(0);
      assert.equal(p.stats().idle, 1);
      assert.equal(
        factory.made[leases[2]!.info.resourceId - factory.made[0]!.id]?.destroyed ?? false,
        false,
      );
      assert.equal(factory.made.filter((r) => r.destroyed).length, 1);
      leases[1]!.release();
    });
  });

  describe('item 5: a timeout hid resources being created or validated', () => {
    it('counts creating and validating resources and says what they do, for how long', async () => {
      const factory = new FakeFactory();
      factory.createDelayMillis = 60_000;
      const p = pool(factory, { max: 2, acquireTimeoutMillis: 5000 });
      const a = settle(p.acquire());
      const b = settle(p.acquire());
      await env.clock.tickAsync(5000);
      assert.match(
        a.error!.message,
        /pending=2 max=2, creating=2 validating=0 resetting=0\)\.\n2 resource\(s\) being created \(connecting\), the oldest for 5\.0 s/,
      );
      assert.ok(b.error instanceof AcquireTimeoutError);

      const v = new FakeFactory();
      const q = pool(v, { max: 1, validateAfterIdleMillis: 0, validateTimeoutMillis: 60_000 });
      (await q.acquire()).release();
      v.validate = () => never<boolean>() as unknown as boolean;
      const c = settle(q.acquire({ timeoutMillis: 3000 }));
      await env.clock.tickAsync(3000);
      assert.match(
        c.error!.message,
        /validating=1 resetting=0\)\.\n1 resource\(s\) being validated before hand-out, the oldest for 3\.0 s \(bounded by validateTimeoutMillis, 60000 ms\)/,
      );
    });
  });

  describe('item 6: a validate() or reset() that never settles lost its slot forever', () => {
    it('a hung validation is bounded: the resource is destroyed and the waiter served by a new one', async () => {
      const factory = new FakeFactory();
      const p = pool(factory, { max: 1, validateAfterIdleMillis: 0, validateTimeoutMillis: 200 });
      (await p.acquire()).release();
      factory.validate = () => never<boolean>() as unknown as boolean;
      const next = settle(p.acquire({ timeoutMillis: 10_000 }));
      await env.clock.tickAsync(200);
      assert.equal(factory.made[0]!.destroyed, true);
      factory.validate = () => true;
      await env.clock.tickAsync(0);
      assert.equal(next.value?.resource.id, 2);
      next.value!.release();
    });

    it('a hung reset is bounded: the resource is destroyed and its slot freed', async () => {
      const factory = plainFactory();
      factory.reset = () => never<void>();
      const p = pool(factory, { max: 1, resetTimeoutMillis: 300 });
      (await p.acquire()).release();
      const next = settle(p.acquire({ timeoutMillis: 10_000 }));
      await env.clock.tickAsync(299);
      assert.equal(next.done, false);
      factory.reset = undefined;
      await env.clock.tickAsync(1);
      assert.equal(factory.made[0]!.destroyed, true);
      await env.clock.tickAsync(0);
      assert.equal(next.value?.resource.id, 2);
      next.value!.release();
    });

    it('defaults: 5 s for both', async () => {
      const factory = plainFactory();
      factory.reset = () => never<void>();
      const p = pool(factory, { max: 1 });
      (await p.acquire()).release();
      await env.clock.tickAsync(4999);
      assert.equal(factory.made[0]!.destroyed, false);
      await env.clock.tickAsync(1);
      assert.equal(factory.made[0]!.destroyed, true);
      assert.equal(p.stats().size, 0);
    });
  });

  describe('item 7: close() took up to 3 x closeTimeoutMillis', () => {
    it('with a hung create and a held lease it resolves at closeTimeoutMillis', async () => {
      const factory = plainFactory();
      const p = pool(factory, { max: 2, closeTimeoutMillis: 500 });
      await p.acquire(); // held
      factory.createDelayMillis = 1e9; // the next create hangs (for the test's purposes)
      const waiting = settle(p.acquire());
      await env.clock.tickAsync(0);
      const closing = settle(p.close());
      await env.clock.tickAsync(499);
      assert.equal(closing.done, false);
      await env.clock.tickAsync(1);
      assert.equal(closing.done, true, 'close() resolved at its bound');
      assert.equal(closing.value!.forced.length, 1);
      assert.ok(waiting.error);
    });

    it('with a destroy that never settles it resolves at closeTimeoutMillis', async () => {
      const factory = plainFactory();
      factory.destroy = () => never<void>() as unknown as void;
      const p = pool(factory, { max: 1, closeTimeoutMillis: 300 });
      (await p.acquire()).release();
      const closing = settle(p.close());
      await env.clock.tickAsync(300);
      assert.equal(closing.done, true);
    });
  });

  describe('item 8: a waiter waited for a slow reset while a slot was free', () => {
    it('a free slot serves the waiter with a new resource at once', async () => {
      const factory = plainFactory();
      factory.reset = () => new Promise<void>((resolve) => setTimeout(resolve, 2000));
      const p = pool(factory, { max: 2 });
      (await p.acquire()).release();
      const next = settle(p.acquire());
      await env.clock.tickAsync(0);
      assert.equal(next.value?.resource.id, 2, 'served without waiting 2 s for the reset');
      next.value!.release();
    });
  });

  describe('item 11: aborting waiters that share one AbortSignal was quadratic', () => {
    it('one abort listener per pool and signal, however many waiters share it', async () => {
      const p = pool(plainFactory(), { max: 1 });
      const held = await p.acquire();
      const controller = new AbortController();
      const waiting = Array.from({ length: 1000 }, () =>
        settle(p.acquire({ signal: controller.signal })),
      );
      assert.equal(getEventListeners(controller.signal, 'abort').length, 1);
      // A waiter that leaves on its own takes nothing from the others.
      const solo = new AbortController();
      const alone = settle(p.acquire({ signal: solo.signal }));
      solo.abort();
      await env.clock.tickAsync(0);
      assert.ok(alone.error instanceof AcquireAbortedError);
      assert.equal(getEventListeners(solo.signal, 'abort').length, 0);
      controller.abort(new Error('client went away'));
      await env.clock.tickAsync(0);
      assert.ok(waiting.every((w) => w.error instanceof AcquireAbortedError));
      assert.equal(getEventListeners(controller.signal, 'abort').length, 0);
      assert.equal(p.stats().pending, 0);
      held.release();
    });
  });
});

describe('regression (issue 10 items 11, 12): many waiters, real timers', function () {
  this.timeout(20_000);

  it('item 11: aborting waiters on one signal is linear (16,000 take < 64x 1,000)', async () => {
    const time = async (n: number) => {
      const p = new Pool({ factory: plainFactory(), max: 1, leakDetection: false, health: false });
      const held = await p.acquire();
      const controller = new AbortController();
      const waiting = Array.from({ length: n }, () =>
        p.acquire({ signal: controller.signal }).catch(() => undefined),
      );
      const started = performance.now();
      controller.abort();
      await Promise.all(waiting);
      const millis = performance.now() - started;
      held.release();
      await p.close();
      return millis;
    };
    await time(1000); // warm-up
    const small = Math.min(await time(1000), await time(1000), await time(1000));
    const large = await time(16_000);
    // Linear: ~16x. Quadratic (before): ~256x (2,500 -> 43 ms, 20,000 -> 1,116 ms in the issue).
    assert.ok(
      large < small * 64 + 50,
      `1,000: ${small.toFixed(1)} ms, 16,000: ${large.toFixed(0)} ms`,
    );
  });

  it('item 12: waiters that timed out behind a long waiter are not kept', async () => {
    const gc = (globalThis as { gc?: () => void }).gc!;
    const p = new Pool({ factory: plainFactory(), max: 1, leakDetection: false, health: false });
    const keepAlive = setInterval(() => undefined, 1000);
    try {
      const held = await p.acquire();
      const head = p.acquire({ timeoutMillis: 60_000 });
      gc();
      const before = process.memoryUsage().heapUsed;
      for (let round = 0; round < 2; round++) {
        await Promise.all(
          Array.from({ length: 3000 }, () =>
            p.acquire({ timeoutMillis: 1 }).catch(() => undefined),
          ),
        );
      }
      gc();
      gc();
      const grown = process.memoryUsage().heapUsed - before;
      // Before the fix each settled waiter stayed queued (~1.5 kB each: ~9 MB here).
      assert.ok(
        grown < 3e6,
        `heap grew ${(grown / 1e6).toFixed(1)} MB for 6,000 timed-out waiters`,
      );
      assert.equal(p.stats().pending, 1);
      held.release();
      (await head).release();
    } finally {
      clearInterval(keepAlive);
      await p.close();
    }
  });
});
