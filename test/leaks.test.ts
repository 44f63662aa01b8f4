import assert from 'node:assert/strict';
import {
  channels,
  formatLeakReport,
  LeaseError,
  Pool,
  type Alert,
  type LeakMessage,
  type PoolOptions,
} from '../src';
import { plainFactory, type FakeFactory, type FakeResource } from './support/fake-factory';
import { useFakeClock } from './support/fake-clock';

describe('leak detection', () => {
  const env = useFakeClock<Pool<FakeResource>>();
  const pools = env.open;
  let alerts: Alert[];

  beforeEach(() => {
    alerts = [];
  });

  function pool(factory: FakeFactory, options: Omit<PoolOptions<FakeResource>, 'factory'> = {}) {
    const p = new Pool({ factory, onAlert: (a) => alerts.push(a), ...options });
    pools.push(p);
    return p;
  }

  async function acquireInHandler(p: Pool<FakeResource>) {
    return (async function checkoutHandler() {
      return p.acquire();
    })();
  }

  describe('suspected leaks', () => {
    it('reports a lease held past the threshold once, with stack and age, then its late return', async () => {
      const p = pool(plainFactory(), {
        leakDetectionThresholdMillis: 5000,
        captureStacks: 'always',
        health: false,
      });
      const lease = await acquireInHandler(p);
      await env.clock.tickAsync(4000);
      assert.equal(alerts.length, 0);
      await env.clock.tickAsync(1000);
      assert.equal(alerts.length, 1);
      const [suspected] = alerts;
      assert.equal(suspected!.kind, 'leak');
      assert.equal(suspected!.leakKind, 'suspected');
      assert.equal(suspected!.severity, 'warning');
      assert.equal(suspected!.ageMillis, 5000);
      assert.match(
        suspected!.message,
        /Possible leak: lease #\d+ of pool "poolwatch-\d+" held for 5\.0 s, acquired at:/,
      );
      assert.match(suspected!.stack!, /^at checkoutHandler .*leaks\.test\.ts/);
      assert.equal(p.stats().suspectedLeaks, 1);
      assert.equal(lease.info.suspected, true);
      await env.clock.tickAsync(20_000);
      assert.equal(alerts.length, 1, 'reported once');
      lease.release();
      assert.equal(alerts.length, 2);
      assert.equal(alerts[1]!.leakKind, 'returned');
      assert.equal(alerts[1]!.severity, 'info');
      assert.match(alerts[1]!.message, /was returned after 25\.0 s/);
      assert.equal(p.stats().suspectedLeaks, 0, 'never counted twice');
    });

    it('publishes leak findings on the diagnostics channel', async () => {
      const seen: LeakMessage[] = [];
      const listener = (m: unknown) => seen.push(m as LeakMessage);
      channels.leak.subscribe(listener);
      try {
        const p = pool(plainFactory(), { leakDetectionThresholdMillis: 1000, health: false });
        const lease = await p.acquire();
        await env.clock.tickAsync(1000);
        lease.release();
        assert.deepEqual(
          seen.map((m) => [m.kind, m.pool.name, m.ageMillis]),
          [
            ['suspected', p.name, 1000],
            ['returned', p.name, 1000],
          ],
        );
      } finally {
        channels.leak.unsubscribe(listener);
      }
    });
  });

  describe('reclaim', () => {
    it('takes back a lease held past reclaimAfterMillis; later use fails clearly', async () => {
      const factory = plainFactory();
      const p = pool(factory, {
        max: 1,
        reclaimAfterMillis: 10_000,
        health: false,
        leakDetectionThresholdMillis: 0,
        detectSelfDeadlock: false,
      });
      const lease = await p.acquire();
      const waiting = p.acquire({ timeoutMillis: 60_000 });
      await env.clock.tickAsync(10_000);
      assert.equal(factory.made[0]!.destroyed, true);
      const next = await waiting;
      assert.equal(next.resource.id, 2, 'capacity restored for the waiter');
      assert.equal(p.stats().reclaimedLeaks, 1);
      const reclaimed = alerts.find((a) => a.leakKind === 'reclaimed')!;
      assert.equal(reclaimed.severity, 'error');
      assert.match(reclaimed.message, /was reclaimed after 10\.0 s/);
      for (const action of [() => lease.release(), () => lease.resource]) {
        assert.throws(
          action,
          (e: Error) =>
            e instanceof LeaseError &&
            e.code === 'POOL_LEASE_RECLAIMED' &&
            /raise reclaimAfterMillis/.test(e.message),
        );
      }
      next.release();
    });
  });

  describe('stack capture', () => {
    async function stacksOf(p: Pool<FakeResource>, n: number) {
      const out: (string | undefined)[] = [];
      for (let i = 0; i < n; i++) {
        const lease = await p.acquire();
        out.push(lease.info.stack);
        lease.release();
      }
      return out;
    }

    it("'never' captures nothing and 'always' everything", async () => {
      assert.ok(
        (await stacksOf(pool(plainFactory(), { captureStacks: 'never' }), 5)).every(
          (s) => s === undefined,
        ),
      );
      assert.ok(
        (await stacksOf(pool(plainFactory(), { captureStacks: 'always' }), 5)).every(
          (s) => s !== undefined,
        ),
      );
    });

    it('{ oneIn: N } samples one acquire in N', async () => {
      const stacks = await stacksOf(pool(plainFactory(), { captureStacks: { oneIn: 4 } }), 12);
      assert.equal(stacks.filter(Boolean).length, 3);
    });

    it("'auto' captures every acquire of a pool that is not busy, and every one under pressure", async () => {
      // The time budget itself is tested on StackSampler (test/watch/stack.test.ts): under fake
      // timers a capture takes no time, so the budget never runs out here.
      const p = pool(plainFactory(), { max: 2, leakDetectionThresholdMillis: 4000, health: false });
      assert.ok((await stacksOf(p, 50)).every(Boolean));
      const slow = await p.acquire();
      await env.clock.tickAsync(2000);
      assert.ok((await stacksOf(p, 5)).every(Boolean));
      slow.release();
    });
  });

  describe('health monitor', () => {
    it('alerts on leak count, hold age and exhaustion, each once until it clears', async () => {
      const p = pool(plainFactory(), {
        max: 2,
        leakDetectionThresholdMillis: 1000,
        acquireTimeoutMillis: 60_000,
        detectSelfDeadlock: false,
        health: { intervalMillis: 1000, leakCountThreshold: 2, maxHoldMillis: 3000 },
      });
      const a = await p.acquire();
      const b = await p.acquire();
      const waiting = p.acquire();
      await env.clock.tickAsync(1000);
      const kinds = () => alerts.filter((x) => x.kind !== 'leak').map((x) => x.kind);
      assert.deepEqual(kinds(), ['leak-count', 'exhausted']);
      const leakCount = alerts.find((x) => x.kind === 'leak-count')!;
      assert.equal(leakCount.value, 2);
      assert.equal(leakCount.threshold, 2);
      assert.match(
        alerts.find((x) => x.kind === 'exhausted')!.message,
        /exhausted: 2\/2 in use and 1 caller\(s\) waiting/,
      );
      await env.clock.tickAsync(2000);
      assert.deepEqual(kinds(), ['leak-count', 'exhausted', 'hold-age', 'hold-age']);
      await env.clock.tickAsync(5000);
      assert.equal(kinds().length, 4, 'no repeats while the conditions last');
      a.release();
      (await waiting).release();
      b.release();
      await env.clock.tickAsync(1000);
      // Conditions cleared; a new exhaustion alerts again.
      const c = await p.acquire();
      const d = await p.acquire();
      const again = p.acquire();
      await env.clock.tickAsync(1000);
      assert.equal(kinds().filter((k) => k === 'exhausted').length, 2);
      c.release();
      (await again).release();
      d.release();
    });

    it('checkHealth() runs on demand and a throwing callback never breaks the pool', async () => {
      const p = new Pool({
        factory: plainFactory(),
        max: 1,
        health: { maxHoldMillis: 10 },
        onAlert: () => {
          throw new Error('pager down');
        },
      });
      pools.push(p);
      const lease = await p.acquire();
      await env.clock.tickAsync(10);
      const raised = p.checkHealth();
      assert.deepEqual(
        raised.map((a) => a.kind),
        ['hold-age'],
      );
      lease.release();
      assert.equal(p.stats().idle, 1);
    });
  });

  describe('reports', () => {
    it('lists held leases oldest first, in structure and in words', async () => {
      const p = pool(plainFactory(), {
        name: 'orders',
        captureStacks: 'always',
        leakDetectionThresholdMillis: 2000,
      });
      assert.match(formatLeakReport(p.leakReport()), /No leases held: no leaks\./);
      const old = await acquireInHandler(p);
      await env.clock.tickAsync(2500);
      const young = await p.acquire();
      const report = p.leakReport();
      assert.deepEqual(
        report.held.map((l) => [l.id, l.ageMillis, l.suspected]),
        [
          [old.info.id, 2500, true],
          [young.info.id, 0, false],
        ],
      );
      const text = formatLeakReport(report);
      assert.match(
        text,
        /^Pool "orders": 2\/10 in use, 0 idle, 0 waiting; 1 suspected, 0 collected, 0 reclaimed leak\(s\)\./,
      );
      assert.match(
        text,
        /• lease #\d+ \(resource #\d+\) held 2\.50 s \[SUSPECTED LEAK\]\n\s+at checkoutHandler/,
      );
      old.release();
      young.release();
    });
  });
});

