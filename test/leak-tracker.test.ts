import assert from 'node:assert/strict';
import sinon from 'sinon';
import { LeakTracker, type TrackedInfo } from '../src';

describe('LeakTracker', () => {
  it('tracks objects by name and kind, with age and the stack that tracked them', () => {
    const clock = sinon.useFakeTimers({ now: 1_000_000 });
    try {
      const tracker = new LeakTracker();
      const a = {};
      const b = {};
      (function openConnection() {
        tracker.track(a, { name: 'conn-1', kind: 'database_connection' });
      })();
      clock.tick(500);
      tracker.track(b, { name: 'conn-2' });
      clock.tick(250);
      const live = tracker.live();
      assert.deepEqual(
        live.map((i) => [i.name, i.kind, i.createdAt, i.ageMillis]),
        [
          ['conn-1', 'database_connection', 1_000_000, 750],
          ['conn-2', 'resource', 1_000_500, 250],
        ],
      );
      assert.match(live[0]!.stack!, /^at openConnection .*leak-tracker\.test\.ts/);
      assert.equal(tracker.untrack(a), true);
      assert.equal(tracker.untrack(a), false);
      assert.deepEqual(
        tracker.live().map((i) => i.name),
        ['conn-2'],
      );
      tracker.clear();
      assert.equal(tracker.size, 0);
    } finally {
      clock.restore();
    }
  });

  it('skips stacks when asked', () => {
    const tracker = new LeakTracker({ captureStacks: false });
    tracker.track({}, { name: 'x' });
    assert.equal(tracker.live()[0]!.stack, undefined);
  });

  it('reports an object collected while still tracked', async function () {
    const gc = (globalThis as { gc?: () => void }).gc;
    if (gc === undefined) this.skip();
    const collected: TrackedInfo[] = [];
    const tracker = new LeakTracker({ onCollected: (info) => collected.push(info) });
    (function leak() {
      tracker.track({ socket: 'open' }, { name: 'leaked', kind: 'socket' });
    })();
    const kept = {};
    tracker.track(kept, { name: 'kept' });
    for (let i = 0; i < 50 && collected.length === 0; i++) {
      gc!();
      await new Promise((resolve) => setImmediate(resolve));
    }
    assert.deepEqual(
      collected.map((i) => [i.name, i.kind]),
      [['leaked', 'socket']],
    );
    assert.match(collected[0]!.stack!, /^at leak /);
    assert.deepEqual(
      tracker.live().map((i) => i.name),
      ['kept'],
    );
    tracker.untrack(kept);
  });
});
