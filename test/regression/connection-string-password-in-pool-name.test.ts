/**
 * Issue 10 item 1: a connection string without a scheme, or with an unencoded `/` (`?`, `#`) in
 * the password, put (part of) the password into pool names, errors, spans and metrics:
 * `createPgPool('user:s3cr3t@127.0.0.1:5432/test')` was named `localhost:5432/3cr3t@127.0.0.1:5432/test`.
 * Now one parser (src/pg-connection-string.ts) reads the string for `pgFactory` (which
 * rejects what it cannot read, without quoting it) and for naming pg.Pool pools (which then
 * names the pool without the string).
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parse as pgParse } from 'pg-connection-string';
import { InvalidOptionError } from '../../src';
import { createPgPool, pgFactory, pgServerInfo } from '../../src/drivers';
import { parsePgConnectionString } from '../../src/pg-connection-string';
import { pgPoolServerInfo } from '../../src/adapters/pg-pool';
import { assertNoSecret } from '../support/secrets';

const SECRET = 'S3CR3TPW';

/** Strings pg misreads (or that are ambiguous), each holding SECRET in its password. */
const AMBIGUOUS = [
  `user:${SECRET}@127.0.0.1:5432/test`, // no scheme: `user:` read as one
  `postgres://user:5432/${SECRET}@host/db`, // unencoded `/` in the password
  `postgres://user:${SECRET.slice(0, 2)}/${SECRET.slice(2)}@host/db`,
  `postgres://user:12?${SECRET}@host/db`, // unencoded `?`
  `postgres://user:12#${SECRET}@host/db`, // unencoded `#`
  `postgresql://u:${SECRET}@host:notaport/db`,
  `host=h password=${SECRET}`, // libpq key=value
  `mysql://u:${SECRET}@host/db`, // another system's URL
  `postgres:u:${SECRET}@host/db`, // no `//`
  `postgres://u: ${SECRET}@host/db`, // whitespace
  `postgres://u:${SECRET}@host/db?host=h@${SECRET}`,
  `socket://u:p@/tmp/${SECRET}@x?db=d`,
  `/tmp/sock@${SECRET} db`,
  `${SECRET}`,
];

describe('regression: a password in an ambiguous connection string never reaches a name', () => {
  for (const input of AMBIGUOUS) {
    it(`pgFactory rejects ${JSON.stringify(input.replace(SECRET, '<pw>'))} without quoting it; pg.Pool naming ignores it`, () => {
      assert.equal(parsePgConnectionString(input), undefined);
      for (const config of [input, { connectionString: input }]) {
        assert.throws(
          () => pgFactory(config),
          (e: unknown) => {
            assert.ok(e instanceof InvalidOptionError, String(e));
            assert.equal(e.code, 'POOL_INVALID_OPTION');
            assert.match(e.message, /cannot be read unambiguously.*percent-encoded/);
            assertNoSecret(e, SECRET, 'the error');
            return true;
          },
        );
        assert.throws(() => createPgPool(config), InvalidOptionError);
        assert.throws(() => pgServerInfo(config), InvalidOptionError);
      }
      const info = pgPoolServerInfo({ connectionString: input, host: 'fallback', port: 6000 });
      assertNoSecret(info, SECRET, 'pg.Pool server info');
      // Named without the string: the explicit fields, never a part of the string.
      assert.deepEqual(info, { system: 'postgresql', address: 'fallback', port: 6000 });
    });
  }

  it('the issue’s examples: no scheme, and an unencoded `/` in the password', () => {
    for (const input of ['user:s3cr3t@127.0.0.1:5432/test', 'postgres://user:5432/XYZ@host/db']) {
      const info = pgPoolServerInfo({ connectionString: input });
      assert.ok(!JSON.stringify(info).includes('3cr3t'), JSON.stringify(info));
      assert.ok(!JSON.stringify(info).includes('XYZ'), JSON.stringify(info));
      assert.throws(() => createPgPool(input), InvalidOptionError);
    }
  });

  it('reads well-formed strings exactly as pg does (host, port, database)', () => {
    const cases = [
      'postgres://alice:s3cret@db.example:6543/shop?sslmode=disable',
      'postgresql://u:p%2Fq%3F%23%40@h:1/d',
      'postgres://u:p@ss@host/db', // `@` in the password: the last one ends it, as in pg
      'postgres://u:p@/shop?host=/var/run/postgresql',
      'postgres://[::1]:5433/db',
      'postgres:///d',
      'postgresql://h',
      'postgres://h/d#frag',
      'postgres://%2Fvar%2Frun%2Fpostgresql/db',
      'postgres://h/d?port=7000',
      'socket://u:p@/tmp/sock?db=x',
      'socket:/tmp/sock?db=x',
      '/tmp/sock mydb',
    ];
    for (const input of cases) {
      const ours = parsePgConnectionString(input);
      assert.ok(ours, input);
      const pg = pgParse(input);
      assert.equal(ours.host ?? '', pg.host || '', `${input}: host`);
      assert.equal(
        ours.port ?? '',
        pg.port === undefined || pg.port === '' ? '' : Number(pg.port),
        `${input}: port`,
      );
      assert.equal(ours.database ?? null, pg.database ?? null, `${input}: database`);
    }
  });

  it('property: no character of an unencoded password reaches server info or a pool name', () => {
    // Passwords use upper-case letters and URL delimiters; hosts and databases are lower case,
    // so any upper-case letter in the output came from the password.
    const password = fc.stringMatching(/^[A-Z][A-Z0-9/?#@:%&=+ ]{3,15}$/);
    const template = fc.constantFrom(
      (pw: string) => `postgres://app:${pw}@db.local:5432/shop`,
      (pw: string) => `postgresql://app:${pw}@db.local/shop?sslmode=disable`,
      (pw: string) => `app:${pw}@db.local:5432/shop`,
      (pw: string) => `postgres://app:${pw}@/shop?host=/run/pg`,
      (pw: string) => `socket://app:${pw}@/run/pg?db=shop`,
      (pw: string) => `//app:${pw}@db.local/shop`,
    );
    const rejection = (() => {
      try {
        pgFactory('not a url');
      } catch (error) {
        return error as Error;
      }
      throw new Error('expected a rejection');
    })();
    fc.assert(
      fc.property(password, template, (pw, make) => {
        const input = make(pw);
        const named = JSON.stringify(pgPoolServerInfo({ connectionString: input }));
        assert.doesNotMatch(named, /[A-Z]/, `${input} -> ${named}`);
        let out: string;
        try {
          out = JSON.stringify(pgFactory(input).server);
        } catch (error) {
          // The error text is the same for every rejected string: it quotes nothing of it.
          assert.ok(error instanceof InvalidOptionError);
          assert.equal(error.message, rejection.message);
          out = '';
        }
        assert.doesNotMatch(out, /[A-Z]/, `${input} -> ${out}`);
      }),
      { numRuns: 300 },
    );
  });
});
