import assert from 'node:assert/strict';
import sinon from 'sinon';
import { AcquireTimeoutError, Pool, subscribe, type ChannelMessages } from '../src';
import { plainFactory } from './support/fake-factory';

describe('lifecycle events', () => {
  let clock: sinon.SinonFakeTimers;
  let unsubscribe: (() => void)[];
  beforeEach(() => {
    clock = sinon.useFakeTimers();
    unsubscribe = [];
  });
  afterEach(() => {
    for (const u of unsubscribe) u();
    clock.restore();
  });

  function record<K extends keyof ChannelMessages>(name: K, into: [K, ChannelMessages[K]][]): void {
    unsubscribe.push(subscribe(name, (m) => into.push([name, m])));
  }

  it('follows one acquire from start to hold end, with wait and hold times', async () => {
    const seen: [keyof ChannelMessages, unknown][] = [];
    for (const name of ['acquireStart', 'acquireEnd', 'holdEnd', 'create', 'destroy'] as const) {
      record(name, seen as never);
    }
    const factory = plainFactory();
    factory.createDelayMillis = 20;
    const p = new Pool({ factory, name: 'events' });
    const acquiring = p.acquire();
    await clock.tickAsync(20);
    const lease = await acquiring;
    await clock.tickAsync(5);
    lease.destroy();
    await clock.tickAsync(0);
    assert.deepEqual(
      seen.map(([name]) => name),
      ['acquireStart', 'create', 'acquireEnd', 'holdEnd', 'destroy'],
    );
    const hold = seen[0]![1] as ChannelMessages['acquireStart'];
    assert.equal(seen[2]![1], hold, 'one message object follows the acquire');
    assert.equal(hold.pool, p);
    assert.equal(hold.waitMillis, 20);
    assert.equal(hold.holdMillis, 5);
    assert.equal(hold.outcome, 'destroyed');
    assert.equal(hold.lease!.poolName, 'events');
    const create = seen[1]![1] as ChannelMessages['create'];
    assert.equal(create.durationMillis, 20);
    assert.equal((seen[4]![1] as ChannelMessages['destroy']).reason, 'released-destroy');
    await p.close();
  });

  it('reports a failed acquire and a timeout', async () => {
    const seen: [keyof ChannelMessages, unknown][] = [];
    record('acquireEnd', seen as never);
    record('timeout', seen as never);
    const p = new Pool({ factory: plainFactory(), max: 1, acquireTimeoutMillis: 100 });
    const held = await p.acquire();
    const waiting = p.acquire().catch((e: Error) => e);
    await clock.tickAsync(100);
    assert.ok((await waiting) instanceof AcquireTimeoutError);
    const [, , timeout] = seen.map(([, m]) => m) as [
      unknown,
      ChannelMessages['acquireEnd'],
      ChannelMessages['timeout'],
    ];
    assert.equal(timeout.waitMillis, 100);
    assert.ok((seen[1]![1] as ChannelMessages['acquireEnd']).error instanceof AcquireTimeoutError);
    held.release();
    await p.close();
  });

  it('allocates no message when nobody listens', async () => {
    const p = new Pool({ factory: plainFactory(), max: 1, leakDetectionThresholdMillis: 1000 });
    const lease = await p.acquire();
    // Internals are private; the observable effect is that leak findings carry no hold.
    const leaks: ChannelMessages['leak'][] = [];
    unsubscribe.push(subscribe('leak', (m) => leaks.push(m)));
    await clock.tickAsync(1000);
    assert.equal(leaks.length, 1);
    assert.equal(leaks[0]!.hold, undefined);
    lease.release();
    await p.close();
  });
});

describe('lifecycle events with real timers', () => {
  it('a throwing listener never breaks the pool', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on('warning', onWarning);
    const unsubscribe = subscribe('acquireEnd', () => {
      throw new Error('broken exporter');
    });
    try {
      const p = new Pool({ factory: plainFactory(), max: 1 });
      const lease = await p.acquire();
      lease.release();
      assert.deepEqual([p.stats().used, p.stats().idle], [0, 1]);
      await p.close();
      await new Promise((resolve) => setImmediate(resolve));
      assert.match(warnings.join('\n'), /A poolwatch "acquireEnd" listener threw: broken exporter/);
    } finally {
      process.off('warning', onWarning);
      unsubscribe();
    }
  });
});
