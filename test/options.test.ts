import assert from 'node:assert/strict';
import { InvalidOptionError, Pool, type PoolOptions } from '../src';
import { plainFactory, type FakeResource } from './support/fake-factory';

describe('options', () => {
  const bad: [string, Record<string, unknown>, RegExp][] = [
    ['max: 0', { max: 0 }, /Option "max" must be a whole number >= 1, got 0\./],
    ['fractional max', { max: 2.5 }, /Option "max" must be a whole number >= 1, got 2\.5\./],
    ['min over max', { min: 5, max: 2 }, /Option "min" \(5\) must not exceed "max" \(2\)\./],
    [
      'negative timeout',
      { acquireTimeoutMillis: -1 },
      /"acquireTimeoutMillis" must be a duration in milliseconds >= 0 \(or Infinity\), got -1\./,
    ],
    [
      'zero acquire timeout',
      { acquireTimeoutMillis: 0 },
      /"acquireTimeoutMillis" must be > 0 \(use Infinity/,
    ],
    ['NaN idle timeout', { idleTimeoutMillis: NaN }, /"idleTimeoutMillis" must be a duration/],
    ['string timeout', { idleTimeoutMillis: '10' }, /got "10"/],
    ['misspelt key', { maxx: 3 }, /Unknown pool option "maxx"\. Did you mean "max"\?/],
    ['case slip', { acquireTimeoutMs: 3 }, /Unknown pool option "acquireTimeoutMs"/],
    [
      'bad stacks',
      { captureStacks: 'sometimes' },
      /"captureStacks" must be 'auto', 'always', 'never' or \{ oneIn: N \}/,
    ],
    ['bad health key', { health: { interval: 5 } }, /Unknown health option "interval"/],
    [
      'zero health interval',
      { health: { intervalMillis: 0 } },
      /use health: false to turn checks off/,
    ],
    [
      'boolean as number',
      { detectCollectedLeaks: 1 },
      /"detectCollectedLeaks" must be true or false, got 1\./,
    ],
    ['empty name', { name: '' }, /"name" must be a non-empty string/],
  ];
  for (const [label, options, message] of bad) {
    it(`rejects ${label}`, () => {
      assert.throws(
        () => new Pool({ factory: plainFactory(), ...options } as PoolOptions<FakeResource>),
        (e: Error) =>
          e instanceof InvalidOptionError &&
          e.code === 'POOL_INVALID_OPTION' &&
          message.test(e.message),
      );
    });
  }

  it('rejects a missing or incomplete factory', () => {
    assert.throws(
      () => new Pool(undefined as never),
      /needs an options object with at least a factory/,
    );
    assert.throws(
      () => new Pool({ factory: { create: async () => 1 } } as never),
      /"factory" must be an object with create\(\) and destroy\(\) functions/,
    );
  });

  it('takes 0 as a value, not as "use the default"', async () => {
    const p = new Pool({
      factory: plainFactory(),
      min: 0,
      idleTimeoutMillis: 0,
      maxLifetimeMillis: 0,
    });
    assert.equal(p.stats().min, 0);
    await p.close();
  });

  it('accepts Infinity as an explicit wait-forever timeout', async () => {
    const p = new Pool({ factory: plainFactory(), acquireTimeoutMillis: Infinity });
    await p.close();
  });
});
