/**
 * The package's name and version, for the instrumentation scope. The version is read through the
 * package's self-reference (`"./package.json"` is in its `exports`), which resolves to the package
 * root from `src/` under tsx and from `dist/cjs/` alike, where a relative path would differ.
 */
export const PACKAGE_NAME = 'poolwatch';
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const PACKAGE_VERSION: string = (require('poolwatch/package.json') as { version: string })
  .version;
