import assert from 'node:assert/strict';
import { configFromEnv, enabledByEnv } from '../../src/instrumentation/env';
import { InvalidOptionError } from '../../src';
import { promtool, runApp, samples, type Run } from '../support/child-app';
import type { ReceivedSpan } from '../support/otlp-receiver';
import { getPostgres } from '../support/postgres';
import { ensureBuilt } from './built';

const AUTO = '@opentelemetry/auto-instrumentations-node/register';
const POOLWATCH = 'poolwatch/register';
/** An application's own NodeSDK, without auto-instrumentations (much faster to load). */
const SDK = './test/fixtures/start-sdk.cjs';
/** NodeSDK with getNodeAutoInstrumentations() and PoolInstrumentation, in code. */
const NODE_SDK = './test/fixtures/nodesdk-register.cjs';
const CJS_APP = 'test/fixtures/zero-code-app.cjs';
const ESM_APP = 'test/fixtures/zero-code-app.mjs';

const ORDERS = [
  {
    title: '--require auto-instrumentations-node/register --require poolwatch/register',
    args: ['--require', AUTO, '--require', POOLWATCH],
    app: CJS_APP,
  },
  {
    title: '--require poolwatch/register --require auto-instrumentations-node/register',
    args: ['--require', POOLWATCH, '--require', AUTO],
    app: CJS_APP,
  },
  {
    title: '--import auto-instrumentations-node/register --import poolwatch/register (ES module)',
    args: ['--import', AUTO, '--import', POOLWATCH],
    app: ESM_APP,
  },
  {
    title: '--import poolwatch/register --import auto-instrumentations-node/register (ES module)',
    args: ['--import', POOLWATCH, '--import', AUTO],
    app: ESM_APP,
  },
  {
    title:
      'NodeSDK({ instrumentations: [new PoolInstrumentation(), getNodeAutoInstrumentations()] })',
    args: ['--require', NODE_SDK],
    app: CJS_APP,
    env: { POOLWATCH_FIRST: '1' },
  },
  {
    title:
      'NodeSDK({ instrumentations: [getNodeAutoInstrumentations(), new PoolInstrumentation()] })',
    args: ['--require', NODE_SDK],
    app: CJS_APP,
    env: { POOLWATCH_FIRST: '0' },
  },
];

