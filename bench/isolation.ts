/**
 * Process isolation: every case (row) runs in its own child process, driven over IPC.
 *
 * Why: some subjects change process-wide state that taxes everything that runs after them.
 * The motivating case is poolwatch itself: its acquire() calls AsyncLocalStorage#enterWith,
 * which on Node 20 installs a PromiseHook for the rest of the process. Measured in one
 * process, that made the *other* rows 3-5x slower (empty async cycle 76 ns alone vs 357 ns
 * after a poolwatch sample). Separate processes also keep JIT feedback and heaps apart.
 *
 * Interleaving is unchanged: the parent still asks for sample 1 of every case, then sample 2,
 * ...; a child is idle (blocked on IPC, no CPU) while another one measures.
 */
import type { ChildProcess } from 'node:child_process';
import { fork } from 'node:child_process';
import type { Case, CaseHost, HostFactory, RunConfig, Timing } from './harness';
import { SubjectUnavailableError, calibrate, caseId, sampleOnce } from './harness';

type Request = { type: 'calibrate' } | { type: 'sample'; ops: number };

type Reply =
  | { type: 'ready' }
  | { type: 'calibrated'; nsPerOp: number }
  | { type: 'sampled'; timing: Timing }
  | { type: 'unavailable'; reason: string }
  | { type: 'failed'; error: string };

/**
 * Host factory that forks `script` once per case with `args` plus `childFlag <case id>`.
 * The script must answer that flag by calling `serveCase()` for the case with that id.
 */
export function childProcessHosts(script: string, args: string[], childFlag: string): HostFactory {
  return (c: Case): CaseHost => {
    const child = fork(script, [...args, childFlag, caseId(c)], {
      // Inherit tsx's loader flags; --expose-gc lets the child GC between samples.
      execArgv: [...process.execArgv, '--expose-gc'],
      // The parent's stdout carries the report; anything a child prints goes to stderr.
      stdio: ['ignore', 2, 2, 'ipc'],
    });
    return new ChildHost(child, caseId(c));
  };
}

/** Parent side: strictly one request in flight per child, so one pending slot suffices. */
class ChildHost implements CaseHost {
  private pending: { resolve: (r: Reply) => void; reject: (e: Error) => void } | undefined;
  private readonly started: Promise<Reply>;
  private exited = false;

  constructor(
    private readonly child: ChildProcess,
    private readonly id: string,
  ) {
    this.started = this.nextReply();
    child.on('message', (reply: Reply) => {
      const pending = this.pending;
      this.pending = undefined;
      pending?.resolve(reply);
    });
    child.on('exit', (code, signal) => {
      this.exited = true;
      this.fail(new Error(`${this.id}: child exited (code ${code}, signal ${signal})`));
    });
    child.on('error', (err) => this.fail(err));
  }

  async ready(): Promise<void> {
    await this.started.then((r) => this.expect(r, 'ready'));
  }

  async calibrate(): Promise<number> {
    return this.expect(await this.request({ type: 'calibrate' }), 'calibrated').nsPerOp;
  }

  async sample(ops: number): Promise<Timing> {
    return this.expect(await this.request({ type: 'sample', ops }), 'sampled').timing;
  }

  async close(): Promise<void> {
    if (this.exited) return;
    const exit = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    // Disconnecting makes the child exit on its own; kill only if it does not.
    if (this.child.connected) this.child.disconnect();
    const timer = setTimeout(() => this.child.kill(), 5000);
    await exit;
    clearTimeout(timer);
  }

  private nextReply(): Promise<Reply> {
    return new Promise((resolve, reject) => (this.pending = { resolve, reject }));
  }

  private fail(err: Error): void {
    const pending = this.pending;
    this.pending = undefined;
    pending?.reject(err);
  }

  private request(req: Request): Promise<Reply> {
    if (this.exited) return Promise.reject(new Error(`${this.id}: child has exited`));
    const reply = this.nextReply();
    this.child.send(req);
    return reply;
  }

  private expect<T extends Reply['type']>(reply: Reply, type: T): Extract<Reply, { type: T }> {
    if (reply.type === type) return reply as Extract<Reply, { type: T }>;
    if (reply.type === 'unavailable') throw new SubjectUnavailableError(reply.reason);
    if (reply.type === 'failed') throw new Error(`${this.id} failed in child:\n${reply.error}`);
    throw new Error(`${this.id}: expected ${type} from child, got ${reply.type}`);
  }
}

/** Child side: serves calibrate/sample requests for one case until the parent disconnects. */
export function serveCase(c: Case, config: RunConfig): void {
  const send = (reply: Reply): void => void process.send!(reply);
  process.on('message', (req: Request) => {
    void handle(c, config, req).then(send);
  });
  process.on('disconnect', () => process.exit(0));
  send({ type: 'ready' });
}

async function handle(c: Case, config: RunConfig, req: Request): Promise<Reply> {
  try {
    if (req.type === 'calibrate') {
      return { type: 'calibrated', nsPerOp: await calibrate(c, config) };
    }
    return { type: 'sampled', timing: await sampleOnce(c, req.ops) };
  } catch (err) {
    if (err instanceof SubjectUnavailableError) return { type: 'unavailable', reason: err.message };
    return {
      type: 'failed',
      error: err instanceof Error ? (err.stack ?? err.message) : String(err),
    };
  }
}
