/**
 * "No credentials leak": finds a secret (a password) anywhere in what poolwatch produces, be it
 * a string, an error with its cause chain and stack, or a nested object (stats, lease info, server
 * info, exported spans, log records, metric attributes).
 *
 *   assertNoSecret({ error, stats: pool.stats(), spans: exporter.getFinishedSpans() }, password);
 *
 * Matches the secret as is and URL-encoded (as it appears in connection strings).
 */
import assert from 'node:assert/strict';
import { inspect } from 'node:util';

/** Where `secret` occurs in `value` (a path like `error.cause.message`), or undefined. */
export function findSecret(value: unknown, secret: string): string | undefined {
  if (secret === '') throw new Error('findSecret needs a non-empty secret');
  const needles = [...new Set([secret, encodeURIComponent(secret)])];
  const hit = (text: string) => needles.some((n) => text.includes(n));
  const seen = new Set<object>();

  const walk = (v: unknown, path: string, depth: number): string | undefined => {
    if (typeof v === 'string') return hit(v) ? path : undefined;
    if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') {
      return hit(String(v)) ? path : undefined;
    }
    if (typeof v !== 'object' || v === null || depth > 12 || seen.has(v)) return undefined;
    seen.add(v);
    if (v instanceof Error) {
      // name, message, stack and cause are not all enumerable: look at them explicitly.
      for (const key of ['name', 'message', 'stack'] as const) {
        const found = walk(v[key], `${path}.${key}`, depth + 1);
        if (found) return found;
      }
      if ('cause' in v) {
        const found = walk(v.cause, `${path}.cause`, depth + 1);
        if (found) return found;
      }
    }
    if (v instanceof Map) {
      for (const [k, item] of v) {
        const found =
          walk(k, `${path}<key>`, depth + 1) ?? walk(item, `${path}.get(${String(k)})`, depth + 1);
        if (found) return found;
      }
    }
    if (v instanceof Set || Array.isArray(v)) {
      let i = 0;
      for (const item of v as Iterable<unknown>) {
        const found = walk(item, `${path}[${i++}]`, depth + 1);
        if (found) return found;
      }
      return undefined;
    }
    for (const key of Object.keys(v)) {
      if (hit(key)) return `${path}.<key ${key}>`;
      let item: unknown;
      try {
        item = (v as Record<string, unknown>)[key];
      } catch {
        continue; // a throwing getter (a released lease's resource): nothing to see
      }
      const found = walk(item, `${path}.${key}`, depth + 1);
      if (found) return found;
    }
    return undefined;
  };

  const found = walk(value, '$', 0);
  if (found) return found;
  // What console.log would print, getters and all.
  const printed = inspect(value, { depth: 8, getters: true });
  return hit(printed) ? '$ (util.inspect output)' : undefined;
}

/** Fails with the path where `secret` was found. */
export function assertNoSecret(value: unknown, secret: string, what = 'value'): void {
  const where = findSecret(value, secret);
  assert.equal(where, undefined, `the secret appears in ${what} at ${where}`);
}
