/**
 * The live view in a real browser: Debian's headless Chromium, driven by playwright-core (no
 * browser download). It loads the page served by a real HTTP server over pools of real PostgreSQL
 * connections, checks what a person sees, that a hostile pool name stays text, and that the page
 * reloads itself. `UPDATE_SCREENSHOTS=1` rewrites docs/live-view.png from this test.
 *
 * Skipped, with a message, when /usr/bin/chromium (apt-get install chromium) is absent.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Client } from 'pg';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import sinon from 'sinon';
import { createPgPool, liveView, type Pool } from '../../src';
import { getPostgres } from '../support/postgres';

const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOT = path.resolve(__dirname, '../../docs/live-view.png');

describe('liveView in headless Chromium', function () {
  this.timeout(60_000);
  const suffix = `${process.pid}`;
  let server: http.Server;
  let url: string;
  let browser: BrowserContext | undefined;
  let profile: string | undefined;
  let clock: sinon.SinonFakeTimers | undefined;
  const pools: Pool<Client>[] = [];

  before(async function () {
    if (!existsSync(CHROMIUM)) {
      console.log(`      (skipped: ${CHROMIUM} not found; apt-get install chromium to run it)`);
      this.skip();
    }
    const view = liveView({ refreshSeconds: 1 });
    server = http.createServer((req, res) => view(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    profile = await mkdtemp(path.join(os.tmpdir(), 'poolwatch-chromium-'));
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1200, height: 760 },
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  });

  after(async () => {
    await browser?.close();
    if (profile) await rm(profile, { recursive: true, force: true });
    if (server) await new Promise((resolve) => server.close(resolve));
  });

  afterEach(async () => {
    const closing = pools.splice(0).map((p) => p.close());
    clock?.restore();
    clock = undefined;
    await Promise.all(closing);
  });

  async function pgPool(name: string, options: Parameters<typeof createPgPool>[1] = {}) {
    const pg = await getPostgres();
    const pool = createPgPool<Client>(pg.connectionString, {
      name,
      max: 5,
      captureStacks: 'always',
      leakDetectionThresholdMillis: 60_000,
      detectSelfDeadlock: false,
      closeTimeoutMillis: 0,
      ...options,
    });
    pools.push(pool);
    return pool;
  }

  /** The sections of this test's pools, as a person reads them. */
  async function read(page: Page) {
    return page.$$eval(
      'section.pool',
      (sections, suffix) =>
        sections
          .filter((s) => s.querySelector('h2')!.textContent!.endsWith(suffix as string))
          .map((s) => ({
            name: s.querySelector('h2')!.textContent,
            server: s.querySelector('.server')?.textContent ?? null,
            counts: s.querySelector('.counts')!.textContent,
            rows: [...s.querySelectorAll('table.holds tbody tr')].map((tr) =>
              [...tr.querySelectorAll('td')].slice(0, 4).map((td) => td.textContent),
            ),
            suspected: s.querySelectorAll('tr.suspected').length,
            note: s.querySelector('p.none')?.textContent ?? null,
          })),
      suffix,
    );
  }

  it('keeps a hostile pool name as text', async () => {
    const evil = await pgPool(
      `<img src=x onerror="document.title='pwned'"><script>document.title='pwned'</script>-${suffix}`,
    );
    const lease = await evil.acquire();
    const page = await browser!.newPage();
    try {
      await page.goto(url);
      assert.equal(await page.title(), 'poolwatch: held connections');
      assert.equal(await page.locator('section.pool img, script').count(), 0);
      const [section] = await read(page);
      assert.equal(
        section!.name,
        `<img src=x onerror="document.title='pwned'"><script>document.title='pwned'</script>-${suffix}`,
      );
    } finally {
      lease.release();
      await page.close();
    }
  });

  it('shows held connections oldest first with their code, and reloads itself', async () => {
    const pg = await getPostgres();
    // The pools' clocks are faked (their ages read well in the screenshot); the HTTP server,
    // pg's sockets and the browser keep real timers.
    clock = sinon.useFakeTimers({
      now: Date.parse('2026-12-01T14:03:00Z'),
      toFake: ['setInterval', 'clearInterval', 'Date', 'performance'],
    });
    const orders = await pgPool(`orders-db-${suffix}`);
    const sessions = await pgPool(`sessions-db-${suffix}`);
    await (await sessions.acquire()).release();

    const exportMonthlyReport = () => orders.acquire();
    const handleCheckout = () => orders.acquire();
    const refreshInventory = () => orders.acquire();
    const leaked = await exportMonthlyReport();
    clock.tick(92_000); // past the 60 s leak threshold: the housekeeping tick marks it
    const checkout = await handleCheckout();
    clock.tick(3_200);
    const inventory = await refreshInventory();
    clock.tick(400);

    const page = await browser!.newPage();
    try {
      await page.goto(url);
      const [o, s] = await read(page);
      const where = `postgresql ${pg.config.host}:${pg.config.port}/${pg.config.database}`;
      const file = path.relative(process.cwd(), __filename);
      const rows = o!.rows.map((cells) => [cells[0], cells[1], cells[3]!.replace(/:\d+\)$/, ')')]);
      assert.deepEqual(
        { ...o!, rows },
        {
          name: `orders-db-${suffix}`,
          server: where,
          counts:
            'used 3/5idle 0waiting 0oldest hold 95.6 ssuspected leaks 1collected 0reclaimed 0timeouts 0',
          rows: [
            [`#${leaked.info.id}suspected leak`, '95.6 s', `exportMonthlyReport (${file})`],
            [`#${checkout.info.id}`, '3.6 s', `handleCheckout (${file})`],
            [`#${inventory.info.id}`, '0.4 s', `refreshInventory (${file})`],
          ],
          suspected: 1,
          note: null,
        },
      );
      assert.equal(s!.note, 'No leases held.');
      // Its one connection went idle and was evicted after 30 s (idleTimeoutMillis).
      assert.equal(
        s!.counts,
        'used 0/5idle 0waiting 0oldest hold 0.0 ssuspected leaks 0collected 0reclaimed 0timeouts 0',
      );

      // A person opens the suspected lease's stack.
      await page.locator('tr.suspected summary').click();
      assert.match(
        await page.locator('tr.suspected pre').innerText(),
        /^at exportMonthlyReport \(.*browser\.test\.ts:\d+:\d+\)\n/,
      );
      if (process.env.UPDATE_SCREENSHOTS) {
        await page.screenshot({ path: SCREENSHOT, fullPage: true });
      } else {
        const shot = await page.screenshot({ fullPage: true });
        assert.equal(shot.subarray(1, 4).toString(), 'PNG');
      }

      // The page reloads itself (meta refresh, 1 s): the released lease disappears.
      inventory.release();
      checkout.release();
      // A function, not a string: the page's CSP forbids eval.
      await page.waitForFunction(
        () => {
          type Doc = { querySelectorAll(selector: string): { length: number } };
          const doc = (globalThis as unknown as { document: Doc }).document;
          return (
            doc.querySelectorAll('section.pool tr.suspected').length === 1 &&
            doc.querySelectorAll('section.pool table.holds tbody tr').length === 1
          );
        },
        undefined,
        { timeout: 10_000 },
      );
      const [after] = await read(page);
      assert.deepEqual(
        after!.rows.map((r) => r[0]),
        [`#${leaked.info.id}suspected leak`],
      );
      leaked.release();
    } finally {
      await page.close();
    }
    assert.ok(existsSync(SCREENSHOT), 'docs/live-view.png is checked in');
    assert.ok((await stat(SCREENSHOT)).size > 10_000);
  });
});
