/**
 * Regression (issue 9, item 2): an acquiring stack kept unformatted holds V8's frames, and with
 * them each frame's receiver and closure. When the acquiring code later references the lease from
 * `this`, a closure or an async generator, the lease stayed reachable from the pool's own entry
 * and a dropped one was never collected, so never reported (with `leakDetectionThresholdMillis: 0`
 * never at all). The stack is now formatted when its hold outlives the first tick.
 */
import assert from 'node:assert/strict';
import { LeakTracker, Pool, type Alert, type StackCapture, type TrackedInfo } from '../../src';
import { FakeFactory } from '../support/fake-factory';

const gc = (globalThis as { gc?: () => void }).gc;

async function until(done: () => boolean, millis: number): Promise<void> {
  const deadline = Date.now() + millis;
  while (!done() && Date.now() < deadline) {
    gc!();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Three ways application code keeps a reference to its lease, each then dropped. */
async function dropLeases(pool: Pool<unknown>): Promise<void> {
  class UnitOfWork {
    lease: unknown;
    async begin(): Promise<void> {
      this.lease = await pool.acquire();
    }
  }
  await new UnitOfWork().begin();

  const makeJob = () => {
    let lease: unknown;
    return async () => {
      lease = await pool.acquire();
      return () => lease;
    };
  };
  await makeJob()();

  async function* rows(): AsyncGenerator<number> {
    const lease = await pool.acquire();
    yield 1;
    yield 2;
    lease.release();
  }
  const iterator = rows();
  await iterator.next();
}

describe('regression: an unformatted stack kept a dropped lease alive', function () {
  before(function () {
    if (gc === undefined) this.skip();
  });

  const cases: [StackCapture, number | undefined][] = [
    ['always', 0],
    ['always', undefined],
    ['auto', 0],
    ['auto', undefined],
  ];
  for (const [captureStacks, threshold] of cases) {
    it(`collects and reports leases referenced from this, a closure and a generator (captureStacks: '${String(captureStacks)}', threshold ${threshold ?? 'default'})`, async () => {
      const alerts: Alert[] = [];
      const pool = new Pool({
        factory: new FakeFactory(),
        max: 3,
        housekeepingIntervalMillis: 20,
        captureStacks,
        ...(threshold === undefined ? {} : { leakDetectionThresholdMillis: threshold }),
        onAlert: (alert) => alerts.push(alert),
      });
      try {
        await dropLeases(pool as Pool<unknown>);
        const collected = () => alerts.filter((a) => a.leakKind === 'collected');
        await until(() => collected().length === 3, 5000);
        assert.equal(collected().length, 3, 'every dropped lease is found');
        assert.equal(pool.stats().used, 0);
        for (const alert of collected()) {
          assert.match(alert.stack ?? '', /unformatted-stack-keeps-dropped-lease-alive\.test\.ts/);
          assert.match(alert.location?.filePath ?? '', /unformatted-stack-keeps/);
        }
      } finally {
        await pool.close();
      }
    });
  }

  it('LeakTracker.track(this) in a constructor: the object is still collected and reported', async () => {
    const collected: TrackedInfo[] = [];
    const tracker = new LeakTracker({ onCollected: (info) => collected.push(info) });
    class Connection {
      constructor() {
        tracker.track(this, { name: 'conn' });
      }
    }
    new Connection();
    await until(() => collected.length === 1, 5000);
    assert.equal(collected.length, 1);
    assert.match(collected[0]!.stack!, /^at new Connection/);
  });
});
