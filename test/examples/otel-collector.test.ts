/**
 * examples/otel-collector: the Collector, Prometheus, Grafana and Jaeger stack for poolwatch's
 * telemetry. No Docker here, so each piece is checked with the real tool that reads it:
 *
 * - promtool: `check config` (with the rule file it references), `check rules`, `test rules`;
 * - a real Prometheus server, loading the rules and scraping both what a Collector would expose
 *   (crafted text) and what poolwatch's instrumentation really exposes through
 *   @opentelemetry/exporter-prometheus; the alerts must reach pending or firing;
 * - the metric names in the dashboard and the rules, against the table in
 *   src/instrumentation/README.md (Telemetry);
 * - the YAML of docker-compose.yml and otel-collector.yaml (js-yaml, which mocha depends on, or
 *   python3's yaml): pipelines, ports and paths that must agree across the files.
 *
 * promtool and prometheus come from Debian's `prometheus` package; without them these tests skip,
 * except under CI (`CI` set), where they fail.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { Pool, PoolInstrumentation, type Lease, type PoolOptions } from '../../src';
import { plainFactory, type FakeResource } from '../support/fake-factory';
import { getPostgres } from '../support/postgres';

const ROOT = path.resolve(__dirname, '../..');
const DIR = path.join(ROOT, 'examples/otel-collector');
const RULES = path.join(DIR, 'rules/poolwatch-alerts.yml');
const ALERTS = [
  'PoolwatchSuspectedLeaks',
  'PoolwatchConnectionsCollectedOrReclaimed',
  'PoolwatchPoolExhausted',
  'PoolwatchAcquireTimeouts',
  'PoolwatchSlowAcquire',
  'PoolwatchLongHold',
  'PoolwatchNewLeakingCodeLocation',
];

// --- tools ----------------------------------------------------------------------------------------

function hasCommand(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`]).status === 0;
}

/** Skips the test when `command` is missing, unless under CI, where it must be installed. */
function requireCommand(context: Mocha.Context, command: string): void {
  if (hasCommand(command)) return;
  if (process.env.CI) assert.fail(`${command} is not installed (apt-get install prometheus)`);
  context.skip();
}