describe('collected leaks (garbage collection)', function () {
  // Real timers: finalizers run as V8 tasks after a real collection.
  const gc = (globalThis as { gc?: () => void }).gc;
  before(function () {
    if (gc === undefined) this.skip();
  });

  /** Lets a housekeeping tick register held leases, then collects until `until()` holds. */
  async function collect(until: () => boolean): Promise<void> {
    for (let i = 0; i < 100 && !until(); i++) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      gc!();
    }
  }

  it('detects a dropped lease, reports its stack, destroys the resource and serves a waiter', async () => {
    const factory = plainFactory();
    const alerts: Alert[] = [];
    const p = new Pool({
      factory,
      max: 1,
      housekeepingIntervalMillis: 10,
      captureStacks: 'always',
      detectSelfDeadlock: false,
      onAlert: (a) => alerts.push(a),
    });
    try {
      await (async function forgetfulHandler() {
        const lease = await p.acquire();
        void lease.resource; // used, then dropped without release
      })();
      const waiter = p.acquire({ timeoutMillis: 10_000 });
      await collect(() => p.stats().collectedLeaks > 0);
      const lease = await waiter;
      assert.equal(p.stats().collectedLeaks, 1);
      assert.equal(factory.made[0]!.destroyed, true, 'the leaked resource is never reused');
      assert.equal(lease.resource.id, 2);
      const alert = alerts.find((a) => a.leakKind === 'collected')!;
      assert.equal(alert.severity, 'error');
      assert.match(alert.message, /was garbage-collected without release/);
      assert.match(alert.stack!, /^at forgetfulHandler .*leaks\.test\.ts/);
      lease.release();
    } finally {
      await p.close();
    }
  });

  it('does not report released leases', async () => {
    const p = new Pool({ factory: plainFactory(), max: 2, housekeepingIntervalMillis: 10 });
    try {
      for (let i = 0; i < 100; i++) (await p.acquire()).release();
      let rounds = 0;
      await collect(() => ++rounds > 5);
      assert.equal(p.stats().collectedLeaks, 0);
    } finally {
      await p.close();
    }
  });
});
