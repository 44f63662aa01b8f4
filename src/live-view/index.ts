/**
 * A live view of held connections: every open pool in the process, its counts, and every lease
 * held right now, oldest first, with the code that acquired it. Jaeger and Grafana show what has
 * happened; this shows what is happening.
 *
 * It is a plain Node request handler, `(req, res) => void`, so it mounts anywhere:
 *
 *     http.createServer((req, res) => req.url?.startsWith('/poolwatch') ? view(req, res) : app(req, res));
 *     expressApp.use('/poolwatch', view);
 *     fastify.get('/poolwatch', (req, reply) => { reply.hijack(); view(req.raw, reply.raw); });
 *
 * It answers HTML (a static page that reloads itself: no script, no client framework) or, with
 * `?format=json` or `Accept: application/json`, the same data as JSON. Nothing runs until it is
 * mounted and asked; it reads `openPools` and each pool's `leakReport()` at each request.
 *
 * Hazard: the page shows file paths, function names and stacks of the application. Mount it on an
 * internal port or behind authentication; never expose it publicly.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { codeLocationOf, type CodeLocation } from '../code-location';
import { codeLocation } from '../watch/stack';
import { InvalidOptionError } from '../errors';
import { openPools, type PoolRef } from '../events';
import { poolReport } from '../held-leases';
import type { PoolStats, ServerInfo } from '../types';
import { renderHtml } from './html';

export interface LiveViewOptions {
  /**
   * Seconds between reloads of the HTML page (0: no reload).
   * @default 2
   */
  refreshSeconds?: number;
  /**
   * Holds listed per pool, oldest first; the rest are counted, not listed.
   * @default 200
   */
  maxHoldsPerPool?: number;
  /**
   * Sees every stack before the page shows it (as `PoolInstrumentation`'s option of the same name
   * does for telemetry): return it shortened or redacted, or `undefined` to show none. The code
   * location is read from what it returns. A hook that throws shows no stack.
   */
  redactStack?: (stack: string) => string | undefined;
}

/** One lease held now. */
export interface LiveViewHold {
  readonly leaseId: number;
  readonly resourceId: number;
  readonly ageSeconds: number;
  /** ISO time when the lease was handed out. */
  readonly acquiredAt: string;
  /** Held past the pool's leak detection threshold. */
  readonly suspected: boolean;
  /** Where it was acquired; `null` when no stack was captured for it. */
  readonly location: CodeLocation | null;
  /** The acquisition stack, caller's frames first; `null` when none was captured. */
  readonly stack: string | null;
}

export interface LiveViewPool {
  readonly name: string;
  readonly server: ServerInfo | null;
  readonly stats: PoolStats;
  /** Age of the oldest hold, in seconds; 0 when nothing is held, `null` when unknown. */
  readonly oldestHoldSeconds: number | null;
  /** Oldest first; `null` when the pool cannot list its holds. */
  readonly holds: LiveViewHold[] | null;
  /** Holds beyond `maxHoldsPerPool`, not listed. */
  readonly holdsNotListed: number;
}

export interface LiveViewSnapshot {
  /** ISO time of the snapshot. */
  readonly generatedAt: string;
  readonly pools: LiveViewPool[];
}

export type LiveViewHandler = (req: IncomingMessage, res: ServerResponse) => void;

