/**
 * Issue 10 items 9, 10, 13: bad input. One table of cases (input, expected class, code and a
 * message fragment), and a fast-check property over whole option objects: every invalid set is
 * rejected with InvalidOptionError, every valid set builds a pool that acquires, releases and
 * closes.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { PoolError } from '../../src';
import {
  AcquireAbortedError,
  CreateFailedError,
  InvalidOptionError,
  Pool,
  type PoolOptions,
} from '../../src';
import { createMysqlPool, createPgPool, mysqlFactory, pgFactory } from '../../src/drivers';
import { plainFactory, type FakeResource } from '../support/fake-factory';

const MAX_TIMER = 2 ** 31 - 1;
const nullProto = (): object => Object.create(null) as object;

function make(options: Record<string, unknown>): Pool<FakeResource> {
  return new Pool({ factory: plainFactory(), ...options } as PoolOptions<FakeResource>);
}

/** A pool with one idle resource (the fast path) or none free (the waiting path). */
async function poolWith(
  idle: boolean,
): Promise<{ pool: Pool<FakeResource>; done: () => Promise<void> }> {
  const pool = make({ max: 1, detectSelfDeadlock: false, health: false });
  const lease = await pool.acquire();
  if (idle) lease.release();
  return {
    pool,
    done: async () => {
      if (lease.active) lease.release();
      await pool.close();
    },
  };
}

type Case = readonly [
  label: string,
  run: () => unknown,
  errorClass: new (...args: never[]) => Error,
  code: string | undefined,
  fragment: RegExp,
];

