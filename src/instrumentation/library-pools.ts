/**
 * The pools of libraries other than pg that `PoolInstrumentation` watches: knex's (tarn) and
 * mysql2's own. Their options, their patchers, and their module definitions, kept here so that
 * `./instrumentation.ts` only hands them over.
 */
import { InstrumentationNodeModuleDefinition } from '@opentelemetry/instrumentation';
import type { ErrorReporter } from '../adapters/checkouts';
import type { Mysql2PoolNameInfo, ResolvedMysql2PoolOptions } from '../adapters/mysql2-pool';
import type { KnexPoolNameInfo, ResolvedKnexOptions } from '../adapters/tarn';
import { KNEX_VERSIONS, KnexPatcher } from './knex';
import { MYSQL2_VERSIONS, Mysql2PoolPatcher } from './mysql2-pool';
import { resolveCheckoutOptions } from './pool-options';
import type { PoolInstrumentationConfig } from './types';

export class LibraryPools {
  #knex: ResolvedKnexOptions | undefined;
  #mysql2: ResolvedMysql2PoolOptions | undefined;
  readonly knex: KnexPatcher;
  readonly mysql2: Mysql2PoolPatcher;

  constructor(report: ErrorReporter) {
    this.knex = new KnexPatcher(() => this.#knex, report);
    this.mysql2 = new Mysql2PoolPatcher(() => this.#mysql2, report);
  }

  /** Validates the `knex` and `mysql2Pool` options (both, before taking either). */
  configure(config: PoolInstrumentationConfig): void {
    const knex = resolveCheckoutOptions<KnexPoolNameInfo>(config.knex, 'knex');
    const mysql2 = resolveCheckoutOptions<Mysql2PoolNameInfo>(config.mysql2Pool, 'mysql2Pool');
    this.#knex = knex;
    this.#mysql2 = mysql2;
  }
}

/** The module definitions, for `init()`: knex's three files, and mysql2's main module. */
export function libraryPoolDefinitions(
  pools: () => LibraryPools,
): InstrumentationNodeModuleDefinition[] {
  return [
    new InstrumentationNodeModuleDefinition(
      'knex',
      KNEX_VERSIONS,
      undefined,
      undefined,
      pools().knex.files(),
    ),
    new InstrumentationNodeModuleDefinition(
      'mysql2',
      MYSQL2_VERSIONS,
      (moduleExports: unknown) => pools().mysql2.patch(moduleExports),
      (moduleExports: unknown) => pools().mysql2.unpatch(moduleExports),
    ),
  ];
}
