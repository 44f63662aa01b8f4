import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import {
  AUTO_STACK_BUDGET,
  AUTO_STACK_BURST_MILLIS,
  AUTO_STACK_HUNT_MILLIS,
  captureStack,
  codeLocation,
  formatStack,
  StackSampler,
} from '../../src/watch/stack';

describe('stack capture (src/watch/stack.ts)', () => {
  describe("the 'auto' policy", () => {
    /** How many of `n` acquires at time `now` the sampler captures, each costing `cost` ms. */
    function captures(sampler: StackSampler, now: number, n: number, cost: number): number {
      let taken = 0;
      for (let i = 0; i < n; i++) {
        if (sampler.shouldCapture(now)) {
          sampler.spent(cost);
          taken++;
        }
      }
      return taken;
    }

    it('captures a burst up to its saved budget, then 1% of the time', () => {
      const sampler = new StackSampler(-1);
      const cost = 2 ** -8; // ~4 µs, a capture on this project's VMs (exact in binary)
      const burst = Math.ceil(AUTO_STACK_BURST_MILLIS / cost);
      assert.equal(captures(sampler, 1000, 10_000, cost), burst);
      // 100 ms later: 1 ms of budget, 200 captures.
      const later = captures(sampler, 1100, 10_000, cost);
      assert.equal(later, Math.ceil((100 * AUTO_STACK_BUDGET) / cost));
      // Savings are capped: an hour of quiet buys one burst, not more.
      assert.equal(captures(sampler, 3_601_100, 10_000, cost), burst);
    });

    it('captures every acquire under pressure, and for a while after a finding without stack', () => {
      const sampler = new StackSampler(-1);
      const cost = 2 ** -6;
      captures(sampler, 0, 10_000, cost); // budget spent
      assert.equal(captures(sampler, 0, 10, cost), 0);
      sampler.underPressure = true;
      assert.equal(captures(sampler, 0, 10, cost), 10);
      sampler.underPressure = false;
      sampler.hunt(0);
      assert.equal(captures(sampler, AUTO_STACK_HUNT_MILLIS - 1, 10, cost), 10);
      // Captures under pressure or while hunting are not charged; the budget refilled meanwhile,
      // up to AUTO_STACK_BURST_MILLIS.
      assert.equal(
        captures(sampler, AUTO_STACK_HUNT_MILLIS + 1, 10_000, cost),
        AUTO_STACK_BURST_MILLIS / cost,
      );
    });

    it('charges a capture that measured long (the process was descheduled) at most 0.1 ms', () => {
      const sampler = new StackSampler(-1);
      assert.ok(sampler.shouldCapture(0));
      sampler.spent(50); // preempted for 50 ms in the middle of a capture
      assert.equal(
        captures(sampler, 0, 10_000, 2 ** -6),
        Math.ceil((AUTO_STACK_BURST_MILLIS - 0.1) / 2 ** -6),
      );
    });

    it("'always', 'never' and one-in-N ignore the budget", () => {
      assert.equal(captures(new StackSampler(1), 0, 1000, 1), 1000);
      assert.equal(captures(new StackSampler(0), 0, 1000, 0), 0);
      assert.equal(captures(new StackSampler(4), 0, 1000, 1), 250);
    });
  });

  describe('code locations', () => {
    it('takes the first frame: function, path relative to the working directory, line, column', () => {
      const file = path.join(process.cwd(), 'src', 'app.ts');
      assert.deepEqual(codeLocation(`at checkout (${file}:12:7)\nat main (${file}:30:1)`), {
        functionName: 'checkout',
        filePath: path.join('src', 'app.ts'),
        lineNumber: 12,
        columnNumber: 7,
      });
      assert.deepEqual(codeLocation('at async Worker.run (/srv/app/jobs.js:5:9)'), {
        functionName: 'Worker.run',
        filePath: '/srv/app/jobs.js',
        lineNumber: 5,
        columnNumber: 9,
      });
      assert.deepEqual(codeLocation('at file:///srv/app/main.mjs:3:14'), {
        filePath: '/srv/app/main.mjs',
        lineNumber: 3,
        columnNumber: 14,
      });
      assert.equal(codeLocation(undefined), undefined);
      assert.equal(codeLocation('at <anonymous>'), undefined);
    });

    it("a captured stack's location is the caller's line, stable from run to run", () => {
      const locate = () => codeLocation(formatStack(captureStack(locate)));
      const first = (function acquireHere() {
        return locate();
      })();
      assert.equal(first?.functionName, 'acquireHere');
      assert.equal(first?.filePath, path.join('test', 'watch', 'stack.test.ts'));
      const again = (function acquireHere() {
        return locate();
      })();
      assert.equal(again!.columnNumber, first!.columnNumber);
      const lines = readFileSync(first!.filePath, 'utf8').split('\n');
      for (const at of [first!, again!]) {
        assert.match(lines[at.lineNumber - 1]!.slice(at.columnNumber - 1), /^locate\(\)/);
      }
    });
  });
});
