/**
 * Issue 10 item 4: after a silent network drop, holders hung in a query forever with default
 * options: pg turns TCP keepalive off and mysql2 leaves the first probe to the kernel (2 h). Both
 * factories now ask for keepalive after 10 s idle, on the real socket (checked by watching
 * `setKeepAlive` while a real connection is made). The recovery itself (query timeouts, busy
 * connections destroyed at release, the timeout message) is in
 * test/integration/network-faults.test.ts and test/regression/pool-faults.test.ts.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import sinon from 'sinon';
import { mysqlFactory, pgFactory } from '../../src/drivers';
import { mysqlAvailable, mysqlConfig } from '../support/mysql';
import { getPostgres } from '../support/postgres';

describe('regression: silent drops hung holders forever (no TCP keepalive by default)', function () {
  this.timeout(20_000);
  let spy: sinon.SinonSpy<Parameters<net.Socket['setKeepAlive']>, net.Socket>;
  beforeEach(() => {
    spy = sinon.spy(net.Socket.prototype, 'setKeepAlive');
  });
  afterEach(() => spy.restore());

  const context = { markBroken: () => undefined };

  it('pg: keepalive on, first probe after 10 s; an explicit keepAlive: false is respected', async function () {
    this.timeout(60_000);
    const server = await getPostgres();
    for (const config of [server.connectionString, { ...server.config }]) {
      spy.resetHistory();
      const factory = pgFactory(config);
      const client = await factory.create(context);
      try {
        assert.deepEqual(spy.args, [[true, 10_000]]);
      } finally {
        await factory.destroy(client);
      }
    }
    spy.resetHistory();
    const off = pgFactory({ ...server.config, keepAlive: false });
    const client = await off.create(context);
    await off.destroy(client);
    assert.deepEqual(spy.args, []);
  });

  it('mysql2: first probe after 10 s (mysql2 leaves it to the kernel: 2 h)', async function () {
    if (!(await mysqlAvailable())) this.skip();
    spy.resetHistory();
    const factory = mysqlFactory(mysqlConfig());
    const connection = await factory.create(context);
    try {
      assert.deepEqual(spy.args, [[true, 10_000]]);
    } finally {
      await factory.destroy(connection);
    }
  });
});
