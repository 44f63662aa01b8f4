import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { codeLocationOf, formatCodeLocation } from '../src/code-location';
import { Pool } from '../src';
import { plainFactory } from './support/fake-factory';

describe('code location of a lease', () => {
  it("is the lease's first caller frame, derived from the stack when the lease lacks it", async () => {
    const pool = new Pool({
      factory: plainFactory(),
      captureStacks: 'always',
      name: `cl-${process.pid}`,
    });
    try {
      const lease = await pool.acquire(); // this line
      const info = pool.leakReport().held[0]!;
      const location = codeLocationOf(info)!;
      const source = readFileSync(__filename, 'utf8').split('\n');
      assert.deepEqual(
        { file: location.filePath, line: location.lineNumber },
        {
          file: path.relative(process.cwd(), __filename),
          line: source.findIndex((l) => l.endsWith('// this line')) + 1,
        },
      );
      assert.equal(
        formatCodeLocation(location),
        `Context.<anonymous> (${location.filePath}:${location.lineNumber})`,
      );
      // Without `location` (a lease from an older copy of poolwatch): the same, from the stack.
      const bare = { ...info, location: undefined, stack: info.stack };
      assert.deepEqual(codeLocationOf(bare), location);
      assert.equal(codeLocationOf({ ...bare, stack: undefined }), undefined);
      assert.equal(formatCodeLocation(undefined), 'unknown (no stack captured)');
      lease.release();
    } finally {
      await pool.close();
    }
  });
});
