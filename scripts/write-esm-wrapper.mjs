// Writes dist/esm/index.mjs, a thin ES module over the CommonJS build, and dist/esm/register.mjs.
// One implementation serves both `import` and `require()`, so a process that
// loads poolwatch both ways still has one pool registry and one set of
// diagnostics channels (no dual-package hazard).
import { createRequire } from 'node:module';
import { mkdirSync, writeFileSync } from 'node:fs';

const require = createRequire(import.meta.url);
const names = Object.keys(require('../dist/cjs/index.js')).filter((n) => n !== 'default');
mkdirSync(new URL('../dist/esm/', import.meta.url), { recursive: true });
const body = [
  "import cjs from '../cjs/index.js';",
  ...names.map((n) => `export const ${n} = cjs.${n};`),
  '',
].join('\n');
writeFileSync(new URL('../dist/esm/index.mjs', import.meta.url), body);
// `node --import poolwatch/register`: the CommonJS entry, run once (its side effect is the point).
writeFileSync(
  new URL('../dist/esm/register.mjs', import.meta.url),
  "import '../cjs/register.js';\n",
);
