import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Deadlines, type Waiter } from '../src/waiters';

function waiter(deadline: number): Waiter<unknown> {
  return {
    resolve: () => undefined,
    reject: () => undefined,
    startTime: 0,
    deadline,
    timeoutMillis: deadline,
    state: 'queued',
    captured: undefined,
    message: undefined,
    abortGroup: undefined,
    prev: undefined,
    next: undefined,
    heapIndex: -1,
    dprev: undefined,
    dnext: undefined,
  };
}

describe('Deadlines (the waiters that can time out, earliest first)', () => {
  it('serves in-order deadlines from the lane and shorter ones from the heap', () => {
    const d = new Deadlines<unknown>();
    const [a, b, c, e] = [waiter(1000), waiter(1500), waiter(600), waiter(2000)];
    for (const w of [a, b, c, e]) d.push(w);
    assert.equal(d.peek(), c, 'a shorter timeout that came later is first');
    d.remove(c);
    assert.equal(d.peek(), a);
    d.remove(b); // served from the middle of the lane
    d.remove(a);
    assert.equal(d.peek(), e);
    d.remove(e);
    assert.equal(d.peek(), undefined);
  });

  it('always peeks the earliest deadline, whatever is pushed and removed (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 50 }), fc.nat()), {
          maxLength: 200,
        }),
        (ops) => {
          const d = new Deadlines<unknown>();
          const live: Waiter<unknown>[] = [];
          for (const [push, deadline, pick] of ops) {
            if (push || live.length === 0) {
              const w = waiter(deadline);
              d.push(w);
              live.push(w);
            } else {
              const [w] = live.splice(pick % live.length, 1);
              d.remove(w!);
              assert.equal(w!.heapIndex, -1);
            }
            const earliest = Math.min(...live.map((w) => w.deadline));
            assert.equal(d.peek()?.deadline ?? Infinity, earliest);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