describe('poolwatch/register (zero-code)', () => {
  let poolName: string;

  before(async function () {
    this.timeout(120_000);
    ensureBuilt();
    const { config } = await getPostgres();
    poolName = `${config.host}:${config.port}/${config.database}`;
  });

  describe('next to auto-instrumentations-node and instrumentation-pg, unmodified pg.Pool application (child process)', () => {
    const runs = new Map<string, Run>();

    before(async function () {
      this.timeout(120_000);
      // Two at a time: the machine has two cores.
      for (let i = 0; i < ORDERS.length; i += 2) {
        const batch = ORDERS.slice(i, i + 2);
        const results = await Promise.all(batch.map((o) => runApp(o.args, o.app, o.env)));
        batch.forEach((o, j) => runs.set(o.title, results[j]!));
      }
    });

    for (const order of ORDERS) {
      describe(order.title, () => {
        const run = () => runs.get(order.title)!;
        const spans = (name: string): ReceivedSpan[] =>
          run().received.spans.filter((s) => s.name === name);

        it('parents each hold span on the request span, never on the 0 ms pg-pool.connect', () => {
          const [request] = spans('request');
          assert.ok(request, 'the request span');
          const holds = spans('poolwatch.hold');
          assert.equal(holds.length, 2);
          for (const hold of holds) {
            assert.equal(hold.parentSpanId, request.spanId);
            assert.equal(hold.attributes['db.client.connection.pool.name'], poolName);
          }
          // instrumentation-pg is there too: its connect spans are siblings of the holds.
          const connects = spans('pg-pool.connect');
          assert.equal(connects.length, 2);
          for (const connect of connects) assert.equal(connect.parentSpanId, request.spanId);
          assert.equal(run().status.registered, order.args.includes(POOLWATCH));
          assert.deepEqual(run().status.watchedPools, [poolName]);
        });

        it('delivers the suspected-leak log records, linked to the hold span', () => {
          const logs = run().received.logs.filter((l) => l.scope === 'poolwatch');
          const leaked = spans('poolwatch.hold').find((h) => h.endMillis - h.startMillis >= 300)!;
          assert.deepEqual(
            logs.map((l) => [l.eventName, l.severityText, l.spanId]),
            [
              ['poolwatch.leak.suspected', 'WARN', leaked.spanId],
              ['poolwatch.leak.returned', 'INFO', leaked.spanId],
            ],
          );
          assert.match(
            String(logs[0]!.attributes['code.stacktrace']).split('\n')[0]!,
            /zero-code-workload\.cjs:\d+:\d+\)?$/,
          );
        });

        it('exports each pool series once: count, pending_requests and max from instrumentation-pg', () => {
          const exposition = run().exposition;
          const sources = (name: string) =>
            samples(exposition, name)
              .map(([labels]) =>
                [
                  labels.otel_scope_name,
                  labels.db_client_connection_pool_name,
                  labels.db_client_connection_state,
                ].join(' '),
              )
              .sort();
          const pg = `@opentelemetry/instrumentation-pg ${poolName}`;
          assert.deepEqual(sources('db_client_connection_count'), [`${pg} idle`, `${pg} used`]);
          assert.deepEqual(sources('db_client_connection_max'), [`${pg} `]);
          assert.deepEqual(sources('db_client_connection_pending_requests'), [`${pg} `]);
          // poolwatch's own, under the same pool name, with their values.
          const values = (name: string) =>
            samples(exposition, name).map(([labels, value]) => [
              labels.otel_scope_name,
              labels.db_client_connection_pool_name,
              value,
            ]);
          assert.deepEqual(values('db_client_connection_idle_max'), [['poolwatch', poolName, 1]]);
          assert.deepEqual(values('db_client_connection_wait_time_count'), [
            ['poolwatch', poolName, 2],
          ]);
          assert.deepEqual(values('db_client_connection_use_time_count'), [
            ['poolwatch', poolName, 2],
          ]);
          assert.deepEqual(values('poolwatch_leaks_total'), [['poolwatch', poolName, 1]]);
        });

        it('gives an exposition that promtool parses, flagging only the convention name', function () {
          const result = promtool(run().exposition);
          if (result === null) this.skip();
          assert.deepEqual(result, {
            status: 3,
            problems: [
              'db_client_connection_count non-histogram and non-summary metrics should not have "_count" suffix',
            ],
          });
        });
      });
    }
  });

  describe('on its own, with the global providers of an SDK the application starts', () => {
    const ARGS = [
      ['--require', POOLWATCH, '--require', SDK],
      ['--require', SDK, '--require', POOLWATCH],
    ];
    let runs: Run[];

    before(async function () {
      this.timeout(60_000);
      runs = await Promise.all(ARGS.map((args) => runApp(args, CJS_APP)));
    });

    ARGS.forEach((args, i) => {
      it(`reports spans, metrics and log records: ${args.join(' ')}`, () => {
        const run = runs[i]!;
        const received = run.received;
        const [request] = received.spans.filter((s) => s.name === 'request');
        const holds = received.spans.filter((s) => s.name === 'poolwatch.hold');
        assert.deepEqual(
          holds.map((h) => h.parentSpanId),
          [request!.spanId, request!.spanId],
        );
        // No instrumentation-pg here: poolwatch reports count, max and pending_requests itself.
        assert.deepEqual(
          samples(run.exposition, 'db_client_connection_count')
            .map(([l, v]) => [l.otel_scope_name, l.db_client_connection_state, v])
            .sort(),
          [
            ['poolwatch', 'idle', 1],
            ['poolwatch', 'used', 0],
          ],
        );
        assert.deepEqual(
          received.logs.map((l) => l.eventName),
          ['poolwatch.leak.suspected', 'poolwatch.leak.returned'],
        );
        const waits = received.points.filter(
          (p) => p.scope === 'poolwatch' && p.metric === 'db.client.connection.wait_time',
        );
        assert.deepEqual(
          waits.map((p) => [p.attributes['db.client.connection.pool.name'], p.value]),
          [[poolName, 2]],
        );
      });
    });
  });

  describe('switched by the environment', () => {
    const quiet = { SCRAPE_URL: '' };
    let runs: Record<'sdkDisabled' | 'disabled' | 'listed' | 'unlisted' | 'invalid', Run>;

    before(async function () {
      this.timeout(60_000);
      const [sdkDisabled, disabled, listed, unlisted, invalid] = await Promise.all([
        runApp(['--require', SDK, '--require', POOLWATCH], CJS_APP, {
          ...quiet,
          OTEL_SDK_DISABLED: 'true',
        }),
        runApp(['--require', POOLWATCH, '--require', SDK], CJS_APP, {
          ...quiet,
          OTEL_NODE_DISABLED_INSTRUMENTATIONS: 'fs,poolwatch',
        }),
        runApp(['--require', SDK, '--require', POOLWATCH], CJS_APP, {
          ...quiet,
          OTEL_NODE_ENABLED_INSTRUMENTATIONS: 'pg, poolwatch',
        }),
        runApp(['--require', SDK, '--require', POOLWATCH], CJS_APP, {
          ...quiet,
          OTEL_NODE_ENABLED_INSTRUMENTATIONS: 'pg',
        }),
        runApp(['--require', POOLWATCH], CJS_APP, {
          ...quiet,
          OTEL_INSTRUMENTATION_POOLWATCH_LEAK_DETECTION_THRESHOLD_MILLIS: '10s',
        }),
      ]);
      runs = { sdkDisabled, disabled, listed, unlisted, invalid };
    });

    const poolwatchSpans = (run: Run) =>
      run.received.spans.filter((s) => s.scope === 'poolwatch' && s.name === 'poolwatch.hold');

    it('does nothing at all with OTEL_SDK_DISABLED=true', () => {
      assert.deepEqual(runs.sdkDisabled.status, { registered: false, watchedPools: [] });
      assert.deepEqual(runs.sdkDisabled.received.spans, []);
    });

    it('does nothing with poolwatch in OTEL_NODE_DISABLED_INSTRUMENTATIONS', () => {
      assert.deepEqual(runs.disabled.status, { registered: false, watchedPools: [] });
      assert.deepEqual(
        runs.disabled.received.spans.map((s) => s.name),
        ['request'],
      );
    });

    it('runs only when listed, if OTEL_NODE_ENABLED_INSTRUMENTATIONS is set', () => {
      assert.deepEqual(runs.listed.status, { registered: true, watchedPools: [poolName] });
      assert.equal(poolwatchSpans(runs.listed).length, 2);
      assert.deepEqual(runs.unlisted.status, { registered: false, watchedPools: [] });
      assert.equal(poolwatchSpans(runs.unlisted).length, 0);
    });

    it('warns, naming the variable, and patches nothing when a variable is invalid', () => {
      assert.deepEqual(runs.invalid.status, { registered: false, watchedPools: [] });
      assert.match(
        runs.invalid.stderr,
        /POOLWATCH_INVALID_ENV.*OTEL_INSTRUMENTATION_POOLWATCH_LEAK_DETECTION_THRESHOLD_MILLIS must be a duration in milliseconds >= 0 \(0 turns leak detection off\), got "10s"\. poolwatch\/register did not register poolwatch/,
      );
    });
  });

  describe('configFromEnv / enabledByEnv', () => {
    it('maps every variable to its option, and keeps the defaults when unset or empty', () => {
      assert.deepEqual(configFromEnv({}), { pgPool: {} });
      assert.deepEqual(configFromEnv({ OTEL_INSTRUMENTATION_POOLWATCH_HOLD_SPANS: '' }), {
        pgPool: {},
      });
      assert.deepEqual(
        configFromEnv({
          OTEL_INSTRUMENTATION_POOLWATCH_HOLD_SPANS: 'FALSE',
          OTEL_INSTRUMENTATION_POOLWATCH_WAIT_SPANS: 'true',
          OTEL_INSTRUMENTATION_POOLWATCH_REQUIRE_PARENT_SPAN: ' True ',
          OTEL_INSTRUMENTATION_POOLWATCH_LEAK_DETECTION_THRESHOLD_MILLIS: '2500',
          OTEL_INSTRUMENTATION_POOLWATCH_CAPTURE_STACKS: '16',
          OTEL_INSTRUMENTATION_POOLWATCH_PG_POOL_CONNECTION_METRICS: 'always',
        }),
        {
          holdSpans: false,
          waitSpans: true,
          requireParentSpan: true,
          pgPool: {
            leakDetectionThresholdMillis: 2500,
            captureStacks: { oneIn: 16 },
            connectionMetrics: 'always',
          },
        },
      );
      assert.deepEqual(configFromEnv({ OTEL_INSTRUMENTATION_POOLWATCH_CAPTURE_STACKS: 'never' }), {
        captureStacks: false,
        pgPool: { captureStacks: 'never' },
      });
      assert.deepEqual(configFromEnv({ OTEL_INSTRUMENTATION_POOLWATCH_PG_POOL: 'false' }), {
        pgPool: false,
      });
    });

    it('rejects bad values and unknown variables with InvalidOptionError, naming the fix', () => {
      const cases: [Record<string, string>, string][] = [
        [
          { OTEL_INSTRUMENTATION_POOLWATCH_HOLD_SPANS: 'yes' },
          'OTEL_INSTRUMENTATION_POOLWATCH_HOLD_SPANS must be true or false, got "yes".',
        ],
        [
          { OTEL_INSTRUMENTATION_POOLWATCH_LEAK_DETECTION_THRESHOLD_MILLIS: '-1' },
          'OTEL_INSTRUMENTATION_POOLWATCH_LEAK_DETECTION_THRESHOLD_MILLIS must be a duration in milliseconds >= 0 (0 turns leak detection off), got "-1".',
        ],
        [
          { OTEL_INSTRUMENTATION_POOLWATCH_CAPTURE_STACKS: 'sometimes' },
          'OTEL_INSTRUMENTATION_POOLWATCH_CAPTURE_STACKS must be auto, always, never or a whole number N >= 1 (one checkout in N), got "sometimes".',
        ],
        [
          { OTEL_INSTRUMENTATION_POOLWATCH_PG_POOL_CONNECTION_METRICS: 'both' },
          'OTEL_INSTRUMENTATION_POOLWATCH_PG_POOL_CONNECTION_METRICS must be auto, always or never, got "both".',
        ],
        [
          { OTEL_INSTRUMENTATION_POOLWATCH_LEAK_THRESHOLD: '10' },
          'Unknown environment variable OTEL_INSTRUMENTATION_POOLWATCH_LEAK_THRESHOLD. Known ones: OTEL_INSTRUMENTATION_POOLWATCH_HOLD_SPANS, OTEL_INSTRUMENTATION_POOLWATCH_WAIT_SPANS, OTEL_INSTRUMENTATION_POOLWATCH_REQUIRE_PARENT_SPAN, OTEL_INSTRUMENTATION_POOLWATCH_PG_POOL, OTEL_INSTRUMENTATION_POOLWATCH_LEAK_DETECTION_THRESHOLD_MILLIS, OTEL_INSTRUMENTATION_POOLWATCH_CAPTURE_STACKS, OTEL_INSTRUMENTATION_POOLWATCH_PG_POOL_CONNECTION_METRICS.',
        ],
      ];
      for (const [env, message] of cases) {
        assert.throws(
          () => configFromEnv(env),
          (error: unknown) =>
            error instanceof InvalidOptionError &&
            error.code === 'POOL_INVALID_OPTION' &&
            error.message === message,
        );
      }
    });

    it('follows OTEL_SDK_DISABLED and the enabled/disabled lists as auto-instrumentations-node does', () => {
      assert.equal(enabledByEnv({}), true);
      assert.equal(enabledByEnv({ OTEL_SDK_DISABLED: 'true' }), false);
      assert.equal(enabledByEnv({ OTEL_SDK_DISABLED: 'TRUE' }), false);
      assert.equal(enabledByEnv({ OTEL_SDK_DISABLED: 'false' }), true);
      assert.equal(enabledByEnv({ OTEL_NODE_ENABLED_INSTRUMENTATIONS: 'http,pg' }), false);
      assert.equal(enabledByEnv({ OTEL_NODE_ENABLED_INSTRUMENTATIONS: 'http, poolwatch' }), true);
      assert.equal(enabledByEnv({ OTEL_NODE_ENABLED_INSTRUMENTATIONS: '' }), true);
      assert.equal(enabledByEnv({ OTEL_NODE_DISABLED_INSTRUMENTATIONS: 'poolwatch' }), false);
      assert.equal(
        enabledByEnv({
          OTEL_NODE_ENABLED_INSTRUMENTATIONS: 'poolwatch',
          OTEL_NODE_DISABLED_INSTRUMENTATIONS: 'poolwatch',
        }),
        false,
      );
    });
  });
});
