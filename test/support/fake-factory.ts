import type { CreateContext, ResourceFactory } from '../../src';

/** A resource the fake factory makes: it knows whether it was destroyed, and can be broken. */
export interface FakeResource {
  readonly id: number;
  destroyed: boolean;
  /** Resets seen by this resource. */
  resets: number;
  context: CreateContext;
}

/**
 * A resource factory with fault switches, for unit tests: slow or failing creates, failing
 * validation, throwing destroy. It records everything it made, so tests can check that nothing
 * was lost or destroyed twice.
 */
export class FakeFactory implements ResourceFactory<FakeResource> {
  readonly made: FakeResource[] = [];
  destroyCalls = 0;
  /** Milliseconds each create takes (timers, so fake clocks drive them). */
  createDelayMillis = 0;
  /** The next N creates fail. */
  failCreates = 0;
  createError = new Error('connect ECONNREFUSED 127.0.0.1:5432');
  /** Resources whose validation fails. */
  readonly invalid = new Set<number>();
  validateCalls = 0;
  throwOnDestroy = false;
  /** Set to a function to enable reset(). */
  reset: ((resource: FakeResource) => Promise<void> | void) | undefined = undefined;
  #nextId = 1;

  async create(context: CreateContext): Promise<FakeResource> {
    if (this.createDelayMillis > 0) {
      await new Promise((resolve) => setTimeout(resolve, this.createDelayMillis));
    }
    if (this.failCreates > 0) {
      this.failCreates--;
      throw this.createError;
    }
    const resource: FakeResource = { id: this.#nextId++, destroyed: false, resets: 0, context };
    this.made.push(resource);
    return resource;
  }

  destroy(resource: FakeResource): void {
    this.destroyCalls++;
    if (resource.destroyed) throw new Error(`resource ${resource.id} destroyed twice`);
    resource.destroyed = true;
    if (this.throwOnDestroy) throw new Error('destroy failed');
  }

  validate: ((resource: FakeResource) => boolean) | undefined = (resource) => {
    this.validateCalls++;
    return !this.invalid.has(resource.id);
  };

  get live(): FakeResource[] {
    return this.made.filter((r) => !r.destroyed);
  }
}

/** A factory without validate(), for the fast path. */
export function plainFactory(): FakeFactory {
  const factory = new FakeFactory();
  factory.validate = undefined;
  return factory;
}
