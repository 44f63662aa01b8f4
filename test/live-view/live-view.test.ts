import assert from 'node:assert/strict';
import path from 'node:path';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import sinon from 'sinon';
import {
  InvalidOptionError,
  Pool,
  liveView,
  openPools,
  type LiveViewSnapshot,
  type PoolRef,
  type PoolStats,
} from '../../src';
import { plainFactory, type FakeResource } from '../support/fake-factory';

/** This file as code locations name it: relative to the working directory. */
const FILE = path.relative(process.cwd(), __filename);

/** A real HTTP server around the handler, mounted under /ops/pools as an application would. */
async function serve(handler: http.RequestListener) {
  const server = http.createServer((req, res) => {
    if (req.url?.startsWith('/ops/pools')) return handler(req, res);
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/ops/pools`;
  return {
    base,
    request(path = '', init?: RequestInit) {
      return fetch(base + path, init);
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('liveView', () => {
  const suffix = `${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  let clock: sinon.SinonFakeTimers;
  const pools: Pool<FakeResource>[] = [];
  const foreign: PoolRef[] = [];
  let server: Awaited<ReturnType<typeof serve>>;

  beforeEach(async () => {
    // Only the pool's clock and tick are faked: the HTTP server and fetch keep real timers.
    clock = sinon.useFakeTimers({
      now: Date.parse('2026-12-01T12:00:00Z'),
      toFake: ['setInterval', 'clearInterval', 'Date', 'performance'],
    });
    server = await serve(liveView({ refreshSeconds: 5 }));
  });
  afterEach(async () => {
    await server.close();
    for (const ref of foreign.splice(0)) openPools.delete(ref);
    const closing = pools.splice(0).map((p) => p.close());
    clock.restore();
    await Promise.all(closing);
  });

  function pool(name: string): Pool<FakeResource> {
    const p = new Pool({
      name: `${name}-${suffix}`,
      factory: plainFactory(),
      captureStacks: 'always',
      leakDetectionThresholdMillis: 30_000,
      housekeepingIntervalMillis: 1000,
      detectSelfDeadlock: false,
      closeTimeoutMillis: 0,
    });
    pools.push(p);
    return p;
  }

  function acquireInReportJob(p: Pool<FakeResource>) {
    return p.acquire(); // report-job line
  }
  function acquireInCheckout(p: Pool<FakeResource>) {
    return p.acquire(); // checkout line
  }

  async function json(path = '?format=json'): Promise<LiveViewSnapshot> {
    const response = await server.request(path);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('content-type'), 'application/json; charset=utf-8');
    return (await response.json()) as LiveViewSnapshot;
  }

  const mine = (snapshot: LiveViewSnapshot) =>
    snapshot.pools.filter((p) => p.name.endsWith(suffix));

  it('lists every open pool with its counts and its holds, oldest first, with code locations', async () => {
    const orders = pool('orders');
    const reports = pool('reports');
    const oldest = await acquireInReportJob(orders);
    clock.tick(40_000); // past the leak threshold: the tick marks it suspected
    const newer = await acquireInCheckout(orders);
    clock.tick(2_500);
    await reports.acquire().then((l) => l.release());

    const snapshot = await json();
    assert.equal(snapshot.generatedAt, '2026-12-01T12:00:42.500Z');
    const [o, r] = mine(snapshot);
    assert.equal(o!.name, `orders-${suffix}`);
    assert.equal(r!.name, `reports-${suffix}`);
    assert.deepEqual(
      {
        used: o!.stats.used,
        idle: o!.stats.idle,
        suspected: o!.stats.suspectedLeaks,
        oldest: o!.oldestHoldSeconds,
      },
      { used: 2, idle: 0, suspected: 1, oldest: 42.5 },
    );
    assert.deepEqual(
      o!.holds!.map((h) => ({
        id: h.leaseId,
        age: h.ageSeconds,
        at: h.acquiredAt,
        suspected: h.suspected,
        fn: h.location?.functionName,
        file: h.location?.filePath,
      })),
      [
        {
          id: oldest.info.id,
          age: 42.5,
          at: '2026-12-01T12:00:00.000Z',
          suspected: true,
          fn: 'acquireInReportJob',
          file: FILE,
        },
        {
          id: newer.info.id,
          age: 2.5,
          at: '2026-12-01T12:00:40.000Z',
          suspected: false,
          fn: 'acquireInCheckout',
          file: FILE,
        },
      ],
    );
    assert.match(o!.holds![0]!.stack!, /^at acquireInReportJob \(.*live-view\.test\.ts:\d+:\d+\)/);
    assert.deepEqual(
      { holds: r!.holds, oldest: r!.oldestHoldSeconds, idle: r!.stats.idle },
      { holds: [], oldest: 0, idle: 1 },
    );

    // The same in the HTML page.
    const page = await server.request('', { headers: { accept: 'text/html' } });
    assert.equal(page.status, 200);
    assert.equal(page.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.equal(page.headers.get('cache-control'), 'no-store');
    assert.equal(
      page.headers.get('content-security-policy'),
      "default-src 'none'; style-src 'unsafe-inline'",
    );
    const html = await page.text();
    assert.match(html, /<meta http-equiv="refresh" content="5">/);
    assert.match(html, new RegExp(`<h2>orders-${suffix}</h2>`));
    const rows = [
      ...html.matchAll(
        /<tr( class="suspected")?>\n<td class="num">#(\d+).*?<\/td>\n<td class="num">([\d.]+) s<\/td>\n<td class="time">[^<]*<\/td>\n<td><code>([^<]*)<\/code>/g,
      ),
    ];
    const orderRows = rows.filter((m) => [oldest.info.id, newer.info.id].includes(Number(m[2])));
    assert.deepEqual(
      orderRows.map((m) => [Boolean(m[1]), Number(m[2]), m[3], m[4]!.replace(/:\d+\)$/, ')')]),
      [
        [true, oldest.info.id, '42.5', `acquireInReportJob (${FILE})`],
        [false, newer.info.id, '2.5', `acquireInCheckout (${FILE})`],
      ],
    );
    assert.match(html, /No leases held\./);
    oldest.release();
    newer.release();
  });

  it('answers JSON to Accept: application/json, and HTML by default', async () => {
    pool('neg');
    const asJson = await server.request('', { headers: { accept: 'application/json' } });
    assert.equal(asJson.headers.get('content-type'), 'application/json; charset=utf-8');
    const asHtml = await server.request('');
    assert.equal(asHtml.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.match(await asHtml.text(), /^<!doctype html>/);
  });

  it('escapes pool names, paths and stacks in the page', async () => {
    const evil = pool(`<script>alert("x")</script><img src=x onerror='y'>&`);
    const lease = await evil.acquire();
    const html = await (await server.request('')).text();
    assert.doesNotMatch(html, /<script|<img/);
    assert.ok(
      html.includes(
        `<h2>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=x onerror=&#39;y&#39;&gt;&amp;-${suffix}</h2>`,
      ),
    );
    lease.release();
  });

  it('shows a pool that cannot list its holds as such, and drops closed pools', async () => {
    const stats = { name: `foreign-${suffix}`, used: 3, idle: 1, max: 5 } as PoolStats;
    const ref: PoolRef = {
      name: `foreign-${suffix}`,
      server: { system: 'postgresql', address: 'db', port: 5432, namespace: 'app' },
      stats: () => stats,
    };
    openPools.add(ref);
    foreign.push(ref);
    const gone = pool('gone');
    await gone.close();
    const snapshot = await json();
    assert.deepEqual(
      mine(snapshot).map((p) => [p.name, p.holds, p.oldestHoldSeconds, p.server]),
      [
        [
          `foreign-${suffix}`,
          null,
          null,
          { system: 'postgresql', address: 'db', port: 5432, namespace: 'app' },
        ],
      ],
    );
    const html = await (await server.request('')).text();
    assert.match(html, /<p class="server">postgresql db:5432\/app<\/p>/);
    assert.match(html, /This pool does not list its holds\./);
  });

  it('answers HEAD without a body, and refuses other methods', async () => {
    const head = await server.request('', { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), '');
    const post = await server.request('', { method: 'POST' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET, HEAD');
  });

  it('rejects bad options, naming them', () => {
    assert.throws(() => liveView({ refreshSeconds: -1 }), {
      name: 'InvalidOptionError',
      message: 'liveView: refreshSeconds must be a whole number >= 0, got -1.',
    });
    assert.throws(() => liveView({ maxHoldsPerPool: 'x' as never }), InvalidOptionError);
    assert.throws(() => liveView({ refresh: 1 } as never), {
      message:
        'liveView: unknown option "refresh". Known options: refreshSeconds, maxHoldsPerPool, redactStack.',
    });
  });

  it('lists at most maxHoldsPerPool holds and counts the rest', async () => {
    const own = await serve(liveView({ maxHoldsPerPool: 1, refreshSeconds: 0 }));
    try {
      const p = pool('many');
      const a = await p.acquire();
      clock.tick(1000);
      const b = await p.acquire();
      const snapshot = (await (await own.request('?format=json')).json()) as LiveViewSnapshot;
      const [many] = mine(snapshot);
      assert.deepEqual(
        [many!.holds!.map((h) => h.leaseId), many!.holdsNotListed],
        [[a.info.id], 1],
      );
      const html = await (await own.request('')).text();
      assert.doesNotMatch(html, /http-equiv="refresh"/);
      assert.match(html, /and 1 more lease\(s\), not listed\./);
      a.release();
      b.release();
    } finally {
      await own.close();
    }
  });
  it('shows stacks through redactStack: redacted, or none when it returns nothing or throws', async () => {
    const hooks = [
      (stack: string) => stack.replace(/\(.*\)/g, '(redacted)'),
      () => undefined,
      () => {
        throw new Error('hook failed');
      },
    ];
    const p = pool('redacted');
    const lease = await acquireInReportJob(p);
    try {
      const [shown, none, thrown] = await Promise.all(
        hooks.map(async (redactStack) => {
          const own = await serve(liveView({ redactStack, refreshSeconds: 0 }));
          try {
            const snapshot = (await (await own.request('?format=json')).json()) as LiveViewSnapshot;
            return mine(snapshot).find((q) => q.name.startsWith('redacted'))!.holds![0]!;
          } finally {
            await own.close();
          }
        }),
      );
      assert.match(shown!.stack!, /^at \S+ \(redacted\)/);
      assert.doesNotMatch(shown!.stack!, /live-view\.test/);
      assert.equal(shown!.location, null, 'the location comes from the redacted stack');
      assert.deepEqual([none!.stack, none!.location, thrown!.stack], [null, null, null]);
      assert.throws(() => liveView({ redactStack: 'x' as never }), /redactStack/);
    } finally {
      lease.release();
    }
  });
});
