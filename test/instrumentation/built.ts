/**
 * The built package, for child processes that load `poolwatch` the way applications do (through
 * its "exports", into dist/). `npm test` builds first; a lone `mocha` run rebuilds only when the
 * sources are newer than the build.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

export const ROOT = join(__dirname, '..', '..');
const BUILT = [join(ROOT, 'dist', 'esm', 'index.mjs'), join(ROOT, 'dist', 'cjs', 'index.js')];

/** Newest modification time of the TypeScript sources. */
function newestSource(dir = join(ROOT, 'src')): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    const mtime = entry.isDirectory() ? newestSource(path) : statSync(path).mtimeMs;
    newest = Math.max(newest, mtime);
  }
  return newest;
}

function builtAt(): number {
  try {
    return Math.min(...BUILT.map((path) => statSync(path).mtimeMs));
  } catch {
    return 0;
  }
}

/** Runs `npm run build` when dist/ is missing or older than src/. */
export function ensureBuilt(): void {
  if (builtAt() >= newestSource()) return;
  try {
    execFileSync('npm', ['run', 'build'], { cwd: ROOT, encoding: 'utf8', stdio: 'pipe' });
  } catch (error) {
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string };
    throw new Error(`npm run build failed:\n${stdout}${stderr}`);
  }
}
