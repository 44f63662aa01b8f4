/**
 * `poolwatch/register`: zero-code set-up, for `node --require poolwatch/register app.js` or
 * `node --import poolwatch/register app.mjs`, alone or next to
 * `@opentelemetry/auto-instrumentations-node/register` in either order. Configured from the
 * environment; see `./instrumentation/zero-code.ts` and the README's "Zero-code" section.
 */
import { registerFromEnv } from './instrumentation/zero-code';

registerFromEnv();
