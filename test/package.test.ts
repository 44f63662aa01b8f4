import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

/** The built package, as users load it: `npm test` builds before mocha runs. */
describe('package', () => {
  const root = path.resolve(__dirname, '..');
  const run = (args: string[]) =>
    execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8' });

  it('loads with require() and import, as one implementation', () => {
    const out = run([
      '--input-type=module',
      '-e',
      `import { createRequire } from 'node:module';
       import * as esm from 'poolwatch';
       const cjs = createRequire(process.cwd() + '/')('poolwatch');
       const pool = new esm.Pool({ factory: { create: async () => ({}), destroy() {} } });
       const lease = await pool.acquire();
       lease.release();
       await pool.close();
       console.log(JSON.stringify({ same: esm.Pool === cjs.Pool, stats: pool.stats().created }));`,
    ]);
    assert.deepEqual(JSON.parse(out), { same: true, stats: 1 });
  });

  it('ships type declarations', () => {
    assert.ok(existsSync(path.join(root, 'dist/cjs/index.d.ts')));
  });
});
