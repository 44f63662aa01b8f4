/**
 * poolwatch demo (driver-free): a pool of real TCP connections to a small local echo server,
 * one request handler that forgets to release, and what poolwatch tells you about it.
 *
 *   npm run demo
 */
import { once } from 'node:events';
import net from 'node:net';
import { formatLeakReport, Pool, type Alert } from '../src';

async function main(): Promise<void> {
  const server = net.createServer((socket) => socket.pipe(socket));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;

  const pool = new Pool<net.Socket>({
    name: 'echo',
    max: 3,
    acquireTimeoutMillis: 1500,
    leakDetectionThresholdMillis: 500,
    housekeepingIntervalMillis: 100,
    // The default, 'auto', samples one acquire in 16 until the pool shows pressure, then records
    // every acquire. A demo this short wants every stack.
    captureStacks: 'always',
    health: { intervalMillis: 200, maxHoldMillis: 800 },
    onAlert: (alert: Alert) => console.log(`[${alert.severity.toUpperCase()}] ${alert.message}\n`),
    factory: {
      server: { system: 'echo', address: '127.0.0.1', port },
      async create(context) {
        const socket = net.connect(port, '127.0.0.1');
        await once(socket, 'connect');
        socket.on('error', (error) => context.markBroken(error));
        return socket;
      },
      destroy: (socket) => void socket.destroy(),
    },
  });

  async function query(socket: net.Socket, text: string): Promise<string> {
    socket.write(text);
    const [data] = (await once(socket, 'data')) as [Buffer];
    return data.toString();
  }

  // A well-behaved handler: use() releases on success, destroys on error.
  console.log('echo:', await pool.use((socket) => query(socket, 'hello')));

  // A handler that keeps its connection (say, a forgotten release on an error path).
  const kept = await (async function reportHandler() {
    const lease = await pool.acquire();
    await query(lease.resource, 'SELECT report');
    return lease; // never released
  })();

  // A handler that drops its lease without releasing it: found after garbage collection.
  await (async function checkoutHandler() {
    const lease = await pool.acquire();
    await query(lease.resource, 'BEGIN');
  })();

  await new Promise((resolve) => setTimeout(resolve, 900));
  (globalThis as { gc?: () => void }).gc?.();
  await new Promise((resolve) => setTimeout(resolve, 100));

  console.log(formatLeakReport(pool.leakReport()), '\n');
  console.log('stats:', pool.stats());

  kept.release();
  const report = await pool.close();
  console.log(`closed; ${report.forced.length} lease(s) had to be forced`);
  server.close();
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
