/**
 * Regression (issue 9, item 5): code that holds a lease from a bare `acquire()` and awaits a
 * second one from the exhausted pool learned it at the acquire timeout, from an error that only
 * said "look for a missing release(), or raise max". It cannot fail fast soundly (a sibling in
 * `Promise.all` looks the same from inside the pool), so the timeout now says when a holder was
 * acquired by a function on the waiting caller's own stack.
 */
import assert from 'node:assert/strict';
import { AcquireTimeoutError, Pool } from '../../src';
import { FakeFactory } from '../support/fake-factory';

describe('regression: a self-deadlock through bare acquire() was explained as a missing release', () => {
  const pools: Pool<unknown>[] = [];
  afterEach(async () => {
    await Promise.all(pools.splice(0).map((p) => p.close()));
  });
  function pool(): Pool<unknown> {
    const p = new Pool<unknown>({ factory: new FakeFactory(), max: 1, closeTimeoutMillis: 10 });
    pools.push(p);
    return p;
  }

  it('names the holder acquired by a function on the waiting stack', async () => {
    const p = pool();
    async function transferFunds(): Promise<void> {
      const debit = await p.acquire();
      const credit = await p.acquire({ timeoutMillis: 100 });
      credit.release();
      debit.release();
    }
    async function handleRequest(): Promise<void> {
      await transferFunds();
    }
    const error = await handleRequest().then(
      () => assert.fail('the second acquire cannot succeed'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof AcquireTimeoutError);
    assert.match(
      error.message,
      /Lease #\d+ was acquired in transferFunds \(test[\\/]regression[\\/]bare-acquire-self-deadlock-explained-wrongly\.test\.ts\), which is on this caller's stack: .* waits on itself/,
    );
  });

  it('gives no such hint for independent callers waiting at the same line', async () => {
    const p = pool();
    const task = () => p.acquire({ timeoutMillis: 100 });
    const held = await task();
    const error = await task().then(
      () => assert.fail('exhausted'),
      (e: unknown) => e as Error,
    );
    assert.doesNotMatch(error.message, /waits on itself/);
    assert.match(error.message, /look for a missing release\(\)/);
    held.release();
  });
});
