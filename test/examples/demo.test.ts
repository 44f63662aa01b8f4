/**
 * `npm run demo` (examples/demo.ts) as a user runs it, in child processes: the telemetry it
 * serves while it runs, the traces and log records it prints, its options, and that it stops
 * cleanly, by itself or on Ctrl-C, leaving no PostgreSQL behind.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { getPostgres } from '../support/postgres';

const ROOT = path.resolve(__dirname, '../..');

interface Run {
  child: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function demo(args: string[], env: NodeJS.ProcessEnv = {}): Run {
  const { DATABASE_URL: _ignored, ...inherited } = process.env;
  const child = spawn(
    process.execPath,
    ['--expose-gc', '--import', 'tsx', 'examples/demo.ts', ...args],
    {
      cwd: ROOT,
      env: { ...inherited, NODE_OPTIONS: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, output: () => output, exited };
}

async function waitForOutput(
  run: Run,
  pattern: RegExp,
  timeoutMillis: number,
): Promise<RegExpMatchArray> {
  const deadline = Date.now() + timeoutMillis;
  for (;;) {
    const match = pattern.exec(run.output());
    if (match) return match;
    if (run.child.exitCode !== null)
      assert.fail(`the demo exited before ${pattern}:\n${run.output()}`);
    if (Date.now() > deadline)
      assert.fail(`no ${pattern} after ${timeoutMillis} ms:\n${run.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function bounded<T>(promise: Promise<T>, millis: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${millis} ms`)), millis);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

describe('npm run demo', function () {
  this.timeout(60_000);
  // All started at once (each child spends seconds loading the SDK), then checked one by one.
  let help: Run, bad: Run, interrupted: Run, timed: Run;
  before(async () => {
    const database = await getPostgres();
    help = demo(['--help']);
    bad = demo(['--duration', 'soon']);
    interrupted = demo(['--duration', '60', '--port', '0']); // embedded PostgreSQL
    timed = demo(['--duration', '3.5', '--port', '0'], { DATABASE_URL: database.connectionString });
  });
  after(() => {
    for (const run of [help, bad, interrupted, timed]) {
      if (run?.child.exitCode === null) run.child.kill('SIGKILL');
    }
  });

  it('--help prints the options; a bad option is refused with them', async () => {
    assert.deepEqual(await bounded(help.exited, 20_000, '--help'), { code: 0, signal: null });
    assert.match(
      help.output(),
      /^Usage: npm run demo -- \[--duration SECONDS\] \[--port PORT\] \[--help\]/,
    );
    assert.match(help.output(), /Ctrl-C stops the demo cleanly at any point\./);
    assert.deepEqual(await bounded(bad.exited, 20_000, 'bad option'), { code: 2, signal: null });
    assert.match(
      bad.output(),
      /^--duration must be a number of seconds >= 0, got "soon"\n\nUsage:/,
    );
  });

  it('serves /metrics and the live view on embedded PostgreSQL, and stops cleanly on Ctrl-C', async () => {
    const run = interrupted;
    const [, base] = await waitForOutput(
      run,
      /Prometheus metrics: +(http:\/\/127\.0\.0\.1:\d+)\/metrics/,
      20_000,
    );
    const [, pgPort] = await waitForOutput(
      run,
      /embedded PostgreSQL on 127\.0\.0\.1:(\d+)/,
      30_000,
    );
    await waitForOutput(run, /Serving for 60 s \(Ctrl-C to stop\)/, 30_000);

    const metrics = await (await fetch(`${base}/metrics`)).text();
    assert.match(
      metrics,
      /^poolwatch_hold_oldest_age\{db_client_connection_pool_name="bank",otel_scope_name="poolwatch",otel_scope_version="[^"]+"\} [\d.]+$/m,
    );
    assert.match(
      metrics,
      /^poolwatch_code_location_leaks_total\{db_client_connection_pool_name="bank",code_function_name="transfer",code_file_path="[^"]*examples\/demo\.ts",code_line_number="\d+",poolwatch_leak_kind="collected",/m,
    );
    const view = (await (await fetch(`${base}/poolwatch?format=json`)).json()) as {
      pools: {
        name: string;
        holds: { suspected: boolean; location: { functionName?: string } | null }[];
      }[];
    };
    const bank = view.pools.find((p) => p.name === 'bank')!;
    assert.deepEqual(
      bank.holds.map((h) => [h.location?.functionName, h.suspected]),
      [['exportReport', true]],
      'the report lease the story kept',
    );
    const page = await fetch(`${base}/poolwatch`);
    assert.equal(page.headers.get('content-type'), 'text/html; charset=utf-8');

    // The never-returned lease's trace, as exported while it is still held.
    assert.match(
      run.output(),
      /The trace of the report that kept its connection, as exported so far:\n {4}trace [0-9a-f]{32}\n {4}└─ GET \/report {2}\(span [0-9a-f]{16}, [\d.]+ ms\)\n {7}└─ poolwatch\.hold {2}\(span [0-9a-f]{16}: still open, exported when the hold ends\)\n {10}└─ poolwatch\.leak {2}\(span [0-9a-f]{16}, 0\.0 ms\) suspected lease #\d+ age=0\.\d\d s at exportReport \(examples\/demo\.ts:\d+\)\n/,
    );
    assert.match(
      run.output(),
      /WARN {2}poolwatch\.leak\.suspected {2}pool=bank lease #\d+ age=[\d.]+ s trace=[0-9a-f]{32}\n/,
    );
    assert.match(
      run.output(),
      /ERROR poolwatch\.leak\.collected {2}pool=bank lease #\d+ age=[\d.]+ s trace=[0-9a-f]{32}\n/,
    );

    run.child.kill('SIGINT');
    assert.deepEqual(await bounded(run.exited, 15_000, 'exit after SIGINT'), {
      code: 0,
      signal: null,
    });
    assert.match(
      run.output(),
      /SIGINT: stopping\.\.\.\n\n\[ *[\d.]+ s\] Stopped: pool closed, PostgreSQL stopped, HTTP server closed\.\n$/,
    );
    assert.equal(await portOpen(Number(pgPort)), false, 'the embedded PostgreSQL is stopped');
    assert.equal(await portOpen(Number(new URL(base!).port)), false, 'the HTTP server is closed');
  });

  it('ends by itself after --duration, with the traces of a reclaimed and a collected lease', async () => {
    const run = timed;
    assert.deepEqual(await bounded(run.exited, 40_000, 'the demo'), { code: 0, signal: null });
    const output = run.output();
    assert.match(
      output,
      /now that the pool took it back:\n {4}trace [0-9a-f]{32}\n {4}└─ GET \/report {2}\(span [0-9a-f]{16}, [\d.]+ ms\)\n {7}└─ poolwatch\.hold {2}\(span [0-9a-f]{16}, [\d.]+ ms\) lease #\d+ outcome=reclaimed ERROR "lease reclaimed"\n {10}├─ poolwatch\.leak .* suspected lease #\d+ age=0\.\d\d s at exportReport \(examples\/demo\.ts:\d+\)\n {10}└─ poolwatch\.leak .* reclaimed lease #\d+ age=4\.\d\d s at exportReport \(examples\/demo\.ts:\d+\) ERROR "lease reclaimed"\n/,
    );
    assert.match(
      output,
      /dropped its connection inside a transaction:\n {4}trace [0-9a-f]{32}\n {4}└─ POST \/transfer .* ERROR "account 2 is frozen"\n {7}└─ poolwatch\.hold .* outcome=collected ERROR "lease collected"\n {10}├─ poolwatch\.leak .* suspected .* at transfer \(examples\/demo\.ts:\d+\)\n {10}└─ poolwatch\.leak .* collected .* at transfer \(examples\/demo\.ts:\d+\) ERROR "lease collected"\n/,
    );
    assert.match(output, /Done: pool closed, PostgreSQL stopped, HTTP server closed\.\n$/);
  });
});
