/**
 * Runs an unmodified application in a child process the way the zero-code tests do: OTLP/HTTP
 * (JSON) export to an in-test receiver, the SDK's Prometheus exporter on a free port (the app
 * scrapes itself while its pool is open and prints the exposition), and one status line.
 */
import { execFile, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { OtlpReceiver } from './otlp-receiver';
import { getPostgres } from './postgres';

const ROOT = join(__dirname, '..', '..');

/** What a zero-code run of the application produced. */
export interface Run {
  stdout: string;
  stderr: string;
  received: OtlpReceiver;
  /** The Prometheus exposition the app scraped from itself while its pool was open. */
  exposition: string;
  /** The app's last line: whether poolwatch registered, and the pools it watches. */
  status: { registered: boolean; watchedPools: string[] };
}

/** Runs the unmodified pg application with `args` before it, OTEL_* configured, and `env`. */
export async function runApp(
  args: string[],
  app: string,
  env: Record<string, string> = {},
  options: { node?: string; cwd?: string } = {},
): Promise<Run> {
  const received = new OtlpReceiver();
  const endpoint = await received.start();
  const { connectionString } = await getPostgres();
  const prometheusPort = await freePort();
  try {
    const { stdout, stderr } = await promisify(execFile)(
      options.node ?? process.execPath,
      [...args, app],
      {
        cwd: options.cwd ?? ROOT,
        timeout: 60_000,
        env: {
          PATH: process.env.PATH,
          // The child must not inherit tsx from the test runner.
          NODE_OPTIONS: '',
          DATABASE_URL: connectionString,
          OTEL_SERVICE_NAME: 'zero-code-test',
          OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
          OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
          OTEL_TRACES_EXPORTER: 'otlp',
          OTEL_LOGS_EXPORTER: 'otlp',
          OTEL_METRICS_EXPORTER: 'otlp,prometheus',
          OTEL_EXPORTER_PROMETHEUS_PORT: String(prometheusPort),
          // No cloud metadata look-ups (seconds each on a machine without them).
          OTEL_NODE_RESOURCE_DETECTORS: 'env,host,os,process',
          OTEL_INSTRUMENTATION_POOLWATCH_LEAK_DETECTION_THRESHOLD_MILLIS: '100',
          OTEL_INSTRUMENTATION_POOLWATCH_CAPTURE_STACKS: 'always',
          SCRAPE_URL: `http://127.0.0.1:${prometheusPort}/metrics`,
          ...env,
        },
      },
    );
    const lines = stdout.trim().split('\n');
    const status = JSON.parse(lines.pop()!) as Run['status'];
    return { stdout, stderr, received, exposition: lines.join('\n') + '\n', status };
  } finally {
    await received.stop();
  }
}

async function freePort(): Promise<number> {
  const net = await import('node:net');
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** `promtool check metrics` on an exposition: status and problems (null without promtool). */
export function promtool(exposition: string): { status: number | null; problems: string[] } | null {
  const result = spawnSync('promtool', ['check', 'metrics'], {
    input: exposition,
    encoding: 'utf8',
  });
  if ((result.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') return null;
  const problems = `${result.stdout}${result.stderr}`.trim().split('\n').filter(Boolean);
  return { status: result.status, problems };
}

/** Prometheus samples of one metric name: `[labels, value]`. */
export function samples(exposition: string, name: string): [Record<string, string>, number][] {
  const out: [Record<string, string>, number][] = [];
  for (const line of exposition.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)\{(.*)\} (\S+)$/.exec(line);
    if (match === null || match[1] !== name) continue;
    const labels: Record<string, string> = {};
    for (const [, key, value] of match[2]!.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key!] = value!;
    }
    out.push([labels, Number(match[3])]);
  }
  return out;
}
