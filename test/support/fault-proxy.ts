/**
 * A TCP proxy on 127.0.0.1 that breaks the network between a pool and its server on command,
 * for fault-injection tests against real PostgreSQL and MariaDB:
 *
 *     pool ──► 127.0.0.1:proxy.port ──► server
 *
 * - `blackhole({ existing, incoming })`: bytes are dropped silently, in both directions, on the
 *   connections that exist now (a query in flight never gets its answer; an idle connection
 *   looks fine until used) and/or on new ones (accepted, never connected: the client's connect
 *   hangs in the handshake). Nothing is closed: nobody is told.
 * - `heal()`: new connections work again. A blackholed connection stays dead, as after a NAT or
 *   firewall forgot it: its server side is closed (the server notices, as it would by its
 *   keepalive probes), and the next bytes the client sends get a reset (RST). A client that
 *   sends nothing (waiting for an answer) is not told: only its own timeouts end its wait.
 * - `refuse()`: stop listening (ECONNREFUSED) until `heal()`.
 * - `resetAll()`: every connection is reset (RST) on both sides.
 * - `latency(ms)`: each chunk is delayed by `ms`, in both directions, order kept.
 *
 * A userspace proxy cannot drop TCP keepalive probes (the proxy's kernel answers them), so
 * keepalive cannot be observed through it; tests use the drivers' query timeouts instead.
 */
import net from 'node:net';

interface Pair {
  readonly client: net.Socket;
  upstream: net.Socket | undefined;
  /** Bytes are dropped (blackholed); after heal, the client's next bytes get a reset. */
  dead: boolean;
}

export class FaultProxy {
  readonly #server: net.Server;
  readonly #target: { host: string; port: number };
  readonly #pairs = new Set<Pair>();
  #port = 0;
  #blackholeIncoming = false;
  #healed = true;
  #latencyMillis = 0;
  #listening = false;
  /** Connections accepted so far. */
  accepted = 0;

  private constructor(target: { host: string; port: number }) {
    this.#target = target;
    this.#server = net.createServer((socket) => this.#accept(socket));
  }

  /** Starts a proxy to `target` on a free port of 127.0.0.1. */
  static async start(target: { host: string; port: number }): Promise<FaultProxy> {
    const proxy = new FaultProxy(target);
    await proxy.#listen(0);
    return proxy;
  }

  get port(): number {
    return this.#port;
  }

  /** Client connections still open (dead ones included). */
  get connections(): number {
    let open = 0;
    for (const pair of this.#pairs) if (!pair.client.destroyed) open++;
    return open;
  }

  blackhole({ existing = true, incoming = true } = {}): void {
    this.#healed = false;
    if (existing) for (const pair of this.#pairs) pair.dead = true;
    if (incoming) this.#blackholeIncoming = true;
  }

  async heal(): Promise<void> {
    this.#healed = true;
    this.#blackholeIncoming = false;
    for (const pair of [...this.#pairs]) {
      if (!pair.dead) continue;
      pair.upstream?.resetAndDestroy();
      if (pair.client.destroyed) this.#pairs.delete(pair);
    }
    if (!this.#listening) await this.#listen(this.#port);
  }

  async refuse(): Promise<void> {
    this.#healed = false;
    if (!this.#listening) return;
    this.#listening = false;
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      // close() waits for open connections; it only needs to stop accepting.
      setImmediate(resolve);
    });
  }

  resetAll(): void {
    for (const pair of [...this.#pairs]) {
      pair.client.resetAndDestroy();
      pair.upstream?.resetAndDestroy();
      this.#pairs.delete(pair);
    }
  }

  latency(ms: number): void {
    this.#latencyMillis = ms;
  }

  async close(): Promise<void> {
    this.resetAll();
    this.#listening = false;
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #listen(port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, '127.0.0.1', () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    this.#port = (this.#server.address() as net.AddressInfo).port;
    this.#listening = true;
  }

  #accept(client: net.Socket): void {
    this.accepted++;
    const pair: Pair = { client, upstream: undefined, dead: false };
    this.#pairs.add(pair);
    client.on('error', () => undefined);
    client.on('close', () => {
      // A live connection closes end to end; a dead one's close is lost on the way, and its
      // server side stays open until the path heals.
      if (!pair.dead) {
        this.#pairs.delete(pair);
        pair.upstream?.destroy();
      }
    });
    client.on('data', (chunk: Buffer) => {
      if (pair.dead) {
        if (this.#healed) client.resetAndDestroy(); // the path forgot this connection
        return;
      }
      this.#forward(pair, () => pair.upstream, chunk);
    });
    if (this.#blackholeIncoming) {
      pair.dead = true; // accepted, never connected: the handshake hangs
      return;
    }
    const upstream = net.connect(this.#target.port, this.#target.host);
    pair.upstream = upstream;
    upstream.on('error', () => undefined);
    upstream.on('close', () => {
      if (!pair.dead) client.destroy();
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!pair.dead) this.#forward(pair, () => client, chunk);
    });
  }

  #forward(pair: Pair, to: () => net.Socket | undefined, chunk: Buffer): void {
    const write = () => {
      const socket = to();
      if (pair.dead || socket === undefined || socket.destroyed) return;
      socket.write(chunk); // queued by the socket while it still connects
    };
    if (this.#latencyMillis > 0) setTimeout(write, this.#latencyMillis).unref();
    else write();
  }
}