const constructorCases: Case[] = [
  // item 9: durations that overflow Node's timers
  [
    'acquireTimeoutMillis 3e9',
    () => make({ acquireTimeoutMillis: 3e9 }),
    InvalidOptionError,
    'POOL_INVALID_OPTION',
    /"acquireTimeoutMillis" must be at most 2147483647 ms .*Use Infinity to wait forever/,
  ],
  [
    'closeTimeoutMillis 2^31',
    () => make({ closeTimeoutMillis: 2 ** 31 }),
    InvalidOptionError,
    'POOL_INVALID_OPTION',
    /"closeTimeoutMillis" must be at most 2147483647/,
  ],
  [
    'housekeepingIntervalMillis 2^31',
    () => make({ housekeepingIntervalMillis: 2 ** 31 }),
    InvalidOptionError,
    'POOL_INVALID_OPTION',
    /"housekeepingIntervalMillis" must be at most/,
  ],
  [
    'validateTimeoutMillis 2^31',
    () => make({ validateTimeoutMillis: 2 ** 31 }),
    InvalidOptionError,
    'POOL_INVALID_OPTION',
    /"validateTimeoutMillis" must be at most/,
  ],
  [
    'resetTimeoutMillis 0',
    () => make({ resetTimeoutMillis: 0 }),
    InvalidOptionError,
    'POOL_INVALID_OPTION',
    /"resetTimeoutMillis" must be > 0, got 0/,
  ],
  [
    'closeTimeoutMillis Infinity',
    () => make({ closeTimeoutMillis: Infinity }),
    InvalidOptionError,
    'POOL_INVALID_OPTION',
    /"closeTimeoutMillis" must be a duration in milliseconds >= 0, got Infinity/,
  ],
  // item 13: null-prototype values
  [
    'max: null-prototype object',
    () => make({ max: nullProto() }),
    InvalidOptionError,
    'POOL_INVALID_OPTION',
    /"max" must be a whole number >= 1, got an object with a null prototype/,
  ],
  [
    'acquireTimeoutMillis: null-prototype object',
    () => make({ acquireTimeoutMillis: nullProto() }),
    InvalidOptionError,
    'POOL_INVALID_OPTION',
    /got an object with a null prototype/,
  ],
  [
    'captureStacks: null-prototype object',
    () => make({ captureStacks: nullProto() }),
    InvalidOptionError,
    'POOL_INVALID_OPTION',
    /"captureStacks" must be .* got an object with a null prototype/,
  ],
  [
    'health: null-prototype with a bad key',
    () => make({ health: Object.assign(nullProto(), { interval: 1 }) }),
    InvalidOptionError,
    'POOL_INVALID_OPTION',
    /Unknown health option "interval"/,
  ],
  [
    'name: a symbol',
    () => make({ name: Symbol('x') }),
    InvalidOptionError,
    'POOL_INVALID_OPTION',
    /"name" must be a non-empty string, got a symbol/,
  ],
  [
    'max: an array',
    () => make({ max: [3] }),
    InvalidOptionError,
    'POOL_INVALID_OPTION',
    /got an array/,
  ],
  [
    'min: a class instance',
    () => make({ min: new Date(0) }),
    InvalidOptionError,
    'POOL_INVALID_OPTION',
    /got an object of class Date/,
  ],
  // drivers (item 13)
  [
    'createPgPool connectionTimeoutMillis -5',
    () => createPgPool({ host: 'h', connectionTimeoutMillis: -5 }),
    InvalidOptionError,
    'POOL_INVALID_OPTION',
    /"connectionTimeoutMillis" must be a duration in milliseconds from 0 to 2147483647 \(0 waits forever/,
  ],
  [
    'pgFactory connectionTimeoutMillis "5000"',
    () => pgFactory({ host: 'h', connectionTimeoutMillis: '5000' as unknown as number }),
    InvalidOptionError,
    'POOL_INVALID_OPTION',
    /got "5000"/,
  ],
  [
    'pgFactory connectionTimeoutMillis 2^31',
    () => pgFactory({ host: 'h', connectionTimeoutMillis: 2 ** 31 }),
    InvalidOptionError,
    'POOL_INVALID_OPTION',
    /at most|to 2147483647/,
  ],
  [
    'pgFactory validateTimeoutMillis NaN',
    () => pgFactory({ host: 'h' }, { validateTimeoutMillis: NaN }),
    InvalidOptionError,
    'POOL_INVALID_OPTION',
    /"validateTimeoutMillis" must be a duration/,
  ],
  [
    'mysqlFactory endTimeoutMillis 2^31',
    () => mysqlFactory({ host: 'h' }, { endTimeoutMillis: 2 ** 31 }),
    InvalidOptionError,
    'POOL_INVALID_OPTION',
    /"endTimeoutMillis" must be .*at most 2147483647/,
  ],
  [
    'mysqlFactory options null-prototype key',
    () => mysqlFactory({ host: 'h' }, Object.assign(nullProto(), { rest: 1 }) as never),
    InvalidOptionError,
    'POOL_INVALID_OPTION',
    /Unknown mysqlFactory option "rest"/,
  ],
  [
    'createMysqlPool pool option 3e9',
    () => createMysqlPool({ host: 'h' }, { acquireTimeoutMillis: 3e9 }),
    InvalidOptionError,
    'POOL_INVALID_OPTION',
    /at most 2147483647/,
  ],
];

/** acquire() and use() input: a rejected promise on BOTH paths (idle resource or not). */
const callCases: readonly [
  label: string,
  call: (pool: Pool<FakeResource>) => Promise<unknown>,
  errorClass: new (...args: never[]) => Error,
  code: string,
  fragment: RegExp,
][] = [
  [
    'timeoutMillis NaN',
    (p) => p.acquire({ timeoutMillis: NaN }),
    InvalidOptionError,
    'POOL_INVALID_OPTION',
    /acquire\(\{ timeoutMillis \}\)" must be a duration in milliseconds >= 0 \(or Infinity\), got NaN/,
  ],
  [
    'timeoutMillis 0',
    (p) => p.acquire({ timeoutMillis: 0 }),
    InvalidOptionError,
    'POOL_INVALID_OPTION',
    /must be > 0/,
  ],
  [
    'timeoutMillis -5',
    (p) => p.acquire({ timeoutMillis: -5 }),
    InvalidOptionError,
    'POOL_INVALID_OPTION',
    /got -5/,
  ],
  [
    "timeoutMillis '5000'",
    (p) => p.acquire({ timeoutMillis: '5000' as unknown as number }),
    InvalidOptionError,
    'POOL_INVALID_OPTION',
    /got "5000"/,
  ],
  [
    'timeoutMillis 3e9',
    (p) => p.acquire({ timeoutMillis: 3e9 }),
    InvalidOptionError,
    'POOL_INVALID_OPTION',
    /at most 2147483647/,
  ],
  [
    'signal not an AbortSignal',
    (p) => p.acquire({ signal: { aborted: false } as AbortSignal }),
    InvalidOptionError,
    'POOL_INVALID_OPTION',
    /acquire\(\{ signal \}\) must be an AbortSignal/,
  ],
  [
    'unknown key',
    (p) => p.acquire({ timeout: 5 } as never),
    InvalidOptionError,
    'POOL_INVALID_OPTION',
    /Unknown acquire\(\) option "timeout"\. Did you mean "timeoutMillis"\?/,
  ],
  [
    'options not an object',
    (p) => p.acquire(5000 as never),
    InvalidOptionError,
    'POOL_INVALID_OPTION',
    /acquire\(options\) takes an object/,
  ],
  [
    'already-aborted signal',
    (p) => p.acquire({ signal: AbortSignal.abort('gone') }),
    AcquireAbortedError,
    'POOL_ACQUIRE_ABORTED',
    /aborted by its signal/,
  ],
  [
    'use() with SQL instead of a function',
    (p) => p.use('SELECT 1' as never),
    InvalidOptionError,
    'POOL_INVALID_OPTION',
    /pool\.use\(fn\) needs a function .*got "SELECT 1"/,
  ],
];

describe('regression (issue 10): bad input, table-driven', () => {
  for (const [label, run, errorClass, code, fragment] of constructorCases) {
    it(`${label} → ${errorClass.name}`, () => {
      assert.throws(run, (error: unknown) => {
        assert.ok(error instanceof errorClass, `${String(error)} is not a ${errorClass.name}`);
        assert.equal((error as PoolError).code, code);
        assert.match((error as Error).message, fragment);
        return true;
      });
    });
  }

  for (const [label, call, errorClass, code, fragment] of callCases) {
    for (const idle of [true, false]) {
      it(`${label} (${idle ? 'idle resource' : 'pool exhausted'}) → rejected ${errorClass.name}`, async () => {
        const { pool, done } = await poolWith(idle);
        try {
          const before = pool.stats();
          let promise: Promise<unknown> | undefined;
          assert.doesNotThrow(() => (promise = call(pool)), 'never a synchronous throw');
          await assert.rejects(promise!, (error: unknown) => {
            assert.ok(error instanceof errorClass, String(error));
            assert.equal((error as PoolError).code, code);
            assert.match((error as Error).message, fragment);
            return true;
          });
          const after = pool.stats();
          // Nothing happened to the pool: no resource taken, destroyed or created, no waiter left.
          assert.deepEqual(
            [after.used, after.idle, after.destroyed, after.created, after.pending],
            [before.used, before.idle, before.destroyed, before.created, 0],
          );
        } finally {
          await done();
        }
      });
    }
  }

  it('a signal from a polyfill (aborted flag and event listeners, not instanceof AbortSignal) works', async () => {
    const pool = make({ max: 1, health: false, detectSelfDeadlock: false });
    try {
      const held = await pool.acquire();
      const signal = Object.assign(new EventTarget(), {
        aborted: false,
        reason: undefined as unknown,
      });
      const waiting = pool.acquire({ signal: signal as unknown as AbortSignal });
      signal.aborted = true;
      signal.reason = new Error('polyfilled abort');
      signal.dispatchEvent(new Event('abort'));
      await assert.rejects(
        waiting,
        (e: unknown) => e instanceof AcquireAbortedError && e.cause === signal.reason,
      );
      held.release();
    } finally {
      await pool.close();
    }
  });

  it('create() resolving null or undefined is a failed create, not a resource', async () => {
    for (const value of [null, undefined]) {
      const pool = new Pool<object>({
        factory: { create: async () => value as unknown as object, destroy: () => undefined },
        max: 1,
      });
      try {
        const error = await pool.acquire().catch((e: unknown) => e);
        assert.ok(error instanceof CreateFailedError, String(error));
        assert.equal(error.code, 'POOL_CREATE_FAILED');
        assert.match(error.message, new RegExp(`factory\\.create\\(\\) resolved ${String(value)}`));
        assert.equal(pool.stats().size, 0);
      } finally {
        await pool.close();
      }
    }
  });

  it('Infinity semantics are explicit: only acquireTimeoutMillis takes it (wait forever)', async () => {
    const pool = make({ acquireTimeoutMillis: Infinity, max: 1, health: false });
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      const held = await pool.acquire();
      const waiting = pool.acquire({ timeoutMillis: Infinity });
      await new Promise((resolve) => setTimeout(resolve, 20));
      held.release();
      (await waiting).release();
      assert.deepEqual(
        warnings.filter((w) => w.name === 'TimeoutOverflowWarning'),
        [],
      );
    } finally {
      process.off('warning', onWarning);
      await pool.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// The property: an independent statement of the option rules, checked against the pool.

type Gen = { valid: fc.Arbitrary<unknown>; invalid: fc.Arbitrary<unknown> };

/** Never a valid value of any option (type or sign wrong). */
const junk = fc.constantFrom<unknown>(
  null,
  'x',
  '5',
  NaN,
  -1,
  -Infinity,
  [],
  Symbol('s'),
  Object.create(null),
);
const duration = (max = 1e9): fc.Arbitrary<unknown> => fc.integer({ min: 0, max });
const gens: Record<string, Gen> = {
  max: {
    valid: fc.integer({ min: 1, max: 4 }),
    invalid: fc.constantFrom<unknown>(
      0,
      -1,
      1.5,
      NaN,
      '5',
      null,
      Infinity,
      1e300,
      Object.create(null),
    ),
  },
  acquireTimeoutMillis: {
    valid: fc.oneof(fc.integer({ min: 1, max: MAX_TIMER }), fc.constant(Infinity)),
    invalid: fc.oneof(junk, fc.constant(0), fc.constantFrom(2 ** 31, 3e9, 2 ** 40)),
  },
  idleTimeoutMillis: {
    valid: duration(),
    invalid: fc.oneof(
      junk.filter((v) => !isDuration(v)),
      fc.constant(Infinity),
    ),
  },
  maxLifetimeMillis: {
    valid: duration(),
    invalid: fc.constantFrom<unknown>(-1, NaN, '1', null, Infinity),
  },
  validateAfterIdleMillis: {
    valid: duration(),
    invalid: fc.constantFrom<unknown>(-5, 'a', {}, Infinity),
  },
  validateTimeoutMillis: {
    valid: fc.integer({ min: 1, max: MAX_TIMER }),
    invalid: fc.constantFrom<unknown>(0, -1, 2 ** 31, Infinity, '10', Object.create(null)),
  },
  resetTimeoutMillis: {
    valid: fc.integer({ min: 1, max: MAX_TIMER }),
    invalid: fc.constantFrom<unknown>(0, NaN, 2 ** 32, Infinity, false),
  },
  leakDetection: { valid: fc.boolean(), invalid: fc.constantFrom<unknown>(0, 'true', null) },
  leakDetectionThresholdMillis: {
    valid: duration(),
    invalid: fc.constantFrom<unknown>(-1, Infinity, ''),
  },
  reclaimAfterMillis: { valid: duration(), invalid: fc.constantFrom<unknown>(-1, NaN) },
  detectCollectedLeaks: { valid: fc.boolean(), invalid: fc.constantFrom<unknown>(1, 'no') },
  captureStacks: {
    valid: fc.oneof(
      fc.constantFrom<unknown>('auto', 'always', 'never'),
      fc.record({ oneIn: fc.integer({ min: 1, max: 100 }) }),
    ),
    invalid: fc.constantFrom<unknown>(
      'sometimes',
      { oneIn: 0 },
      { oneIn: 1.5 },
      3,
      Object.create(null),
    ),
  },
  detectSelfDeadlock: { valid: fc.boolean(), invalid: fc.constantFrom<unknown>('yes') },
  housekeepingIntervalMillis: {
    valid: fc.integer({ min: 1, max: MAX_TIMER }),
    invalid: fc.constantFrom<unknown>(0, -1, 2 ** 31, Infinity, NaN),
  },
  closeTimeoutMillis: {
    valid: fc.integer({ min: 0, max: MAX_TIMER }),
    invalid: fc.constantFrom<unknown>(-1, 2 ** 31, Infinity, '1'),
  },
  health: {
    valid: fc.oneof(
      fc.constant(false),
      fc.record(
        {
          intervalMillis: fc.integer({ min: 1, max: 1e7 }),
          leakCountThreshold: fc.integer({ min: 1, max: 10 }),
          maxHoldMillis: duration(),
          exhaustion: fc.boolean(),
        },
        { requiredKeys: [] },
      ),
    ),
    invalid: fc.constantFrom<unknown>(
      true,
      null,
      { intervalMillis: 0 },
      { leakCountThreshold: 0 },
      { maxHold: 1 },
      Object.assign(Object.create(null) as object, { exhaustion: 'yes' }),
    ),
  },
  name: {
    valid: fc.string({ minLength: 1, maxLength: 8 }),
    invalid: fc.constantFrom<unknown>('', 5, null),
  },
  onAlert: { valid: fc.constant(() => undefined), invalid: fc.constantFrom<unknown>('log', {}) },
};

function isDuration(v: unknown): boolean {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0;
}

/** One option: absent, valid, or invalid (tagged, so the oracle knows). */
const entry = (gen: Gen) =>
  fc.oneof(
    { weight: 3, arbitrary: fc.constant({ kind: 'absent' as const }) },
    { weight: 3, arbitrary: gen.valid.map((value) => ({ kind: 'valid' as const, value })) },
    { weight: 1, arbitrary: gen.invalid.map((value) => ({ kind: 'invalid' as const, value })) },
  );

const optionSets = fc.record({
  entries: fc.record(Object.fromEntries(Object.entries(gens).map(([k, g]) => [k, entry(g)]))),
  min: fc.integer({ min: 0, max: 5 }),
  unknownKey: fc.oneof(
    { weight: 9, arbitrary: fc.constant(undefined) },
    { weight: 1, arbitrary: fc.constantFrom('maxSize', 'timeout', 'idle') },
  ),
});

describe('regression (issue 10): property over option objects', function () {
  this.timeout(30_000);

  it('invalid sets throw InvalidOptionError; valid sets acquire, release and close', async () => {
    await fc.assert(
      fc.asyncProperty(optionSets, async ({ entries, min, unknownKey }) => {
        const options: Record<string, unknown> = {};
        let valid = true;
        for (const [key, e] of Object.entries(entries)) {
          if (e.kind === 'absent') continue;
          options[key] = e.value;
          if (e.kind === 'invalid') valid = false;
        }
        const max =
          typeof options.max === 'number' && entries.max!.kind === 'valid' ? options.max : 10;
        options.min = min;
        if (min > max) valid = false;
        if (unknownKey !== undefined) {
          options[unknownKey] = 1;
          valid = false;
        }
        let pool: Pool<FakeResource>;
        try {
          pool = make(options);
        } catch (error) {
          assert.ok(error instanceof InvalidOptionError, `${String(error)} for ${show(options)}`);
          assert.equal(valid, false, `rejected a valid set: ${show(options)}: ${error.message}`);
          return;
        }
        assert.equal(valid, true, `accepted an invalid set: ${show(options)}`);
        try {
          const lease = await pool.acquire();
          assert.ok(lease.active);
          lease.release();
          assert.equal(lease.active, false);
        } finally {
          const closing = pool.close();
          const report = await closing;
          assert.deepEqual(report.forced, []);
          assert.equal(pool.stats().closed, true);
        }
      }),
      { numRuns: 300 },
    );
  });
});

/** An option set as a message shows it. */
function show(options: Record<string, unknown>): string {
  return Object.entries(options)
    .map(([k, v]) => {
      if (typeof v === 'symbol') return `${k}=${v.toString()}`;
      if (typeof v === 'function') return `${k}=fn`;
      try {
        return `${k}=${JSON.stringify(v) ?? String(v)}`;
      } catch {
        return `${k}=?`;
      }
    })
    .join(' ');
}
