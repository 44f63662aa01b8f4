import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { isWrapped, type InstrumentationNodeModuleFile } from '@opentelemetry/instrumentation';
import { KnexInstrumentation } from '@opentelemetry/instrumentation-knex';
import type * as KnexModule from 'knex';
import type { Knex } from 'knex';
import sinon from 'sinon';
import {
  InvalidOptionError,
  openPools,
  PoolInstrumentation,
  SelfDeadlockError,
  type PoolInstrumentationConfig,
} from '../../src';
import { KNEX_TIMEOUT_MESSAGE } from '../../src/adapters/tarn';
import { mysqlAvailable, mysqlConfig } from '../support/mysql';
import { getPostgres } from '../support/postgres';
import { ensureBuilt, ROOT } from './built';
import { points, Telemetry } from './telemetry';

/**
 * `require` through `Module.prototype.require`, where require-in-the-middle hooks. knex's files
 * are loaded once by knex itself; each instrumentation patches them when they are required
 * again by path (RITM runs its hook on every `require` of a file it watches).
 */
const load = createRequire(__filename);
const KNEX_DIR = join(load.resolve('knex'), '..');
type KnexFactory = typeof KnexModule.knex;

function requireKnexFiles(): void {
  for (const file of ['lib/client.js', 'lib/execution/runner.js', 'lib/execution/transaction.js']) {
    load(join(KNEX_DIR, file));
  }
}

/** The line of this file (or of `file`) that carries `marker`. */
function lineOf(marker: string, file = __filename): number {
  const index = readFileSync(file, 'utf8')
    .split('\n')
    .findIndex((line) => line.includes(marker) && !line.includes('lineOf('));
  assert.ok(index >= 0, `marker ${marker} not found`);
  return index + 1;
}

const WORKLOAD = join(ROOT, 'test', 'fixtures', 'knex-workload.cjs');
const { TIMEOUT_MILLIS } = load(WORKLOAD) as { TIMEOUT_MILLIS: number };

interface SpanOut {
  name: string;
  scope: string;
  spanId: string;
  parentSpanId?: string;
  attributes: Record<string, unknown>;
  events: { name: string }[];
}
interface LogOut {
  eventName: string;
  severityText: string;
  body: string;
  attributes: Record<string, unknown>;
  spanId?: string;
}
type Metrics = Record<string, { unit: string; points: { attributes: object; value: unknown }[] }>;
interface Output {
  duringLeak: Record<string, Metrics>;
  lifecycle: [string, string][];
  spans: SpanOut[];
  logs: LogOut[];
}
interface ErrorOut {
  name: string;
  code?: string;
  message: string;
  isKnexTimeoutError?: boolean;
}
interface Result {
  client: string;
  timeout: ErrorOut;
  outside: (ErrorOut | 'ok')[];
  outsideMillis: number;
  parallel: (ErrorOut | 'ok')[];
}

const VARIANTS = [
  {
    title: 'a CommonJS application, instrumentation registered with --require',
    args: ['--require', './test/fixtures/register-knex.cjs', 'test/fixtures/knex-app.cjs'],
  },
  {
    title: 'an ES-module application, instrumentation registered with --import',
    args: ['--import', './test/fixtures/register-knex.mjs', 'test/fixtures/knex-app.mjs'],
  },
];

