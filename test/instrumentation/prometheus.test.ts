import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { Pool, PoolInstrumentation, type PoolOptions } from '../../src';
import { plainFactory, type FakeResource } from '../support/fake-factory';

/** A port that was free a moment ago (the exporter treats port 0 as "use the default"). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function startExporter(): Promise<{ exporter: PrometheusExporter; port: number }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const exporter = new PrometheusExporter({ host: '127.0.0.1', port, preventServerStart: true });
    try {
      await exporter.startServer();
      return { exporter, port };
    } catch (error) {
      if (attempt === 3) throw error; // somebody took the port in between: try another
    }
  }
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the text exposition format (enough of it for these assertions). */
function parse(text: string): { samples: Sample[]; types: Map<string, string> } {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) types.set(type[1]!, type[2]!);
    const sample = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!sample) continue;
    const labels: Record<string, string> = {};
    for (const [, key, value] of (sample[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key!] = value!;
    }
    samples.push({ name: sample[1]!, labels, value: Number(sample[3]) });
  }
  return { samples, types };
}

describe('PoolInstrumentation: Prometheus exposition', () => {
  let scraped: string;
  let samples: Sample[];
  let types: Map<string, string>;

  before(async function () {
    this.timeout(20_000);
    const { exporter, port } = await startExporter();
    const instrumentation = new PoolInstrumentation();
    const meterProvider = new MeterProvider({ readers: [exporter] });
    instrumentation.setMeterProvider(meterProvider);
    const fast: Omit<PoolOptions<FakeResource>, 'factory'> = {
      leakDetectionThresholdMillis: 20,
      housekeepingIntervalMillis: 10,
      detectSelfDeadlock: false,
      // The reports pool times a caller out while exhausted: a forced collection of this mocha
      // process's heap (100+ ms) would let the lease pass from unseen to reclaimed in one tick.
      collectWhenStarvedMillis: 0,
    };
    const orders = new Pool({ ...fast, factory: plainFactory(), name: 'orders', max: 2 });
    const reports = new Pool({
      ...fast,
      factory: plainFactory(),
      name: 'reports',
      max: 1,
      reclaimAfterMillis: 60,
    });
    try {
      const held = await orders.acquire(); // becomes a suspected leak
      const other = await orders.acquire();
      other.release();
      const leaked = await reports.acquire(); // never released: suspected, then reclaimed
      await reports.acquire({ timeoutMillis: 10 }).then(
        () => assert.fail('the pool is exhausted'),
        (error: Error) => assert.equal(error.name, 'AcquireTimeoutError'),
      );
      while (reports.stats().reclaimedLeaks === 0 || orders.stats().suspectedLeaks === 0) {
        await sleep(5);
      }
      const response = await fetch(`http://127.0.0.1:${port}/metrics`);
      assert.equal(response.status, 200);
      scraped = await response.text();
      ({ samples, types } = parse(scraped));
      held.release();
      assert.equal(leaked.active, false, 'reclaimed (and kept reachable, so not collected)');
    } finally {
      instrumentation.disable();
      await Promise.all([orders.close(), reports.close()]);
      await meterProvider.shutdown(); // stops the exporter's server
    }
  });

  /** The value of one series, by name and labels other than the scope's. */
  function value(name: string, labels: Record<string, string>): number | undefined {
    const matches = samples.filter(
      (s) =>
        s.name === name &&
        Object.keys(s.labels).filter((k) => !k.startsWith('otel_scope_') && k !== 'le').length ===
          Object.keys(labels).length &&
        Object.entries(labels).every(([k, v]) => s.labels[k] === v),
    );
    assert.ok(matches.length <= 1, `${name} ${JSON.stringify(labels)} is ambiguous`);
    return matches[0]?.value;
  }

  const ORDERS = { db_client_connection_pool_name: 'orders' };
  const REPORTS = { db_client_connection_pool_name: 'reports' };

  it('exposes the names and types the README documents', () => {
    const ours = [...types].filter(
      ([name]) => name.startsWith('db_') || name.startsWith('poolwatch_'),
    );
    assert.deepEqual(
      new Map(ours),
      new Map([
        ['db_client_connection_count', 'gauge'],
        ['db_client_connection_idle_max', 'gauge'],
        ['db_client_connection_idle_min', 'gauge'],
        ['db_client_connection_max', 'gauge'],
        ['db_client_connection_pending_requests', 'gauge'],
        ['poolwatch_leaks_suspected', 'gauge'],
        ['poolwatch_hold_oldest_age', 'gauge'],
        ['poolwatch_code_location_leaks_suspected', 'gauge'],
        ['db_client_connection_timeouts_total', 'counter'],
        ['poolwatch_leaks_total', 'counter'],
        ['poolwatch_code_location_leaks_total', 'counter'],
        ['db_client_connection_create_time', 'histogram'],
        ['db_client_connection_wait_time', 'histogram'],
        ['db_client_connection_use_time', 'histogram'],
      ]),
    );
    // The JS exporter adds no unit suffix (a Collector would say ..._seconds_bucket).
    assert.ok(!scraped.includes('_seconds'));
  });

  it('labels every series with the pool name and the scope', () => {
    const ours = samples.filter((s) => s.name.startsWith('db_') || s.name.startsWith('poolwatch_'));
    assert.ok(ours.length > 0);
    for (const sample of ours) {
      assert.ok(
        ['orders', 'reports'].includes(sample.labels.db_client_connection_pool_name!),
        sample.name,
      );
      assert.equal(sample.labels.otel_scope_name, 'poolwatch');
      assert.equal(sample.labels.otel_scope_version, '0.1.0');
    }
  });

  it('reports each pool separately, leaks included', () => {
    const count = 'db_client_connection_count';
    assert.equal(value(count, { ...ORDERS, db_client_connection_state: 'used' }), 1);
    assert.equal(value(count, { ...ORDERS, db_client_connection_state: 'idle' }), 1);
    // The reclaimed resource was destroyed.
    assert.equal(value(count, { ...REPORTS, db_client_connection_state: 'used' }), 0);
    assert.equal(value(count, { ...REPORTS, db_client_connection_state: 'idle' }), 0);
    assert.equal(value('db_client_connection_max', ORDERS), 2);
    assert.equal(value('db_client_connection_max', REPORTS), 1);
    assert.equal(value('db_client_connection_idle_min', ORDERS), 0);
    assert.equal(value('db_client_connection_pending_requests', REPORTS), 0);
    assert.equal(value('db_client_connection_timeouts_total', REPORTS), 1);
    assert.equal(value('db_client_connection_timeouts_total', ORDERS), undefined);
    assert.equal(value('poolwatch_leaks_suspected', ORDERS), 1);
    assert.equal(value('poolwatch_leaks_suspected', REPORTS), 0);
    const leaks = 'poolwatch_leaks_total';
    assert.equal(value(leaks, { ...ORDERS, poolwatch_leak_kind: 'suspected' }), 1);
    assert.equal(value(leaks, { ...REPORTS, poolwatch_leak_kind: 'suspected' }), 1);
    assert.equal(value(leaks, { ...REPORTS, poolwatch_leak_kind: 'reclaimed' }), 1);
    assert.equal(value('db_client_connection_wait_time_count', ORDERS), 2);
    assert.equal(value('db_client_connection_use_time_count', ORDERS), 1);
    assert.equal(value('db_client_connection_use_time_count', REPORTS), 1, 'the reclaimed hold');
    const buckets = samples
      .filter(
        (s) =>
          s.name === 'db_client_connection_wait_time_bucket' &&
          s.labels.db_client_connection_pool_name === 'orders',
      )
      .map((s) => s.labels.le);
    assert.deepEqual(buckets, [
      '0.0005',
      '0.001',
      '0.0025',
      '0.005',
      '0.01',
      '0.025',
      '0.05',
      '0.1',
      '0.25',
      '0.5',
      '1',
      '2.5',
      '5',
      '10',
      '30',
      '60',
      '+Inf',
    ]);
  });

  it('passes promtool check metrics, but for the convention name it flags', function () {
    const result = spawnSync('promtool', ['check', 'metrics'], {
      input: scraped,
      encoding: 'utf8',
    });
    if ((result.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') this.skip();
    // Exit 1 is a parse error; exit 3 lists lint problems. The only one is the semantic
    // conventions' own name, db.client.connection.count: Prometheus reserves `_count` for
    // histograms and summaries. Kept as the spec says; the README's Telemetry section explains it.
    const problems = `${result.stdout}${result.stderr}`.trim().split('\n').filter(Boolean);
    assert.deepEqual(
      { status: result.status, problems },
      {
        status: 3,
        problems: [
          'db_client_connection_count non-histogram and non-summary metrics should not have "_count" suffix',
        ],
      },
    );
  });
});
