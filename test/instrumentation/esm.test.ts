import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ensureBuilt, ROOT } from './built';

interface Output {
  sameAsRequire: boolean;
  parentSpanId: string;
  spans: {
    name: string;
    spanId: string;
    scope: string;
    parentSpanId?: string;
    attributes: Record<string, unknown>;
    events: string[];
  }[];
  metrics: Record<
    string,
    { scope: string; unit: string; points: { attributes: object; value: unknown }[] }
  >;
  logs: { eventName: string; severityText: string; spanId?: string }[];
}

describe('PoolInstrumentation: an ES-module application (child process, built package)', () => {
  let output: Output;

  before(async function () {
    this.timeout(120_000);
    ensureBuilt();
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', './test/fixtures/esm-register.mjs', 'test/fixtures/esm-app.mjs'],
      // NODE_OPTIONS emptied: the child must not inherit tsx from the test runner.
      { cwd: ROOT, env: { ...process.env, NODE_OPTIONS: '' }, timeout: 60_000 },
    );
    output = JSON.parse(stdout) as Output;
  });

  it('loads one implementation for import and require', () => {
    assert.equal(output.sameAsRequire, true);
  });

  it('records the hold span under the application span, with leak events', () => {
    const holds = output.spans.filter((s) => s.name === 'poolwatch.hold');
    assert.equal(holds.length, 1);
    const [hold] = holds;
    assert.equal(hold!.scope, 'poolwatch');
    assert.equal(hold!.parentSpanId, output.parentSpanId);
    assert.equal(hold!.attributes['db.client.connection.pool.name'], 'esm');
    assert.equal(hold!.attributes['poolwatch.hold.outcome'], 'released');
    assert.deepEqual(hold!.events, ['poolwatch.leak.suspected', 'poolwatch.leak.returned']);
  });

  it('reports the pool metrics', () => {
    assert.deepEqual(Object.keys(output.metrics).sort(), [
      'db.client.connection.count',
      'db.client.connection.create_time',
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
    assert.deepEqual(output.metrics['db.client.connection.count']!.points, [
      {
        attributes: {
          'db.client.connection.pool.name': 'esm',
          'db.client.connection.state': 'idle',
        },
        value: 1,
      },
      {
        attributes: {
          'db.client.connection.pool.name': 'esm',
          'db.client.connection.state': 'used',
        },
        value: 0,
      },
    ]);
    assert.equal(output.metrics['db.client.connection.use_time']!.unit, 's');
    assert.deepEqual(output.metrics['poolwatch.leaks']!.points, [
      {
        attributes: { 'db.client.connection.pool.name': 'esm', 'poolwatch.leak.kind': 'suspected' },
        value: 1,
      },
    ]);
  });

  it('logs the leak findings, linked to the hold span', () => {
    const hold = output.spans.find((s) => s.name === 'poolwatch.hold')!;
    assert.deepEqual(
      output.logs.map((l) => [l.eventName, l.severityText]),
      [
        ['poolwatch.leak.suspected', 'WARN'],
        ['poolwatch.leak.returned', 'INFO'],
      ],
    );
    assert.ok(output.logs.every((l) => l.spanId === hold.spanId));
  });
});
