/** Settles a promise into a value or an error, without unhandled rejections. */
export function settle<T>(promise: Promise<T>): { value?: T; error?: Error; done: boolean } {
  const out: { value?: T; error?: Error; done: boolean } = { done: false };
  promise.then(
    (value) => Object.assign(out, { value, done: true }),
    (error: Error) => Object.assign(out, { error, done: true }),
  );
  return out;
}