/** The request handler; see the module comment for mounting and the README for its hazard. */
export function liveView(options: LiveViewOptions = {}): LiveViewHandler {
  const refreshSeconds = checkNumber(options, 'refreshSeconds', 2);
  const maxHolds = checkNumber(options, 'maxHoldsPerPool', 200);
  const redactStack = options.redactStack;
  if (redactStack !== undefined && typeof redactStack !== 'function') {
    throw new InvalidOptionError(
      'liveView: option "redactStack" must be a function (stack) => string | undefined.',
    );
  }
  for (const key of Object.keys(options)) {
    if (key !== 'refreshSeconds' && key !== 'maxHoldsPerPool' && key !== 'redactStack') {
      throw new InvalidOptionError(
        `liveView: unknown option "${key}". Known options: refreshSeconds, maxHoldsPerPool, redactStack.`,
      );
    }
  }
  return (req, res) => {
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
        res.end('Method Not Allowed\n');
        return;
      }
      const snapshot = liveViewSnapshot(openPools, maxHolds, redactStack);
      if (wantsJson(req)) {
        send(req, res, 'application/json; charset=utf-8', JSON.stringify(snapshot, null, 2));
      } else {
        send(req, res, 'text/html; charset=utf-8', renderHtml(snapshot, refreshSeconds), {
          // The page has no script; forbid any that might slip in.
          'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'",
        });
      }
    } catch (error) {
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
      }
      res.end(`poolwatch live view failed: ${error instanceof Error ? error.name : 'error'}\n`);
    }
  };
}

/** The data the live view shows, for `pools` (every open pool by default). */
export function liveViewSnapshot(
  pools: Iterable<PoolRef> = openPools,
  maxHoldsPerPool = 200,
  redactStack?: (stack: string) => string | undefined,
): LiveViewSnapshot {
  const now = Date.now();
  const result: LiveViewPool[] = [];
  for (const pool of pools) {
    let stats: PoolStats;
    let held;
    try {
      ({ stats, held } = poolReport(pool));
    } catch {
      continue; // a pool that fails to report is left out, not the whole page
    }
    let holds: LiveViewHold[] | null = null;
    let oldest: number | null = null;
    let notListed = 0;
    if (held !== undefined) {
      const sorted = [...held].sort((a, b) => b.ageMillis - a.ageMillis);
      oldest = sorted.length > 0 ? sorted[0]!.ageMillis / 1000 : 0;
      notListed = Math.max(0, sorted.length - maxHoldsPerPool);
      holds = sorted.slice(0, maxHoldsPerPool).map((lease) => {
        const stack = redactStack === undefined ? lease.stack : redacted(lease.stack, redactStack);
        const location = redactStack === undefined ? codeLocationOf(lease) : codeLocation(stack);
        return {
          leaseId: lease.id,
          resourceId: lease.resourceId,
          ageSeconds: lease.ageMillis / 1000,
          acquiredAt: new Date(lease.acquiredAt).toISOString(),
          suspected: lease.suspected,
          location: location ?? null,
          stack: stack ?? null,
        };
      });
    }
    result.push({
      name: pool.name,
      server: pool.server ?? null,
      stats,
      oldestHoldSeconds: oldest,
      holds,
      holdsNotListed: notListed,
    });
  }
  // By name: a page that reloads every few seconds must not reorder itself.
  result.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { generatedAt: new Date(now).toISOString(), pools: result };
}

function redacted(
  stack: string | undefined,
  redact: (stack: string) => string | undefined,
): string | undefined {
  if (stack === undefined) return undefined;
  try {
    const result = redact(stack);
    return typeof result === 'string' ? result : undefined;
  } catch {
    return undefined;
  }
}

function wantsJson(req: IncomingMessage): boolean {
  const query = new URL(req.url ?? '/', 'http://localhost').searchParams;
  const format = query.get('format');
  if (format !== null) return format === 'json';
  const accept = req.headers.accept ?? '';
  return accept.includes('application/json') && !accept.includes('text/html');
}

function send(
  req: IncomingMessage,
  res: ServerResponse,
  contentType: string,
  body: string,
  extra: Record<string, string> = {},
): void {
  res.writeHead(200, {
    'content-type': contentType,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...extra,
  });
  res.end(req.method === 'HEAD' ? undefined : body);
}

function checkNumber(
  options: LiveViewOptions,
  key: 'refreshSeconds' | 'maxHoldsPerPool',
  fallback: number,
): number {
  const value = options[key];
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw new InvalidOptionError(
      `liveView: ${key} must be a whole number >= 0, got ${typeof value === 'number' ? value : typeof value}.`,
    );
  }
  return value;
}
