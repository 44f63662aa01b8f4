import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { codeLocationOf, formatCodeLocation, parseStackFrame } from '../src/code-location';
import { Pool } from '../src';
import { plainFactory } from './support/fake-factory';

describe('code location', () => {
  it('parses the V8 frame forms', () => {
    const cases: [string, ReturnType<typeof parseStackFrame>][] = [
      [
        'at checkout (/app/src/orders.js:12:5)',
        {
          functionName: 'checkout',
          filePath: '/app/src/orders.js',
          lineNumber: 12,
          columnNumber: 5,
        },
      ],
      ['at /app/src/main.js:3:9', { filePath: '/app/src/main.js', lineNumber: 3, columnNumber: 9 }],
      [
        'at async Repo.load [as fetch] (file:///app/src/repo.mjs:40:17)',
        {
          functionName: 'Repo.load',
          filePath: '/app/src/repo.mjs',
          lineNumber: 40,
          columnNumber: 17,
        },
      ],
      [
        'at new Report (/app/report (copy).js:7:1)',
        {
          functionName: 'Report',
          filePath: '/app/report (copy).js',
          lineNumber: 7,
          columnNumber: 1,
        },
      ],
      [
        'at Object.<anonymous> (/app/index.js:1:2)',
        { filePath: '/app/index.js', lineNumber: 1, columnNumber: 2 },
      ],
      ['at C:\\app\\win.js:5:6', { filePath: 'C:\\app\\win.js', lineNumber: 5, columnNumber: 6 }],
      [
        'at eval (eval at run (/app/e.js:9:3), <anonymous>:1:1)',
        { functionName: 'eval', filePath: '/app/e.js', lineNumber: 9, columnNumber: 3 },
      ],
      ['at Array.map (<anonymous>)', undefined],
      ['at native', undefined],
      ['garbage', undefined],
    ];
    for (const [frame, expected] of cases)
      assert.deepEqual(parseStackFrame(frame), expected, frame);
  });

  it("takes a lease's first caller frame, and nothing without a stack", async () => {
    const pool = new Pool({
      factory: plainFactory(),
      captureStacks: 'always',
      name: `cl-${process.pid}`,
    });
    try {
      const lease = await pool.acquire(); // this line
      const info = pool.leakReport().held[0]!;
      const location = codeLocationOf(info)!;
      assert.equal(location.filePath, __filename);
      const source = readFileSync(__filename, 'utf8').split('\n');
      assert.equal(location.lineNumber, source.findIndex((l) => l.endsWith('// this line')) + 1);
      assert.match(formatCodeLocation(location), /code-location\.test\.ts:\d+/);
      lease.release();
      assert.equal(
        codeLocationOf({ ...info, stack: undefined, toJSON: undefined } as never),
        undefined,
      );
      assert.equal(formatCodeLocation(undefined), 'unknown (no stack captured)');
      // A location the lease already carries wins over the stack.
      const given = { filePath: '/given.js', lineNumber: 1 };
      assert.equal(codeLocationOf({ ...info, location: given } as never), given);
    } finally {
      await pool.close();
    }
  });
});