function run(command: string, args: string[]): { status: number | null; output: string } {
  const result = spawnSync(command, args, { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

type YamlLoad = (text: string) => unknown;

/** js-yaml (a dependency of mocha), else python3's yaml, else undefined. */
function yamlParser():
  { load: YamlLoad; dump?: (value: unknown) => string; name: string } | undefined {
  try {
    const jsYaml = createRequire(__filename)('js-yaml') as {
      load: YamlLoad;
      dump: (value: unknown) => string;
    };
    return {
      load: (text) => jsYaml.load(text),
      dump: (value) => jsYaml.dump(value),
      name: 'js-yaml',
    };
  } catch {
    // not installed
  }
  const probe = spawnSync('python3', ['-c', 'import yaml'], { encoding: 'utf8' });
  if (probe.status !== 0) return undefined;
  return {
    name: 'python3 yaml',
    load: (text) => {
      const result = spawnSync(
        'python3',
        ['-c', 'import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)'],
        { input: text, encoding: 'utf8' },
      );
      if (result.status !== 0) throw new Error(`YAML parse failed: ${result.stderr}`);
      return JSON.parse(result.stdout) as unknown;
    },
  };
}

const yaml = yamlParser();

function loadYaml(context: Mocha.Context, file: string): Record<string, any> {
  if (!yaml) context.skip();
  const value = yaml!.load(readFileSync(path.join(DIR, file), 'utf8'));
  assert.equal(typeof value, 'object', `${file} is not a YAML mapping`);
  return value as Record<string, any>;
}

/** A port that was free a moment ago. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

// --- metric names ---------------------------------------------------------------------------------

interface MetricNames {
  /** Prometheus names through @opentelemetry/exporter-prometheus. */
  js: Set<string>;
  /** Prometheus names through a Collector's prometheus exporter. */
  collector: Set<string>;
}

/**
 * The Prometheus names poolwatch's metrics get, from the metrics table of README.md (Telemetry) (its last
 * two columns: JS exporter, via a Collector). A histogram's `_bucket` name stands for its
 * `_bucket`, `_sum` and `_count` series.
 */
function telemetryNames(): MetricNames {
  const file = path.join(ROOT, 'README.md');
  const names: MetricNames = { js: new Set(), collector: new Set() };
  const add = (set: Set<string>, name: string) => {
    if (!name.endsWith('_bucket')) return void set.add(name);
    const base = name.slice(0, -'_bucket'.length);
    for (const suffix of ['_bucket', '_sum', '_count']) set.add(base + suffix);
  };
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const cells = line.split('|').map((cell) => cell.trim());
    // | otel name | instrument | unit | extra attributes | JS exporter | via a Collector |
    if (cells.length !== 8 || !/^`(db\.client\.connection|poolwatch)\./.test(cells[1]!)) continue;
    const js = /`([a-z_]+)`/.exec(cells[5]!)?.[1];
    assert.ok(js, `no Prometheus name in README.md (Telemetry) row: ${line}`);
    const collector = cells[6] === 'same' ? js : /`([a-z_]+)`/.exec(cells[6]!)?.[1];
    assert.ok(collector, `no Collector name in README.md (Telemetry) row: ${line}`);
    add(names.js, js);
    add(names.collector, collector);
  }
  return names;
}

const PROMQL_KEYWORDS = new Set([
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'bool',
  'and',
  'or',
  'unless',
  'offset',
  'inf',
  'nan',
]);

/**
 * The metric names a PromQL expression selects (enough PromQL for these files). A
 * `{__name__=~"re"}` selector stands for every name of `known` it matches (anchored, as in PromQL).
 */
function metricNames(expr: string, known: Iterable<string> = []): string[] {
  const byRegex: string[] = [];
  for (const [, re] of expr.matchAll(/__name__=~"((?:[^"\\]|\\.)*)"/g)) {
    const anchored = new RegExp(`^(?:${re!.replace(/\\\\/g, '\\')})$`);
    byRegex.push(...[...known].filter((name) => anchored.test(name)));
  }
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""') // strings
    .replace(/\{[^}]*\}/g, ' ') // label matchers
    .replace(/\[[^\]]*\]/g, ' ') // ranges, subqueries
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' '); // label lists
  const names: string[] = [];
  for (const match of stripped.matchAll(/(?<![\w.$])[a-zA-Z_:][\w:]*/g)) {
    const rest = stripped.slice(match.index + match[0].length);
    if (/^\s*\(/.test(rest)) continue; // a function or an aggregation
    if (PROMQL_KEYWORDS.has(match[0].toLowerCase())) continue;
    names.push(match[0]);
  }
  return [...names, ...byRegex];
}

interface Panel {
  title?: string;
  type?: string;
  fieldConfig?: { defaults?: { links?: { url: string }[] } };
  datasource?: { type?: string; uid?: string };
  targets?: { expr?: string; datasource?: { type?: string; uid?: string } }[];
  panels?: Panel[];
}

function allPanels(panels: Panel[]): Panel[] {
  return panels.flatMap((panel) => [panel, ...allPanels(panel.panels ?? [])]);
}

interface Dashboard {
  uid: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; query: unknown }[] };
}

function readDashboard(): Dashboard {
  return JSON.parse(
    readFileSync(path.join(DIR, 'grafana/dashboards/poolwatch.json'), 'utf8'),
  ) as Dashboard;
}

/** Every PromQL query of the dashboard: panel targets and query variables. */
function dashboardQueries(dashboard: Dashboard): { title: string; expr: string }[] {
  const queries: { title: string; expr: string }[] = [];
  for (const panel of allPanels(dashboard.panels)) {
    (panel.targets ?? []).forEach((target, i) => {
      const type = target.datasource?.type ?? panel.datasource?.type;
      if (type !== 'prometheus') return;
      assert.ok(target.expr, `panel "${panel.title}": a Prometheus target without expr`);
      const title = panel.targets!.length > 1 ? `${panel.title} [${i + 1}]` : panel.title!;
      queries.push({ title, expr: target.expr });
    });
  }
  for (const variable of dashboard.templating.list) {
    if (variable.type !== 'query') continue;
    const query = (variable.query as { query: string }).query;
    const selector = /^label_values\((.*),\s*\w+\)$/.exec(query)?.[1];
    assert.ok(selector, `variable ${variable.name}: ${query}`);
    queries.push({ title: `variable $${variable.name}`, expr: selector });
  }
  return queries;
}

/** JS exporter name → Collector name, for every name the README table gives both of. */
function collectorRenames(names: MetricNames): Map<string, string> {
  const js = [...names.js].sort();
  const collector = [...names.collector].sort();
  const renames = new Map<string, string>();
  for (const name of js) {
    const match = collector.find(
      (c) =>
        c === name ||
        c === name.replace(/(_bucket|_sum|_count)?$/, '_seconds$1') ||
        (name === 'db_client_connection_count' && c === name),
    );
    assert.ok(match, `no Collector name for ${name}`);
    renames.set(name, match);
  }
  return renames;
}

const DOUBLED = /^(db_client_connection_(?:count|max|pending_requests))\{/;

/**
 * A JS exporter exposition as a Collector's prometheus exporter would write it for the same
 * metrics: renamed (`_seconds`), with `job` and `instance` labels (from service.name and
 * service.instance.id), plus, beside each pool metric instrumentation-pg also exports,
 * instrumentation-pg's series for the same pool, value 99.
 */
function asCollectorExposition(text: string, renames: Map<string, string>): string {
  const out: string[] = [];
  const rename = (name: string) =>
    renames.get(name) ?? renames.get(`${name}_bucket`)?.replace(/_bucket$/, '') ?? name;
  for (const line of text.split('\n')) {
    const meta = /^# (HELP|TYPE) (\S+)(.*)$/.exec(line);
    if (meta) {
      out.push(`# ${meta[1]} ${rename(meta[2]!)}${meta[3]}`);
      continue;
    }
    const sample = /^([a-zA-Z_:][\w:]*)\{(.*)\} (\S+)$/.exec(line);
    if (!sample || !/^(db_client_connection|poolwatch)_/.test(sample[1]!)) {
      out.push(line);
      continue;
    }
    const labels = `${sample[2]},job="poolwatch-example",instance="collector-style"`;
    out.push(`${rename(sample[1]!)}{${labels}} ${sample[3]}`);
    if (DOUBLED.test(line)) {
      const pg = labels
        .replace(
          'otel_scope_name="poolwatch"',
          'otel_scope_name="@opentelemetry/instrumentation-pg"',
        )
        .replace(/otel_scope_version="[^"]*"/, 'otel_scope_version="0.76.0"');
      out.push(`${sample[1]}{${pg}} 99`);
    }
  }
  return out.join('\n');
}

// --- the tests ------------------------------------------------------------------------------------

describe('examples/otel-collector', function () {
  this.timeout(30_000);

  describe('Prometheus configuration and alert rules (promtool)', () => {
    beforeEach(function () {
      requireCommand(this, 'promtool');
    });

    it('promtool check config: prometheus.yml and the rule file it references', () => {
      const { status, output } = run('promtool', [
        'check',
        'config',
        path.join(DIR, 'prometheus.yml'),
      ]);
      assert.equal(status, 0, output);
      assert.match(output, /SUCCESS: 1 rule files found/);
      assert.match(output, /SUCCESS: 7 rules found/);
    });

    it('promtool check rules', () => {
      const { status, output } = run('promtool', ['check', 'rules', RULES]);
      assert.equal(status, 0, output);
      assert.match(output, /SUCCESS: 7 rules found/);
    });

    it('promtool test rules: each alert firing and not firing', () => {
      const tests = path.join(DIR, 'rules/poolwatch-alerts.test.yml');
      const { status, output } = run('promtool', ['test', 'rules', tests]);
      assert.equal(status, 0, output);
      assert.match(output, /SUCCESS/);
      const text = readFileSync(tests, 'utf8');
      for (const alert of ALERTS) {
        assert.match(
          text,
          new RegExp(`alertname: ${alert}\\n\\s+exp_alerts: \\[\\]`),
          `${alert}: no "not firing" case`,
        );
        assert.match(
          text,
          new RegExp(`alertname: ${alert}\\n\\s+exp_alerts:\\n`),
          `${alert}: no "firing" case`,
        );
      }
    });
  });

  describe('metric names', () => {
    const names = telemetryNames();

    it('README.md (Telemetry) lists every metric poolwatch exports (the names the checks below use)', () => {
      assert.equal(names.js.size, 14 + 3 * 2, [...names.js].join()); // 3 histograms: 3 series each
      assert.ok(names.collector.has('poolwatch_hold_oldest_age_seconds'));
      assert.ok(names.js.has('poolwatch_hold_oldest_age'));
      assert.ok(names.collector.has('db_client_connection_wait_time_seconds_bucket'));
      assert.ok(names.js.has('db_client_connection_wait_time_bucket'));
      assert.ok(names.collector.has('poolwatch_leaks_total'));
    });

    it('metricNames() finds the selected metrics of an expression', () => {
      assert.deepEqual(
        metricNames(
          'histogram_quantile(0.99, sum by (le, pool) (rate(a_bucket{pool=~"$pool"}[$__rate_interval])))' +
            ' > 1 and on (pool) (b offset 10m unless c{x="by (d)"}) or vector(0)',
        ),
        ['a_bucket', 'b', 'c'],
      );
    });

    it("every dashboard query selects poolwatch metrics on both paths, and poolwatch's series only", () => {
      const dashboard = readDashboard();
      assert.equal(dashboard.uid, 'poolwatch');
      const all = new Set([...names.js, ...names.collector]);
      const used = new Set<string>();
      for (const { title, expr } of dashboardQueries(dashboard)) {
        const found = metricNames(expr, all);
        assert.ok(found.length > 0, `"${title}": no metric in ${expr}`);
        for (const name of found) {
          assert.ok(all.has(name), `"${title}": ${name} is not a metric poolwatch exports`);
          used.add(name);
        }
        // Each query finds its data whichever way the metrics came (JS exporter or Collector)...
        assert.ok(
          found.some((n) => names.js.has(n)),
          `"${title}": nothing on the JS path`,
        );
        assert.ok(
          found.some((n) => names.collector.has(n)),
          `"${title}": nothing via a Collector`,
        );
        // ...and never counts instrumentation-pg's series of the same names.
        assert.match(expr, /otel_scope_name="poolwatch"/, `"${title}": not limited to poolwatch`);
      }
      for (const name of [
        'db_client_connection_count',
        'db_client_connection_max',
        'db_client_connection_pending_requests',
        'db_client_connection_wait_time_bucket',
        'db_client_connection_wait_time_seconds_bucket',
        'db_client_connection_use_time_bucket',
        'db_client_connection_use_time_seconds_bucket',
        'db_client_connection_timeouts_total',
        'poolwatch_leaks_suspected',
        'poolwatch_leaks_total',
        'poolwatch_hold_oldest_age',
        'poolwatch_hold_oldest_age_seconds',
        'poolwatch_code_location_leaks_total',
        'poolwatch_code_location_leaks_suspected',
      ]) {
        assert.ok(used.has(name), `no panel queries ${name}`);
      }
      const exprs = dashboardQueries(dashboard).map((q) => q.expr);
      for (const pattern of [
        /^histogram_quantile\(0\.5, .*wait_time\(_seconds\)\?_bucket/,
        /^histogram_quantile\(0\.99, .*wait_time\(_seconds\)\?_bucket/,
        /^histogram_quantile\(0\.99, .*use_time\(_seconds\)\?_bucket/,
      ]) {
        assert.ok(
          exprs.some((e) => pattern.test(e)),
          String(pattern),
        );
      }
      // Service (job), instance and pool variables, each used by every panel query.
      const variables = dashboard.templating.list.map((v) => v.name);
      assert.deepEqual(variables, ['datasource', 'tracing', 'job', 'instance', 'pool']);
      for (const { title, expr } of dashboardQueries(dashboard)) {
        if (title.startsWith('variable ')) continue;
        for (const variable of ['$job', '$instance', '$pool']) {
          assert.ok(expr.includes(variable), `"${title}": does not filter on ${variable}`);
        }
      }
    });

    it('uses data source variables, not fixed uids, and links a leak to its traces', function () {
      const provisioned = loadYaml(this, 'grafana/provisioning/datasources/datasources.yml');
      const types = new Set(
        (provisioned.datasources as { uid: string; type: string }[]).map((d) => d.type),
      );
      assert.deepEqual([...types].sort(), ['jaeger', 'prometheus']);
      const dashboard = readDashboard();
      const variables = new Map(
        dashboard.templating.list
          .filter((v) => v.type === 'datasource')
          .map((v) => [`\${${v.name}}`, v.query as string]),
      );
      assert.deepEqual(
        [...variables],
        [
          ['${datasource}', 'prometheus'],
          ['${tracing}', 'jaeger'],
        ],
      );
      for (const variable of dashboard.templating.list) {
        const ds = (variable as { datasource?: { type?: string; uid?: string } }).datasource;
        if (ds) assert.equal(variables.get(ds.uid ?? ''), ds.type, `variable ${variable.name}`);
      }
      for (const panel of allPanels(dashboard.panels)) {
        for (const ds of [panel.datasource, ...(panel.targets ?? []).map((t) => t.datasource)]) {
          if (ds === undefined) continue;
          assert.equal(
            variables.get(ds.uid ?? ''),
            ds.type,
            `panel "${panel.title}": ${JSON.stringify(ds)} is not a data source variable`,
          );
        }
      }
      // The leaking code locations link each row to its poolwatch.leak spans in the tracing
      // data source; the suspected-leaks panel links each pool to its leak spans.
      const links = (title: string) => {
        const panel = allPanels(dashboard.panels).find((p) => p.title === title);
        assert.ok(panel, title);
        return (panel.fieldConfig?.defaults?.links ?? []).map((l) => decodeURIComponent(l.url));
      };
      const [byLocation] = links('Leaking code locations');
      assert.match(
        byLocation!,
        /^\/explore\?orgId=\$\{__org\}&left=\{"datasource":"\$\{tracing\}"/,
      );
      assert.match(
        byLocation!,
        /"service":"\$\{__data\.fields\.job\}","operation":"poolwatch\.leak"/,
      );
      assert.match(
        byLocation!,
        /"tags":"code\.file\.path=\\"\$\{__data\.fields\.code_file_path\}\\" code\.line\.number=\$\{__data\.fields\.code_line_number\}"/,
      );
      const [byPool] = links('Suspected leaks');
      assert.match(
        byPool!,
        /"operation":"poolwatch\.leak","tags":"db\.client\.connection\.pool\.name=/,
      );
      assert.ok(!JSON.stringify(dashboard).includes('poolwatch-example'), 'no fixed service name');
      const providers = loadYaml(this, 'grafana/provisioning/dashboards/dashboards.yml');
      assert.equal(providers.providers[0].options.path, '/var/lib/grafana/dashboards');
    });

    it('the alert rules query poolwatch metrics of either path, and both histogram names', function () {
      const rules = loadYaml(this, 'rules/poolwatch-alerts.yml');
      const all = new Set([...names.js, ...names.collector]);
      const exprs = new Map<string, string>();
      for (const group of rules.groups as { rules: { alert: string; expr: string }[] }[]) {
        for (const rule of group.rules) exprs.set(rule.alert, rule.expr);
      }
      assert.deepEqual([...exprs.keys()], ALERTS);
      for (const [alert, expr] of exprs) {
        const found = metricNames(expr, all);
        assert.ok(found.length > 0, `${alert}: no metric`);
        for (const name of found) assert.ok(all.has(name), `${alert}: ${name}`);
      }
      for (const alert of ['PoolwatchSlowAcquire', 'PoolwatchLongHold']) {
        const found = metricNames(exprs.get(alert)!, all);
        assert.ok(
          found.some((n) => names.collector.has(n) && !names.js.has(n)),
          `${alert}: Collector path`,
        );
        assert.ok(
          found.some((n) => names.js.has(n) && !names.collector.has(n)),
          `${alert}: JS exporter path`,
        );
      }
    });
  });

  describe('docker-compose.yml and otel-collector.yaml', () => {
    it(`parse, and agree with each other and with prometheus.yml (YAML: ${yaml?.name ?? 'none'})`, function () {
      const compose = loadYaml(this, 'docker-compose.yml');
      const collector = loadYaml(this, 'otel-collector.yaml');
      const prometheus = loadYaml(this, 'prometheus.yml');
      const services = compose.services as Record<string, any>;
      assert.deepEqual(Object.keys(services).sort(), [
        'app',
        'grafana',
        'jaeger',
        'otel-collector',
        'postgres',
        'prometheus',
      ]);

      // Images pinned to a version.
      for (const [name, service] of Object.entries(services)) {
        if (service.build) continue;
        assert.match(service.image, /^[\w./-]+:v?\d[\w.-]*$/, `${name}: image not pinned`);
      }
      // Bind mounts exist.
      for (const [name, service] of Object.entries(services)) {
        for (const volume of (service.volumes ?? []) as string[]) {
          const source = volume.split(':')[0]!;
          assert.ok(existsSync(path.join(DIR, source)), `${name}: ${source} does not exist`);
        }
      }

      // The collector: OTLP in on all interfaces; traces to Jaeger, metrics to the prometheus
      // exporter, logs to debug; every component a pipeline names is defined.
      const grpc = collector.receivers.otlp.protocols.grpc.endpoint as string;
      const httpEndpoint = collector.receivers.otlp.protocols.http.endpoint as string;
      assert.equal(grpc, '0.0.0.0:4317');
      assert.equal(httpEndpoint, '0.0.0.0:4318');
      const pipelines = collector.service.pipelines as Record<string, Record<string, string[]>>;
      assert.deepEqual(Object.keys(pipelines).sort(), ['logs', 'metrics', 'traces']);
      for (const [signal, pipeline] of Object.entries(pipelines)) {
        for (const kind of ['receivers', 'processors', 'exporters']) {
          for (const component of pipeline[kind] ?? []) {
            assert.ok(
              collector[kind]?.[component] !== undefined,
              `${signal}: ${kind} ${component} undefined`,
            );
          }
        }
        assert.ok(pipeline.processors?.includes('batch'), `${signal}: no batch processor`);
      }
      const [tracesTo] = pipelines.traces!.exporters!;
      assert.match(tracesTo!, /^otlp(_grpc)?(\/|$)/);
      assert.equal(collector.exporters[tracesTo!].endpoint, 'jaeger:4317');
      assert.deepEqual(pipelines.metrics!.exporters, ['prometheus']);
      assert.deepEqual(pipelines.logs!.exporters, ['debug']);
      assert.equal(services.jaeger.environment.COLLECTOR_OTLP_ENABLED, 'true');

      // Prometheus scrapes the prometheus exporter, keeping the job/instance it derives.
      const exporterPort = (collector.exporters.prometheus.endpoint as string).split(':').pop();
      const [scrape] = prometheus.scrape_configs as any[];
      assert.deepEqual(scrape.static_configs[0].targets, [`otel-collector:${exporterPort}`]);
      assert.equal(scrape.honor_labels, true);
      assert.deepEqual(prometheus.rule_files, ['rules/poolwatch-alerts.yml']);

      // The app: sends OTLP/HTTP to the collector, reaches postgres, runs a file that exists.
      const app = services.app;
      assert.equal(
        app.environment.OTEL_EXPORTER_OTLP_ENDPOINT,
        `http://otel-collector:${httpEndpoint.split(':').pop()}`,
      );
      assert.match(app.environment.DATABASE_URL, /^postgres:\/\/[^:@]+@postgres:5432\//);
      const dockerfile = path.join(DIR, app.build.context, app.build.dockerfile);
      assert.ok(existsSync(`${dockerfile}.dockerignore`), 'no Dockerfile-specific .dockerignore');
      const cmd = /^CMD (\[.*\])$/m.exec(readFileSync(dockerfile, 'utf8'))?.[1];
      assert.ok(cmd, 'app.Dockerfile has no CMD');
      const script = (JSON.parse(cmd) as string[]).find((arg) => arg.endsWith('.ts'));
      assert.equal(script, 'examples/otel-collector/app.ts');
      assert.ok(existsSync(path.join(ROOT, script)));
    });
  });

  describe('a real Prometheus server with the rules', function () {
    let directory: string | undefined;
    let prometheus: ChildProcess | undefined;
    let crafted: http.Server | undefined;
    let meterProvider: MeterProvider | undefined;
    let instrumentation: PoolInstrumentation | undefined;
    const pools: Pool<FakeResource>[] = [];
    const leases: Lease<FakeResource>[] = [];

    after(async () => {
      if (prometheus && prometheus.exitCode === null) {
        const exited = new Promise((resolve) => prometheus!.once('exit', resolve));
        prometheus.kill('SIGTERM');
        await Promise.race([exited, sleep(5000)]);
      }
      await Promise.all(pools.splice(0).map((pool) => pool.close()));
      leases.splice(0);
      instrumentation?.disable();
      await meterProvider?.shutdown();
      await new Promise((resolve) => (crafted ? crafted.close(resolve) : resolve(undefined)));
      if (directory) await rm(directory, { recursive: true, force: true });
    });

    it('loads the rules; the alerts go pending or firing on Collector-path and JS-exporter metrics', async function () {
      requireCommand(this, 'prometheus');
      if (!yaml?.dump) this.skip(); // the config is rewritten with js-yaml
      const started = Date.now();

      // 1. What a Collector's prometheus exporter would expose for a troubled pool. The
      //    histogram grows by 10 slow (1–2.5 s) acquires per scrape.
      let scrapes = 0;
      crafted = http.createServer((_request, response) => {
        scrapes++;
        const pool =
          'job="poolwatch-example",instance="crafted-1",db_client_connection_pool_name="orders",otel_scope_name="poolwatch"';
        const bucket = (le: string, value: number) =>
          `db_client_connection_wait_time_seconds_bucket{${pool},le="${le}"} ${value}`;
        response.setHeader('content-type', 'text/plain; version=0.0.4');
        response.end(
          [
            '# TYPE db_client_connection_count gauge',
            `db_client_connection_count{${pool},db_client_connection_state="used"} 4`,
            `db_client_connection_count{${pool},db_client_connection_state="idle"} 0`,
            '# TYPE db_client_connection_max gauge',
            `db_client_connection_max{${pool}} 4`,
            '# TYPE db_client_connection_pending_requests gauge',
            `db_client_connection_pending_requests{${pool}} 7`,
            '# TYPE db_client_connection_timeouts_total counter',
            `db_client_connection_timeouts_total{${pool}} 3`,
            '# TYPE poolwatch_leaks_suspected gauge',
            `poolwatch_leaks_suspected{${pool}} 2`,
            '# TYPE poolwatch_leaks_total counter',
            `poolwatch_leaks_total{${pool},poolwatch_leak_kind="suspected"} 2`,
            `poolwatch_leaks_total{${pool},poolwatch_leak_kind="collected"} 1`,
            '# TYPE poolwatch_hold_oldest_age_seconds gauge',
            `poolwatch_hold_oldest_age_seconds{${pool}} ${900 + scrapes}`,
            '# TYPE poolwatch_code_location_leaks_total counter',
            `poolwatch_code_location_leaks_total{${pool},poolwatch_leak_kind="collected",code_function_name="transfer",code_file_path="/app/transfer.js",code_line_number="40"} 1`,
            '# TYPE db_client_connection_wait_time_seconds histogram',
            bucket('0.005', 0),
            bucket('1', 0),
            bucket('2.5', 10 * scrapes),
            bucket('+Inf', 10 * scrapes),
            `db_client_connection_wait_time_seconds_sum{${pool}} ${17.5 * scrapes}`,
            `db_client_connection_wait_time_seconds_count{${pool}} ${10 * scrapes}`,
            '',
          ].join('\n'),
        );
      });
      await new Promise<void>((resolve) => crafted!.listen(0, '127.0.0.1', resolve));
      const craftedPort = (crafted.address() as { port: number }).port;

      // 2. poolwatch itself, through @opentelemetry/exporter-prometheus: a pool exhausted by a
      //    leak with a caller waiting and one that timed out; another whose leak was reclaimed.
      const exporterPort = await freePort();
      const exporter = new PrometheusExporter({
        host: '127.0.0.1',
        port: exporterPort,
        preventServerStart: true,
      });
      await exporter.startServer();
      meterProvider = new MeterProvider({ readers: [exporter] });
      instrumentation = new PoolInstrumentation();
      instrumentation.setMeterProvider(meterProvider);
      const fast: Omit<PoolOptions<FakeResource>, 'factory' | 'name'> = {
        max: 1,
        leakDetectionThresholdMillis: 20,
        housekeepingIntervalMillis: 10,
        detectSelfDeadlock: false,
        closeTimeoutMillis: 100,
        health: false,
      };
      const orders = new Pool({ ...fast, factory: plainFactory(), name: 'js-orders' });
      const reports = new Pool({
        ...fast,
        factory: plainFactory(),
        name: 'js-reports',
        reclaimAfterMillis: 50,
      });
      pools.push(orders, reports);
      // Held until after() closes the pools (closeTimeoutMillis: then destroyed).
      leases.push(await orders.acquire());
      await assert.rejects(orders.acquire({ timeoutMillis: 10 }), { code: 'POOL_ACQUIRE_TIMEOUT' });
      orders.acquire({ timeoutMillis: 60_000 }).catch(() => undefined); // waits; close() rejects it
      leases.push(await reports.acquire()); // taken back after 50 ms
      await sleep(100);
      assert.equal(reports.stats().reclaimedLeaks, 1);
      assert.equal(orders.stats().pending, 1);

      // 3. Prometheus with prometheus.yml, scraping both every second.
      directory = await mkdtemp(path.join(os.tmpdir(), 'poolwatch-prometheus-'));
      const config = yaml!.load(readFileSync(path.join(DIR, 'prometheus.yml'), 'utf8')) as Record<
        string,
        any
      >;
      config.global = { ...config.global, scrape_interval: '1s', evaluation_interval: '1s' };
      config.rule_files = (config.rule_files as string[]).map((file) => path.resolve(DIR, file));
      const [collectorJob] = config.scrape_configs as Record<string, any>[];
      config.scrape_configs = [
        { ...collectorJob, static_configs: [{ targets: [`127.0.0.1:${craftedPort}`] }] },
        { job_name: 'poolwatch-js', static_configs: [{ targets: [`127.0.0.1:${exporterPort}`] }] },
      ];
      await writeFile(path.join(directory, 'prometheus.yml'), yaml!.dump!(config));
      const port = await freePort();
      let log = '';
      prometheus = spawn(
        'prometheus',
        [
          `--config.file=${path.join(directory, 'prometheus.yml')}`,
          `--storage.tsdb.path=${path.join(directory, 'data')}`,
          `--web.listen-address=127.0.0.1:${port}`,
          '--log.level=warn',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      prometheus.stdout!.on('data', (chunk: Buffer) => (log += chunk.toString()));
      prometheus.stderr!.on('data', (chunk: Buffer) => (log += chunk.toString()));
      const api = async (url: string): Promise<any> => {
        const response = await fetch(`http://127.0.0.1:${port}${url}`);
        return response.ok ? response.json() : undefined;
      };

      // Ready within 10 s, or this machine is too slow for the test: skip.
      for (;;) {
        if (prometheus.exitCode !== null) assert.fail(`prometheus exited:\n${log}`);
        const ready = await fetch(`http://127.0.0.1:${port}/-/ready`).then(
          (response) => response.ok,
          () => false,
        );
        if (ready) break;
        if (Date.now() - started > 10_000) this.skip();
        await sleep(100);
      }

      // Every alert, per job: pending (a `for:` still running) or firing.
      const expected = new Map<string, string[]>([
        ['poolwatch-example', ALERTS], // the crafted Collector output; job kept by honor_labels
        [
          'poolwatch-js',
          [
            'PoolwatchSuspectedLeaks',
            'PoolwatchConnectionsCollectedOrReclaimed',
            'PoolwatchPoolExhausted',
            'PoolwatchAcquireTimeouts',
            'PoolwatchNewLeakingCodeLocation',
          ],
        ],
      ]);
      let seen = new Map<string, Set<string>>();
      let groups: any[] = [];
      const deadline = started + 15_000; // the whole test: under 15 s
      while (Date.now() < deadline) {
        const rules = await api('/api/v1/rules').catch(() => undefined);
        groups = rules?.data?.groups ?? [];
        seen = new Map();
        for (const group of groups) {
          for (const rule of group.rules) {
            for (const alert of rule.alerts ?? []) {
              if (alert.state !== 'pending' && alert.state !== 'firing') continue;
              const job = alert.labels.job as string;
              if (!seen.has(job)) seen.set(job, new Set());
              seen.get(job)!.add(rule.name as string);
            }
          }
        }
        const done = [...expected].every(([job, alerts]) =>
          alerts.every((a) => seen.get(job)?.has(a)),
        );
        if (done) break;
        await sleep(250);
      }
      assert.deepEqual(
        groups.map((group) => [group.name, group.rules.map((rule: { name: string }) => rule.name)]),
        [['poolwatch', ALERTS]],
        'rule groups loaded',
      );
      for (const [job, alerts] of expected) {
        assert.deepEqual(
          [...(seen.get(job) ?? [])].sort(),
          [...alerts].sort(),
          `alerts pending or firing for job ${job} (after ${scrapes} scrapes)\n${log}`,
        );
      }
      const alerts = (await api('/api/v1/alerts')).data.alerts as {
        labels: Record<string, string>;
      }[];
      const alerting = new Set(
        alerts.map((a) => `${a.labels.job}/${a.labels.db_client_connection_pool_name}`),
      );
      assert.ok(alerting.has('poolwatch-example/orders'));
      assert.ok(alerting.has('poolwatch-js/js-orders'));
      assert.ok(alerting.has('poolwatch-js/js-reports'));
    });
  });
  describe('the dashboard on a real Prometheus, scraping the example app', function () {
    let directory: string | undefined;
    let prometheus: ChildProcess | undefined;
    let app: ChildProcess | undefined;
    let proxy: http.Server | undefined;

    after(async () => {
      for (const child of [app, prometheus]) {
        if (!child || child.exitCode !== null || child.signalCode !== null) continue;
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await Promise.race([exited, sleep(5000)]);
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
      await new Promise((resolve) => (proxy ? proxy.close(resolve) : resolve(undefined)));
      if (directory) await rm(directory, { recursive: true, force: true });
    });

    it("runs every query: poolwatch's data on the JS exporter path and with Collector names, counted once", async function () {
      this.timeout(60_000);
      requireCommand(this, 'prometheus');
      const started = Date.now();
      const names = telemetryNames();

      // 1. The example app (a real poolwatch process on PostgreSQL), its schedule 50 times faster,
      //    its metrics on @opentelemetry/exporter-prometheus: the JS exporter path.
      const database = await getPostgres();
      const appPort = await freePort();
      let appLog = '';
      app = spawn(
        process.execPath,
        ['--expose-gc', '--import', 'tsx', 'examples/otel-collector/app.ts'],
        {
          cwd: ROOT,
          env: {
            ...process.env,
            NODE_OPTIONS: '',
            DATABASE_URL: database.connectionString,
            OTEL_METRICS_EXPORTER: 'prometheus',
            OTEL_EXPORTER_PROMETHEUS_HOST: '127.0.0.1',
            OTEL_EXPORTER_PROMETHEUS_PORT: String(appPort),
            OTEL_TRACES_EXPORTER: 'none',
            OTEL_LOGS_EXPORTER: 'none',
            POOLWATCH_EXAMPLE_TIME_SCALE: '0.02',
            POOLWATCH_EXAMPLE_SECONDS: '60',
          },
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      app.stdout!.on('data', (chunk: Buffer) => (appLog += chunk.toString()));
      app.stderr!.on('data', (chunk: Buffer) => (appLog += chunk.toString()));

      // 2. The same metrics as a Collector's prometheus exporter names them (the README table's
      //    last column: `_seconds` on what is in seconds), with the job and instance it derives
      //    from the resource, and with instrumentation-pg's series of the same names for the same
      //    pool beside poolwatch's (value 99: any query that mixes them in shows it).
      const toCollector = collectorRenames(names);
      proxy = http.createServer((_request, response) => {
        fetch(`http://127.0.0.1:${appPort}/metrics`)
          .then((r) => r.text())
          .then(
            (text) => {
              response.setHeader('content-type', 'text/plain; version=0.0.4');
              response.end(asCollectorExposition(text, toCollector));
            },
            () => response.writeHead(503).end(),
          );
      });
      await new Promise<void>((resolve) => proxy!.listen(0, '127.0.0.1', resolve));
      const proxyPort = (proxy.address() as { port: number }).port;

      // 3. Prometheus scraping both every second (JSON is YAML).
      directory = await mkdtemp(path.join(os.tmpdir(), 'poolwatch-dashboard-'));
      await writeFile(
        path.join(directory, 'prometheus.yml'),
        JSON.stringify({
          global: { scrape_interval: '1s', evaluation_interval: '1s' },
          scrape_configs: [
            { job_name: 'poolwatch-js', static_configs: [{ targets: [`127.0.0.1:${appPort}`] }] },
            {
              job_name: 'otel-collector',
              honor_labels: true,
              static_configs: [{ targets: [`127.0.0.1:${proxyPort}`] }],
            },
          ],
        }),
      );
      const port = await freePort();
      let log = '';
      prometheus = spawn(
        'prometheus',
        [
          `--config.file=${path.join(directory, 'prometheus.yml')}`,
          `--storage.tsdb.path=${path.join(directory, 'data')}`,
          `--web.listen-address=127.0.0.1:${port}`,
          '--log.level=warn',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      prometheus.stdout!.on('data', (chunk: Buffer) => (log += chunk.toString()));
      prometheus.stderr!.on('data', (chunk: Buffer) => (log += chunk.toString()));

      // 4. Every dashboard query, as Grafana would send it with "All" selected, until each returns
      //    poolwatch's data for both jobs.
      const queries = dashboardQueries(readDashboard()).map(({ title, expr }) => ({
        title,
        expr: expr
          .replaceAll('$__rate_interval', '5s')
          .replaceAll('$__range', '5m')
          .replace(/\$(job|instance|pool)\b/g, '.*'),
      }));
      type Sample = { metric: Record<string, string>; value: [number, string] };
      const JOBS = ['poolwatch-js', 'poolwatch-example'];
      const query = async (expr: string): Promise<Sample[] | undefined> => {
        const response = await fetch(
          `http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(expr)}`,
        ).catch(() => undefined);
        if (!response?.ok) return undefined;
        return ((await response.json()) as { data: { result: Sample[] } }).data.result;
      };
      const missing = (results: Sample[] | undefined) =>
        JOBS.filter(
          (job) => !results?.some((r) => r.metric.job === job && !Number.isNaN(Number(r.value[1]))),
        );
      let results = new Map<string, Sample[] | undefined>();
      const deadline = started + 45_000;
      for (;;) {
        if (prometheus.exitCode !== null) assert.fail(`prometheus exited:\n${log}`);
        if (app.exitCode !== null) assert.fail(`the example app exited:\n${appLog}`);
        results = new Map();
        for (const { title, expr } of queries) results.set(title, await query(expr));
        if ([...results.values()].every((r) => missing(r).length === 0)) break;
        if (Date.now() > deadline) break;
        await sleep(500);
      }
      for (const { title, expr } of queries) {
        assert.deepEqual(
          missing(results.get(title)),
          [],
          `"${title}" has no data for these jobs after ${Math.round((Date.now() - started) / 1000)} s:\n${expr}\n${appLog.slice(-2000)}`,
        );
      }

      // Counted once: poolwatch's own counts (max 5), never instrumentation-pg's 99.
      const series = (title: string, job: string) =>
        results.get(title)!.filter((r) => r.metric.job === job);
      for (const job of JOBS) {
        const max = series('Connections: used, idle and max [2]', job);
        assert.deepEqual(
          max.map((r) => [r.metric.db_client_connection_pool_name, r.value[1]]),
          [['bank', '5']],
        );
        for (const r of series('Connections: used, idle and max [1]', job)) {
          assert.ok(Number(r.value[1]) <= 5, `${job}: ${JSON.stringify(r)}`);
        }
        for (const r of series('Pending requests', job)) assert.ok(Number(r.value[1]) < 99);
        assert.ok(Number(series('Oldest hold', job)[0]!.value[1]) > 0, `${job}: oldest hold`);
        const locations = series('Leaking code locations [1]', job).map(
          (r) => `${r.metric.code_function_name ?? ''} ${path.basename(r.metric.code_file_path!)}`,
        );
        assert.ok(locations.includes('exportReport app.ts'), `${job}: ${locations.join(', ')}`);
      }

      if (process.env.POOLWATCH_DASHBOARD_RESULTS) {
        for (const { title } of queries) {
          for (const r of results.get(title)!) {
            const { job, ...labels } = r.metric;
            delete labels.instance;
            console.log(`${title} | ${job} | ${JSON.stringify(labels)} | ${r.value[1]}`);
          }
        }
      }
    });
  });
});
