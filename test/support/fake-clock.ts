import sinon from 'sinon';

interface Closeable {
  close(): Promise<unknown>;
}

/**
 * Installs sinon's fake clock before each test of the calling `describe`, and after each test
 * closes what the test opened (running the clock so that closes can finish) and restores the
 * clock. Register it first in the `describe`, so that other `afterEach` hooks run after it.
 */
export function useFakeClock<T extends Closeable = Closeable>(
  config?: Parameters<typeof sinon.useFakeTimers>[0],
): {
  readonly clock: sinon.SinonFakeTimers;
  /** Pools (or anything with `close()`) to close after the test. */
  readonly open: T[];
} {
  let clock: sinon.SinonFakeTimers | undefined;
  const open: T[] = [];
  beforeEach(() => {
    clock = sinon.useFakeTimers(config);
  });
  afterEach(async () => {
    const closing = open.splice(0).map((c) => c.close());
    await clock!.runAllAsync();
    await Promise.all(closing);
    clock!.restore();
  });
  return {
    get clock() {
      return clock!;
    },
    open,
  };
}
