/**
 * Issue 10 item 3: acquisition stacks are exported verbatim (`code.stacktrace` on leak span
 * events and alert log records); a computed function name or a `sourceURL` carrying a token
 * reached the telemetry. The instrumentation's `redactStack` hook now sees every stack before it
 * is exported; a hook that throws exports no stack at all.
 */
import assert from 'node:assert/strict';
import { InvalidOptionError, Pool, type Lease, type PoolOptions } from '../../src';
import { plainFactory, type FakeResource } from '../support/fake-factory';
import { useFakeClock } from '../support/fake-clock';
import { findSecret } from '../support/secrets';
import { Telemetry } from '../instrumentation/telemetry';

const TOKEN = 'tok3nXYZ';

describe('regression: a token in a stack frame reaches code.stacktrace', () => {
  const env = useFakeClock<Pool<FakeResource>>({ now: 1_700_000_000_000 });
  let telemetry: Telemetry | undefined;
  afterEach(async () => {
    await telemetry?.shutdown();
    telemetry = undefined;
  });

  /** Holds a lease past the leak threshold, acquired from code whose frames carry TOKEN. */
  async function leakFromTokenFrames(t: Telemetry): Promise<void> {
    const options: PoolOptions<FakeResource> = {
      factory: plainFactory(),
      name: 'stacks',
      leakDetectionThresholdMillis: 100,
      captureStacks: 'always',
      health: { intervalMillis: 100, maxHoldMillis: 150 },
    };
    const p = new Pool(options);
    env.open.push(p);
    // A computed function name, and evaluated code named by a sourceURL.
    const named = {
      [`handler_${TOKEN}`]: (pool: Pool<FakeResource>) => pool.acquire(),
    }[`handler_${TOKEN}`]!;
    const evaluated = (0, eval)(
      `(function (pool, inner) { return inner(pool); })\n//# sourceURL=https://cdn.example/app.js?key=${TOKEN}`,
    ) as (pool: Pool<FakeResource>, inner: typeof named) => Promise<Lease<FakeResource>>;
    const lease = await t.tracer.startActiveSpan('request', async (span) => {
      const l = await evaluated(p, named);
      span.end();
      return l;
    });
    assert.ok(lease.info.stack?.includes(TOKEN), 'the stack has the token (test premise)');
    await env.clock.tickAsync(1000);
    lease.release();
    await p.close();
  }

  async function exported(t: Telemetry): Promise<{ stacks: string[]; all: unknown }> {
    const events = t.spans('poolwatch.hold').flatMap((s) => s.events);
    const stacks = [
      ...events.map((e) => e.attributes?.['code.stacktrace']),
      ...t.logs().map((r) => r.attributes['code.stacktrace']),
    ].filter((s): s is string => typeof s === 'string');
    return {
      stacks,
      all: {
        spans: t.spans().map((s) => ({ a: s.attributes, e: s.events })),
        logs: t.logs(),
        metrics: [...(await t.metrics()).values()].map((m) =>
          m.dataPoints.map((p) => p.attributes),
        ),
      },
    };
  }

  it('without a hook the stack is exported as captured (documented)', async () => {
    const t = (telemetry = new Telemetry());
    await leakFromTokenFrames(t);
    const { stacks, all } = await exported(t);
    assert.ok(stacks.length >= 2, `stacks exported: ${stacks.length}`);
    assert.ok(stacks.every((s) => s.includes(TOKEN)));
    // The leak spans and the code-location metrics carry it too (code.function.name).
    assert.ok(findSecret(all, TOKEN));
  });

  it('redactStack rewrites every exported stack', async () => {
    const seen: string[] = [];
    const t = (telemetry = new Telemetry({
      redactStack: (stack) => {
        seen.push(stack);
        return stack
          .split('\n')
          .map((line) => line.replace(/\?[^):\s]*/g, '').replace(/handler_\w+/g, 'handler'))
          .join('\n');
      },
    }));
    await leakFromTokenFrames(t);
    const { stacks, all } = await exported(t);
    assert.ok(
      stacks.length >= 2 && seen.length >= stacks.length,
      `${stacks.length}/${seen.length}`,
    );
    assert.equal(findSecret(all, TOKEN), undefined);
    assert.ok(stacks.every((s) => s.includes('https://cdn.example/app.js')));
  });

  it('a hook returning undefined, or throwing, exports no stack', async () => {
    for (const redactStack of [
      () => undefined,
      () => {
        throw new Error(`bad ${TOKEN}`);
      },
    ]) {
      const t = (telemetry = new Telemetry({ redactStack }));
      await leakFromTokenFrames(t);
      const { stacks, all } = await exported(t);
      assert.deepEqual(stacks, []);
      assert.equal(findSecret(all, TOKEN), undefined);
      assert.ok(t.logs().length >= 2);
      await t.shutdown();
      telemetry = undefined;
    }
  });

  it('rejects a redactStack that is not a function', () => {
    assert.throws(
      () => new Telemetry({ redactStack: 'cut' as never }),
      (e: unknown) => e instanceof InvalidOptionError && /redactStack/.test(e.message),
    );
  });
});
