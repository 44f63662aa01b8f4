import assert from 'node:assert/strict';
import fc from 'fast-check';
import sinon from 'sinon';
import { Pool, type Lease } from '../src';
import { FakeFactory, type FakeResource } from './support/fake-factory';

/**
 * Random operation sequences against the pool, with random failures of create, validate and
 * destroy, checking the invariants after every step and after close.
 */
type Op =
  | { type: 'acquire'; timeoutMillis: number }
  | { type: 'release'; pick: number }
  | { type: 'destroy'; pick: number }
  | { type: 'tick'; millis: number }
  | { type: 'failCreates'; count: number }
  | { type: 'invalidate'; pick: number }
  | { type: 'markBroken'; pick: number }
  | { type: 'destroyThrows'; on: boolean };

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      type: fc.constant('acquire' as const),
      timeoutMillis: fc.integer({ min: 1, max: 200 }),
    }),
  },
  { weight: 4, arbitrary: fc.record({ type: fc.constant('release' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('destroy' as const), pick: fc.nat() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      type: fc.constant('tick' as const),
      millis: fc.integer({ min: 0, max: 150 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      type: fc.constant('failCreates' as const),
      count: fc.integer({ min: 1, max: 3 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('invalidate' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('markBroken' as const), pick: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({ type: fc.constant('destroyThrows' as const), on: fc.boolean() }),
  },
);

interface Pending {
  seq: number;
  state: 'waiting' | 'served' | 'failed';
  lease?: Lease<FakeResource>;
}

describe('pool invariants under random operations', function () {
  this.timeout(120_000);

  it('hold for 1,000 random sequences', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 0, max: 2 }),
        fc.boolean(),
        fc.boolean(),
        fc.array(op, { minLength: 1, maxLength: 30 }),
        async (max, minRaw, validate, withReset, ops) => {
          const clock = sinon.useFakeTimers();
          const factory = new FakeFactory();
          if (!validate) factory.validate = undefined;
          if (withReset) factory.reset = (r) => void r.resets++;
          const pool = new Pool({
            factory,
            max,
            min: Math.min(minRaw, max),
            validateAfterIdleMillis: 0,
            idleTimeoutMillis: 100,
            maxLifetimeMillis: 400,
            housekeepingIntervalMillis: 50,
            detectSelfDeadlock: false,
            detectCollectedLeaks: false,
            health: false,
          });
          const requests: Pending[] = [];
          const servedOrder: number[] = [];
          try {
            for (const step of ops) {
              const held = requests.filter((r) => r.lease?.active);
              const pick = (n: number) => held[n % held.length];
              switch (step.type) {
                case 'acquire': {
                  const request: Pending = { seq: requests.length, state: 'waiting' };
                  requests.push(request);
                  pool.acquire({ timeoutMillis: step.timeoutMillis }).then(
                    (lease) => {
                      request.state = 'served';
                      request.lease = lease;
                      servedOrder.push(request.seq);
                    },
                    () => (request.state = 'failed'),
                  );
                  break;
                }
                case 'release':
                  if (held.length > 0) pick(step.pick)!.lease!.release();
                  break;
                case 'destroy':
                  if (held.length > 0) pick(step.pick)!.lease!.destroy();
                  break;
                case 'tick':
                  await clock.tickAsync(step.millis);
                  break;
                case 'failCreates':
                  factory.failCreates += step.count;
                  break;
                case 'invalidate': {
                  const live = factory.live;
                  if (live.length > 0) factory.invalid.add(live[step.pick % live.length]!.id);
                  break;
                }
                case 'markBroken': {
                  const live = factory.live;
                  if (live.length > 0) live[step.pick % live.length]!.context.markBroken();
                  break;
                }
                case 'destroyThrows':
                  factory.throwOnDestroy = step.on;
                  break;
              }
              await clock.tickAsync(0);
              checkInvariants(pool, factory, requests, max);
            }
            // Served in the order asked: FIFO.
            assert.deepEqual(
              servedOrder,
              [...servedOrder].sort((a, b) => a - b),
            );
          } finally {
            const closing = pool.close();
            await clock.runAllAsync();
            await closing;
            clock.restore();
          }
          // Every resource ever created is destroyed exactly once after close.
          assert.equal(factory.live.length, 0);
          assert.equal(factory.destroyCalls, factory.made.length);
          assert.ok(
            requests.every((r) => r.state !== 'waiting'),
            'no acquire left hanging',
          );
        },
      ),
      { numRuns: 1000 },
    );
  });
});

function checkInvariants(
  pool: Pool<FakeResource>,
  factory: FakeFactory,
  requests: Pending[],
  max: number,
): void {
  const s = pool.stats();
  const active = requests.filter((r) => r.lease?.active);
  assert.ok(s.used + s.idle <= max, 'used + idle never exceeds max');
  assert.ok(s.size + s.creating <= max, 'size + creating never exceeds max');
  assert.equal(s.used, active.length, 'used = live leases');
  const heldIds = active.map((r) => r.lease!.resource.id);
  assert.equal(new Set(heldIds).size, heldIds.length, 'no resource handed out twice');
  assert.ok(
    active.every((r) => !r.lease!.resource.destroyed),
    'no destroyed resource in use',
  );
  // Nothing lost: every live resource is held or idle (no validation or reset is pending here).
  assert.equal(factory.live.length, s.size, 'live resources = pool size');
  assert.equal(s.size, s.used + s.idle, 'size = used + idle');
  assert.equal(
    s.pending,
    requests.filter((r) => r.state === 'waiting').length,
    'pending = waiting callers',
  );
  assert.equal(s.created, factory.made.length);
}