describe('PoolInstrumentation: knex pools', () => {
  for (const variant of VARIANTS) {
    describe(`an unmodified knex (PostgreSQL, MySQL) and mysql2 application: ${variant.title} (child process)`, () => {
      let output: Output;
      let results: Result[];
      let everything: string;
      let secrets: string[];
      const names = { pg: '', mysql2: '' };
      const system = { pg: 'postgresql', mysql2: 'mysql' } as Record<string, string>;
      const lines = {
        forgotten: lineOf('FORGOTTEN-TRX', WORKLOAD),
        busy: lineOf('BUSY-TRX', WORKLOAD),
        outside: lineOf('OUTSIDE-TRX', WORKLOAD),
      };

      before(async function () {
        this.timeout(120_000);
        ensureBuilt();
        const server = await getPostgres();
        names.pg = `${server.config.host}:${server.config.port}/${server.config.database}`;
        secrets = [server.config.password, encodeURIComponent(server.config.password)];
        const env: NodeJS.ProcessEnv = {
          ...process.env,
          NODE_OPTIONS: '',
          DATABASE_URL: server.connectionString,
        };
        delete env.MYSQL_URL;
        if (await mysqlAvailable()) {
          const m = mysqlConfig();
          const auth = m.password ? `${m.user}:${encodeURIComponent(m.password)}` : m.user;
          env.MYSQL_URL = `mysql://${auth}@${m.host}:${m.port}/${m.database}`;
          names.mysql2 = `${m.host}:${m.port}/${m.database}`;
          if (m.password) secrets.push(m.password);
        }
        const { stdout, stderr } = await promisify(execFile)(process.execPath, variant.args, {
          cwd: ROOT,
          env,
          timeout: 60_000,
        });
        everything = stdout + stderr;
        const line = (prefix: string) =>
          JSON.parse(
            stdout
              .split('\n')
              .find((l) => l.startsWith(prefix))!
              .slice(prefix.length),
          ) as unknown;
        results = line('RESULT ') as Result[];
        output = line('TELEMETRY ') as Output;
      });

      function clients(): Result[] {
        assert.equal(results[0]!.client, 'pg');
        return results;
      }

      it("enriches knex's timeout error with the longest holders and the lines that took them", () => {
        for (const result of clients()) {
          const { timeout } = result;
          assert.equal(timeout.name, 'KnexTimeoutError');
          assert.equal(timeout.isKnexTimeoutError, true);
          const name = names[result.client as 'pg' | 'mysql2'];
          const at = (line: number) =>
            `    at run \\(.*[\\\\/]knex-workload\\.cjs:${line}:\\d+\\)\n    at async runAll \\(.*\\)` +
            // The ES-module application's top-level await.
            `(?:\n    at async file:.*knex-app\\.mjs:\\d+:\\d+)?`;
          assert.match(
            timeout.message,
            new RegExp(
              `^${escape(KNEX_TIMEOUT_MESSAGE)} Pool "${escape(name)}": 2/2 in use, 0 waiting \\(poolwatch\\)\\. Longest holders:\n` +
                `  lease #\\d+ held \\d+\\.\\d s, acquired at:\n${at(lines.forgotten)}\n` +
                `  lease #\\d+ held \\d+\\.\\d s, acquired at:\n${at(lines.busy)}$`,
            ),
          );
        }
      });

      it('fails a query outside its transaction on a full pool at once, naming its line', () => {
        for (const result of clients()) {
          assert.equal(result.outside.length, 2);
          for (const error of result.outside) {
            assert.notEqual(error, 'ok');
            const e = error as ErrorOut;
            assert.equal(e.name, 'SelfDeadlockError');
            assert.equal(e.code, 'POOL_SELF_DEADLOCK');
            assert.ok(
              e.message.includes(
                'this query runs outside its transaction and waits for a connection the transaction holds',
              ),
            );
            assert.match(
              e.message,
              new RegExp(
                `Query issued at:\n    at .*knex-workload\\.cjs:${lines.outside}:\\d+\\)?\n`,
              ),
            );
          }
          assert.ok(
            result.outsideMillis < TIMEOUT_MILLIS,
            `failed after ${result.outsideMillis} ms`,
          );
        }
      });

      it('lets twenty transactions that use trx run in parallel on a pool of two', () => {
        for (const result of clients()) {
          assert.deepEqual(result.parallel, Array(20).fill('ok'));
        }
      });

      it('records a hold span per checkout, under the span that issued the query', () => {
        for (const result of clients()) {
          const name = names[result.client as 'pg' | 'mysql2'];
          const holds = output.spans.filter(
            (s) =>
              s.name === 'poolwatch.hold' &&
              s.attributes['db.client.connection.pool.name'] === name,
          );
          // raw + transaction in the request, the forgotten and the busy transaction, the two
          // transactions that went outside, twenty in parallel; the timed-out query and the two
          // queries outside their transactions never got a connection.
          assert.equal(holds.length, 26);
          assert.ok(holds.every((h) => h.attributes['poolwatch.hold.outcome'] === 'released'));
          assert.ok(holds.every((h) => h.attributes['db.system.name'] === system[result.client]));
          const request = output.spans.find(
            (s) => s.name === 'request' && holds.some((h) => h.parentSpanId === s.spanId),
          );
          assert.ok(request, 'a request span with hold spans under it');
          assert.equal(holds.filter((h) => h.parentSpanId === request.spanId).length, 2);
        }
      });

      it('reports the forgotten transaction as a suspected leak with its line, per pool', () => {
        for (const result of clients()) {
          const name = names[result.client as 'pg' | 'mysql2'];
          const logs = output.logs.filter(
            (l) => l.attributes['db.client.connection.pool.name'] === name,
          );
          const firstFrame = (l: LogOut) =>
            /knex-workload\.cjs:(\d+):/.exec(
              String(l.attributes['code.stacktrace']).split('\n')[0]!,
            )?.[1];
          // The two transactions held past the threshold, found and then returned. (On a very
          // busy machine another short hold may cross the threshold too: each is returned.)
          const ours = [String(lines.forgotten), String(lines.busy)];
          assert.deepEqual(
            logs
              .filter((l) => ours.includes(firstFrame(l)!))
              .map((l) => [l.eventName, l.severityText, firstFrame(l)]),
            [
              ['poolwatch.leak.suspected', 'WARN', String(lines.forgotten)],
              ['poolwatch.leak.suspected', 'WARN', String(lines.busy)],
              // The busy transaction is committed first.
              ['poolwatch.leak.returned', 'INFO', String(lines.busy)],
              ['poolwatch.leak.returned', 'INFO', String(lines.forgotten)],
            ],
          );
          const count = (event: string) => logs.filter((l) => l.eventName === event).length;
          assert.equal(count('poolwatch.leak.suspected'), count('poolwatch.leak.returned'));
          const metrics = output.duringLeak[name]!;
          const value = (metric: string, extra: object = {}) =>
            metrics[metric]!.points.find(
              (p) =>
                JSON.stringify(p.attributes) ===
                JSON.stringify({ 'db.client.connection.pool.name': name, ...extra }),
            )?.value;
          assert.deepEqual(
            {
              used: value('db.client.connection.count', { 'db.client.connection.state': 'used' }),
              idle: value('db.client.connection.count', { 'db.client.connection.state': 'idle' }),
              max: value('db.client.connection.max'),
              pending: value('db.client.connection.pending_requests'),
              suspected: value('poolwatch.leaks.suspected'),
            },
            { used: 1, idle: 0, max: 2, pending: 0, suspected: 1 },
          );
        }
      });

      it('takes each pool out of the metrics at knex.destroy()', () => {
        const knexPools = output.lifecycle.filter(([, pool]) => !pool.startsWith('mysql2:'));
        const expected = clients().flatMap((r) => {
          const name = names[r.client as 'pg' | 'mysql2'];
          return [
            ['open', name],
            ['close', name],
          ];
        });
        assert.deepEqual(knexPools, expected);
      });

      it('watches a mysql2 createPool pool in the same application (both APIs)', function () {
        if (names.mysql2 === '') this.skip();
        const name = `mysql2:${names.mysql2.split('/')[1]}`;
        const holds = output.spans.filter(
          (s) =>
            s.name === 'poolwatch.hold' && s.attributes['db.client.connection.pool.name'] === name,
        );
        const request = output.spans.find((s) => s.name === 'mysql2-request')!;
        assert.deepEqual(
          holds.map((h) => [
            h.parentSpanId === request.spanId,
            h.attributes['poolwatch.hold.outcome'],
          ]),
          [
            [true, 'released'],
            [true, 'released'],
            [false, 'released'],
          ],
        );
        const logs = output.logs.filter(
          (l) => l.attributes['db.client.connection.pool.name'] === name,
        );
        const held = lineOf('MYSQL2-HELD', WORKLOAD);
        assert.deepEqual(
          logs.map((l) => [
            l.eventName,
            /knex-workload\.cjs:(\d+):/.exec(
              String(l.attributes['code.stacktrace']).split('\n')[0]!,
            )?.[1],
          ]),
          [
            ['poolwatch.leak.suspected', String(held)],
            ['poolwatch.leak.returned', String(held)],
          ],
        );
        assert.deepEqual(
          output.lifecycle.filter(([, pool]) => pool === name),
          [
            ['open', name],
            ['close', name],
          ],
        );
      });

      it('never reports credentials', () => {
        for (const secret of secrets) assert.ok(!everything.includes(secret), 'a password leaked');
      });
    });
  }

  describe('in process (PostgreSQL)', () => {
    let knex: KnexFactory;
    let connection: string;
    let base: string;
    let telemetry: Telemetry | undefined;
    const dbs: Knex[] = [];
    let pristine: Map<object, Record<string, unknown>>;

    function methodsOf(proto: object, names: string[]): Record<string, unknown> {
      return Object.fromEntries(names.map((n) => [n, (proto as Record<string, unknown>)[n]]));
    }

    before(async function () {
      this.timeout(120_000);
      const server = await getPostgres();
      connection = server.connectionString;
      base = `${server.config.host}:${server.config.port}/${server.config.database}`;
      knex = load('knex') as KnexFactory;
      const Client = load(join(KNEX_DIR, 'lib/client.js')) as { prototype: object };
      const Runner = load(join(KNEX_DIR, 'lib/execution/runner.js')) as { prototype: object };
      const Transaction = load(join(KNEX_DIR, 'lib/execution/transaction.js')) as {
        prototype: object;
      };
      const PgClient = load(join(KNEX_DIR, 'lib/dialects/postgres/index.js')) as {
        prototype: object;
      };
      pristine = new Map([
        [
          Client.prototype,
          methodsOf(Client.prototype, [
            'initializePool',
            'acquireConnection',
            'releaseConnection',
            'destroy',
            'queryBuilder',
            'raw',
            'schemaBuilder',
            'transaction',
          ]),
        ],
        [Runner.prototype, methodsOf(Runner.prototype, ['run'])],
        [Transaction.prototype, methodsOf(Transaction.prototype, ['acquireConnection'])],
        [PgClient.prototype, methodsOf(PgClient.prototype, ['transaction', 'queryBuilder'])],
      ]);
    });

    afterEach(async () => {
      await Promise.all(dbs.splice(0).map((db) => db.destroy()));
      await telemetry?.shutdown();
      telemetry = undefined;
      sinon.restore();
      for (const [proto, methods] of pristine) {
        assert.deepEqual(
          methodsOf(proto, Object.keys(methods)),
          methods,
          'a test left knex patched',
        );
      }
    });

    function instrument(options: PoolInstrumentationConfig['knex'] = {}): Telemetry {
      telemetry = new Telemetry({ knex: options });
      requireKnexFiles();
      return telemetry;
    }

    function db(max = 2, extraConfig: Partial<Knex.Config> = {}): Knex {
      const made = knex({
        client: 'pg',
        connection,
        pool: { min: 0, max },
        acquireConnectionTimeout: 10_000,
        ...extraConfig,
      });
      dbs.push(made);
      return made;
    }

    function holds(t: Telemetry) {
      return t.spans('poolwatch.hold').map((s) => ({
        pool: s.attributes['db.client.connection.pool.name'],
        outcome: s.attributes['poolwatch.hold.outcome'],
      }));
    }

    function knexRefs(): string[] {
      return [...openPools].filter((p) => p.server?.system === 'postgresql').map((p) => p.name);
    }

    describe('patching', () => {
      it('declares knex >=3 <4 (client, runner and transaction files)', () => {
        const t = instrument();
        const definition = t.instrumentation.getModuleDefinitions().find((d) => d.name === 'knex')!;
        assert.deepEqual(definition.supportedVersions, ['>=3 <4']);
        assert.deepEqual(
          definition.files.map((f: InstrumentationNodeModuleFile) => [f.name, f.supportedVersions]),
          [
            ['knex/lib/client.js', ['>=3 <4']],
            ['knex/lib/execution/runner.js', ['>=3 <4']],
            ['knex/lib/execution/transaction.js', ['>=3 <4']],
          ],
        );
        const [Client] = pristine.keys();
        const wrapped = (Client as Record<string, unknown>).acquireConnection;
        assert.notEqual(wrapped, pristine.get(Client!)!.acquireConnection);
        assert.equal(isWrapped(wrapped), false, 'no shimmer marks');
      });

      it('wraps once, however often it is patched, and follows every checkout once', async () => {
        const t = instrument();
        const [Client] = pristine.keys();
        const wrapped = (Client as Record<string, unknown>).acquireConnection;
        requireKnexFiles();
        const definition = t.instrumentation.getModuleDefinitions().find((d) => d.name === 'knex')!;
        const clientFile = definition.files[0]!;
        clientFile.patch(load(join(KNEX_DIR, 'lib/client.js')), '3.3.0');
        assert.equal((Client as Record<string, unknown>).acquireConnection, wrapped);
        // Disabled and enabled again: new wrappers in place of the originals, one layer.
        t.instrumentation.disable();
        t.instrumentation.enable();
        requireKnexFiles();
        const d = db();
        await d.raw('select 1');
        await d('pg_class').select('relname').limit(1);
        await d.transaction(async (trx) => {
          await trx.raw('select 1');
          await trx.raw('select 2');
        });
        assert.deepEqual(holds(t), Array(3).fill({ pool: base, outcome: 'released' }));
      });

      it('disable() restores every method, dialects included, and takes the pools out', async () => {
        const t = instrument({ leakDetectionThresholdMillis: 1000 });
        const d = db();
        await d.raw('select 1');
        assert.deepEqual(knexRefs(), [base]);
        const [, , , PgClient] = pristine.keys();
        assert.notEqual(
          (PgClient as Record<string, unknown>).transaction,
          pristine.get(PgClient!)!.transaction,
        );
        t.instrumentation.disable();
        assert.deepEqual(knexRefs(), []);
        // afterEach checks every method against the originals.
        await d.raw('select 1');
        assert.equal(holds(t).length, 1);
      });

      it('leaves knex alone with knex: false', async () => {
        const t = instrument(false);
        await db().raw('select 1');
        assert.deepEqual(holds(t), []);
        assert.deepEqual(knexRefs(), []);
      });

      for (const order of ['ours first', 'theirs first']) {
        it(`works beside @opentelemetry/instrumentation-knex (${order})`, async () => {
          let contrib: KnexInstrumentation;
          const theirs = () => {
            contrib = new KnexInstrumentation();
            contrib.setTracerProvider(telemetry!.tracerProvider);
            requireKnexFiles();
          };
          if (order === 'theirs first') {
            telemetry = new Telemetry({ knex: {} });
            telemetry.instrumentation.disable();
            theirs();
            telemetry.instrumentation.enable();
            requireKnexFiles();
          } else {
            instrument();
            theirs();
          }
          const t = telemetry!;
          const d = db();
          await t.tracer.startActiveSpan('request', async (span) => {
            await d('pg_class').select('relname').limit(1);
            await d.transaction((trx) => trx.raw('select 1'));
            span.end();
          });
          const request = t.spans('request')[0]!.spanContext().spanId;
          assert.deepEqual(
            t.spans('poolwatch.hold').map((s) => s.parentSpanContext?.spanId),
            [request, request],
          );
          const contribSpans = t
            .spans()
            .filter((s) => s.instrumentationScope.name === '@opentelemetry/instrumentation-knex');
          assert.ok(contribSpans.length >= 2, `${contribSpans.length} knex spans`);
          // Taken off in the reverse order: each restores what it found.
          if (order === 'ours first') {
            contrib!.disable();
            t.instrumentation.disable();
          } else {
            t.instrumentation.disable();
            contrib!.disable();
          }
        });
      }
    });

    describe('checkouts and leaks', () => {
      it('reports a forgotten transaction once, with the line that started it', async () => {
        const clock = sinon.useFakeTimers({
          toFake: ['setInterval', 'clearInterval', 'performance'],
        });
        const t = instrument({ leakDetectionThresholdMillis: 1000, captureStacks: 'always' });
        const d = db();
        const trx = await d.transaction(); // LEAK-TRX
        await trx.raw('select 1');
        clock.tick(1250);
        clock.tick(10_000);
        const [suspected, ...rest] = t.logs();
        assert.deepEqual(rest, []);
        assert.equal(suspected!.eventName, 'poolwatch.leak.suspected');
        const first = String(suspected!.attributes['code.stacktrace']).split('\n')[0]!;
        assert.match(first, new RegExp(`knex\\.test\\.ts:${lineOf('LEAK-TRX')}:\\d+\\)?$`));
        assert.equal(d.client.pool.numUsed(), 1);
        const report = [...openPools].find((p) => p.name === base)!.leakReport!();
        assert.equal(report.held.length, 1);
        assert.equal(report.held[0]!.suspected, true);
        await trx.commit();
        // knex gives the connection back to tarn just after the commit resolves.
        await new Promise((resolve) => setImmediate(resolve));
        assert.deepEqual(
          t.logs().map((l) => l.eventName),
          ['poolwatch.leak.suspected', 'poolwatch.leak.returned'],
        );
        const metrics = await t.metrics();
        assert.deepEqual(points(metrics.get('poolwatch.leaks')), [
          [{ 'db.client.connection.pool.name': base, 'poolwatch.leak.kind': 'suspected' }, 1],
        ]);
      });

      it('raises the health alerts when asked: exhausted, then hold age', async () => {
        const clock = sinon.useFakeTimers({
          toFake: ['setInterval', 'clearInterval', 'performance'],
        });
        const t = instrument({
          leakDetectionThresholdMillis: 0,
          health: { intervalMillis: 100, maxHoldMillis: 1000 },
        });
        const d = db(1);
        const trx = await d.transaction();
        // A knex query runs when it is awaited or then'd: start it, to wait for the connection.
        const waiting = d.raw('select 1').then(() => undefined);
        await new Promise((resolve) => setImmediate(resolve));
        try {
          clock.tick(1100);
          assert.deepEqual(
            t.logs().map((l) => [l.eventName, l.attributes['db.client.connection.pool.name']]),
            [
              ['poolwatch.alert.exhausted', base],
              ['poolwatch.alert.hold_age', base],
            ],
          );
        } finally {
          await trx.commit();
          await waiting;
        }
      });

      it("shows the line that built a query, not knex's, for await knex(...)", async () => {
        const t = instrument({ leakDetectionThresholdMillis: 20, captureStacks: 'always' });
        const d = db(1);
        await d.raw('select pg_sleep(0.1)'); // SLOW-QUERY
        const suspected = t.logs().find((l) => l.eventName === 'poolwatch.leak.suspected');
        assert.ok(suspected, 'the slow query was suspected');
        const first = String(suspected.attributes['code.stacktrace']).split('\n')[0]!;
        assert.match(first, new RegExp(`knex\\.test\\.ts:${lineOf('SLOW-QUERY')}:\\d+\\)?$`));
      });

      it('counts the timeout and keeps the error knex throws', async () => {
        const t = instrument({ captureStacks: 'always' });
        // knex logs the timeout as a warning too: not in the test output.
        const d = db(1, { acquireConnectionTimeout: 50, log: { warn: () => {} } });
        const trx = await d.transaction(); // HOLDER
        const error = await d.raw('select 1').then(
          () => assert.fail('no timeout'),
          (e: unknown) => e as Error & { sql?: string },
        );
        await trx.rollback();
        assert.ok(error instanceof knex.KnexTimeoutError);
        assert.equal(error.sql, 'select 1', 'knex still adds the query');
        assert.ok(error.message.startsWith(KNEX_TIMEOUT_MESSAGE));
        assert.ok(error.message.includes(`knex.test.ts:${lineOf('// HOLDER')}:`));
        assert.ok(error.stack!.startsWith(`KnexTimeoutError: ${error.message}`));
        const metrics = await t.metrics();
        assert.deepEqual(points(metrics.get('db.client.connection.timeouts')), [
          [{ 'db.client.connection.pool.name': base }, 1],
        ]);
      });
    });

    describe('self-deadlock', () => {
      it('fails at once only when the pool is full and the transaction holds a connection', async () => {
        instrument();
        const d = db(2);
        // Not full: the outer query gets the second connection.
        await d.transaction(async () => {
          await d.raw('select 1');
        });
        // Full, for a query that holds nothing: it waits, and gets a connection.
        const a = await d.transaction();
        const b = await d.transaction();
        const waiting = d.raw('select 1');
        setTimeout(() => void a.commit(), 20);
        await waiting;
        await b.commit();

        const started = performance.now();
        const error = await d
          .transaction(async (trx) => {
            const holder = await d.transaction();
            try {
              await trx.raw('select 1');
              await d.raw('select 2'); // OUTSIDE
            } finally {
              await holder.rollback();
            }
          })
          .then(
            () => assert.fail('no error'),
            (e: unknown) => e,
          );
        assert.ok(performance.now() - started < 2000);
        assert.ok(error instanceof SelfDeadlockError);
        assert.equal(error.code, 'POOL_SELF_DEADLOCK');
        assert.match(
          error.message,
          new RegExp(
            `^Knex pool "${escape(base)}" is full \\(2/2 in use\\) and this query runs outside its transaction ` +
              `and waits for a connection the transaction holds \\(lease #\\d+\\): it would wait until the pool's timeout\\. ` +
              `Query issued at:\n    at .*knex\\.test\\.ts:${lineOf('// OUTSIDE')}:\\d+\\)?\n`,
          ),
        );
      });

      it('never fires for a hundred transactions that use trx, beside plain queries', async () => {
        instrument();
        const d = db(3);
        const work = Array.from({ length: 100 }, (_, i) =>
          i % 4 === 0
            ? d.raw('select ?::int as i', [i])
            : d.transaction(async (trx) => {
                await trx.raw('select ?::int as i', [i]);
                await trx.raw('select 1');
              }),
        );
        const settled = await Promise.allSettled(work);
        assert.deepEqual(
          settled.filter((s) => s.status === 'rejected'),
          [],
        );
      });
    });

    describe('pools', () => {
      it('names pools address:port/database, #2 for a second, and drops them at destroy()', async () => {
        const t = instrument();
        const first = db();
        const second = db(3);
        await Promise.all([first.raw('select 1'), second.raw('select 1')]);
        assert.deepEqual(knexRefs(), [base, `${base}#2`]);
        let metrics = await t.metrics();
        assert.deepEqual(
          points(metrics.get('db.client.connection.max')).map(([a, v]) => [
            a['db.client.connection.pool.name'],
            v,
          ]),
          [
            [base, 2],
            [`${base}#2`, 3],
          ],
        );
        await first.destroy();
        dbs.splice(dbs.indexOf(first), 1);
        assert.deepEqual(knexRefs(), [`${base}#2`]);
        const fresh = new Telemetry({ knex: {} });
        try {
          metrics = await fresh.metrics();
          assert.deepEqual(
            points(metrics.get('db.client.connection.max')).map(
              ([a]) => a['db.client.connection.pool.name'],
            ),
            [`${base}#2`],
          );
        } finally {
          await fresh.shutdown();
        }
      });

      it('takes names from knex.poolName', async () => {
        instrument({
          poolName: ({ client, server }) =>
            `${(client as { config: { client: string } }).config.client}@${server.namespace}`,
        });
        await db().raw('select 1');
        assert.deepEqual(
          [...openPools].map((p) => p.name).filter((n) => n.startsWith('pg@')),
          [`pg@${base.split('/')[1]}`],
        );
      });
    });

    describe('options', () => {
      const invalid: [unknown, RegExp][] = [
        ['yes', /^Option "knex" must be an object or false, got "yes"\.$/],
        [{ threshold: 5 }, /^Unknown knex option "threshold"\. Known options: /],
        [{ leakDetectionThresholdMillis: -1 }, /"knex\.leakDetectionThresholdMillis" .* got -1\.$/],
        [{ captureStacks: 'sometimes' }, /"knex\.captureStacks" must be .* got "sometimes"\.$/],
        [{ poolName: 'x' }, /"knex\.poolName" must be a function, got "x"\.$/],
        [{ health: { intervalMillis: 0 } }, /"knex\.health\.intervalMillis" must be > 0/],
      ];
      for (const [knexOption, message] of invalid) {
        it(`rejects knex: ${JSON.stringify(knexOption)}`, () => {
          assert.throws(
            () => new PoolInstrumentation({ enabled: false, knex: knexOption as never }),
            (error: unknown) => error instanceof InvalidOptionError && message.test(error.message),
          );
        });
      }
    });
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
