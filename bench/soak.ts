/**
 * Soak: do pools drained by dropped leases recover without `--expose-gc`?
 *
 *     npx tsx bench/soak.ts [--seconds 120] [--collect-when-starved-millis 2000]
 *
 * Two pools of 10; 40 workers per pool run tasks back to back: acquire (timeout 1 s), hold 2-8 ms
 * while allocating like a request handler (~20 kB), release; one task in 500 drops its lease
 * instead. Nothing here calls `gc()`: collections are V8's own, plus whatever the pool forces
 * while starved (`collectWhenStarvedMillis`, 0 = off). Prints, per pool: tasks completed,
 * timeouts, leases dropped and found, and the longest stretch without a completed task; and the
 * longest forced-collection pause seen (from `PerformanceObserver` 'gc' entries).
 *
 * Run it in a process of its own, without `--expose-gc` (tsx does not add it).
 */
import { PerformanceObserver } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Pool, type Alert } from '../src';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '120' },
    'collect-when-starved-millis': { type: 'string', default: '2000' },
  },
});
const seconds = Number(values.seconds);
const collectWhenStarvedMillis = Number(values['collect-when-starved-millis']);
if ((globalThis as { gc?: unknown }).gc !== undefined) {
  throw new Error('run the soak without --expose-gc: it measures what users get');
}

let longestMajorGc = 0;
let majorGcs = 0;
const gcObserver = new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    const kind = (entry as { detail?: { kind?: number } }).detail?.kind;
    // kind 4: major (mark-sweep-compact).
    if (kind === 4) {
      majorGcs++;
      longestMajorGc = Math.max(longestMajorGc, entry.duration);
    }
  }
});
gcObserver.observe({ entryTypes: ['gc'] });

interface Tally {
  done: number;
  timeouts: number;
  dropped: number;
  found: number;
  lastProgress: number;
  longestStall: number;
}

async function soakPool(name: string, deadline: number): Promise<Tally> {
  const tally: Tally = {
    done: 0,
    timeouts: 0,
    dropped: 0,
    found: 0,
    lastProgress: performance.now(),
    longestStall: 0,
  };
  const pool = new Pool({
    name,
    max: 10,
    factory: { create: async () => ({ name }), destroy: async () => {} },
    acquireTimeoutMillis: 1000,
    collectWhenStarvedMillis,
    health: false,
    onAlert: (alert: Alert) => {
      if (alert.leakKind === 'collected') tally.found++;
    },
  });
  let sink = 0;
  const worker = async () => {
    while (performance.now() < deadline) {
      try {
        const lease = await pool.acquire();
        const garbage = Array.from({ length: 200 }, (_, i) => ({ i, text: `row ${i}` }));
        sink += garbage.length;
        await sleep(2 + Math.random() * 6);
        if (Math.random() < 1 / 500) tally.dropped++;
        else lease.release();
        const now = performance.now();
        tally.longestStall = Math.max(tally.longestStall, now - tally.lastProgress);
        tally.lastProgress = now;
        tally.done++;
      } catch (error) {
        if ((error as { code?: string }).code === 'POOL_ACQUIRE_TIMEOUT') tally.timeouts++;
        else throw error;
      }
    }
  };
  await Promise.all(Array.from({ length: 40 }, worker));
  await pool.close();
  void sink;
  return tally;
}

async function main(): Promise<void> {
  const deadline = performance.now() + seconds * 1000;
  // The pools' timers never keep a process alive (a server would): with every worker waiting on
  // a starved pool, nothing else would.
  const alive = setInterval(() => {}, 1000);
  const tallies = await Promise.all([soakPool('soak-a', deadline), soakPool('soak-b', deadline)]);
  clearInterval(alive);
  gcObserver.disconnect();
  console.log(
    `soak ${seconds} s, collectWhenStarvedMillis ${collectWhenStarvedMillis}, node ${process.version}`,
  );
  for (const [i, t] of tallies.entries()) {
    console.log(
      `  pool ${i === 0 ? 'a' : 'b'}: ${t.done} tasks, ${t.timeouts} timeouts, ${t.dropped} dropped, ` +
        `${t.found} found, longest stall ${(t.longestStall / 1000).toFixed(2)} s`,
    );
  }
  console.log(`  major GCs: ${majorGcs}, longest ${longestMajorGc.toFixed(1)} ms`);
}

void main();
